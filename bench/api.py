"""The HTTP service under load: `dtmon serve` and 50 concurrent clients, on SQLite and PostgreSQL.

A database of ``DTMON_BENCH_API_STORIES`` relevant stories (default 10,000; 1,000 with
``--quick``) is built on each backend (``DTMON_BENCH_API_BACKENDS``, default
``sqlite,postgresql``). `dtmon serve` runs as a real process (uvicorn) with one
consumer, ``indexer``, whose token comes from the environment; this process drives it with an
async HTTP client (httpx2), ``CONCURRENCY`` requests in flight, a 30 s time-out each:

* read-only (the baseline): ``REQUESTS`` reads, drawn as a downstream reader would (``READS``):
  stories and articles by id, raw pages, list pages, now and then the sources;
* mixed: ``REQUESTS`` requests, one in ten a claim (``indexer``, ``CLAIM_LIMIT`` stories: the
  API's default 10, or ``DTMON_BENCH_API_CLAIM_LIMIT``), one in ten an ack of a claimed batch,
  the rest the same reads.

Each run prints throughput, p50/p99 latency, errors (any answer but 200, any failure) and
time-outs. After the mixed run the database is checked: every story claimed was claimed by
exactly one claim, once (one delivery row each, first attempt), and acked. The server's resident
memory is read at start, after the baseline (before the mixed run) and after it; a 4 MB body is
sent last (413 expected) and the memory read again. The server's log is searched for
tracebacks, lock errors and the token.
"""

from __future__ import annotations

import asyncio
import os
import random
import socket
import subprocess
import sys
import tempfile
import time
import uuid
import zlib
from collections import Counter
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from pathlib import Path

import httpx2
from sqlalchemy import func, insert, select, text, update

from storage.db import init_db, make_engine, session_factory, session_scope
from storage.models import Article, Source, Story, StoryDelivery

QUICK = os.environ.get("DTMON_BENCH_QUICK") == "1"  # python -m bench --quick
STORIES = int(os.environ.get("DTMON_BENCH_API_STORIES", "1000" if QUICK else "10000"))
REQUESTS = 400 if QUICK else 2000
CONCURRENCY = 50
CLAIMS = REQUESTS // 10
# Stories per claim: the API's default; 50 makes the 200 claims of a full run cover all 10,000.
CLAIM_LIMIT = int(os.environ.get("DTMON_BENCH_API_CLAIM_LIMIT", "10"))
TIMEOUT_SECONDS = 30
CONSUMER = "indexer"
TOKEN_ENV = "DTMON_TOKEN_INDEXER"
BACKENDS = os.environ.get("DTMON_BENCH_API_BACKENDS", "sqlite,postgresql").split(",")
POSTGRES_URL_ENV = "DTMON_BENCH_POSTGRES_URL"
DEFAULT_POSTGRES_URL = "postgresql+psycopg://postgres@127.0.0.1:5432/postgres"
REPO = Path(__file__).resolve().parents[1]
SOURCES = 10
START = datetime(2025, 1, 1)
SENTENCES = [
    "Tỉnh đẩy mạnh chuyển đổi số trong cơ quan nhà nước, xây dựng chính quyền số.",
    "Người dân nộp hồ sơ trực tuyến toàn trình qua Cổng dịch vụ công quốc gia.",
    "Tổ công nghệ số cộng đồng hướng dẫn bà con cài đặt ứng dụng định danh điện tử.",
    "Kinh tế số đóng góp ngày càng lớn vào tăng trưởng của địa phương.",
]


# --- the database -------------------------------------------------------------------------------


def build_database(url: str, stories: int) -> None:
    """``stories`` relevant one-copy stories, spread over ``SOURCES`` sources."""
    engine = make_engine(url)
    init_db(engine)
    html = zlib.compress(b"<html><body><p>" + " ".join(SENTENCES).encode() + b"</p></body></html>")
    with session_scope(session_factory(engine)) as session:
        session.execute(insert(Source), [
            {"id": n + 1, "name": f"site{n}", "province": "Hưng Yên", "created_at": START}
            for n in range(SOURCES)
        ])
        session.execute(insert(Story), [{"id": i, "created_at": START}
                                        for i in range(1, stories + 1)])
        session.execute(insert(Article), [_article(i, html) for i in range(1, stories + 1)])
        session.execute(update(Story).values(representative_id=Story.id))
    engine.dispose()


