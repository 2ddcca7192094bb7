"""The crawl benchmark's baseline: a bare Scrapy spider over the same article pages.

``scrapy runspider bench/plain_spider.py -a urls=FILE -a work=fetch|trafilatura -a out=FILE``
requests every URL of ``FILE`` (one per line) through the same download handler as dtmon
(``--via``), with none of dtmon's middlewares, pipelines or storage. Its callback does nothing
(``fetch``) or runs plain ``trafilatura.extract`` on the body (``trafilatura``). At the end it
writes ``{"responses": N, "last_response": EPOCH_SECONDS}`` to ``out``: what one Scrapy process
costs before any of dtmon's own work, measured on the same machine in the same run.
"""

from __future__ import annotations

import json
import time
from collections.abc import AsyncIterator
from pathlib import Path

import scrapy
import trafilatura
from scrapy.http import Response

WORKS = ("fetch", "trafilatura")


class PlainSpider(scrapy.Spider):
    """Fetch a list of URLs; optionally extract each page with plain trafilatura."""

    name = "plain"
    # dtmon's download handler (DTMON_VIA) and concurrency, but none of its components.
    custom_settings = {"ITEM_PIPELINES": {}, "SPIDER_MIDDLEWARES": {},
                       "DOWNLOADER_MIDDLEWARES": {}, "LOG_LEVEL": "WARNING"}

    def __init__(self, urls: str, work: str, out: str, **kwargs: object) -> None:
        super().__init__(**kwargs)
        if work not in WORKS:
            raise ValueError(f"work must be one of {WORKS}, not {work!r}")
        self.url_file, self.work, self.out = Path(urls), work, Path(out)
        self.responses, self.last_response = 0, 0.0

    async def start(self) -> AsyncIterator[scrapy.Request]:
        for url in self.url_file.read_text("utf-8").split():
            yield scrapy.Request(url, callback=self.parse)

    def parse(self, response: Response) -> None:
        if self.work == "trafilatura":
            trafilatura.extract(response.body, url=response.url)
        self.responses += 1
        self.last_response = time.time()

    def closed(self, reason: str) -> None:
        self.out.write_text(json.dumps({"responses": self.responses,
                                        "last_response": self.last_response}), "utf-8")
