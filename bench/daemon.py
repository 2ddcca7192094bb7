"""The crawl daemon over time, and what incremental crawling saves, on the offline mirror.

* Request counts: crawl every mirrored source at t1, switch the mirror to t2 and crawl again
  (incremental: conditional requests, stored articles skipped); the baseline is a crawl of t2
  into an empty database (what a crawler without memory fetches every time).
* Memory: `dtmon daemon` as a real process, four sources every second; the daemon's RSS after
  the first 10 crawl runs and after ``DTMON_BENCH_DAEMON_CYCLES`` runs (default 100). Each run is
  one scheduled crawl of one source in its own child process, so the daemon's own memory must
  stay flat.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from sqlalchemy import Engine, func, select

from monitor.crawling import CrawlOptions, run_crawl
from monitor.mirror import DEFAULT_MIRROR_PATH, MirrorServer, RequestRecord
from storage.db import init_db, make_engine, session_factory
from storage.models import CrawlRun

MIRRORED = ["vov", "hungyen", "baohungyen", "quangninh", "hagiang", "hue", "dongnai"]
DAEMON_SOURCES = ["hue", "hungyen", "baohungyen", "dongnai"]
CYCLES = int(os.environ.get("DTMON_BENCH_DAEMON_CYCLES", "100"))
WARM_UP = 10
REPO = Path(__file__).resolve().parents[1]


def _crawl(mirror: MirrorServer, database: str) -> list[RequestRecord]:
    engine = make_engine(database)
    init_db(engine)
    mirror.clear_log()
    outcome = run_crawl(CrawlOptions(sources=MIRRORED, via=mirror.url, trigger="bench"),
                        session_factory(engine), database)
    engine.dispose()
    if outcome.status != "ok":
        raise RuntimeError(f"crawl failed, see {outcome.log_path}")
    return list(mirror.requests)


def request_counts(folder: Path) -> list[dict]:
    """Requests of the t1 crawl, the incremental t2 crawl and a from-scratch t2 crawl."""
    incremental, scratch = f"sqlite:///{folder / 'inc.db'}", f"sqlite:///{folder / 'full.db'}"
    with MirrorServer(DEFAULT_MIRROR_PATH, snapshot="t1") as mirror:
        t1 = _crawl(mirror, incremental)
        mirror.set_snapshot("t2")
        t2 = _crawl(mirror, incremental)
        full = _crawl(mirror, scratch)
    return [
        {"metric": "t1 crawl requests", "value": len(t1), "unit": "requests"},
        {"metric": "t2 crawl requests (incremental)", "value": len(t2), "unit": "requests",
         "baseline": len(full), "ratio": round(len(t2) / len(full), 2)},
        {"metric": "t2 answers 304 Not Modified", "value": sum(r.status == 304 for r in t2),
         "unit": "requests"},
        {"metric": "t2 conditional requests", "value": sum(r.conditional for r in t2),
         "unit": "requests"},
    ]


def _rss_kib(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    raise RuntimeError(f"no VmRSS for process {pid}")


def _finished_runs(engine: Engine) -> int:
    with engine.connect() as connection:
        return connection.scalar(select(func.count()).select_from(CrawlRun)
                                 .where(CrawlRun.status != "running"))


def daemon_memory(folder: Path) -> list[dict]:
    """RSS of a daemon process after WARM_UP and after CYCLES crawl runs."""
    database = f"sqlite:///{folder / 'daemon.db'}"
    engine = make_engine(database)
    init_db(engine)
    with MirrorServer(DEFAULT_MIRROR_PATH, snapshot="t2") as mirror:
        command = [sys.executable, "-m", "monitor", "daemon", "--via", mirror.url,
                   "--interval-seconds", "1", "--workers", str(len(DAEMON_SOURCES))]
        for name in DAEMON_SOURCES:
            command += ["--source", name]
        env = {**os.environ, "DTMON_DATABASE_URL": database, "PYTHONPATH": str(REPO)}
        with (folder / "daemon.log").open("w") as log:
            daemon = subprocess.Popen(command, cwd=folder, env=env, stdout=log,
                                      stderr=subprocess.STDOUT)
        started = time.monotonic()
        try:
            samples = {}
            for target in (WARM_UP, CYCLES):
                while _finished_runs(engine) < target:
                    if daemon.poll() is not None:
                        raise RuntimeError(f"daemon exited, see {folder / 'daemon.log'}")
                    time.sleep(0.5)
                samples[target] = _rss_kib(daemon.pid)
            seconds = time.monotonic() - started
        finally:
            daemon.send_signal(signal.SIGTERM)
            daemon.wait(timeout=120)
    engine.dispose()
    return [
        {"metric": f"daemon RSS after {WARM_UP} runs", "value": round(samples[WARM_UP] / 1024, 1),
         "unit": "MiB"},
        {"metric": f"daemon RSS after {CYCLES} runs", "value": round(samples[CYCLES] / 1024, 1),
         "unit": "MiB", "baseline": round(samples[WARM_UP] / 1024, 1),
         "ratio": round(samples[CYCLES] / samples[WARM_UP], 3), "target": "flat (ratio ≤ 1.05)"},
        {"metric": f"wall time of {CYCLES} runs ({len(DAEMON_SOURCES)} sources)",
         "value": round(seconds, 1), "unit": "s"},
    ]


def run() -> list[dict]:
    """The bench rows (see bench/__init__.py)."""
    with tempfile.TemporaryDirectory() as folder:
        return request_counts(Path(folder)) + daemon_memory(Path(folder))
