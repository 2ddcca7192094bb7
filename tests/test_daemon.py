"""The crawl daemon as a real process against the offline mirror, on SQLite and on PostgreSQL.

Sources are crawled every two seconds; the mirror switches from t1 to t2 while the daemon
runs; the daemon is stopped with SIGTERM in the middle of a crawl and restarted. Every run is
recorded, runs of one source never overlap, every article is stored exactly once, and a second
daemon on the same database refuses to start. Every test on ``database_url`` runs once per
backend; the log folder test runs once (it only maps URLs to folders).
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections import defaultdict
from collections.abc import Callable, Iterator
from datetime import timedelta
from pathlib import Path

import pytest
from sqlalchemy import Engine, select
from sqlalchemy.orm import selectinload

from monitor.crawling import LOG_DIR_ENV, CrawlOptions, log_dir, run_crawl
from monitor.daemon import DaemonAlreadyRunning, Lease
from monitor.mirror import MirrorServer
from storage.db import init_db, make_engine, session_factory
from storage.models import Article, CrawlRun
from tests.fixtures.receivers import WebhookReceiver
from tests.fixtures.shared_data import REPO_ROOT

SOURCES = {"hue": "hue.gov.vn", "hungyen": "hungyen.gov.vn", "baohungyen": "baohungyen.vn",
           "dongnai": "dongnai.gov.vn"}
CYCLES = 3
WAIT_SECONDS = 150


class Daemons:
    """Starts `dtmon daemon` processes on one database and mirror; stops them all at the end."""

    def __init__(self, url: str, folder: Path, mirror: MirrorServer) -> None:
        self.folder = folder
        self.url = url
        self.env = {**os.environ, "DTMON_DATABASE_URL": self.url, "PYTHONPATH": str(REPO_ROOT)}
        self.mirror = mirror
        self.started: list[subprocess.Popen] = []

    def command(self) -> list[str]:
        command = [sys.executable, "-m", "monitor", "daemon", "--via", self.mirror.url,
                   "--interval-seconds", "2", "--stop-grace", "1", "--workers", "4"]
        for name in SOURCES:
            command += ["--source", name]
        return command

    def start(self, name: str) -> subprocess.Popen:
        log = (self.folder / f"{name}.log").open("w")
        process = subprocess.Popen(self.command(), cwd=self.folder, env=self.env, stdout=log,
                                   stderr=subprocess.STDOUT, text=True)
        self.started.append(process)
        return process

    def output(self, name: str) -> str:
        return (self.folder / f"{name}.log").read_text()

    def stop_all(self) -> None:
        for process in self.started:
            if process.poll() is None:
                process.kill()
                process.wait()


@pytest.fixture
def daemons(database_url: str, tmp_path: Path, mirror: MirrorServer) -> Iterator[Daemons]:
    started = Daemons(database_url, tmp_path, mirror)
    yield started
    started.stop_all()


@pytest.fixture
def daemon_db(daemons: Daemons) -> Iterator[Engine]:
    """An engine on the daemons' database."""
    engine = make_engine(daemons.url)
    init_db(engine)
    yield engine
    engine.dispose()


def runs(engine: Engine) -> list[CrawlRun]:
    with session_factory(engine)() as session:
        return list(session.scalars(select(CrawlRun).options(selectinload(CrawlRun.sources))
                                    .order_by(CrawlRun.started_at, CrawlRun.id)))


def runs_by_source(engine: Engine) -> dict[str, list[CrawlRun]]:
    grouped: dict[str, list[CrawlRun]] = defaultdict(list)
    for run in runs(engine):
        for row in run.sources:
            grouped[row.source_name].append(run)
    return grouped


def wait_for(condition: Callable[[], bool], what: str, timeout: float = WAIT_SECONDS) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.3)


def finished_ok(engine: Engine, minimum: int, after: int = 0) -> bool:
    grouped = runs_by_source(engine)
    return all(sum(1 for run in grouped.get(name, []) if run.status == "ok" and run.id > after)
               >= minimum for name in SOURCES)


def stop(process: subprocess.Popen) -> int:
    process.send_signal(signal.SIGTERM)
    return process.wait(timeout=60)


def expected_urls(gold: dict[str, dict]) -> list[str]:
    hosts = set(SOURCES.values())
    return sorted(item["url"] for item in gold.values() if item["host"] in hosts)


