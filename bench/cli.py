"""How fast `dtmon` starts: `dtmon --help` and `dtmon articles list` (the 21 gold articles of
the offline mirror), each set against `python -c pass` timed in the same run (and, for scale,
`import sqlalchemy`, which any command reading the database pays: the table of `articles list`
reads through SQLAlchemy Core, without the ORM).

The mirror (``../shared/sites`` or ``$DTMON_MIRROR``) is crawled once into a temporary SQLite
file. Then the four commands run ``DTMON_BENCH_CLI_RUNS`` times each (default 21, 5 with
``--quick``), interleaved so that a change in the machine's load falls on all of them alike;
the figure is the median wall time of a whole process, start to exit.
"""

from __future__ import annotations

import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from monitor.mirror import DEFAULT_MIRROR_PATH, MirrorServer

QUICK = os.environ.get("DTMON_BENCH_QUICK") == "1"  # python -m bench --quick
RUNS = int(os.environ.get("DTMON_BENCH_CLI_RUNS", "5" if QUICK else "21"))
TARGET_SECONDS = 0.5
MIRRORED_SOURCES = ["vov", "hungyen", "baohungyen", "quangninh", "hagiang", "hue", "dongnai"]
COMMANDS = {
    "python -c pass": [sys.executable, "-c", "pass"],
    # The floor of any command that reads the database (Core; the ORM costs more).
    "import sqlalchemy": [sys.executable, "-c", "import sqlalchemy"],
    "dtmon --help": [sys.executable, "-m", "monitor", "--help"],
    "dtmon articles list": [sys.executable, "-m", "monitor", "articles", "list"],
}


def crawl_mirror(database_url: str, workdir: Path) -> None:
    """Crawl every mirror article (snapshot t2) into ``database_url`` with `dtmon crawl`."""
    args = [sys.executable, "-m", "monitor", "crawl"]
    for name in MIRRORED_SOURCES:
        args += ["--source", name]
    with MirrorServer(DEFAULT_MIRROR_PATH, snapshot="t2") as mirror:
        subprocess.run([*args, "--via", mirror.url], cwd=workdir, check=True,
                       capture_output=True, timeout=600,
                       env={**os.environ, "DTMON_DATABASE_URL": database_url,
                            "DTMON_LOG_DIR": str(workdir / "logs")})


def wall_time(command: list[str], env: dict[str, str]) -> float:
    """Seconds from starting ``command`` to its exit (it must succeed)."""
    started = time.perf_counter()
    subprocess.run(command, env=env, check=True, stdout=subprocess.DEVNULL)
    return time.perf_counter() - started


def run() -> list[dict]:
    with tempfile.TemporaryDirectory(prefix="dtmon-bench-cli-") as folder:
        database_url = f"sqlite:///{Path(folder) / 'dtmon.db'}"
        crawl_mirror(database_url, Path(folder))
        env = {**os.environ, "DTMON_DATABASE_URL": database_url, "COLUMNS": "120"}
        listed = subprocess.run(COMMANDS["dtmon articles list"], env=env, check=True,
                                capture_output=True, text=True).stdout
        articles = int(listed.strip().splitlines()[-1].split()[0])
        times: dict[str, list[float]] = {name: [] for name in COMMANDS}
        for _ in range(RUNS):
            for name, command in COMMANDS.items():
                times[name].append(wall_time(command, env))
    baseline = statistics.median(times["python -c pass"])
    rows = [{"metric": f"python -c pass (median of {RUNS})", "value": baseline, "unit": "s"},
            {"metric": f"python -c 'import sqlalchemy' (median of {RUNS})",
             "value": statistics.median(times["import sqlalchemy"]), "unit": "s"}]
    for name in ("dtmon --help", "dtmon articles list"):
        median = statistics.median(times[name])
        label = f"{name} ({articles} articles)" if name.endswith("list") else name
        rows.append({"metric": f"{label}, median of {RUNS}", "value": median, "unit": "s",
                     "baseline": baseline, "ratio": median / baseline,
                     "target": f"≤ {TARGET_SECONDS} s"})
        rows.append({"metric": f"{name}, slowest of {RUNS}", "value": max(times[name]),
                     "unit": "s"})
    return rows
