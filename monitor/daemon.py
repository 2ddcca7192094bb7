"""The crawl daemon: every source crawled on its own schedule, unattended, one daemon per database.

* APScheduler 3 (a BackgroundScheduler) holds one interval job per source (the registry's
  ``schedule.every_minutes``, with jitter; ``coalesce``, ``max_instances=1``, no misfire limit,
  so a run missed while the daemon was down happens once, as soon as it is back). Jobs live in
  the project database (SQLAlchemyJobStore, table ``apscheduler_jobs``): schedules and next run
  times survive restarts.
* Each job crawls its source in a child process (:func:`monitor.crawling.run_crawl`, trigger
  ``daemon``) under a time limit: past it the crawl is stopped and its run recorded ``failed``.
  A crawl that crashes only fails its run; the daemon goes on.
* After each run, :func:`monitor.health.check_run` raises operator alerts for new problems.
* The alert dispatcher (:class:`monitor.alerts.Dispatcher`) runs in a thread, so the alerts a
  crawl enqueues (for the rules of ``--alerts``, default config/alerts.yaml) go out within a
  second of the crawl's commit.
* :meth:`CrawlDaemon.stop` (SIGTERM/SIGINT): no new crawl starts; running ones may finish
  within ``stop_grace`` seconds, then are stopped cleanly (run recorded ``interrupted``).
* :class:`Lease`: a row in ``daemon_lease`` renewed by a heartbeat; a second daemon on the same
  database refuses to start while the lease is fresh (works on SQLite and PostgreSQL alike).
"""

from __future__ import annotations

import logging
import os
import socket
import threading
import time
import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

from apscheduler.executors.pool import ThreadPoolExecutor
from apscheduler.job import Job
from apscheduler.jobstores.sqlalchemy import SQLAlchemyJobStore
from apscheduler.schedulers.background import BackgroundScheduler
from apscheduler.triggers.interval import IntervalTrigger
from sqlalchemy import delete, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session, sessionmaker

from crawler.sources import Source, load_registry
from monitor.alerts import Dispatcher, alerts_settings, load_rules
from monitor.crawling import STOP_BOUND_SECONDS, CrawlOptions, reap_orphaned_runs, run_crawl
from monitor.health import OperatorAlerts, check_run
from storage.db import init_db, make_engine, session_factory, session_scope
from storage.models import DaemonLease
from storage.repository import utcnow

logger = logging.getLogger("dtmon.daemon")

JOB_PREFIX = "crawl:"
LEASE_NAME = "crawl-daemon"
MAX_JITTER_SECONDS = 300.0
DISPATCH_POLL_SECONDS = 0.5


@dataclass
class DaemonOptions:
    """How the daemon runs (the `dtmon daemon` options)."""

    sources: Sequence[str] = ()  # registry names; empty = every source
    sources_files: Sequence[Path] = ()  # extra YAML files of sources
    via: str | None = None  # mirror server (the --via contract)
    interval_seconds: float | None = None  # overrides every source's schedule
    alerts_file: Path | None = None  # alert rules (default config/alerts.yaml)
    workers: int = 4  # crawls at the same time (each of a different source)
    time_limit: float = 1800.0  # seconds a crawl may take before it is stopped
    stop_grace: float = 30.0  # seconds running crawls may take to finish on shutdown
    lease_seconds: float = 120.0  # a lease not renewed for this long may be taken over
    heartbeat_seconds: float = 10.0


class DaemonAlreadyRunning(RuntimeError):
    """Another daemon holds this database's lease."""


