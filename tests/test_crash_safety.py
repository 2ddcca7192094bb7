"""Crash safety: kill -9 at random points loses and duplicates nothing; a read-only database or
a full disk stops `dtmon crawl` with a clear message and a non-zero exit, never a corrupt file.

The benchmark (bench/crash.py) runs the kill test 20 times; here it runs twice.
"""

from __future__ import annotations

import os
import random
import shutil
import sqlite3
import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

from bench.crash import SOURCES, DatabaseState, database_state, killed_then_restarted, uninterrupted

pytestmark = pytest.mark.slow
KILL_RUNS = 2


@pytest.fixture(scope="module")
def reference(sites_dir: Path, tmp_path_factory: pytest.TempPathFactory
              ) -> tuple[DatabaseState, int, Path]:
    """State, request count and database file of an uninterrupted t1 crawl."""
    workdir = tmp_path_factory.mktemp("reference")
    state, requests = uninterrupted(sites_dir, workdir)
    return state, requests, workdir / "reference.db"


def test_kill_9_at_random_points_then_restart_gives_the_same_database(
        reference, sites_dir: Path, tmp_path: Path) -> None:
    state, requests, _ = reference
    assert len(state.articles) == len(state.fingerprinted) > 10
    rng = random.Random(20250701)
    for run in range(KILL_RUNS):
        # Past the discovery pages, so that the kill lands among article commits.
        after = rng.randint(requests // 3, requests - 1)
        final, _ = killed_then_restarted(sites_dir, tmp_path, f"run{run}", after,
                                         rng.uniform(0, 0.05))
        assert final.differences(state) == [], f"kill after request {after}"


def _dtmon(workdir: Path, database: Path, *args: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "DTMON_DATABASE_URL": f"sqlite:///{database}", "COLUMNS": "160"}
    return subprocess.run([sys.executable, "-m", "monitor", *args], cwd=workdir, env=env,
                          capture_output=True, text=True, timeout=300)


def _crawl_args(mirror_url: str) -> list[str]:
    args = ["crawl", "--via", mirror_url]
    for name in SOURCES:
        args += ["--source", name]
    return args


def _copy_database(source: Path, target: Path) -> None:
    """Copy an SQLite database with its WAL, which may hold committed transactions."""
    for suffix in ("", "-wal"):
        if Path(f"{source}{suffix}").exists():
            shutil.copy(f"{source}{suffix}", f"{target}{suffix}")


def _integrity(database: Path) -> str:
    with sqlite3.connect(f"file:{database}?mode=ro", uri=True) as connection:
        return connection.execute("PRAGMA integrity_check").fetchone()[0]


@contextmanager
def tmpfs(folder: Path, size: str) -> Iterator[Path]:
    """A small tmpfs mounted on ``folder`` (root only; the test skips otherwise)."""
    folder.mkdir()
    if os.geteuid() != 0:
        pytest.skip("mounting a tmpfs needs root (the storage tests cover max_page_count)")
    mounted = subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs",
                              str(folder)], capture_output=True, text=True)
    if mounted.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here: {mounted.stderr.strip()}")
    try:
        yield folder
    finally:
        subprocess.run(["umount", "-l", str(folder)], check=False)


def test_a_read_only_database_stops_the_crawl_with_a_clear_error(
        reference, mirror_factory, tmp_path: Path) -> None:
    state, _, reference_db = reference
    with tmpfs(tmp_path / "ro", "64m") as folder:
        database = folder / "dtmon.db"
        _copy_database(reference_db, database)
        subprocess.run(["mount", "-o", "remount,ro", str(folder)], check=True)
        done = _dtmon(tmp_path, database, *_crawl_args(mirror_factory("t2").url))
        assert done.returncode != 0
        assert any(word in done.stderr for word in ("read-only", "writable")), done.stderr
        assert "Traceback" not in done.stdout + done.stderr
        subprocess.run(["mount", "-o", "remount,rw", str(folder)], check=True)
        assert _integrity(database) == "ok"
        assert database_state(f"sqlite:///{database}") == state


def test_a_full_disk_stops_the_crawl_and_leaves_only_whole_articles(
        reference, mirror_factory, gold, tmp_path: Path) -> None:
    _, _, reference_db = reference
    room = reference_db.stat().st_size + 48 * 1024  # not enough for the five t2 articles
    with tmpfs(tmp_path / "full", str(room)) as folder:
        database = folder / "dtmon.db"
        _copy_database(reference_db, database)
        mirror = mirror_factory("t2")
        done = _dtmon(tmp_path, database, *_crawl_args(mirror.url))
        output = done.stdout + done.stderr
        assert done.returncode != 0, output
        assert "disk is full" in output, output
        assert "Traceback" not in output
        assert _integrity(database) == "ok"
        partial = database_state(f"sqlite:///{database}")
        assert len(partial.fingerprinted) == len(partial.articles)  # each one whole
        healed_db = tmp_path / "healed.db"
        _copy_database(database, healed_db)
    done = _dtmon(tmp_path, healed_db, *_crawl_args(mirror.url))
    assert done.returncode == 0, done.stdout + done.stderr
    healed = database_state(f"sqlite:///{healed_db}")
    expected = {g["url"] for g in gold.values()}
    assert {row[0] for row in healed.articles} == expected
    assert len(healed.fingerprinted) == len(healed.articles)
