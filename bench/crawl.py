"""End-to-end crawl throughput, memory and the incremental re-crawl, on a synthetic mirror.

The synthetic mirror (bench/synthetic.py: 10,000 articles over 40 hosts; ``--quick``: 400 over
4) is served on 127.0.0.1 and crawled through ``--via`` with the real spider, pipeline and
storage (topic scoring and story assignment included):

* first the baseline: bench/plain_spider.py, a bare Scrapy process fetching the same article
  pages through the same download handler, with nothing of dtmon, then the same extracting
  each page with plain ``trafilatura.extract``: what one process can do before dtmon's work;
* one ``scrapy crawl news`` process into SQLite, at t1, then again at t2 (the incremental
  re-crawl: requests the mirror answered, against the full crawl's);
* one, then two ``dtmon worker`` crawler processes sharing Redis, storing into PostgreSQL.

Throughput is articles stored per second of wall time from process start until the last
article is in the database (process start-up included). Peak RSS is the largest sum of the
resident sets of a crawler process and its descendants (its extraction and writer
processes), sampled every quarter second (bench/memory.py). The breakdown per article comes
from the run records' per-step counters and the processes' CPU times. The mirror is local, so
politeness is off for the benchmark: see :data:`BENCH_SETTINGS`.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

from sqlalchemy import func, select, text

from bench.memory import TreeSampler
from bench.synthetic import IndexedMirrorServer, SyntheticMirror, generate
from crawler.distributed import clear_deployment, redis_url, seed_requests, worker_settings
from monitor.crawling import CrawlOptions, spider_command
from monitor.mirror import DEFAULT_MIRROR_PATH
from storage.db import DATABASE_URL_ENV, init_db, make_engine
from storage.models import Article, CrawlRun, CrawlRunSource

QUICK = os.environ.get("DTMON_BENCH_QUICK") == "1"
ARTICLES, HOSTS = (400, 4) if QUICK else (10_000, 40)
POSTGRES_ADMIN_URL = os.environ.get(
    "DTMON_TEST_POSTGRES_URL", "postgresql+psycopg://postgres@127.0.0.1:5432/postgres")
REPO = Path(__file__).resolve().parents[1]
BENCH_SETTINGS = {
    "CONCURRENT_REQUESTS": "64",
    "CONCURRENT_REQUESTS_PER_DOMAIN": "16",
    "DOWNLOAD_DELAY": "0",
    "AUTOTHROTTLE_ENABLED": "0",
    "DTMON_MAX_ARTICLES_PER_SOURCE": "0",  # every article of the synthetic hosts in one run
}
IDLE_EXIT_SECONDS = 2
# The per-source counters in which the spider and the pipeline add up each step's time.
STEPS = ("extract_us", "analyse_us", "store_us")
_POLL_SECONDS = 0.25


@dataclass(frozen=True)
class CrawlFigures:
    """One crawl: wall seconds until the last article was stored, articles, the peak summed
    RSS of a crawler's process tree (the largest of the crawlers'), CPU seconds of the crawler
    processes and of their extraction processes, and the run records' per-step microseconds
    (``extract_us``, ``analyse_us``, ``store_us`` summed over sources and runs)."""

    seconds: float
    stored: int
    peak_rss_mib: float
    cpu_seconds: float = 0.0
    worker_cpu_seconds: float = 0.0
    step_us: dict[str, int] = field(default_factory=dict)

    @property
    def per_second(self) -> float:
        return self.stored / self.seconds if self.seconds else 0.0


def crawler_env() -> dict[str, str]:
    """The environment of a crawler process: this repository's code and Scrapy settings."""
    return {**os.environ, "SCRAPY_SETTINGS_MODULE": "crawler.settings", "PYTHONPATH": str(REPO)}


def run_crawlers(commands: Sequence[list[str]], database_url: str, expected: int,
                 logs: Path) -> CrawlFigures:
    """Run crawler processes until all exit; time until ``expected`` articles are stored."""
    engine = make_engine(database_url)
    env = {**crawler_env(), DATABASE_URL_ENV: database_url}
    started = time.monotonic()
    first_run = _last_run_id(engine)
    running, samplers, log_paths = {}, [], []
    for number, command in enumerate(commands):
        log_paths.append(logs / f"crawler-{number}-{uuid.uuid4().hex[:6]}.log")
        log = log_paths[-1].open("wb")
        process = subprocess.Popen(command, cwd=logs, env=env, stdout=log,
                                   stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)
        running[process.pid] = process
        samplers.append(TreeSampler(process.pid))
    done_at, stored = None, 0
    while running:
        for sampler in samplers:
            sampler.sample()
        for pid, process in list(running.items()):
            if process.poll() is not None:
                del running[pid]
        stored = _count_articles(engine)
        if done_at is None and stored >= expected:
            done_at = time.monotonic()
        time.sleep(_POLL_SECONDS)
    steps = _step_microseconds(engine, first_run)
    engine.dispose()
    if stored < expected:
        _report_shortfall(stored, expected, log_paths)
    seconds = (done_at or time.monotonic()) - started
    return CrawlFigures(seconds, stored, max(s.peak_mib for s in samplers),
                        sum(s.own_cpu for s in samplers), sum(s.children_cpu for s in samplers),
                        steps)