class Lease:
    """The one-daemon-per-database lease: a row that its holder keeps fresh."""

    def __init__(self, sessions: sessionmaker[Session], expiry: timedelta) -> None:
        self.sessions = sessions
        self.expiry = expiry
        self.owner = f"{socket.gethostname()} pid {os.getpid()} ({uuid.uuid4().hex[:8]})"

    def acquire(self) -> None:
        """Take the lease, or raise :class:`DaemonAlreadyRunning` while another holds it."""
        now = utcnow()
        with session_scope(self.sessions) as session:
            if self._insert(session, now):
                return
            taken = session.execute(
                update(DaemonLease)
                .where(DaemonLease.name == LEASE_NAME, DaemonLease.heartbeat_at < now - self.expiry)
                .values(owner=self.owner, acquired_at=now, heartbeat_at=now)
            ).rowcount
            if taken == 1:
                logger.warning("took over a stale daemon lease (no heartbeat for %s)", self.expiry)
                return
            holder = session.get(DaemonLease, LEASE_NAME, populate_existing=True)
        raise DaemonAlreadyRunning(
            f"another dtmon daemon is running on this database ({holder.owner}, since "
            f"{holder.acquired_at:%Y-%m-%d %H:%M:%S} UTC, last heartbeat "
            f"{holder.heartbeat_at:%H:%M:%S} UTC); stop it first, or wait "
            f"{self.expiry.total_seconds():.0f} s after it died")

    def _insert(self, session: Session, now: datetime) -> bool:
        try:
            with session.begin_nested():
                session.add(DaemonLease(name=LEASE_NAME, owner=self.owner, acquired_at=now,
                                        heartbeat_at=now))
        except IntegrityError:
            return False
        return True

    def renew(self) -> bool:
        """Refresh the heartbeat; False when the lease was lost (taken over)."""
        with session_scope(self.sessions) as session:
            return session.execute(
                update(DaemonLease)
                .where(DaemonLease.name == LEASE_NAME, DaemonLease.owner == self.owner)
                .values(heartbeat_at=utcnow())
            ).rowcount == 1

    def release(self) -> None:
        """Give the lease up (a new daemon may start at once)."""
        with session_scope(self.sessions) as session:
            session.execute(delete(DaemonLease).where(DaemonLease.name == LEASE_NAME,
                                                      DaemonLease.owner == self.owner))


class _ClosingExecutor(ThreadPoolExecutor):
    """A thread pool that quietly drops the jobs APScheduler still submits while shutting
    down (its loop processes due jobs once more after the executors were shut down)."""

    _closed = False

    def shutdown(self, wait: bool = True) -> None:
        self._closed = True
        super().shutdown(wait)

    def submit_job(self, job: Job, run_times: list[datetime]) -> None:
        if not self._closed:
            super().submit_job(job, run_times)


# The daemon whose scheduler runs the jobs: stored jobs refer to run_scheduled_crawl by name.
_running: CrawlDaemon | None = None


def run_scheduled_crawl(source: str) -> None:
    """The job of every source: crawl it with the running daemon."""
    if _running is None:
        logger.warning("job for %s fired with no daemon running", source)
        return
    _running.crawl_source(source)


