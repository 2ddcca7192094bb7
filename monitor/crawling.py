"""Running a crawl: `dtmon crawl`, `dtmon demo` and the daemon all start the ``news`` spider in
a child process (the Twisted reactor cannot be restarted in one process) and follow it through
its run record in the database.

A run records the process that owns it (pid and host): a run still ``running`` whose process
is gone (kill -9, a crash of the machine) is marked ``failed`` by :func:`reap_orphaned_runs`,
which every `dtmon` command and the daemon call when they start. SIGINT and SIGTERM to `dtmon
crawl` stop the spider cleanly and record the run ``interrupted`` (:func:`stop_signals`).
"""

from __future__ import annotations

import logging
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

from sqlalchemy.engine import make_url
from sqlalchemy.orm import Session, sessionmaker

from storage import repository
from storage.db import DATABASE_URL_ENV, session_scope
from storage.models import CrawlRun, CrawlRunSource

logger = logging.getLogger("dtmon.crawling")

LOG_DIR_ENV = "DTMON_LOG_DIR"
_POLL_SECONDS = 0.5
# A source failed in a run when at least this share of its requests failed (every request
# refused, a 404 start page, a dead host…); a few lost pages leave it ok.
SOURCE_FAILURE_SHARE = 0.5
# How long a crawl asked to stop (SIGTERM: Scrapy closes cleanly) may take before it is killed.
STOP_BOUND_SECONDS = 15.0


