"""Incremental crawling: conditional requests for feeds, sitemaps and listing pages.

:class:`ConditionalRequestMiddleware` (a spider middleware) adds ``If-None-Match`` /
``If-Modified-Since`` from the ``fetch_state`` table to every GET request the spider marks with
``meta["dtmon_conditional"]``. A ``304 Not Modified`` answer reaches the request's errback as an
``HttpError`` (the spider counts it as ``not_modified`` and follows nothing from it).

The validators of a ``200`` answer are remembered only once the spider callback has consumed
the page completely, and written to the database when the crawl closes, for the sources whose
feeds, sitemaps and listing pages all read without error (``spider.discovery_failed``). Every
article such a page linked is then either stored or owed (crawler/spiders/news.py), so a 304
next time hides nothing: a failed article fetch does not cost the validators. A crawl stopped
early (SIGTERM, Ctrl-C) keeps them only for the sources whose feed, sitemap and listing
requests were all answered (``spider.discovery_unfinished``: a next listing page never read
must not hide behind a 304); a crash or a kill saves none (the next crawl refetches the
pages; their stored articles are skipped anyway).

Settings: ``DTMON_DATABASE_URL``; ``DTMON_REFRESH`` (send no conditional headers).
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator, Iterable
from dataclasses import dataclass
from typing import Any

from scrapy import Request, Spider, signals
from scrapy.crawler import Crawler
from scrapy.http import Response
from scrapy.spidermiddlewares.base import BaseSpiderMiddleware

from storage import repository
from storage.db import make_engine, session_factory, session_scope

logger = logging.getLogger(__name__)

CONDITIONAL = "dtmon_conditional"


@dataclass(frozen=True)
class Validators:
    """The validators a processed page was answered with."""

    source: str
    url: str
    etag: str | None
    last_modified: str | None


class ConditionalRequestMiddleware(BaseSpiderMiddleware):
    """Send conditional requests for marked pages; save validators of fully processed pages."""

    def __init__(self, crawler: Crawler) -> None:
        super().__init__(crawler)
        settings = crawler.settings
        self.engine = make_engine(settings.get("DTMON_DATABASE_URL") or None)
        self.sessions = session_factory(self.engine)
        self.refresh = settings.getbool("DTMON_REFRESH")
        self.processed: list[Validators] = []

    @classmethod
    def from_crawler(cls, crawler: Crawler) -> ConditionalRequestMiddleware:
        middleware = cls(crawler)
        crawler.signals.connect(middleware.spider_closed, signal=signals.spider_closed)
        return middleware

    def get_processed_request(self, request: Request, response: Response | None
                              ) -> Request | None:
        """Add the saved validators of a marked GET request's URL as conditional headers."""
        if self.refresh or not request.meta.get(CONDITIONAL) or request.method != "GET":
            return request
        with self.sessions() as session:
            etag, last_modified = repository.get_validators(session, request.url)
        if etag:
            request.headers.setdefault("If-None-Match", etag)
        if last_modified:
            request.headers.setdefault("If-Modified-Since", last_modified)
        return request

    def process_spider_output(self, response: Response | None, result: Iterable[Any],
                              spider: Spider | None = None) -> Iterable[Any]:
        yield from super().process_spider_output(response, result)
        self._processed(response)

    async def process_spider_output_async(self, response: Response | None,
                                          result: AsyncIterator[Any],
                                          spider: Spider | None = None) -> AsyncIterator[Any]:
        async for output in super().process_spider_output_async(response, result):
            yield output
        self._processed(response)

    def _processed(self, response: Response | None) -> None:
        """The callback of ``response`` ran to its end: its validators may be kept."""
        if response is None or response.status != 200 or not response.meta.get(CONDITIONAL):
            return
        etag, last_modified = _header(response, b"ETag"), _header(response, b"Last-Modified")
        if etag or last_modified:
            self.processed.append(Validators(response.meta.get("dtmon_source", ""),
                                             response.url, etag, last_modified))

    def spider_closed(self, spider: Spider, reason: str) -> None:
        """Save the validators of the pages read, except for sources whose discovery pages
        had errors and, when the crawl stopped early, sources with discovery pages unread."""
        try:
            skipped: set[str] = set(getattr(spider, "discovery_failed", set()))
            if reason != "finished":
                skipped |= getattr(spider, "discovery_unfinished", set())
            kept = [v for v in self.processed if v.source not in skipped]
            with session_scope(self.sessions) as session:
                for validators in kept:
                    repository.save_validators(session, validators.url, validators.etag,
                                               validators.last_modified)
            logger.info("crawl ended (%s): saved validators of %d page(s) (%d skipped)",
                        reason, len(kept), len(self.processed) - len(kept))
        finally:
            self.engine.dispose()


def _header(response: Response, name: bytes) -> str | None:
    value = response.headers.get(name)
    return value.decode("latin-1") if value else None
