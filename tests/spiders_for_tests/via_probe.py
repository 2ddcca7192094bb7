"""A probe spider for tests of the --via contract: report what each response looks like.

``-a requests='[{"url": "...", "formdata": {...}}, ...]'`` (formdata = POST that form).
Each item: the requested URL, the response's URL, status, redirect chain and first characters.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import scrapy
from scrapy.http import Response


class ViaProbeSpider(scrapy.Spider):
    name = "via_probe"

    def __init__(self, requests: str = "[]", **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.planned = json.loads(requests)

    async def start(self) -> Any:
        for plan in self.planned:
            if "formdata" in plan:
                yield scrapy.FormRequest(plan["url"], formdata=plan["formdata"], dont_filter=True)
            else:
                yield scrapy.Request(plan["url"], dont_filter=True)

    def parse(self, response: Response) -> Iterator[dict[str, Any]]:
        yield {
            "method": response.request.method,
            "request_url": response.request.url,
            "url": response.url,
            "status": response.status,
            "redirect_urls": response.meta.get("redirect_urls", []),
            "text_start": response.text[:200],
        }