@dataclass
class CrawlOptions:
    """What to crawl and how (the `dtmon crawl` options)."""

    sources: Sequence[str] = ()  # registry names; empty = every source
    sources_files: Sequence[Path] = ()  # extra YAML files of sources
    via: str | None = None  # mirror server that honours the --via contract
    refresh: bool = False  # refetch articles already stored
    trigger: str = "cli"
    extra_settings: dict[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class CrawlOutcome:
    """How a crawl ended: its run id, exit status and where the spider's log is."""

    run_id: int
    status: str
    returncode: int
    log_path: Path


def spider_command(options: CrawlOptions, run_id: int, database_url: str) -> list[str]:
    """The ``scrapy crawl news`` command line of one crawl run."""
    command = [sys.executable, "-m", "scrapy", "crawl", "news"]
    if options.sources:
        command += ["-a", "sources=" + ",".join(options.sources)]
    if options.sources_files:
        command += ["-a", "sources_file=" + ",".join(str(p) for p in options.sources_files)]
    settings = {
        "DTMON_RUN_ID": str(run_id),
        "DTMON_VIA": options.via or "",
        "DTMON_REFRESH": "1" if options.refresh else "0",
        **options.extra_settings,
    }
    for name, value in settings.items():
        command += ["-s", f"{name}={value}"]
    return command


def log_dir(database_url: str) -> Path:
    """Where the crawl logs of ``database_url`` go (run numbers are per database):
    ``$DTMON_LOG_DIR``, else ``logs/`` beside a SQLite file, else ``data/logs/<database>``."""
    if configured := os.environ.get(LOG_DIR_ENV):
        return Path(configured)
    url = make_url(database_url)
    if url.get_backend_name() == "sqlite" and url.database not in (None, "", ":memory:"):
        return Path(url.database).parent / "logs"
    return Path("data") / "logs" / (url.database or url.get_backend_name())


def run_crawl(
    options: CrawlOptions,
    sessions: sessionmaker[Session],
    database_url: str,
    on_progress: Callable[[list[CrawlRunSource]], None] | None = None,
    interrupt: Callable[[], str | None] | None = None,
) -> CrawlOutcome:
    """Crawl in a child process, reporting the run's per-source counters as they change.

    The run is recorded ``failed`` when the spider does not exit cleanly (a crash, a kill, a bad
    option) or every source failed, ``partial`` when some did (:func:`crawl_status`), else
    ``ok``, so that every run leaves a record; it lists the selected
    sources from the start. ``interrupt`` is asked while the crawl runs: when it returns a
    status (e.g. ``failed`` past a time limit), the child is stopped (SIGTERM, then SIGKILL
    after :data:`STOP_BOUND_SECONDS`) and the run recorded with that status.
    """
    if options.via:
        # Imported here: crawler.via loads Scrapy's downloader, and every read-only command
        # imports this module (reap_orphaned_runs) and must start quickly.
        from crawler.via import parse_via

        parse_via(options.via)  # a bad --via is an error now, not a crawl of nothing
    with session_scope(sessions) as session:
        run_id = repository.start_run(session, options.trigger, pid=os.getpid(),
                                      host=socket.gethostname()).id
        for name in options.sources:
            repository.source_stats(session, run_id, name)
    logs = log_dir(database_url)
    logs.mkdir(parents=True, exist_ok=True)
    log_path = logs / f"run-{run_id}.log"
    # The database URL goes through the environment: on the command line its password would
    # show in `ps`.
    env = {**os.environ, "SCRAPY_SETTINGS_MODULE": "crawler.settings",
           DATABASE_URL_ENV: database_url}
    with log_path.open("wb") as log:
        child = subprocess.Popen(spider_command(options, run_id, database_url), env=env,
                                 stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                 start_new_session=True)  # stopped by us, not by the tty's ^C
        interrupted: str | None = None
        try:
            while child.poll() is None and interrupted is None:
                if on_progress:
                    on_progress(run_sources(sessions, run_id))
                time.sleep(_POLL_SECONDS)
                interrupted = interrupt() if interrupt else None
        except BaseException as exc:
            stop_child(child)
            _finish(sessions, run_id,
                    "interrupted" if isinstance(exc, KeyboardInterrupt) else "failed")
            raise
        if interrupted is not None:
            stop_child(child)
    status = interrupted or _final_status(sessions, run_id, child.returncode)
    _finish(sessions, run_id, status)
    if on_progress:
        on_progress(run_sources(sessions, run_id))
    return CrawlOutcome(run_id, status, child.returncode, log_path)


def stop_child(child: subprocess.Popen) -> None:
    """Ask a crawl to stop (Scrapy closes cleanly on SIGTERM); kill it if it will not."""
    if child.poll() is not None:
        return
    child.terminate()
    try:
        child.wait(timeout=STOP_BOUND_SECONDS)
    except subprocess.TimeoutExpired:
        child.kill()
        child.wait()


@contextmanager
def stop_signals() -> Iterator[Callable[[], str | None]]:
    """While the block runs, SIGINT and SIGTERM ask the crawl to stop instead of killing this
    process: yields an ``interrupt`` callable for :func:`run_crawl` that answers
    ``interrupted`` once a signal came. Outside the main thread (where Python cannot catch
    signals) nothing is installed."""
    received = threading.Event()
    if threading.current_thread() is not threading.main_thread():
        yield lambda: None
        return
    previous = {signum: signal.signal(signum, lambda *_: received.set())
                for signum in (signal.SIGINT, signal.SIGTERM)}
    try:
        yield lambda: "interrupted" if received.is_set() else None
    finally:
        for signum, handler in previous.items():
            signal.signal(signum, handler)


def reap_orphaned_runs(sessions: sessionmaker[Session]) -> list[int]:
    """Mark ``failed`` every run still ``running`` whose owning process on this host is gone;
    returns their ids. (A run owned by another host is left to that host's commands.)"""
    host = socket.gethostname()
    with session_scope(sessions) as session:
        orphans = [run for run in repository.running_runs(session)
                   if run.host == host and run.pid and not process_alive(run.pid)]
        for run in orphans:
            logger.warning("run %d: its process %d is gone; recorded failed", run.id, run.pid)
            repository.finish_run(session, run.id, "failed")
        return [run.id for run in orphans]


def process_alive(pid: int) -> bool:
    """Whether process ``pid`` exists on this machine and is not a zombie."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return True  # no /proc (not Linux): the signal check is all there is
    return stat.rpartition(")")[2].split()[0] != "Z"


def run_sources(sessions: sessionmaker[Session], run_id: int) -> list[CrawlRunSource]:
    """The per-source records of run ``run_id`` as they stand now."""
    with sessions() as session:
        run = session.get(CrawlRun, run_id)
        return list(run.sources) if run else []


def failed_sources(rows: Sequence[CrawlRunSource]) -> list[CrawlRunSource]:
    """The sources of a run that failed: errors that lost something on at least
    :data:`SOURCE_FAILURE_SHARE` of their requests (answered pages, 304s and errors)."""
    return [row for row in rows if (lost := _lost_errors(row)) and lost >= SOURCE_FAILURE_SHARE * (
        row.pages_fetched + row.not_modified + row.errors)]


def _lost_errors(row: CrawlRunSource) -> int:
    """A source's errors less its owed articles: an owed article is fetched again by the next
    runs, so a small source whose one article failed has not failed (its feed, listings or
    start pages failing still do)."""
    return max(row.errors - (row.stats or {}).get("owed", 0), 0)


def crawl_status(rows: Sequence[CrawlRunSource]) -> str:
    """A finished crawl's status from its sources: ``ok`` when none failed, ``failed`` when
    every one did, ``partial`` in between."""
    failed = failed_sources(rows)
    if not failed:
        return "ok"
    return "failed" if len(failed) == len(rows) else "partial"


def _final_status(sessions: sessionmaker[Session], run_id: int, returncode: int) -> str:
    if returncode != 0 or _failed(sessions, run_id):
        return "failed"
    return crawl_status(run_sources(sessions, run_id))


def _failed(sessions: sessionmaker[Session], run_id: int) -> bool:
    """Whether the crawl itself marked its run failed (e.g. it stopped on a storage error)."""
    with sessions() as session:
        run = session.get(CrawlRun, run_id)
        return run is not None and run.status == "failed"


def _finish(sessions: sessionmaker[Session], run_id: int, status: str) -> None:
    with session_scope(sessions) as session:
        repository.finish_run(session, run_id, status)