def _report_shortfall(stored: int, expected: int, log_paths: Sequence[Path]) -> None:
    """Say on stderr that the crawlers exited with articles missing, with the end of each
    crawler's log (the logs live in a temporary folder that the benchmark removes)."""
    print(f"bench crawl: the crawlers exited with {stored} of {expected} articles stored",
          file=sys.stderr)
    for path in log_paths:
        lines = path.read_text("utf-8", errors="replace").splitlines()
        notable = [line for line in lines if " ERROR: " in line or " CRITICAL: " in line]
        print(f"--- {path.name}: {len(notable)} error line(s), the first 20 and the log's last 30",
              *notable[:20], *lines[-30:], sep="\n", file=sys.stderr)


def _last_run_id(engine) -> int:
    with engine.connect() as connection:
        return connection.execute(select(func.max(CrawlRun.id))).scalar_one() or 0


def _step_microseconds(engine, after_run: int) -> dict[str, int]:
    """The per-step counters of the runs after ``after_run``, summed over their sources."""
    totals = dict.fromkeys(STEPS, 0)
    with engine.connect() as connection:
        for stats in connection.execute(select(CrawlRunSource.stats)
                                        .where(CrawlRunSource.run_id > after_run)).scalars():
            for step in STEPS:
                totals[step] += (stats or {}).get(step, 0)
    return totals


def _count_articles(engine) -> int:
    with engine.connect() as connection:
        return connection.execute(select(func.count()).select_from(Article)).scalar_one()


def single_process(mirror: SyntheticMirror, via: str, database_url: str) -> list[str]:
    """The command of one plain ``scrapy crawl news`` over the synthetic sources."""
    options = CrawlOptions(sources=mirror.sources, sources_files=[mirror.sources_file], via=via,
                           trigger="bench", extra_settings=BENCH_SETTINGS)
    return spider_command(options, 0, database_url)


def worker(mirror: SyntheticMirror, via: str, database_url: str, deployment: str) -> list[str]:
    """The command of one crawl worker of ``deployment``."""
    settings = worker_settings(redis_url(), deployment, idle_exit=IDLE_EXIT_SECONDS)
    options = CrawlOptions(sources_files=[mirror.sources_file], via=via, trigger="bench",
                           extra_settings={**settings, **BENCH_SETTINGS})
    return spider_command(options, 0, database_url)


def plain_scrapy(mirror: SyntheticMirror, via: str, work: str, folder: Path) -> float:
    """Pages/s of bench/plain_spider.py doing ``work`` on the mirror's t1 article pages: one
    Scrapy process with dtmon's download handler and concurrency, and nothing else of dtmon."""
    urls, out = folder / "article-urls.txt", folder / f"plain-{work}.json"
    urls.write_text("\n".join(mirror.article_urls("t1")), "utf-8")
    command = [sys.executable, "-m", "scrapy", "runspider", str(REPO / "bench" / "plain_spider.py"),
               "-a", f"urls={urls}", "-a", f"work={work}", "-a", f"out={out}",
               "-s", f"DTMON_VIA={via}"]
    for name, value in BENCH_SETTINGS.items():
        command += ["-s", f"{name}={value}"]
    env = crawler_env()
    started = time.time()
    with (folder / f"plain-{work}.log").open("wb") as log:
        subprocess.run(command, cwd=folder, env=env, stdout=log, stderr=subprocess.STDOUT,
                       stdin=subprocess.DEVNULL, check=True)
    result = json.loads(out.read_text("utf-8"))
    return result["responses"] / (result["last_response"] - started)


def migrated(url: str) -> str:
    """``url``, after bringing its schema to the latest migration."""
    engine = make_engine(url)
    init_db(engine)
    engine.dispose()
    return url


@contextmanager
def postgres_database() -> Iterator[str]:
    """A fresh, migrated PostgreSQL database, dropped afterwards."""
    admin = make_engine(POSTGRES_ADMIN_URL).execution_options(isolation_level="AUTOCOMMIT")
    name = f"dtmon_bench_{uuid.uuid4().hex[:10]}"
    with admin.connect() as connection:
        connection.execute(text(f'CREATE DATABASE "{name}"'))
    url = admin.url.set(database=name).render_as_string(hide_password=False)
    try:
        yield migrated(url)
    finally:
        with admin.connect() as connection:
            connection.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        admin.dispose()


def distributed(mirror: SyntheticMirror, via: str, workers: int, logs: Path) -> CrawlFigures:
    """Seed a fresh deployment and crawl it with ``workers`` processes into PostgreSQL."""
    deployment = f"dtmon-bench-{uuid.uuid4().hex[:8]}"
    try:
        with postgres_database() as url:
            seed_requests(redis_url(), deployment, mirror.sources, [mirror.sources_file])
            commands = [worker(mirror, via, url, deployment) for _ in range(workers)]
            return run_crawlers(commands, url, mirror.articles_t1, logs)
    finally:
        clear_deployment(redis_url(), deployment)


