"""Distributed crawling: any number of ``news`` spiders share one frontier in Redis.

Built on scrapy-redis (its queue serialisation, request fingerprints and connection settings),
with two changes that the stock scheduler lacks:

* **No request is lost when a worker dies.** scrapy-redis pops requests destructively, so a
  killed worker would take its in-flight requests with it. Here a worker *claims* a request by
  moving it (``LMOVE``) from the shared queue into its own processing list, and removes it from
  that list only once Scrapy has finished with it: downloaded, parsed, its items stored and its
  follow-up requests queued. Every worker refreshes a heartbeat key; when a worker's heartbeat
  expires, the first live worker (or the next seeding) moves that worker's processing list back
  into the queue. The guarantee is *at least once*: a request whose worker died is fetched again
  by another one, so an article can be fetched twice, and storage (idempotent per URL key) keeps
  it once. A worker that stalls longer than the heartbeat time-out loses its claims the same way.
* **One URL identity for the duplicate filter.** Fingerprints use dtmon's ``url_key`` (tracking
  parameters dropped, aliases and case-insensitive paths folded), the identity the spider itself
  uses, so two workers never fetch two spellings of one article. Marking a request seen and
  queueing it is one atomic Redis script, so a worker killed in between loses nothing.

Keys of a deployment ``D`` (``DTMON_REDIS_DEPLOYMENT``, default ``dtmon``) for spider ``news``:
``D:news:requests`` (the queue), ``D:news:dupefilter``, ``D:news:workers`` (worker ids),
``D:news:processing:<id>`` and ``D:news:heartbeat:<id>``.

A crawl *round* starts with :func:`seed_requests` (``dtmon crawl --distributed`` or the daemon):
when the deployment is idle it clears the previous round's duplicate filter, then queues the
feeds, sitemaps and listing pages of the selected sources. Workers (``dtmon worker``) never
queue start requests themselves; they run with :func:`worker_settings` and exit after
``DTMON_WORKER_IDLE_EXIT`` seconds without work anywhere in the deployment (0: never).

Requests are pickled (scrapy-redis' default serializer): the Redis server must be trusted.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import logging
import os
import socket
import time
import uuid
from collections.abc import AsyncIterator, Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import redis
from scrapy import Request, Spider, signals
from scrapy.crawler import Crawler
from scrapy.exceptions import DontCloseSpider
from scrapy.utils.python import to_unicode
from scrapy_redis import connection, picklecompat
from scrapy_redis.dupefilter import RFPDupeFilter
from scrapy_redis.queue import FifoQueue
from scrapy_redis.scheduler import Scheduler
from twisted.internet import task

from crawler import settings as project_settings
from crawler.sources import Registry
from crawler.urls import url_key

logger = logging.getLogger(__name__)

REDIS_URL_ENV = "DTMON_REDIS_URL"
DEFAULT_REDIS_URL = "redis://127.0.0.1:6379"
DEFAULT_DEPLOYMENT = "dtmon"
DEFAULT_HEARTBEAT_SECONDS = 30
_TICK_SECONDS = 0.5

# KEYS: dupefilter set, queue list; ARGV: fingerprint, encoded request. Atomic: a request is
# never marked seen without being queued.
_PUSH_UNSEEN = """
if redis.call('SADD', KEYS[1], ARGV[1]) == 1 then
  redis.call('LPUSH', KEYS[2], ARGV[2])
  return 1
end
return 0
"""


def redis_url() -> str:
    """The configured Redis server: ``$DTMON_REDIS_URL``, else the local one."""
    return os.environ.get(REDIS_URL_ENV, "").strip() or DEFAULT_REDIS_URL


@dataclass(frozen=True)
class RedisKeys:
    """The Redis keys of one deployment's crawl of one spider."""

    deployment: str = DEFAULT_DEPLOYMENT
    spider: str = "news"

    @property
    def base(self) -> str:
        return f"{self.deployment}:{self.spider}"

    @property
    def requests(self) -> str:
        return f"{self.base}:requests"

    @property
    def dupefilter(self) -> str:
        return f"{self.base}:dupefilter"

    @property
    def workers(self) -> str:
        return f"{self.base}:workers"

    def processing(self, worker: str) -> str:
        return f"{self.base}:processing:{worker}"

    def heartbeat(self, worker: str) -> str:
        return f"{self.base}:heartbeat:{worker}"