def test_daemon_cycles_survives_sigterm_restarts_and_stays_alone(
        daemons: Daemons, daemon_db: Engine, mirror: MirrorServer, gold: dict[str, dict]) -> None:
    engine = daemon_db
    first = daemons.start("first")
    wait_for(lambda: finished_ok(engine, 1), "a first crawl of every source")

    second = subprocess.run(daemons.command(), cwd=daemons.folder, env=daemons.env,
                            capture_output=True, text=True, timeout=120)
    assert second.returncode == 1
    assert "another dtmon daemon is running on this database" in second.stderr

    mirror.set_snapshot("t2")  # five new articles appear while the daemon runs
    wait_for(lambda: any(run.status == "running" for run in runs(engine)), "a running crawl")
    assert stop(first) == 0, daemons.output("first")
    assert "stopping (SIGTERM)" in daemons.output("first")
    assert not [run.id for run in runs(engine) if run.status == "running"]

    last_before_restart = max(run.id for run in runs(engine))
    restarted = daemons.start("restarted")
    wait_for(lambda: finished_ok(engine, 1, after=last_before_restart) and
             finished_ok(engine, CYCLES), f"{CYCLES} crawls of every source")
    assert stop(restarted) == 0, daemons.output("restarted")
    assert "(kept)" in daemons.output("restarted")  # schedules came back from the database

    all_runs = runs(engine)
    assert {run.trigger for run in all_runs} == {"daemon"}
    assert {run.status for run in all_runs} <= {"ok", "interrupted"}
    for name, source_runs in runs_by_source(engine).items():
        for earlier, later in zip(source_runs, source_runs[1:], strict=False):
            assert earlier.finished_at <= later.started_at, f"{name}: runs overlap"

    with session_factory(engine)() as session:
        stored = sorted(session.scalars(select(Article.url)))
    assert stored == expected_urls(gold)  # nothing lost, nothing stored twice
    assert sum(row.articles_new for run in all_runs for row in run.sources) == len(stored)


def test_the_lease_admits_one_daemon_and_is_taken_over_once_stale(database_url: str) -> None:
    engine = make_engine(database_url)
    init_db(engine)
    sessions = session_factory(engine)
    holder, rival = Lease(sessions, timedelta(minutes=2)), Lease(sessions, timedelta(minutes=2))
    holder.acquire()
    with pytest.raises(DaemonAlreadyRunning, match="another dtmon daemon is running"):
        rival.acquire()
    assert holder.renew()
    holder.release()
    rival.acquire()  # released: free at once
    taker = Lease(sessions, timedelta(0))  # for it, every heartbeat is stale
    taker.acquire()
    assert not rival.renew()  # the old holder learns it lost the lease
    engine.dispose()


def test_a_crawl_past_its_limit_is_stopped_and_recorded(database_url: str,
                                                         mirror: MirrorServer) -> None:
    engine = make_engine(database_url)
    init_db(engine)
    sessions = session_factory(engine)
    outcome = run_crawl(CrawlOptions(sources=["hue"], via=mirror.url), sessions, database_url,
                        interrupt=lambda: "failed")
    assert outcome.status == "failed"
    with sessions() as session:
        run = session.get(CrawlRun, outcome.run_id)
        assert run.status == "failed" and run.finished_at is not None
        assert [row.source_name for row in run.sources] == ["hue"]
    engine.dispose()


def test_crawl_logs_of_one_database_never_overwrite_another_s(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(LOG_DIR_ENV, raising=False)
    assert log_dir("sqlite:///./data/dtmon.db") == Path("data/logs")
    assert log_dir(f"sqlite:///{tmp_path / 'a.db'}") == tmp_path / "logs"
    assert log_dir("postgresql+psycopg://u:secret@db/dtmon") == Path("data/logs/dtmon")
    monkeypatch.setenv(LOG_DIR_ENV, str(tmp_path / "elsewhere"))
    assert log_dir("sqlite:///./data/dtmon.db") == tmp_path / "elsewhere"


def test_the_daemon_delivers_each_new_relevant_story_once(
        database_url: str, tmp_path: Path, mirror: MirrorServer, webhook: WebhookReceiver,
        gold: dict[str, dict]) -> None:
    rules = tmp_path / "alerts.yaml"
    rules.write_text(f'rules: [{{name: all, urls: ["{webhook.url}"]}}]\n')
    hosts = {"hungyen.gov.vn", "baohungyen.vn", "dongnai.gov.vn"}
    relevant = [g for g in gold.values() if g["host"] in hosts and g["snapshot"] == "t1"
                and g["topic"] in ("on", "hard_on")]
    stories = len([g for g in relevant if not g["near_duplicate_of"]])
    env = {**os.environ, "DTMON_DATABASE_URL": database_url}
    command = [sys.executable, "-m", "monitor", "daemon", "--via", mirror.url, "--alerts",
               str(rules), "--interval-seconds", "600", "--source", "hungyen", "--source",
               "baohungyen", "--source", "dongnai"]
    with (tmp_path / "daemon.log").open("w") as log:
        daemon = subprocess.Popen(command, cwd=tmp_path, env=env, stdout=log,
                                  stderr=subprocess.STDOUT)
        try:
            webhook.wait_for(stories, timeout=90)
            time.sleep(3)  # a second alert for a repost would arrive by now
        finally:
            assert stop(daemon) == 0, (tmp_path / "daemon.log").read_text()
    keys = [arrival.key for arrival in webhook.arrivals]
    assert len(keys) == len(set(keys)) == stories  # one per story, the repost pair once
