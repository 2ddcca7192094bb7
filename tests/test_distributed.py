"""Distributed crawl: `dtmon crawl --distributed` seeds Redis, `dtmon worker` processes crawl.

Real things only: the Redis server on 127.0.0.1:6379 (a unique key prefix per test, deleted
after it), the mirror served by MirrorServer, worker subprocesses, SQLite and PostgreSQL.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
import uuid
from collections import Counter
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
import redis
from sqlalchemy import select

from crawler.distributed import (
    RedisKeys,
    clear_deployment,
    deployment_busy,
    seed_requests,
    worker_settings,
)
from monitor.cli.crawl import EXIT_CODES
from monitor.mirror import MirrorServer, RequestRecord
from storage.db import make_engine, session_factory
from storage.models import Article
from tests.fixtures.shared_data import REPO_ROOT

REDIS_URL = os.environ.get("DTMON_TEST_REDIS_URL", "redis://127.0.0.1:6379")
MIRRORED = ["vov", "hungyen", "baohungyen", "quangninh", "hagiang", "hue", "dongnai"]
WORKER_TIMEOUT = 120

pytestmark = pytest.mark.slow


@pytest.fixture
def deployment() -> Iterator[str]:
    """A fresh deployment name on the test Redis server; its keys are deleted afterwards."""
    client = redis.Redis.from_url(REDIS_URL)
    try:
        client.ping()
    except redis.RedisError as exc:
        message = f"Redis not reachable at {REDIS_URL} (start it: redis-server --daemonize yes)"
        if os.environ.get("CI", "").lower() == "true":
            pytest.fail(f"{message}: {exc}", pytrace=False)
        pytest.skip(message)
    name = f"dtmon-test-{uuid.uuid4().hex[:10]}"
    yield name
    clear_deployment(REDIS_URL, name)
    client.close()


def start_worker(workdir: Path, database_url: str, mirror: MirrorServer, deployment: str,
                 heartbeat: int = 30) -> subprocess.Popen[str]:
    """A `dtmon worker` subprocess that exits after 2 s without work in the deployment."""
    command = [sys.executable, "-m", "monitor", "worker", "--via", mirror.url,
               "--redis", REDIS_URL, "--deployment", deployment, "--idle-exit", "2",
               "--heartbeat", str(heartbeat)]
    env = {**os.environ, "DTMON_DATABASE_URL": database_url, "PYTHONPATH": str(REPO_ROOT),
           "COLUMNS": "160"}
    return subprocess.Popen(command, cwd=workdir, env=env, stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True)


def stored_urls(database_url: str) -> list[str]:
    engine = make_engine(database_url)
    try:
        with session_factory(engine)() as session:
            return list(session.scalars(select(Article.url)))
    finally:
        engine.dispose()


def t1_gold(gold: dict[str, dict]) -> dict[str, dict]:
    return {key: article for key, article in gold.items() if article["snapshot"] == "t1"}


def assert_each_gold_article_stored_once(database_url: str, gold: dict[str, dict]) -> None:
    urls = stored_urls(database_url)
    assert Counter(urls) == Counter(article["url"] for article in t1_gold(gold).values())


def test_two_workers_store_every_article_once_and_fetch_each_once(
    tmp_path: Path, database_url: str, deployment: str, mirror: MirrorServer,
    gold: dict[str, dict],
) -> None:
    seeding = subprocess.run(
        [sys.executable, "-m", "monitor", "crawl", "--distributed", "--redis", REDIS_URL,
         "--deployment", deployment, *(arg for name in MIRRORED for arg in ("-s", name))],
        cwd=tmp_path, capture_output=True, text=True, timeout=60,
        env={**os.environ, "DTMON_DATABASE_URL": database_url, "COLUMNS": "160"})
    assert seeding.returncode == 0, seeding.stderr
    assert "start request(s) queued" in seeding.stdout

    workers = [start_worker(tmp_path, database_url, mirror, deployment) for _ in range(2)]
    for worker in workers:
        output, _ = worker.communicate(timeout=WORKER_TIMEOUT)
        assert worker.returncode == 0, output

    assert_each_gold_article_stored_once(database_url, gold)
    fetched = Counter(record.url for record in mirror.requests if record.status == 200)
    for article in t1_gold(gold).values():
        spellings = {article["url"], *article.get("alternate_urls", [])}
        assert sum(fetched[url] for url in spellings) == 1, article["url"]
    keys = RedisKeys(deployment)
    server = redis.Redis.from_url(REDIS_URL)
    assert not deployment_busy(server, keys)
    assert not server.smembers(keys.workers), "workers leave the deployment when they exit"


def test_a_worker_killed_mid_crawl_loses_no_request(
    tmp_path: Path, postgres_url: str, deployment: str, sites_dir: Path,
    gold: dict[str, dict],
) -> None:
    slow = _slow_answers(0.4)  # every answer takes a while: requests stay claimed long enough
    with MirrorServer(sites_dir, snapshot="t1", on_request=slow) as mirror:
        seed_requests(REDIS_URL, deployment, MIRRORED)
        workers = [start_worker(tmp_path, postgres_url, mirror, deployment, heartbeat=2)
                   for _ in range(2)]
        server = redis.Redis.from_url(REDIS_URL)
        keys = RedisKeys(deployment)
        victim = _wait_for_a_worker_holding_requests(server, keys)
        os.kill(_crawler_pid(victim), signal.SIGKILL)
        held_when_killed = server.llen(keys.processing(victim))
        outputs = [worker.communicate(timeout=WORKER_TIMEOUT)[0] for worker in workers]

    assert held_when_killed > 0
    assert sorted(worker.returncode for worker in workers) == [0, EXIT_CODES["failed"]], outputs
    assert_each_gold_article_stored_once(postgres_url, gold)
    assert not deployment_busy(server, keys)
    assert not server.exists(keys.processing(victim)), "the dead worker's requests were requeued"


def test_seeding_twice_in_one_round_queues_nothing_new(deployment: str) -> None:
    first = seed_requests(REDIS_URL, deployment, ["vov", "dongnai"])
    again = seed_requests(REDIS_URL, deployment, ["vov", "dongnai", "baohungyen"])

    assert (first.queued, first.new_round) == (3, True)  # vov: sitemap + listing; dongnai: feed
    assert (again.queued, again.skipped, again.new_round) == (1, 3, False)


def test_worker_settings_select_the_reliable_scheduler() -> None:
    settings = worker_settings("redis://example:6379/2", "prod", idle_exit=5, heartbeat=7)

    assert settings["SCHEDULER"] == "crawler.distributed.ReliableScheduler"
    assert settings["REDIS_URL"] == "redis://example:6379/2"
    assert settings["DTMON_REDIS_DEPLOYMENT"] == "prod"
    assert (settings["DTMON_WORKER_IDLE_EXIT"], settings["DTMON_WORKER_HEARTBEAT"]) == ("5", "7")


def test_worker_without_redis_fails_clearly(tmp_path: Path) -> None:
    done = subprocess.run(
        [sys.executable, "-m", "monitor", "worker", "--redis", "redis://127.0.0.1:1"],
        cwd=tmp_path, capture_output=True, text=True, timeout=60)

    assert done.returncode == 1
    assert "cannot reach Redis at redis://127.0.0.1:1" in done.stderr
    assert "Traceback" not in done.stderr


def _slow_answers(seconds: float) -> Callable[[RequestRecord], None]:
    def slow(_record: RequestRecord) -> None:
        time.sleep(seconds)

    return slow


def _wait_for_a_worker_holding_requests(server: redis.Redis, keys: RedisKeys) -> str:
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        for raw in server.smembers(keys.workers):
            worker = raw.decode()
            if server.llen(keys.processing(worker)) >= 2:
                return worker
        time.sleep(0.05)
    raise AssertionError("no worker ever held requests")


def _crawler_pid(worker: str) -> int:
    """The pid of the crawler process behind a worker id ``host:pid:nonce``."""
    return int(worker.split(":")[-2])