def worker_settings(redis: str, deployment: str = DEFAULT_DEPLOYMENT, idle_exit: float = 0,
                    heartbeat: int = DEFAULT_HEARTBEAT_SECONDS) -> dict[str, str]:
    """The Scrapy settings (``-s`` values) that turn ``scrapy crawl news`` into a worker.

    ``-s SPIDER_MIDDLEWARES`` replaces the project's dict, so the project's entries are kept.
    """
    return {
        "SCHEDULER": f"{__name__}.ReliableScheduler",
        "REDIS_URL": redis,
        "DTMON_REDIS_DEPLOYMENT": deployment,
        "DTMON_WORKER_IDLE_EXIT": str(idle_exit),
        "DTMON_WORKER_HEARTBEAT": str(heartbeat),
        "SPIDER_MIDDLEWARES": json.dumps({**project_settings.SPIDER_MIDDLEWARES,
                                          f"{__name__}.NoStartRequests": 0}),
    }


# ---------------------------------------------------------------------------- duplicate filter


class UrlKeyDupeFilter(RFPDupeFilter):
    """scrapy-redis' shared filter, fingerprinting a request by method, ``url_key`` and body.

    A redirect's target keeps its plain URL fingerprint: it has the same ``url_key`` as the
    request that led to it (an old domain that 301s), and must not be dropped as its duplicate.
    """

    def __init__(self, server: redis.Redis, key: str, registry: Registry | None) -> None:
        super().__init__(server, key)
        self.registry = registry

    def request_fingerprint(self, request: Request) -> str:
        if request.meta.get("redirect_urls"):
            return super().request_fingerprint(request)
        data = {
            "method": to_unicode(request.method),
            "url": url_key(request.url, self.registry),
            "body": (request.body or b"").hex(),
        }
        return hashlib.sha1(json.dumps(data, sort_keys=True).encode()).hexdigest()


# ---------------------------------------------------------------------------- queue


class ReliableQueue(FifoQueue):
    """scrapy-redis' FIFO queue, popping by claim: ``LMOVE`` into this worker's processing list.

    :meth:`ack` removes the claims of finished requests; :meth:`release` hands every claim
    still held back to the queue.
    """

    def __init__(self, server: redis.Redis, spider: Spider, keys: RedisKeys, worker: str) -> None:
        super().__init__(server, spider, keys.requests, serializer=picklecompat)
        self.keys = keys
        self.worker = worker
        self.processing = keys.processing(worker)
        self.claims: dict[Request, bytes] = {}
        self._push_unseen = server.register_script(_PUSH_UNSEEN)

    def push_unseen(self, request: Request, fingerprint: str) -> bool:
        """Queue ``request`` unless its fingerprint was seen this round; whether it was queued."""
        keys = [self.keys.dupefilter, self.key]
        return bool(self._push_unseen(keys=keys, args=[fingerprint, self._encode_request(request)]))

    def pop(self, timeout: int = 0) -> Request | None:
        """Claim the oldest queued request (never blocks the reactor: ``timeout`` is ignored)."""
        data = self.server.lmove(self.key, self.processing, "RIGHT", "LEFT")
        if data is None:
            return None
        request = self._decode_request(data)
        self.claims[request] = data
        return request

    def ack(self, unfinished: Iterable[Request]) -> int:
        """Drop the claims of every claimed request not in ``unfinished``; how many."""
        pending = set(unfinished)
        done = [request for request in self.claims if request not in pending]
        if done:
            with self.server.pipeline(transaction=False) as pipe:
                for request in done:
                    pipe.lrem(self.processing, 1, self.claims.pop(request))
                pipe.execute()
        return len(done)

    def release(self) -> int:
        """Return every claim still held to the queue; how many."""
        self.claims.clear()
        return requeue(self.server, self.processing, self.key)