def run() -> list[dict]:
    """Single process on SQLite (t1, then the t2 re-crawl), then 1 and 2 workers."""
    with tempfile.TemporaryDirectory(prefix="dtmon-bench-crawl-") as folder:
        work = Path(folder)
        mirror = generate(DEFAULT_MIRROR_PATH, work / "mirror", ARTICLES, HOSTS)
        with IndexedMirrorServer(mirror.root, snapshot="t1") as server:
            fetch_only = plain_scrapy(mirror, server.url, "fetch", work)
            with_trafilatura = plain_scrapy(mirror, server.url, "trafilatura", work)
            server.clear_log()
            sqlite_url = migrated(f"sqlite:///{work / 'dtmon.db'}")
            single = run_crawlers([single_process(mirror, server.url, sqlite_url)], sqlite_url,
                                  mirror.articles_t1, work)
            t1_requests = len(server.requests)
            server.set_snapshot("t2")
            server.clear_log()
            again = run_crawlers([single_process(mirror, server.url, sqlite_url)], sqlite_url,
                                 mirror.articles_t2, work)
            t2_requests = len(server.requests)
            server.set_snapshot("t1")
            one = distributed(mirror, server.url, 1, work)
            two = distributed(mirror, server.url, 2, work)
    settings = ", ".join(f"{k}={v}" for k, v in BENCH_SETTINGS.items())
    return [
        {"metric": "baseline: plain Scrapy fetching the same article pages", "unit": "pages/s",
         "value": round(fetch_only, 1)},
        {"metric": "baseline: plain Scrapy + trafilatura.extract of each page",
         "value": round(with_trafilatura, 1), "unit": "pages/s"},
        {**_throughput(f"single process, SQLite ({single.stored}/{mirror.articles_t1} stored)",
                       single, target="≥ 0.6× Scrapy + trafilatura"),
         "baseline": round(with_trafilatura, 1),
         "ratio": round(single.per_second / with_trafilatura, 2) if with_trafilatura else None},
        _throughput(f"1 worker, Redis + PostgreSQL ({one.stored} stored)", one),
        {**_throughput(f"2 workers, Redis + PostgreSQL ({two.stored} stored)", two),
         "baseline": round(one.per_second, 1),
         "ratio": round(two.per_second / one.per_second, 2) if one.per_second else None,
         "target": "≥ 1.6× one worker"},
        *_breakdown(single, fetch_only),
        _rss("peak RSS, single process (its whole process tree)", single),
        _rss("peak RSS per worker (1 worker)", one),
        _rss("peak RSS per worker (2 workers)", two),
        {"metric": f"t2 re-crawl: requests ({again.stored - single.stored} new articles of "
                   f"{mirror.articles_t2 - mirror.articles_t1})",
         "value": t2_requests, "unit": "requests", "baseline": t1_requests,
         "ratio": round(t2_requests / t1_requests, 3)},
        {"metric": f"crawl settings (local mirror, {HOSTS} hosts)", "value": settings,
         "unit": ""},
        {"metric": "load average (1, 5, 15 min) at the end",
         "value": " ".join(f"{load:.2f}" for load in os.getloadavg()), "unit": ""},
    ]


def _throughput(metric: str, figures: CrawlFigures, target: str | None = None) -> dict:
    row = {"metric": metric, "value": round(figures.per_second, 1), "unit": "articles/s"}
    return {**row, "target": target} if target else row


def _breakdown(figures: CrawlFigures, fetch_only: float) -> list[dict]:
    """Milliseconds per stored article of each step of the single-process crawl: fetching
    (bare Scrapy, same run), extraction, analysis (topic scoring and fingerprints, both in the
    extraction processes), storing (the writer process); then where the CPU went."""
    per_article = 1000 / figures.stored if figures.stored else 0.0
    steps = {"extract_us": "extract (extraction process)",
             "analyse_us": "score + fingerprint (extraction process)",
             "store_us": "store (writer process, group commit included)"}
    rows = [{"metric": "per article: fetch (bare Scrapy, same run)",
             "value": round(1000 / fetch_only, 2) if fetch_only else None, "unit": "ms"}]
    rows += [{"metric": f"per article: {label}",
              "value": round(figures.step_us.get(step, 0) / 1000 * per_article / 1000, 2),
              "unit": "ms"} for step, label in steps.items()]
    rows += [{"metric": "per article: CPU of the crawl process (event loop)",
              "value": round(figures.cpu_seconds * per_article, 2), "unit": "ms"},
             {"metric": "per article: CPU of its helper processes (extraction, writer)",
              "value": round(figures.worker_cpu_seconds * per_article, 2), "unit": "ms"}]
    return rows


def _rss(metric: str, figures: CrawlFigures) -> dict:
    return {"metric": metric, "value": round(figures.peak_rss_mib), "unit": "MiB",
            "target": "≤ 500"}


if __name__ == "__main__":
    for row in run():
        print(row, file=sys.stderr)
