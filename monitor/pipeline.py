"""The storage pipeline: every scraped article goes to the database through monitor.ingest,
and the crawl run's per-source counters are kept there too, so that `dtmon crawl` can show
progress and a run record says what happened.

It lives in monitor, above the crawler: crawler/settings.py names it by its dotted path in
``ITEM_PIPELINES``, so the crawler never imports monitor."""

from __future__ import annotations

import logging
import os
import socket
import threading
from collections.abc import Collection
from datetime import timedelta
from typing import Any

from scrapy import Spider, signals
from scrapy.crawler import Crawler
from scrapy.exceptions import DropItem
from scrapy.utils.defer import deferred_from_coro
from sqlalchemy.orm import Session, sessionmaker
from twisted.internet import task, threads
from twisted.internet.defer import Deferred

from crawler.items import ArticleItem
from crawler.processes import spawn_pool
from crawler.sources import Registry
from crawler.urls import url_key
from monitor.alerts import ALERTS_SETTING, load_rules
from monitor.storing import StoreJob, start_writer, store_jobs
from monitor.topics import load_topics
from monitor.writer import GroupWriter, StoreFailed
from storage import repository
from storage.db import StorageError, init_db, make_engine, session_factory, session_scope
from storage.repository import OwedLink

logger = logging.getLogger(__name__)

# Counters the spider and this pipeline keep in the crawler stats (``dtmon/<source>/<name>``)
# that have their own column in the run record; all of them are also copied into its ``stats``
# JSON, every _FLUSH_SECONDS and when the crawl ends.
_COLUMN_COUNTERS = ("pages_fetched", "not_modified", "articles_new", "articles_seen", "errors")
_FLUSH_SECONDS = 1.0
PARENT_GONE = "parent_gone"


