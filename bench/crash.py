"""Crash safety under kill -9: crawl the mirror, SIGKILL the crawler at a random point,
restart it, and compare the final database with the one of an uninterrupted crawl.

    .venv/bin/python -m bench.crash [--iterations 20] [--seed N] [--mirror ../shared/sites]

(``python -m bench`` runs it too: 20 runs, 3 with ``--quick``.)

The random point is "after the N-th request the mirror answered, plus 0-50 ms", so kills land
everywhere from start-up to the last commit. Compared: every article's (url, title, text hash,
topic result, URLs), the story grouping (as sets of article URLs), fingerprint and outbox rows.
Prints one line per run and how many matched (all of them must).
"""

from __future__ import annotations

import argparse
import hashlib
import os
import random
import signal
import subprocess
import sys
import tempfile
import threading
from dataclasses import dataclass
from pathlib import Path

from sqlalchemy import inspect, select

from monitor.mirror import DEFAULT_MIRROR_PATH, MirrorServer, RequestRecord
from storage.db import make_engine, session_factory
from storage.models import AlertOutbox, Article, ArticleFingerprint

REPO = Path(__file__).resolve().parents[1]
SOURCES = ["vov", "hungyen", "baohungyen", "quangninh", "hagiang", "hue", "dongnai"]


@dataclass(frozen=True)
class DatabaseState:
    """What a crawl leaves in the database, independent of row ids and timestamps."""

    articles: frozenset[tuple]  # (url, title, sha256(text), relevant, score, sorted urls)
    stories: frozenset[frozenset[str]]  # article URLs grouped by story
    fingerprinted: frozenset[str]  # article URLs with a near-duplicate fingerprint
    outbox: tuple[tuple[str, str, str], ...]  # (rule, kind, article URL), sorted

    def differences(self, other: DatabaseState) -> list[str]:
        """Readable differences with ``other`` (empty when equal)."""
        return [f"{name}: only here {sorted(mine - theirs)[:3]}, only there "
                f"{sorted(theirs - mine)[:3]}"
                for name in ("articles", "stories", "fingerprinted", "outbox")
                for mine, theirs in [(set(getattr(self, name)), set(getattr(other, name)))]
                if mine != theirs]


def database_state(database_url: str) -> DatabaseState:
    """The comparable content of the database at ``database_url``."""
    engine = make_engine(database_url)
    try:
        with session_factory(engine)() as session:
            articles = list(session.scalars(select(Article)))
            url_of = {a.id: a.url for a in articles}
            stories: dict[int, set[str]] = {}
            for article in articles:
                stories.setdefault(article.story_id or -article.id, set()).add(article.url)
            fingerprinted = {url_of[f.article_id] for f in session.scalars(
                select(ArticleFingerprint))}
            outbox: list[tuple[str, str, str]] = []
            if inspect(engine).has_table(AlertOutbox.__table__.name):
                outbox = sorted((o.rule, o.kind, url_of.get(o.article_id or 0, ""))
                                for o in session.scalars(select(AlertOutbox)))
            return DatabaseState(
                articles=frozenset(_article_row(a) for a in articles),
                stories=frozenset(frozenset(urls) for urls in stories.values()),
                fingerprinted=frozenset(fingerprinted),
                outbox=tuple(outbox),
            )
    finally:
        engine.dispose()


def _article_row(article: Article) -> tuple:
    digest = hashlib.sha256(article.text.encode()).hexdigest()
    score = round(article.topic_score, 6) if article.topic_score is not None else None
    return (article.url, article.title, digest, article.relevant, score,
            tuple(sorted(u.url for u in article.urls)))


def crawl_command(mirror_url: str, database_url: str, log: Path) -> list[str]:
    """``scrapy crawl news`` of the mirrored sources through the mirror, as fast as it goes."""
    settings = {"DTMON_VIA": mirror_url, "DTMON_DATABASE_URL": database_url,
                "LOG_FILE": str(log), "AUTOTHROTTLE_ENABLED": "False", "DOWNLOAD_DELAY": "0"}
    command = [sys.executable, "-m", "scrapy", "crawl", "news", "-a",
               "sources=" + ",".join(SOURCES)]
    for name, value in settings.items():
        command += ["-s", f"{name}={value}"]
    return command


class KillSwitch:
    """Mirror hook: SIGKILL the crawler ``delay`` seconds after the ``after``-th request."""

    def __init__(self, after: int, delay: float) -> None:
        self.after, self.delay = after, delay
        self.pid: int | None = None
        self.fired = threading.Event()
        self._count = 0
        self._lock = threading.Lock()

    def __call__(self, _record: RequestRecord) -> None:
        with self._lock:
            self._count += 1
            if self._count != self.after:
                return
        threading.Timer(self.delay, self._kill).start()

    def _kill(self) -> None:
        if self.pid is not None:
            try:
                os.kill(self.pid, signal.SIGKILL)
                self.fired.set()
            except ProcessLookupError:
                pass  # it finished first