def _article(i: int, html: bytes) -> dict:
    url = f"https://site{i % SOURCES}.example.vn/tin-{i}.html"
    text_ = " ".join(SENTENCES[(i + k) % len(SENTENCES)] for k in range(6)) + f" Bài {i}."
    return {
        "id": i, "source_id": i % SOURCES + 1, "url": url, "url_key": url,
        "title": f"Chuyển đổi số: bài {i}", "text": text_, "published": None,
        "published_at": START + timedelta(minutes=i), "province": "Hưng Yên", "tags": [],
        "raw_html": html, "content_hash": str(i), "fetched_at": START, "relevant": True,
        "topic_score": 1.0, "topic_matches": {"chuyển đổi số": 1}, "story_id": i,
    }


@contextmanager
def sqlite_database(folder: Path) -> Iterator[str]:
    url = f"sqlite:///{folder / 'api.db'}"
    build_database(url, STORIES)
    yield url


@contextmanager
def postgres_database() -> Iterator[str]:
    """A fresh database on the local server, dropped afterwards."""
    admin = make_engine(os.environ.get(POSTGRES_URL_ENV, DEFAULT_POSTGRES_URL))
    admin = admin.execution_options(isolation_level="AUTOCOMMIT")
    name = f"dtmon_bench_api_{uuid.uuid4().hex[:8]}"
    with admin.connect() as connection:
        connection.execute(text(f'CREATE DATABASE "{name}"'))
    url = admin.url.set(database=name).render_as_string(hide_password=False)
    try:
        build_database(url, STORIES)
        # The statistics and visibility map autovacuum gives a live database within a minute of
        # a bulk load: without them the planner sorts every story for each list page.
        analysed = make_engine(url).execution_options(isolation_level="AUTOCOMMIT")
        with analysed.connect() as connection:
            connection.execute(text("VACUUM ANALYZE"))
        analysed.dispose()
        yield url
    finally:
        with admin.connect() as connection:
            connection.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        admin.dispose()


# --- the server ---------------------------------------------------------------------------------