class StoragePipeline:
    """Stores articles (once each) and records the crawl run in the database.

    Settings: ``DTMON_DATABASE_URL`` (default: :func:`storage.db.database_url`),
    ``DTMON_RUN_ID`` (the run record to fill; a new one is made when absent, as for a plain
    ``scrapy crawl news``), ``DTMON_REFRESH`` (refetch articles already stored),
    ``DTMON_ALERTS`` (alert rules file; default ``config/alerts.yaml``),
    ``DTMON_OWED_MAX_ATTEMPTS`` / ``DTMON_OWED_BACKOFF_SECONDS`` (when owed articles are fetched
    again and given up, see :class:`storage.repository.OwedPolicy`).

    It is also the spider's owed-article ledger (``spider.owed``), kept in ``owed_articles``:
    an article stored is settled in the transaction that stores it; one that fails to store
    (any exception) is an error of its source and owed.
    """

    def __init__(self, crawler: Crawler) -> None:
        settings = crawler.settings
        self.crawler = crawler
        self.engine = make_engine(settings.get("DTMON_DATABASE_URL") or None)
        init_db(self.engine)
        self.sessions: sessionmaker[Session] = session_factory(self.engine)
        # Read now so that a bad topics or alerts file stops the crawl before it starts; the
        # writer process reads its own copies.
        load_topics()
        load_rules(settings.get(ALERTS_SETTING) or None)
        self.refresh = settings.getbool("DTMON_REFRESH")
        self.run_id: int | None = settings.getint("DTMON_RUN_ID") or None
        self.owns_run = self.run_id is None
        # A run started by `dtmon crawl` or the daemon: that process finishes it, and when it
        # dies (kill -9) the crawl stops rather than go on alone.
        self.parent_pid = None if self.owns_run else os.getppid()
        self.policy = repository.OwedPolicy(
            max_attempts=settings.getint("DTMON_OWED_MAX_ATTEMPTS", 8),
            backoff=timedelta(seconds=settings.getfloat("DTMON_OWED_BACKOFF_SECONDS", 900)))
        self._flusher = task.LoopingCall(self.flush_stats)
        self._stats_lock = threading.Lock()
        self._stats_final = False
        # What was last written of each source: (counters, errors).
        self._written: dict[str, tuple[dict[str, int], list[str]]] = {}

    @classmethod
    def from_crawler(cls, crawler: Crawler) -> StoragePipeline:
        pipeline = cls(crawler)
        crawler.signals.connect(pipeline.spider_opened, signal=signals.spider_opened)
        crawler.signals.connect(pipeline.spider_closed, signal=signals.spider_closed)
        return pipeline

    def spider_opened(self, spider: Spider) -> None:
        """Start the run record, teach the spider what is stored, flush stats periodically."""
        if self.owns_run:
            with session_scope(self.sessions) as session:
                self.run_id = repository.start_run(session, trigger="scrapy", pid=os.getpid(),
                                                   host=socket.gethostname()).id
        if not self.refresh:
            spider.known_url_keys = self.stored_keys
        spider.owed = self
        settings = self.crawler.settings
        url = self.engine.url.render_as_string(hide_password=False)
        self.writer = GroupWriter(
            spawn_pool(1, start_writer, (url, settings.get(ALERTS_SETTING) or None)),
            store_jobs, batch=settings.getint("DTMON_STORE_BATCH", 50),
            wait=settings.getfloat("DTMON_STORE_BATCH_MS", 250) / 1000)
        self._flusher.start(_FLUSH_SECONDS, now=True)

    def stored_keys(self, url_keys: Collection[str]) -> set[str]:
        """Those of ``url_keys`` whose article is already in the database."""
        if not url_keys:
            return set()
        with self.sessions() as session:
            return repository.known_url_keys(session, url_keys)

    def due(self, source: str, limit: int) -> list[OwedLink]:
        """The owed articles of ``source`` to fetch again now (the spider's ledger)."""
        with session_scope(self.sessions) as session:
            due = repository.due_owed(session, source, limit)
            stored = repository.known_url_keys(session, [owed.url_key for owed in due])
            repository.settle_owed(session, stored)  # stored meanwhile by another crawl
            return [OwedLink(source, owed.url, owed.url_key, owed.found_on)
                    for owed in due if owed.url_key not in stored]

    def owe(self, links: list[OwedLink], error: str, attempted: bool) -> None:
        """Record ``links`` as owed (the spider's ledger); a database failure is logged."""
        try:
            with session_scope(self.sessions) as session:
                rows = repository.owe_articles(session, links, error=error, attempted=attempted,
                                               policy=self.policy)
                given_up = [(row.source_name, row.url, row.attempts) for row in rows
                            if row.state == "gave_up"]
        except Exception as exc:  # noqa: BLE001 - e.g. the disk is full: say what is lost
            logger.error("cannot record %d owed article(s), e.g. %s (%s): %s", len(links),
                         links[0].url, error, exc)
            return
        for source, url, attempts in given_up:
            logger.warning("[%s] gave up on %s after %d attempts: %s", source, url, attempts,
                           error)

    async def process_item(self, item: Any) -> Any:
        """Store one article with its topic result and story (by the writer, in its group's
        transaction), counting it new or seen once that transaction committed, and settle it
        in the owed list. Any failure: an error of its source, the article owed."""
        if not isinstance(item, ArticleItem):
            return item
        spider = self.crawler.spider
        data = article_data(item, spider.registry)
        job = StoreJob(data, item.get("analysis"),
                       {data.url_key, *(url_key(url, spider.registry) for url in data.urls)})
        try:
            stored = await self.writer.store(job)
        except StorageError as exc:
            self._stop_crawl(f"cannot store {data.url}: {exc}")
            spider.owe_item(item, f"not stored, {exc}: {data.url}")
            raise DropItem(str(exc)) from exc
        except StoreFailed as exc:
            message = f"not stored, {exc}: {data.url}"
            spider.owe_item(item, message)
            raise DropItem(message) from exc
        result = stored.result
        counter = "articles_new" if result.created else "articles_seen"
        self.crawler.stats.inc_value(f"dtmon/{data.source_name}/{counter}")
        self.crawler.stats.inc_value(f"dtmon/{data.source_name}/store_us",
                                     round(stored.seconds * 1e6))
        if not result.created:
            raise DropItem(f"already stored: {data.url}")
        logger.info("[%s] stored article %d (%s): %s", data.source_name, result.article_id,
                    "relevant" if result.relevant else "not relevant", data.url)
        return item

    def flush_stats(self) -> Deferred | None:
        """Copy the spider's per-source counters and errors into the run record, in a thread
        (a write may wait for the writer's group to commit: the event loop does not)."""
        spider = self.crawler.spider
        if spider is None or self.run_id is None:
            return None
        if self.parent_pid is not None and os.getppid() != self.parent_pid:
            self.parent_pid = None
            self._stop_crawl("the dtmon process that started this crawl is gone",
                             reason=PARENT_GONE)
        return threads.deferToThread(self._write_stats, *self._stats_now(spider))

    def _stats_now(self, spider: Spider) -> tuple[dict[str, dict[str, int]],
                                                  dict[str, list[str]]]:
        """The per-source counters and error messages as they are now (copies)."""
        errors: dict[str, list[str]] = getattr(spider, "source_errors", {})
        return (_source_counters(self.crawler.stats.get_stats()),
                {name: list(messages) for name, messages in errors.items()})

    def _write_stats(self, counters: dict[str, dict[str, int]],
                     errors: dict[str, list[str]], final: bool = False) -> None:
        """Write counters; once the final ones are written, a late periodic write is not."""
        with self._stats_lock:
            if not self._stats_final:
                self._write_source_stats(counters, errors)
            self._stats_final = self._stats_final or final

    def _write_source_stats(self, counters: dict[str, dict[str, int]],
                            errors: dict[str, list[str]]) -> None:
        """Write the sources whose counters or errors changed since the last write (a crawl of
        many sources rewrote them all every second, on the event loop's GIL)."""
        changed = {name: (counters.get(name, {}), errors.get(name, []))
                   for name in set(counters) | set(errors)}
        changed = {name: state for name, state in changed.items()
                   if self._written.get(name) != state}
        if not changed:
            return
        with session_scope(self.sessions) as session:
            records = repository.run_sources(session, self._run())
            for name in sorted(changed):
                values, messages = changed[name]
                record = records.get(name) or repository.source_stats(session, self._run(), name)
                for column in _COLUMN_COUNTERS:
                    setattr(record, column, values.get(column, 0))
                record.stats = values
                record.error_messages = messages
        self._written.update(changed)

    def spider_closed(self, spider: Spider, reason: str) -> None:
        """Write the final counters and record whether the crawl ended as it should.

        A run this pipeline started is finished here; a run started by `dtmon crawl` is only
        marked ``failed`` (its parent finishes it) when the crawl was cut short.
        """
        if self._flusher.running:
            self._flusher.stop()
        self.writer.close()
        status = "ok" if reason == "finished" else "failed"
        with session_scope(self.sessions) as session:
            if self.run_id is not None:
                self._write_stats(*self._stats_now(spider), final=True)
            if self.owns_run or reason == PARENT_GONE:
                repository.finish_run(session, self._run(), status)
            elif status == "failed":
                repository.mark_run(session, self._run(), status)
        self.engine.dispose()

    def _stop_crawl(self, message: str, reason: str = "storage_error") -> None:
        """Stop the crawl: storage is failing (disk full, read-only…), rather than drop every
        article; or its parent process is gone."""
        logger.error("%s; stopping the crawl", message)
        engine = self.crawler.engine
        if engine is not None:
            deferred_from_coro(engine.close_spider_async(reason=reason))

    def _run(self) -> int:
        assert self.run_id is not None, "the run record is created when the spider opens"
        return self.run_id


def article_data(item: ArticleItem, registry: Registry) -> repository.ArticleData:
    """The storage record of a scraped article item (``registry`` gives its URL identity)."""
    return repository.ArticleData(
        source_name=item["source"],
        province=item.get("province"),
        url=item["url"],
        url_key=url_key(item["url"], registry),
        urls=list(item.get("urls") or []),
        title=item.get("title") or "",
        text=item.get("text") or "",
        published=item.get("published"),
        author=item.get("author"),
        original_source=item.get("original_source"),
        tags=list(item.get("tags") or []),
        language=item.get("language"),
        raw_html=item.get("raw_html") or b"",
        fetched_at=item.get("fetched_at"),
    )


def _source_counters(stats: dict[str, Any]) -> dict[str, dict[str, int]]:
    counters: dict[str, dict[str, int]] = {}
    for key, value in stats.items():
        parts = key.split("/")
        if len(parts) == 3 and parts[0] == "dtmon" and isinstance(value, int):
            counters.setdefault(parts[1], {})[parts[2]] = value
    return counters