class CrawlDaemon:
    """Schedules and runs the crawls of the selected sources until stopped."""

    def __init__(self, options: DaemonOptions, database_url: str) -> None:
        self.options = options
        self.database_url = database_url
        self.engine = make_engine(database_url)
        init_db(self.engine)
        self.sessions = session_factory(self.engine)
        reap_orphaned_runs(self.sessions)
        registry = load_registry(extra=options.sources_files)
        self.sources: list[Source] = registry.select(list(options.sources))
        self.rules = load_rules(options.alerts_file)
        self.alerts = OperatorAlerts(self.sessions, self.rules)
        self.lease = Lease(self.sessions, timedelta(seconds=options.lease_seconds))
        self.stopping = threading.Event()
        self._stop_deadline: float | None = None
        self.scheduler = BackgroundScheduler(
            jobstores={"default": SQLAlchemyJobStore(engine=self.engine)},
            executors={"default": _ClosingExecutor(options.workers)},
            timezone=UTC,
        )

    def run(self) -> None:
        """Take the lease, schedule every source, crawl until :meth:`stop`, shut down cleanly.

        Raises :class:`DaemonAlreadyRunning` when another daemon holds the lease.
        """
        global _running
        self.lease.acquire()
        _running = self
        try:
            dispatcher = Dispatcher(self.sessions, self.rules).start_in_thread(
                poll_seconds=DISPATCH_POLL_SECONDS)
            self.scheduler.start(paused=True)
            self._schedule_sources()
            self.scheduler.resume()
            logger.info("daemon started (%s): %d source(s), %d worker(s)", self.lease.owner,
                        len(self.sources), self.options.workers)
            while not self.stopping.wait(self.options.heartbeat_seconds):
                if not self.lease.renew():
                    logger.error("the daemon lease was taken over by another daemon: stopping")
                    self.stop("lease lost")
            self._shutdown()
            dispatcher.stop()
        finally:
            _running = None
            self.lease.release()
            self.engine.dispose()
        logger.info("daemon stopped")

    def stop(self, reason: str) -> None:
        """Stop taking new work; running crawls get ``stop_grace`` seconds to finish."""
        if self.stopping.is_set():
            return
        logger.info("stopping (%s): no new crawl; running ones may finish within %.0f s",
                    reason, self.options.stop_grace)
        self._stop_deadline = time.monotonic() + self.options.stop_grace
        self.stopping.set()

    def _shutdown(self) -> None:
        self.scheduler.pause()
        self.scheduler.shutdown(wait=True)  # waits for running crawls (bounded, see _interrupt)

    def _schedule_sources(self) -> None:
        """One job per selected source; kept as stored when unchanged, so that the next run
        time survives a restart; jobs of sources no longer selected are removed."""
        wanted = {JOB_PREFIX + source.name: source for source in self.sources}
        for job in self.scheduler.get_jobs():
            if job.id not in wanted:
                logger.info("unscheduled %s (no longer selected)", job.id)
                job.remove()
        for job_id, source in wanted.items():
            seconds = self.options.interval_seconds or source.every_minutes * 60
            trigger = IntervalTrigger(seconds=seconds, jitter=min(seconds / 10,
                                                                   MAX_JITTER_SECONDS))
            job = self.scheduler.get_job(job_id)
            if job is not None and _same_interval(job.trigger, trigger):
                logger.info("[%s] every %.0f s, next run %s (kept)", source.name, seconds,
                            job.next_run_time)
                continue
            self.scheduler.add_job(
                run_scheduled_crawl, trigger, args=[source.name], id=job_id,
                name=f"crawl {source.name}", replace_existing=True, coalesce=True,
                max_instances=1, misfire_grace_time=None, next_run_time=datetime.now(UTC))
            logger.info("[%s] every %.0f s, first run now", source.name, seconds)

    def crawl_source(self, name: str) -> None:
        """Crawl one source in a child process, record the run, check the source's health.

        Never raises: a failed crawl is logged and recorded, and the daemon goes on.
        """
        if self.stopping.is_set():
            return
        started = time.monotonic()
        options = CrawlOptions(sources=[name], sources_files=self.options.sources_files,
                               via=self.options.via, trigger="daemon",
                               extra_settings=alerts_settings(self.rules.path))
        logger.info("[%s] crawl starting", name)
        try:
            outcome = run_crawl(options, self.sessions, self.database_url,
                                interrupt=lambda: self._interrupt(name, started))
            logger.info("[%s] run %d %s in %.1f s (log %s)", name, outcome.run_id,
                        outcome.status, time.monotonic() - started, outcome.log_path)
            check_run(self.sessions, outcome.run_id, self.alerts)
        except Exception:
            logger.exception("[%s] crawl failed", name)

    def _interrupt(self, name: str, started: float) -> str | None:
        """The status to stop a running crawl with, or None to let it go on."""
        now = time.monotonic()
        if now - started > self.options.time_limit:
            logger.error("[%s] crawl exceeded its time limit of %.0f s: stopping it", name,
                         self.options.time_limit)
            return "failed"
        if self._stop_deadline is not None and now > self._stop_deadline:
            logger.warning("[%s] crawl still running at shutdown: stopping it (within %.0f s)",
                           name, STOP_BOUND_SECONDS)
            return "interrupted"
        return None


def _same_interval(current: object, wanted: IntervalTrigger) -> bool:
    return (isinstance(current, IntervalTrigger) and current.interval == wanted.interval
            and current.jitter == wanted.jitter)
