"""Article extraction off the crawl's event loop: a pool of extraction processes.

Extracting an article page (:func:`crawler.extraction.extract_article`, several milliseconds of
CPU) and what the project computes from its text alone run in ``DTMON_EXTRACT_WORKERS`` worker
processes, so that the event loop only fetches pages and reads their links, and a machine's
other cores work too. Settings:

* ``DTMON_EXTRACT_WORKERS``: how many processes; ``-1`` (the default) is one per core besides
  the event loop's (at least one), ``0`` extracts in the event loop itself (tests, one core).
* ``DTMON_ARTICLE_ANALYSIS``: a dotted path to a function ``(title, text) -> picklable`` run in
  the worker after a non-empty extraction; its result travels with the item (``analysis``).
  dtmon's is :func:`monitor.analysis.analyse_article` (topic result and dedup fingerprint): the
  crawler names it and never imports it, as Scrapy names its pipelines.

At most ``4 × workers`` pages wait for a worker: the callbacks awaiting them keep their responses
in Scrapy's scraper slot, whose size limit stops the downloads (Scrapy's own back-pressure).

Workers are helper processes (crawler/processes.py: spawned, ignoring SIGINT, gone with their
parent) and are shut down when the spider closes.
"""

from __future__ import annotations

import asyncio
import importlib
import logging
import os
import time
from collections.abc import Callable
from concurrent.futures import ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from crawler.extraction import Article, extract_article
from crawler.processes import spawn_pool

if TYPE_CHECKING:  # Scrapy stays out of the worker processes
    from scrapy.crawler import Crawler

logger = logging.getLogger(__name__)

WORKERS_SETTING = "DTMON_EXTRACT_WORKERS"
ANALYSIS_SETTING = "DTMON_ARTICLE_ANALYSIS"
_PENDING_PER_WORKER = 4

Analysis = Callable[[str, str], Any]


@dataclass(frozen=True)
class Extracted:
    """An extracted page, its analysis (``None`` when empty or none is configured) and the
    seconds each step took in the process that ran it."""

    article: Article
    analysis: Any
    extract_seconds: float
    analyse_seconds: float


def extract(body: bytes, url: str, encoding: str | None, analyse: Analysis | None) -> Extracted:
    """Extract ``body`` and analyse its text (``analyse``) when it has some."""
    started = time.perf_counter()
    article = extract_article(body, url, encoding=encoding)
    extracted = time.perf_counter()
    analysis = analyse(article.title, article.text) if analyse and not article.is_empty else None
    return Extracted(article, analysis, extracted - started, time.perf_counter() - extracted)


def load_function(path: str) -> Analysis:
    """The function at dotted ``path`` (``package.module.name``)."""
    module, _, name = path.rpartition(".")
    return getattr(importlib.import_module(module), name)


def default_workers() -> int:
    """One worker per core besides the event loop's, at least one."""
    return max(1, (os.cpu_count() or 1) - 1)


class ArticleExtractor:
    """Extracts article pages in a process pool (or in the event loop with 0 workers)."""

    def __init__(self, workers: int, analysis_path: str = "") -> None:
        self.workers = default_workers() if workers < 0 else workers
        self.analysis_path = analysis_path
        # Workers load the analysis themselves: the event loop loads it only to run it.
        self._analyse: Analysis | None = (load_function(analysis_path)
                                          if analysis_path and not self.workers else None)
        self._executor: ProcessPoolExecutor | None = None
        self._slots: asyncio.Semaphore | None = None

    @classmethod
    def from_crawler(cls, crawler: Crawler) -> ArticleExtractor:
        """The extractor of a crawl, shut down when its spider closes."""
        from scrapy import signals

        settings = crawler.settings
        extractor = cls(settings.getint(WORKERS_SETTING, -1), settings.get(ANALYSIS_SETTING, ""))
        crawler.signals.connect(extractor.start, signal=signals.spider_opened)
        crawler.signals.connect(extractor.close, signal=signals.spider_closed)
        return extractor

    def start(self) -> None:
        """Start the worker processes now (else the first page waits for their start)."""
        if self.workers:
            self._pool()

    async def extract(self, body: bytes, url: str, encoding: str | None) -> Extracted:
        """The page extracted and analysed, in a worker process when there are workers."""
        if not self.workers:
            return extract(body, url, encoding, self._analyse)
        if self._slots is None:
            self._slots = asyncio.Semaphore(self.workers * _PENDING_PER_WORKER)
        async with self._slots:
            try:
                return await asyncio.wrap_future(
                    self._pool().submit(_extract_in_worker, body, url, encoding))
            except BrokenProcessPool:  # a worker died (killed, out of memory): start anew
                logger.error("an extraction process died; starting the pool again")
                self._discard_pool()
                raise

    def close(self) -> None:
        """Stop the worker processes (pages still queued are not extracted)."""
        if self._executor is not None:
            self._executor.shutdown(wait=True, cancel_futures=True)
            self._executor = None

    def _pool(self) -> ProcessPoolExecutor:
        if self._executor is None:
            self._executor = spawn_pool(self.workers, _start_worker, (self.analysis_path,))
        return self._executor

    def _discard_pool(self) -> None:
        executor, self._executor = self._executor, None
        if executor is not None:
            executor.shutdown(wait=False, cancel_futures=True)


# --- inside a worker process ----------------------------------------------------------------

_worker_analyse: Analysis | None = None


def _start_worker(analysis_path: str) -> None:
    global _worker_analyse
    _worker_analyse = load_function(analysis_path) if analysis_path else None


def _extract_in_worker(body: bytes, url: str, encoding: str | None) -> Extracted:
    return extract(body, url, encoding, _worker_analyse)