def requeue(server: redis.Redis, source: str, queue: str) -> int:
    """Move every entry of list ``source`` to the popping end of ``queue``; how many."""
    moved = 0
    while server.lmove(source, queue, "RIGHT", "RIGHT") is not None:
        moved += 1
    return moved


def recover_dead_workers(server: redis.Redis, keys: RedisKeys) -> int:
    """Requeue the claims of workers whose heartbeat expired and forget them; requests moved.

    Safe to run from several processes at once: each claim is moved by one atomic ``LMOVE``.
    """
    moved = 0
    for raw in server.smembers(keys.workers):
        worker = to_unicode(raw)
        if server.exists(keys.heartbeat(worker)):
            continue
        moved += requeue(server, keys.processing(worker), keys.requests)
        server.srem(keys.workers, worker)
        if moved:
            logger.warning("worker %s stopped beating: %d request(s) requeued", worker, moved)
    return moved


def deployment_busy(server: redis.Redis, keys: RedisKeys) -> bool:
    """Whether any request is queued or claimed by a worker (live or dead) of the deployment."""
    if server.llen(keys.requests):
        return True
    workers = [to_unicode(raw) for raw in server.smembers(keys.workers)]
    return any(server.llen(keys.processing(worker)) for worker in workers)


# ---------------------------------------------------------------------------- scheduler


class ReliableScheduler(Scheduler):
    """The worker's scheduler: shared queue and duplicate filter, claims, heartbeat, idle exit.

    Settings: ``REDIS_URL``, ``DTMON_REDIS_DEPLOYMENT``, ``DTMON_WORKER_HEARTBEAT`` (seconds
    before a silent worker's claims are requeued), ``DTMON_WORKER_IDLE_EXIT`` (seconds without
    work in the deployment before the worker exits; 0 = wait for new seeds forever).
    """

    queue: ReliableQueue
    df: UrlKeyDupeFilter

    def __init__(self, crawler: Crawler) -> None:
        settings = crawler.settings
        server = connection.from_settings(settings)
        server.ping()
        super().__init__(server, persist=True)
        self.crawler = crawler
        self.stats = crawler.stats
        self.deployment = settings.get("DTMON_REDIS_DEPLOYMENT") or DEFAULT_DEPLOYMENT
        self.heartbeat_seconds = settings.getint("DTMON_WORKER_HEARTBEAT",
                                                 DEFAULT_HEARTBEAT_SECONDS)
        self.idle_exit = settings.getfloat("DTMON_WORKER_IDLE_EXIT")
        self.worker = f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:6]}"
        self._idle_since: float | None = None
        self._ticker = task.LoopingCall(self.tick)
        crawler.signals.connect(self.on_idle, signal=signals.spider_idle)

    @classmethod
    def from_crawler(cls, crawler: Crawler) -> ReliableScheduler:
        return cls(crawler)

    def open(self, spider: Spider) -> None:
        """Join the deployment: keys, queue, duplicate filter, heartbeat."""
        self.spider = spider
        self.keys = RedisKeys(self.deployment, spider.name)
        self.queue = ReliableQueue(self.server, spider, self.keys, self.worker)
        self.df = UrlKeyDupeFilter(self.server, self.keys.dupefilter,
                                   getattr(spider, "registry", None))
        self._beat()
        spider.logger.info("worker %s on %s: %d request(s) queued", self.worker,
                           self.keys.requests, len(self.queue))
        self._ticker.start(_TICK_SECONDS, now=False)

    def close(self, reason: str) -> None:
        """Leave the deployment: finished claims dropped, unfinished ones requeued."""
        if self._ticker.running:
            self._ticker.stop()
        self.queue.ack(self._in_progress())
        released = self.queue.release()
        if released:
            logger.info("worker %s: %d unfinished request(s) requeued", self.worker, released)
        self.server.delete(self.keys.heartbeat(self.worker))
        self.server.srem(self.keys.workers, self.worker)

    def enqueue_request(self, request: Request) -> bool:
        if request.dont_filter:
            self.queue.push(request)
            queued = True
        else:
            queued = self.queue.push_unseen(request, self.df.request_fingerprint(request))
        if queued and self.stats:
            self.stats.inc_value("scheduler/enqueued/redis", spider=self.spider)
        return queued

    def next_request(self) -> Request | None:
        request = self.queue.pop()
        if request is not None:
            self._idle_since = None
            if self.stats:
                self.stats.inc_value("scheduler/dequeued/redis", spider=self.spider)
        return request

    def tick(self) -> None:
        """Every half second: heartbeat, drop finished claims, recover dead workers' claims,
        and wake the engine when the shared queue has work (the engine itself only looks every
        five seconds once its own requests are done)."""
        self._beat()
        self.queue.ack(self._in_progress())
        recover_dead_workers(self.server, self.keys)
        if self.has_pending_requests():
            self._engine_slot().nextcall.schedule()

    def on_idle(self) -> None:
        """Keep the spider open while the deployment has work, or until the idle exit time."""
        self.tick()
        if deployment_busy(self.server, self.keys):
            self._idle_since = None
            raise DontCloseSpider
        now = time.monotonic()
        self._idle_since = self._idle_since or now
        if self.idle_exit <= 0 or now - self._idle_since < self.idle_exit:
            raise DontCloseSpider
        self.spider.logger.info("worker %s: no work for %.0f s, exiting", self.worker,
                                self.idle_exit)

    def _beat(self) -> None:
        with self.server.pipeline(transaction=False) as pipe:
            pipe.set(self.keys.heartbeat(self.worker), str(time.time()),
                     ex=self.heartbeat_seconds)
            pipe.sadd(self.keys.workers, self.worker)
            pipe.execute()

    def _engine_slot(self) -> Any:
        # Scrapy has no public "request finished" signal: a request taken from the scheduler
        # stays in the engine slot's ``inprogress`` set until it is downloaded, its callback's
        # items have passed the pipelines and its follow-up requests are queued.
        return self.crawler.engine._slot

    def _in_progress(self) -> set[Request]:
        slot = self._engine_slot()
        return set(slot.inprogress) if slot is not None else set()