def run_crawl(sites: Path, database_url: str, log: Path,
              kill: KillSwitch | None = None) -> tuple[int, int]:
    """One crawl at t1 (killed by ``kill`` if given): (exit code, requests answered)."""
    with MirrorServer(sites, snapshot="t1", on_request=kill) as mirror:
        child = subprocess.Popen(crawl_command(mirror.url, database_url, log), cwd=REPO,
                                 stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        if kill is not None:
            kill.pid = child.pid
        returncode = child.wait(timeout=300)
        return returncode, len(mirror.requests)


def uninterrupted(sites: Path, workdir: Path) -> tuple[DatabaseState, int]:
    """The reference state and the number of requests a whole crawl makes."""
    url = f"sqlite:///{workdir / 'reference.db'}"
    returncode, requests = run_crawl(sites, url, workdir / "reference.log")
    if returncode != 0:
        raise RuntimeError(f"the uninterrupted crawl failed; see {workdir / 'reference.log'}")
    return database_state(url), requests


def killed_then_restarted(sites: Path, workdir: Path, name: str, after: int,
                          delay: float) -> tuple[DatabaseState, bool]:
    """Crawl, SIGKILL after request ``after`` + ``delay`` s, crawl again to the end:
    (final state, whether the kill happened before the crawl finished)."""
    url = f"sqlite:///{workdir / f'{name}.db'}"
    kill = KillSwitch(after, delay)
    run_crawl(sites, url, workdir / f"{name}-killed.log", kill)
    returncode, _ = run_crawl(sites, url, workdir / f"{name}-restart.log")
    if returncode != 0:
        raise RuntimeError(f"the restarted crawl failed; see {workdir / f'{name}-restart.log'}")
    return database_state(url), kill.fired.is_set()


@dataclass(frozen=True)
class CrashReport:
    """What :func:`kill_runs` found."""

    iterations: int
    matched: int  # runs whose final database equals the uninterrupted crawl's
    killed: int  # runs killed before the crawl finished by itself


def kill_runs(mirror: Path, iterations: int, seed: int, say=print) -> CrashReport:
    """``iterations`` kill -9 runs at random points, each compared with an uninterrupted crawl."""
    rng = random.Random(seed)
    with tempfile.TemporaryDirectory(prefix="dtmon-crash-") as tmp:
        workdir = Path(tmp)
        reference, requests = uninterrupted(mirror, workdir)
        say(f"seed {seed}; uninterrupted crawl: {len(reference.articles)} articles, "
            f"{len(reference.stories)} stories, {requests} requests")
        matched = killed = 0
        for run in range(iterations):
            after, delay = rng.randint(1, requests), rng.uniform(0, 0.05)
            state, fired = killed_then_restarted(mirror, workdir, f"run{run}", after, delay)
            differences = state.differences(reference)
            matched += not differences
            killed += fired
            verdict = "match" if not differences else "DIFFERENT: " + "; ".join(differences)
            say(f"run {run + 1:2d}: kill -9 after request {after:3d} + {delay * 1000:4.1f} ms"
                f" ({'killed' if fired else 'finished first'}): {verdict}")
    return CrashReport(iterations, matched, killed)


def run() -> list[dict]:
    """The bench rows (see bench/__init__.py): 20 kill -9 runs (3 with ``--quick``)."""
    iterations = 3 if os.environ.get("DTMON_BENCH_QUICK") == "1" else 20
    report = kill_runs(DEFAULT_MIRROR_PATH, iterations, random.randrange(1 << 30),
                       say=lambda line: None)
    return [
        {"metric": "kill -9 at a random point, then restart: final database equal to an "
                   "uninterrupted crawl's", "value": report.matched,
         "unit": f"of {report.iterations} runs", "target": f"{report.iterations}"},
        {"metric": "runs killed mid-crawl (the others finished first)", "value": report.killed,
         "unit": "runs"},
    ]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--iterations", type=int, default=20)
    parser.add_argument("--seed", type=int, default=None)
    parser.add_argument("--mirror", type=Path, default=DEFAULT_MIRROR_PATH)
    args = parser.parse_args()
    seed = args.seed if args.seed is not None else random.randrange(1 << 30)
    report = kill_runs(args.mirror, args.iterations, seed)
    print(f"{report.matched}/{report.iterations} runs matched the uninterrupted database "
          f"({report.killed} were killed mid-crawl)")
    sys.exit(0 if report.matched == report.iterations else 1)


if __name__ == "__main__":
    main()