@dataclass
class Server:
    process: subprocess.Popen
    base_url: str
    log: Path

    def rss_mib(self) -> float:
        """The server's resident memory now (VmRSS)."""
        for line in Path(f"/proc/{self.process.pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
        raise RuntimeError("the server has exited")

    def cpu_seconds(self) -> float:
        """CPU time the server has used so far (user + system)."""
        fields = Path(f"/proc/{self.process.pid}/stat").read_text().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


@contextmanager
def dtmon_serve(database_url: str, folder: Path, token: str) -> Iterator[Server]:
    """`dtmon serve` on a free loopback port with one consumer, until the block ends."""
    consumers = folder / "consumers.yaml"
    consumers.write_text(f"consumers:\n  - name: {CONSUMER}\n    token_env: {TOKEN_ENV}\n")
    port = _free_port()
    log = folder / f"serve-{port}.log"
    env = {**os.environ, "DTMON_DATABASE_URL": database_url, TOKEN_ENV: token,
           "PYTHONPATH": str(REPO)}
    with log.open("wb") as output:
        process = subprocess.Popen(
            [sys.executable, "-m", "monitor", "serve", "--port", str(port),
             "--consumers", str(consumers)],
            cwd=folder, env=env, stdout=output, stderr=subprocess.STDOUT)
    server = Server(process, f"http://127.0.0.1:{port}", log)
    try:
        _wait_until_up(server)
        yield server
    finally:
        process.terminate()
        process.wait(timeout=30)


def _wait_until_up(server: Server, seconds: float = 60) -> None:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if server.process.poll() is not None:
            raise RuntimeError(f"dtmon serve exited: {server.log.read_text()[-2000:]}")
        try:
            if httpx2.get(server.base_url + "/openapi.json", timeout=2).status_code == 200:
                return
        except httpx2.HTTPError:
            pass
        time.sleep(0.2)
    raise RuntimeError("dtmon serve did not answer within a minute")


# --- the load -----------------------------------------------------------------------------------


@dataclass
class LoadResult:
    seconds: float = 0.0
    latencies: list[float] = field(default_factory=list)
    by_kind: dict[str, list[float]] = field(default_factory=dict)  # read, claim, ack
    errors: Counter = field(default_factory=Counter)  # what went wrong -> how often
    timeouts: int = 0
    server_cpu: float = 0.0  # seconds the server used during the run
    claimed: list[list[int]] = field(default_factory=list)  # story ids of each claim
    acked: list[int] = field(default_factory=list)

    def percentile(self, fraction: float, kind: str | None = None) -> float:
        ordered = sorted(self.by_kind.get(kind, []) if kind else self.latencies)
        return ordered[min(len(ordered) - 1, int(fraction * len(ordered)))] if ordered else 0.0


def plan(requests: int, mixed: bool, stories: int, seed: int = 18) -> list[tuple[str, str]]:
    """The requests of a run, in order: (kind, path); one in ten a claim and one an ack when
    ``mixed``, else reads only."""
    rng = random.Random(seed)
    reads: dict[Callable[[], str], int] = {  # a path -> its weight
        lambda: f"/stories/{rng.randint(1, stories)}": 35,
        lambda: f"/articles/{rng.randint(1, stories)}": 35,
        lambda: f"/articles/{rng.randint(1, stories)}/raw": 15,
        lambda: f"/stories?relevant=true&limit=20&offset={rng.randrange(0, 200, 20)}": 10,
        lambda: "/sources": 5,
    }
    kinds = []
    for i in range(requests):
        if mixed and i % 10 == 0:
            kinds.append(("claim", "/queue/claim"))
        elif mixed and i % 10 == 5:
            kinds.append(("ack", "/queue/ack"))
        else:
            kinds.append(("read", rng.choices(list(reads), list(reads.values()))[0]()))
    return kinds


async def drive(base_url: str, token: str, requests: list[tuple[str, str]]) -> LoadResult:
    """Send ``requests`` with ``CONCURRENCY`` in flight; acks take the claimed batches in turn."""
    result = LoadResult()
    pending = iter(requests)
    batches: asyncio.Queue[list[int]] = asyncio.Queue()
    auth = {"Authorization": f"Bearer {token}"}
    limits = httpx2.Limits(max_connections=CONCURRENCY, max_keepalive_connections=CONCURRENCY)

    async def send(client: httpx2.AsyncClient, kind: str, path: str) -> None:
        if kind == "ack":
            batch = await asyncio.wait_for(batches.get(), TIMEOUT_SECONDS)
            call = client.post(path, json={"story_ids": batch}, headers=auth)
        elif kind == "claim":
            call = client.post(path, json={"limit": CLAIM_LIMIT, "lease_seconds": 3600},
                               headers=auth)
        else:
            call = client.get(path)
        started = time.perf_counter()
        try:
            response = await call
        except httpx2.TimeoutException:
            result.timeouts += 1
            return
        except httpx2.HTTPError as exc:
            result.errors[f"{kind}: {type(exc).__name__}"] += 1
            return
        result.latencies.append(time.perf_counter() - started)
        result.by_kind.setdefault(kind, []).append(result.latencies[-1])
        if response.status_code != 200:
            result.errors[f"{kind}: {response.status_code}"] += 1
        elif kind == "claim":
            ids = [item["id"] for item in response.json()["items"]]
            result.claimed.append(ids)
            if ids:
                batches.put_nowait(ids)
        elif kind == "ack":
            result.acked += response.json()["acked"]

    async def worker(client: httpx2.AsyncClient) -> None:
        for kind, path in pending:
            try:
                await send(client, kind, path)
            except TimeoutError:  # an ack with no claimed batch to take
                result.errors[f"{kind}: nothing to ack"] += 1

    async with httpx2.AsyncClient(base_url=base_url, limits=limits,
                                  timeout=TIMEOUT_SECONDS) as client:
        started = time.perf_counter()
        await asyncio.gather(*(worker(client) for _ in range(CONCURRENCY)))
        result.seconds = time.perf_counter() - started
    return result


def big_body_status(base_url: str, token: str, size: int = 4 * 2**20) -> int:
    """The answer to a claim whose body is ``size`` bytes."""
    body = b'{"limit": 1, "padding": "' + b"x" * size + b'"}'
    response = httpx2.post(base_url + "/queue/claim", content=body, timeout=TIMEOUT_SECONDS,
                           headers={"Authorization": f"Bearer {token}",
                                    "Content-Type": "application/json"})
    return response.status_code


# --- checks and rows ----------------------------------------------------------------------------


def delivery_check(database_url: str, result: LoadResult) -> str:
    """'ok' when every claim was full, every story claimed went to exactly one claim, once,
    and was acked; else what is wrong."""
    counts = Counter(story for batch in result.claimed for story in batch)
    problems = []
    if len(counts) != CLAIMS * CLAIM_LIMIT:
        problems.append(f"{len(counts)} stories claimed, not {CLAIMS * CLAIM_LIMIT}")
    if counts and max(counts.values()) > 1:
        problems.append(f"{sum(c > 1 for c in counts.values())} stories claimed twice")
    engine = make_engine(database_url)
    with engine.connect() as connection:
        rows, stories, attempts, acked = connection.execute(
            select(func.count(), func.count(StoryDelivery.story_id.distinct()),
                   func.max(StoryDelivery.attempts), func.count(StoryDelivery.acked_at))
            .where(StoryDelivery.consumer == CONSUMER)).one()
    engine.dispose()
    if not rows == stories == acked == len(counts) or attempts != 1:
        problems.append(f"database: {rows} deliveries of {stories} stories, {acked} acked, "
                        f"max attempts {attempts}")
    if sorted(result.acked) != sorted(counts):
        problems.append(f"{len(result.acked)} acked of {len(counts)} claimed")
    return "; ".join(problems) or "ok"


def log_findings(server: Server, token: str) -> str:
    """Tracebacks, lock and pool errors, 500s, and the token, as found in the server's log."""
    log = server.log.read_text(errors="replace")
    found = {name: log.count(needle) for name, needle in [
        ("tracebacks", "Traceback"), ("locked", "database is locked"),
        ("pool", "QueuePool limit"), ("500s", '" 500'), ("token", token)]}
    return ", ".join(f"{name} {count}" for name, count in found.items())


def measured_run(server: Server, token: str, requests: list[tuple[str, str]]) -> LoadResult:
    """One load run, with the server's CPU time over it."""
    cpu = server.cpu_seconds()
    result = asyncio.run(drive(server.base_url, token, requests))
    result.server_cpu = server.cpu_seconds() - cpu
    return result


def load_rows(backend: str, label: str, result: LoadResult, baseline: LoadResult | None) -> list:
    rate = len(result.latencies) / result.seconds
    base_rate = len(baseline.latencies) / baseline.seconds if baseline else None
    errors = sum(result.errors.values())
    rows = [
        {"metric": f"{backend}: {label} throughput", "value": round(rate, 1), "unit": "req/s",
         "baseline": round(base_rate, 1) if base_rate else None,
         "ratio": round(rate / base_rate, 2) if base_rate else None},
        {"metric": f"{backend}: {label} p50", "value": round(result.percentile(0.5) * 1000),
         "unit": "ms", "baseline": round(baseline.percentile(0.5) * 1000) if baseline else None},
        {"metric": f"{backend}: {label} p99", "value": round(result.percentile(0.99) * 1000),
         "unit": "ms", "baseline": round(baseline.percentile(0.99) * 1000) if baseline else None,
         "target": "<= 1000"},
        {"metric": f"{backend}: {label} server CPU per request", "unit": "ms",
         "value": round(result.server_cpu / len(result.latencies) * 1000, 1),
         "baseline": round(baseline.server_cpu / len(baseline.latencies) * 1000, 1)
         if baseline else None},
        {"metric": f"{backend}: {label} errors / time-outs", "value": f"{errors} / "
         f"{result.timeouts}", "unit": f"of {len(result.latencies) + result.timeouts}",
         "target": "0 / 0"},
    ]
    if len(result.by_kind) > 1:
        rows.append({"metric": f"{backend}: {label} p99 of reads / claims / acks", "unit": "ms",
                     "value": " / ".join(f"{result.percentile(0.99, kind) * 1000:.0f}"
                                         for kind in ("read", "claim", "ack"))})
    if result.errors:
        rows.append({"metric": f"{backend}: {label} error kinds",
                     "value": ", ".join(f"{k} x{v}" for k, v in result.errors.items())})
    return rows


def bench_backend(backend: str, database_url: str, folder: Path) -> list[dict]:
    """The read-only baseline, the mixed run and the checks on one backend."""
    token = f"bench-{uuid.uuid4().hex}"
    with dtmon_serve(database_url, folder, token) as server:
        at_start = server.rss_mib()
        reads = measured_run(server, token, plan(REQUESTS, False, STORIES))
        before = server.rss_mib()
        mixed = measured_run(server, token, plan(REQUESTS, True, STORIES))
        after = server.rss_mib()
        refused = big_body_status(server.base_url, token)
        after_big = server.rss_mib()
        findings = log_findings(server, token)
    return [
        *load_rows(backend, "read-only", reads, None),
        *load_rows(backend, "mixed 80/10/10", mixed, reads),
        {"metric": f"{backend}: each story claimed went to exactly one claim, acked",
         "value": delivery_check(database_url, mixed),
         "unit": f"{len(mixed.claimed)} claims of {CLAIM_LIMIT} of {STORIES} stories"},
        {"metric": f"{backend}: server RSS at start / before / after the mixed run",
         "value": f"{at_start:.0f} / {before:.0f} / {after:.0f}", "unit": "MiB",
         "ratio": round(after / before, 2), "target": "<= 1.2"},
        {"metric": f"{backend}: 4 MiB body: answer, RSS after", "value":
         f"{refused}, {after_big:.0f} MiB", "target": "413"},
        {"metric": f"{backend}: server log", "value": findings},
    ]


def run() -> list[dict]:
    rows = []
    with tempfile.TemporaryDirectory(prefix="dtmon-bench-api-") as tmp:
        folder = Path(tmp)
        if "sqlite" in BACKENDS:
            with sqlite_database(folder) as url:
                rows += bench_backend("SQLite", url, folder)
        if "postgresql" in BACKENDS:
            with postgres_database() as url:
                rows += bench_backend("PostgreSQL", url, folder)
    return rows
