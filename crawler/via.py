"""The ``--via`` contract: fetch every real URL from a mirror server instead of the live web.

With the setting ``DTMON_VIA`` = ``http://127.0.0.1:8765``, a request for
``SCHEME://HOST/PATH?QUERY`` is sent to ``http://127.0.0.1:8765/PATH?QUERY`` with the headers
``X-Original-Scheme: SCHEME`` and ``X-Original-Host: HOST`` (same method, body and other headers).
The response comes back with the real URL and the original request, so middlewares (robots.txt,
redirects, cookies), download slots, spiders and items only ever see real URLs. With
``DTMON_VIA`` empty, requests go to the live web through Scrapy's HTTP/1.1 handler.
"""

from __future__ import annotations

from typing import TYPE_CHECKING
from urllib.parse import urlsplit

from scrapy.core.downloader.handlers.http11 import HTTP11DownloadHandler
from scrapy.utils.misc import build_from_crawler

if TYPE_CHECKING:
    from typing import Self

    from scrapy import Request
    from scrapy.crawler import Crawler
    from scrapy.http import Response

SCHEME_HEADER = "X-Original-Scheme"
HOST_HEADER = "X-Original-Host"


def parse_via(value: str | None) -> str | None:
    """The mirror base URL from a ``DTMON_VIA`` value (None when empty); ValueError if invalid."""
    value = (value or "").strip()
    if not value:
        return None
    parts = urlsplit(value)
    if parts.scheme not in ("http", "https") or not parts.hostname or parts.query or parts.fragment:
        raise ValueError(
            f"DTMON_VIA={value!r} is not a mirror address: expected http(s)://HOST[:PORT], "
            f"e.g. http://127.0.0.1:8765"
        )
    try:
        parts.port  # noqa: B018 (validates the port)
    except ValueError as exc:
        raise ValueError(f"DTMON_VIA={value!r} has an invalid port: {exc}") from exc
    return value.rstrip("/")


def mirror_request(request: Request, via: str) -> Request:
    """The request to send to the mirror ``via`` for the real ``request``."""
    real = urlsplit(request.url)
    target = f"{via}{real.path or '/'}" + (f"?{real.query}" if real.query else "")
    headers = request.headers.copy()
    headers[SCHEME_HEADER] = real.scheme
    headers[HOST_HEADER] = real.netloc
    # The mirror is reached directly, never through a proxy configured for the live web.
    headers.pop(b"Proxy-Authorization", None)
    meta = {key: value for key, value in request.meta.items() if key != "proxy"}
    return request.replace(url=target, headers=headers, meta=meta)


class ViaDownloadHandler:
    """Download handler for http/https honouring ``DTMON_VIA`` (see the module docstring)."""

    lazy = False

    def __init__(self, crawler: Crawler) -> None:
        self.via = parse_via(crawler.settings.get("DTMON_VIA"))
        self._http = build_from_crawler(HTTP11DownloadHandler, crawler)

    @classmethod
    def from_crawler(cls, crawler: Crawler) -> Self:
        """Build the handler from the crawler's settings (invalid ``DTMON_VIA`` → ValueError)."""
        return cls(crawler)

    async def download_request(self, request: Request) -> Response:
        """Fetch ``request`` from the live web, or from the mirror under its real URL."""
        if self.via is None:
            return await self._http.download_request(request)
        response = await self._http.download_request(mirror_request(request, self.via))
        return response.replace(url=request.url, request=request)

    async def close(self) -> None:
        """Close the pooled connections."""
        await self._http.close()
