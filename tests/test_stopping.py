"""Stopping cleanly: SIGTERM and SIGINT to `dtmon crawl` and to the daemon stop the spider
process and record the run ``interrupted``; kill -9 leaves a run that the next `dtmon status`
shows ``failed``. Real processes, a real mirror server whose article pages answer slowly (so
that the signal lands mid-crawl), a real database (SQLite; after kill -9 PostgreSQL too).
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from sqlalchemy import select

from monitor.crawling import process_alive
from monitor.faults import load_fault_plan
from monitor.mirror import MirrorServer
from storage.db import init_db, make_engine, session_factory
from storage.models import Article, CrawlRun, FetchState
from tests.fixtures.database import SQLITE_ONLY
from tests.fixtures.shared_data import REPO_ROOT

SOURCES = ["hungyen", "hue"]
HOSTS = ["hungyen.gov.vn", "hue.gov.vn"]
# Article pages of both sources answer after 3 s; listings answer at once.
SLOW_ARTICLES = ["https://hungyen.gov.vn/*-c*.html=slow:3",
                 "https://hue.gov.vn/*/newsid/*=slow:3"]


def _env(database_url: str) -> dict[str, str]:
    return {**os.environ, "DTMON_DATABASE_URL": database_url, "COLUMNS": "200",
            "PYTHONPATH": str(REPO_ROOT)}


def _start(database_url: str, *args: str) -> subprocess.Popen[str]:
    return subprocess.Popen([sys.executable, "-m", "monitor", *args], cwd=REPO_ROOT,
                            env=_env(database_url), stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True)


def _dtmon(database_url: str, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "monitor", *args], cwd=REPO_ROOT,
                          env=_env(database_url), capture_output=True, text=True, timeout=120)


def _children(pid: int) -> list[int]:
    """The processes whose parent is ``pid``."""
    found = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rpartition(")")[2].split()
        except OSError:
            continue
        if int(fields[1]) == pid:
            found.append(int(stat.parent.name))
    return found


def _spider_of(process: subprocess.Popen, mirror: MirrorServer, hosts: list[str],
               timeout: float = 90) -> int:
    """Wait until the crawl under ``process`` asks the mirror for an article of each of
    ``hosts``, and a moment more for their listings to be read; its spider's pid."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        children = _children(process.pid)
        articles = {r.url.split("/")[2] for r in mirror.requests
                    if "-c" in r.url.rpartition("/")[2] or "newsid" in r.url}
        if children and set(hosts) <= articles:
            time.sleep(1.5)  # articles answer in 3 s, listings at once
            return children[0]
        assert process.poll() is None, process.stdout.read() if process.stdout else ""
        time.sleep(0.2)
    raise AssertionError("the crawl never reached an article page")


def _runs(database_url: str) -> list[CrawlRun]:
    engine = make_engine(database_url)
    init_db(engine)
    with session_factory(engine)() as session:
        runs = list(session.scalars(select(CrawlRun).order_by(CrawlRun.id)))
    engine.dispose()
    return runs


def _crawl_args(mirror: MirrorServer) -> list[str]:
    args = ["crawl", "--via", mirror.url]
    for name in SOURCES:
        args += ["--source", name]
    return args


@pytest.fixture
def slow_mirror(sites_dir: Path):
    with MirrorServer(sites_dir, snapshot="t1", faults=load_fault_plan(SLOW_ARTICLES)) as mirror:
        yield mirror


@SQLITE_ONLY
@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGINT], ids=["SIGTERM", "SIGINT"])
def test_a_signal_to_dtmon_crawl_stops_its_spider_and_records_interrupted(
        signum: int, database_url: str, slow_mirror: MirrorServer, sites_dir: Path,
        gold: dict[str, dict]) -> None:
    crawl = _start(database_url, *_crawl_args(slow_mirror))
    spider = _spider_of(crawl, slow_mirror, HOSTS)
    crawl.send_signal(signum)
    output, _ = crawl.communicate(timeout=60)
    assert not process_alive(spider), "the spider process outlived dtmon crawl"
    assert "Traceback" not in output
    assert "Interrupted (exit 130): run 1 stopped" in output, output
    assert crawl.returncode == 130, output
    [run] = _runs(database_url)
    assert run.status == "interrupted" and run.finished_at is not None
    # The listings read before the stop keep their validators: the next crawl gets 304 for
    # them, and the owed articles still come back.
    engine = make_engine(database_url)
    with session_factory(engine)() as session:
        assert session.scalars(select(FetchState.url)).all()
    with MirrorServer(sites_dir, snapshot="t1") as mirror:
        done = _dtmon(database_url, *_crawl_args(mirror))
        answers = [r.status for r in mirror.requests]
    assert done.returncode == 0, done.stdout + done.stderr
    assert 304 in answers
    expected = {g["url"] for g in gold.values() if g["snapshot"] == "t1"
                and g["host"] in ("hungyen.gov.vn", "hue.gov.vn")}
    with session_factory(engine)() as session:
        assert expected <= set(session.scalars(select(Article.url)))
    engine.dispose()


@SQLITE_ONLY
@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGINT], ids=["SIGTERM", "SIGINT"])
def test_a_signal_to_the_daemon_stops_its_crawls_and_records_them_interrupted(
        signum: int, database_url: str, slow_mirror: MirrorServer) -> None:
    daemon = _start(database_url, "daemon", "--via", slow_mirror.url, "--source", "hungyen",
                    "--interval-seconds", "600", "--stop-grace", "1")
    spider = _spider_of(daemon, slow_mirror, ["hungyen.gov.vn"])
    daemon.send_signal(signum)
    output, _ = daemon.communicate(timeout=60)
    assert daemon.returncode == 0, output
    assert not process_alive(spider), "the spider process outlived the daemon"
    assert [run.status for run in _runs(database_url)] == ["interrupted"]


@pytest.mark.parametrize("killed", ["dtmon", "dtmon-and-spider"])
def test_after_kill_9_the_next_status_shows_the_run_failed(
        killed: str, database_url: str, slow_mirror: MirrorServer) -> None:
    crawl = _start(database_url, *_crawl_args(slow_mirror))
    spider = _spider_of(crawl, slow_mirror, HOSTS)
    crawl.kill()
    crawl.wait()
    if killed == "dtmon-and-spider":
        os.kill(spider, signal.SIGKILL)
    deadline = time.monotonic() + 30
    while process_alive(spider) and time.monotonic() < deadline:
        time.sleep(0.2)  # alone, the spider notices within a second that its parent is gone
    assert not process_alive(spider)
    status = _dtmon(database_url, "status", "--json")
    assert status.returncode == 0, status.stderr
    health = {record["source"]: record for record in map(json.loads, status.stdout.splitlines())}
    assert health["hungyen"]["failed_runs"] == 1 and health["hue"]["failed_runs"] == 1
    [run] = _runs(database_url)
    assert run.status == "failed" and run.finished_at is not None