class NoStartRequests:
    """Spider middleware of workers: the seeder queues start requests, workers never do."""

    async def process_start(self, start: AsyncIterator[Any]) -> AsyncIterator[Any]:
        return
        yield  # an (empty) async generator


# ---------------------------------------------------------------------------- seeding


@dataclass(frozen=True)
class SeedResult:
    """What one seeding queued: ``queued`` new requests, ``skipped`` already seen this round."""

    queued: int
    skipped: int
    new_round: bool
    recovered: int


def seed_requests(
    redis: str = DEFAULT_REDIS_URL,
    deployment: str = DEFAULT_DEPLOYMENT,
    sources: Sequence[str] = (),
    sources_files: Sequence[Path] = (),
) -> SeedResult:
    """Queue the feeds, sitemaps and listing pages of ``sources`` (default: all) for workers.

    When nothing is queued or claimed in the deployment this starts a new round (the previous
    round's duplicate filter is cleared); otherwise only start requests not yet seen are added.
    """
    from crawler.spiders.news import NewsSpider  # the spider module imports the extractors

    spider = NewsSpider(sources=list(sources), sources_file=[str(p) for p in sources_files])
    server = connection.get_redis(url=redis)
    keys = RedisKeys(deployment, spider.name)
    recovered = recover_dead_workers(server, keys)
    new_round = not deployment_busy(server, keys)
    if new_round:
        server.delete(keys.dupefilter)
    queue = ReliableQueue(server, spider, keys, worker="seeder")
    dupefilter = UrlKeyDupeFilter(server, keys.dupefilter, spider.registry)
    requests = asyncio.run(_collect(spider.start()))
    queued = sum(queue.push_unseen(request, dupefilter.request_fingerprint(request))
                 for request in requests)
    return SeedResult(queued, len(requests) - queued, new_round, recovered)


async def _collect(requests: AsyncIterator[Request]) -> list[Request]:
    return [request async for request in requests]


def clear_deployment(redis: str, deployment: str, spider: str = "news") -> int:
    """Delete every key of ``deployment`` (queue, filter, claims, heartbeats); how many."""
    server = connection.get_redis(url=redis)
    names = list(server.scan_iter(match=f"{RedisKeys(deployment, spider).base}:*"))
    return server.delete(*names) if names else 0
