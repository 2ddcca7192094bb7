"""`dtmon worker`: one crawl worker of a distributed deployment (see crawler/distributed.py)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
from redis import Redis
from redis.exceptions import RedisError

from crawler.distributed import (
    DEFAULT_DEPLOYMENT,
    DEFAULT_HEARTBEAT_SECONDS,
    redis_url,
    worker_settings,
)
from monitor.cli.common import fail
from monitor.cli.crawl import _crawl_with_progress, _load_registry, exit_code
from monitor.crawling import CrawlOptions

RedisOption = Annotated[str | None, typer.Option(
    "--redis", help="Redis server of the deployment (default: $DTMON_REDIS_URL, else "
                    "redis://127.0.0.1:6379).")]
DeploymentOption = Annotated[str, typer.Option(
    "--deployment", help="Name of the deployment: the prefix of its Redis keys.")]


def worker(
    via: Annotated[str | None, typer.Option(
        "--via", help="Send every request to this mirror server (e.g. http://127.0.0.1:8765).")]
    = None,
    redis: RedisOption = None,
    deployment: DeploymentOption = DEFAULT_DEPLOYMENT,
    sources: Annotated[list[Path] | None, typer.Option(
        "--sources", help="Extra YAML file of sources (repeatable): the same files as the "
                          "seeding `dtmon crawl --distributed --sources`.")] = None,
    idle_exit: Annotated[float, typer.Option(
        help="Exit after this many seconds with nothing queued or in progress anywhere in the "
             "deployment (0: keep waiting for the next seeding).")] = 0,
    heartbeat: Annotated[int, typer.Option(
        help="Seconds of silence after which another worker requeues this one's requests.")]
    = DEFAULT_HEARTBEAT_SECONDS,
    refresh: Annotated[bool, typer.Option(
        "--refresh", help="Refetch articles that are already stored.")] = False,
) -> None:
    """Crawl the requests of a distributed deployment from its shared Redis queue.

    Start any number of workers, on any machines sharing the Redis server and the database
    (DTMON_DATABASE_URL, e.g. PostgreSQL); `dtmon crawl --distributed` (or the daemon) seeds
    each round. A worker that dies loses no request: once its heartbeat expires another worker
    requeues what it had taken, and storage keeps every article once.
    """
    server = redis or redis_url()
    check_redis(server)
    _load_registry(sources or [])
    settings = worker_settings(server, deployment, idle_exit=idle_exit, heartbeat=heartbeat)
    outcome = _crawl_with_progress(CrawlOptions(
        sources_files=sources or [], via=via, refresh=refresh, trigger="worker",
        extra_settings=settings))
    if outcome.status != "ok":
        raise typer.Exit(exit_code(outcome.status))


def check_redis(url: str) -> None:
    """Exit with a clear message when the Redis server at ``url`` does not answer."""
    try:
        with Redis.from_url(url, socket_connect_timeout=5) as client:
            client.ping()
    except (RedisError, ValueError) as exc:
        fail(f"cannot reach Redis at {url}: {exc}")
