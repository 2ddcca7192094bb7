"""`dtmon crawl` exits 0 only when the crawl worked: every request refused, or every source
answering 404, is a failed run with its own exit status, and some failed sources a partial one;
the summary's first line says which (on SQLite: the backend plays no part)."""

from __future__ import annotations

import json
import os
import re
import socket
import subprocess
import sys
from datetime import datetime
from pathlib import Path

import pytest

from monitor.cli.crawl import EXIT_CODES
from monitor.health import RunOutcome
from monitor.mirror import MirrorServer
from tests.fixtures.database import SQLITE_ONLY
from tests.fixtures.shared_data import REPO_ROOT

NOT_MIRRORED = ["hanoi", "haiphong"]  # registry sources the mirror does not hold: 404


def _crawl(database_url: str, workdir: Path, via: str, *sources: str
           ) -> subprocess.CompletedProcess[str]:
    args = [sys.executable, "-m", "monitor", "crawl", "--via", via]
    for name in sources:
        args += ["--source", name]
    return subprocess.run(args, cwd=workdir, capture_output=True, text=True, timeout=300,
                          env={**os.environ, "DTMON_DATABASE_URL": database_url,
                               "PYTHONPATH": str(REPO_ROOT), "COLUMNS": "120"})


def _run_statuses(database_url: str, workdir: Path) -> list[str]:
    listed = subprocess.run([sys.executable, "-m", "monitor", "runs", "list", "--json"],
                            cwd=workdir, capture_output=True, text=True, timeout=60,
                            env={**os.environ, "DTMON_DATABASE_URL": database_url})
    return [json.loads(line)["status"] for line in listed.stdout.splitlines()]


def _closed_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]  # closed again when the block ends: connections refused


def test_exit_codes_are_distinct() -> None:
    assert EXIT_CODES["ok"] == 0
    assert len(set(EXIT_CODES.values())) == len(EXIT_CODES)
    assert not {1, 2} & set(EXIT_CODES.values())  # 1: configuration/database, 2: usage


@SQLITE_ONLY
def test_a_crawl_with_every_request_refused_fails(database_url: str, tmp_path: Path) -> None:
    done = _crawl(database_url, tmp_path, f"http://127.0.0.1:{_closed_port()}", "dongnai")

    assert done.returncode == EXIT_CODES["failed"], done.stdout + done.stderr
    first_line = done.stdout.splitlines()[0]
    assert first_line.startswith("Crawl failed")
    assert "every source failed, no page could be fetched" in first_line
    assert "Connection refused" in done.stdout
    assert _run_statuses(database_url, tmp_path) == ["failed"]


@SQLITE_ONLY
def test_all_sources_404_fail_and_some_failed_sources_are_partial(
    database_url: str, tmp_path: Path, sites_dir: Path
) -> None:
    with MirrorServer(sites_dir, snapshot="t1") as mirror:
        all_404 = _crawl(database_url, tmp_path, mirror.url, *NOT_MIRRORED)
        partial = _crawl(database_url, tmp_path, mirror.url, "dongnai", *NOT_MIRRORED)
        mirrored = _crawl(database_url, tmp_path, mirror.url, "dongnai", "hue")

    assert all_404.returncode == EXIT_CODES["failed"], all_404.stdout + all_404.stderr
    assert all_404.stdout.splitlines()[0].startswith(
        "Crawl failed (exit 4): every source failed, no page could be fetched (2 of 2")
    assert "HTTP 404 at https://hanoi.gov.vn/" in all_404.stdout

    assert partial.returncode == EXIT_CODES["partial"], partial.stdout + partial.stderr
    assert partial.stdout.splitlines()[0].startswith(
        "Crawl partly failed (exit 3): 2 of 3 sources failed (hanoi, haiphong); 1 new article")

    assert mirrored.returncode == 0, mirrored.stdout + mirrored.stderr
    assert re.fullmatch(r"[1-9]\d* new article\(s\) stored, \d+ already stored\.",
                        mirrored.stdout.splitlines()[0])
    assert _run_statuses(database_url, tmp_path) == ["ok", "partial", "failed"]


@pytest.mark.parametrize("status", ["ok", "partial", "failed"])
def test_the_daemon_counts_a_partial_run_for_its_healthy_sources(status: str) -> None:
    healthy = RunOutcome(1, datetime(2026, 1, 1), status, errors=0, stats={})
    broken = RunOutcome(1, datetime(2026, 1, 1), status, errors=2, stats={})
    assert healthy.succeeded == (status != "failed")
    assert broken.failed
