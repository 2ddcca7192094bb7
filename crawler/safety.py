"""Defences against a hostile web: where the crawler may go, how it retries, what it parses.

- :class:`HostGuardMiddleware`: every request of a source (redirects included) must stay on
  that source's hosts; IP literals and loopback/private names only when the source lists them.
  (``DTMON_VIA`` is not affected: it rewrites the transport below the middlewares.)
- :class:`BackoffRetryMiddleware`: Scrapy's bounded retries, waiting before each retry:
  ``Retry-After`` when the server sends one (up to ``DTMON_RETRY_AFTER_MAX`` seconds; longer
  means give up for this crawl), else exponential backoff from ``DTMON_RETRY_BACKOFF_BASE``.
- :func:`xml_entity_refusal`: feeds and sitemaps declaring XML entities are refused
  (defusedxml), so neither "billion laughs" nor external entities reach a parser.
- :func:`gunzip_capped`: decompression stops at ``DOWNLOAD_MAXSIZE``.
- :func:`not_an_article_reason`: a page that is really the site's home or a listing page.
- :func:`truncation_reason`: a body cut short that the transport could not tell (a response
  without Content-Length ended by a closed connection, or text that stops mid-word). A body
  shorter than its Content-Length, or chunked without its last chunk, never gets this far:
  Scrapy fails it (``DOWNLOAD_FAIL_ON_DATALOSS``) and it is retried.
"""

from __future__ import annotations

import asyncio
import hashlib
import ipaddress
import logging
import re
from collections.abc import Callable, Collection
from datetime import UTC, datetime
from email.utils import parsedate_to_datetime
from urllib.parse import urlsplit
from xml.etree.ElementTree import ParseError

from defusedxml import DefusedXmlException
from defusedxml.ElementTree import fromstring as defused_fromstring
from scrapy import Request, Spider
from scrapy.crawler import Crawler
from scrapy.downloadermiddlewares.retry import RetryMiddleware
from scrapy.exceptions import IgnoreRequest
from scrapy.http import Response
from scrapy.settings import BaseSettings
from scrapy.utils.gz import gunzip

from crawler.sources import bare_host
from crawler.urls import declared_home, is_site_root

logger = logging.getLogger(__name__)

_LOCAL_NAMES = ("localhost", "localhost.localdomain", "ip6-localhost")
_CLOSING_MARKUP = re.compile(rb"</(?:body|html)\s*>", re.I)


class ForbiddenHost(IgnoreRequest):
    """A request (often a redirect) that would leave the hosts its source allows."""


def refused_host(url: str, allowed_hosts: Collection[str]) -> str | None:
    """Why ``url`` may not be fetched for a source on ``allowed_hosts``, or None if it may.

    A host the source lists is always allowed, even an IP literal: that is the source's
    config saying so. Anything else is refused, with the most telling reason.
    """
    try:
        parts = urlsplit(url)
        host = parts.hostname or ""
    except ValueError:
        return f"unparsable URL {url!r}"
    if parts.scheme not in ("http", "https"):
        return f"scheme {parts.scheme!r} is not http(s)"
    if bare_host(host) in {bare_host(h) for h in allowed_hosts}:
        return None
    if host in _LOCAL_NAMES or host.endswith(".localhost"):
        return f"loopback host {host!r}"
    try:
        address = ipaddress.ip_address(host)
    except ValueError:
        return f"host {host!r} is not one of the source's hosts"
    kind = "private or loopback" if not address.is_global else "literal"
    return f"{kind} IP address {host!r} is not one of the source's hosts"


class HostGuardMiddleware:
    """Downloader middleware: refuse requests of a source that leave the source's hosts.

    Runs before robots.txt, redirects and the download; the request's errback receives
    :class:`ForbiddenHost` (the spider reports it under the source).
    """

    def __init__(self, crawler: Crawler) -> None:
        self.crawler = crawler

    @classmethod
    def from_crawler(cls, crawler: Crawler) -> HostGuardMiddleware:
        return cls(crawler)

    def process_request(self, request: Request, spider: Spider | None = None) -> None:
        name = request.meta.get("dtmon_source")
        registry = getattr(self.crawler.spider, "registry", None)
        if name is None or registry is None:
            return
        reason = refused_host(request.url, registry.get(name).all_hosts)
        if reason is None:
            return
        via = " (redirected)" if request.meta.get("redirect_urls") else ""
        if self.crawler.stats is not None:
            self.crawler.stats.inc_value(f"dtmon/{name}/forbidden_hosts")
        raise ForbiddenHost(f"not followed{via}: {reason}: {request.url}")


class BackoffRetryMiddleware(RetryMiddleware):
    """Scrapy's RetryMiddleware (same codes, exceptions and RETRY_TIMES) with a wait before
    each retry; a ``Retry-After`` longer than ``DTMON_RETRY_AFTER_MAX`` is not retried."""

    def __init__(self, settings: BaseSettings) -> None:
        super().__init__(settings)
        self.retry_after_max = settings.getfloat("DTMON_RETRY_AFTER_MAX", 120.0)
        self.backoff_base = settings.getfloat("DTMON_RETRY_BACKOFF_BASE", 1.0)
        self.backoff_max = settings.getfloat("DTMON_RETRY_BACKOFF_MAX", 30.0)

    async def process_response(self, request: Request, response: Response,
                               spider: Spider | None = None) -> Request | Response:
        wait = retry_after_seconds(response.headers.get("Retry-After"))
        if wait is not None and wait > self.retry_after_max:
            logger.warning("Retry-After %.0f s exceeds %.0f s, not retried this crawl: %s",
                           wait, self.retry_after_max, request.url)
            return response
        result = super().process_response(request, response)
        if isinstance(result, Request):
            await asyncio.sleep(wait if wait is not None else self._backoff(result))
        return result

    async def process_exception(self, request: Request, exception: Exception,
                                spider: Spider | None = None) -> Request | Response | None:
        result = super().process_exception(request, exception)
        if isinstance(result, Request):
            await asyncio.sleep(self._backoff(result))
        return result

    def _backoff(self, retry: Request) -> float:
        attempt = max(int(retry.meta.get("retry_times", 1)), 1)
        return min(self.backoff_base * 2 ** (attempt - 1), self.backoff_max)


def retry_after_seconds(value: bytes | str | None, now: datetime | None = None) -> float | None:
    """Seconds to wait from a ``Retry-After`` value (delta-seconds or HTTP date); None if absent
    or unreadable. A date in the past means no wait."""
    if not value:
        return None
    text = value.decode("latin-1") if isinstance(value, bytes) else value
    text = text.strip()
    if text.isdigit():
        return float(text)
    try:
        when = parsedate_to_datetime(text)
    except (TypeError, ValueError, IndexError):
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    return max((when - (now or datetime.now(UTC))).total_seconds(), 0.0)


def xml_entity_refusal(body: bytes) -> str | None:
    """Why an XML document must not be parsed (it declares entities), or None.

    Malformed documents are left to the lenient parsers, which never expand entities.
    """
    try:
        defused_fromstring(body, forbid_dtd=False, forbid_entities=True, forbid_external=True)
    except DefusedXmlException as exc:
        return f"XML entity declarations refused ({type(exc).__name__})"
    except (ParseError, ValueError):
        return None
    return None


class DecompressionTooLarge(ValueError):
    """A compressed body inflating beyond the allowed size."""


def gunzip_capped(body: bytes, max_size: int) -> bytes:
    """``body`` gunzipped, DecompressionTooLarge beyond ``max_size`` bytes (0: no cap)."""
    try:
        return gunzip(body, max_size=max_size)
    except ValueError as exc:  # scrapy's _DecompressionMaxSizeExceeded
        raise DecompressionTooLarge(str(exc)) from exc


def not_an_article_reason(final_url: str, page_canonical: str | None,
                          is_listing: Callable[[str], bool], text_digest: str,
                          listing_digests: Collection[str]) -> str | None:
    """Why a page fetched for an article is the site's home or a listing page, else None.

    ``is_listing(url)`` tells the source's feeds, sitemaps and listing pages;
    ``listing_digests`` are the text digests of the listing pages read in this crawl.
    A page declaring the site root as its canonical is not judged here: many templates declare
    it on every page, so only a comparison with the home page's text tells (see
    :func:`crawler.urls.declared_home`).
    """
    if is_site_root(final_url):
        return f"home page (ended at {final_url})"
    declared = None if declared_home(final_url, page_canonical) else page_canonical
    for what, url in (("ended at", final_url), ("declares canonical", declared)):
        if url and is_listing(url):
            return f"listing page ({what} {url})"
    if text_digest in listing_digests:
        return "same text as a listing page of this source"
    return None


def text_digest(text: str) -> str:
    """A short fingerprint of an extracted text (whitespace-insensitive)."""
    return hashlib.blake2b(" ".join(text.split()).encode(), digest_size=12).hexdigest()


def truncation_reason(body: bytes, ended_by_close: bool, text: str) -> str | None:
    """Why a fetched page looks cut short, or None when it looks whole.

    A page that ends with its closing ``</body>``/``</html>`` is whole. Without it: a body
    whose length was never declared and that ended when the server closed the connection
    (Scrapy's ``partial`` flag) is truncated; any other page whose extracted ``text`` stops
    mid-word is suspect.
    """
    if _CLOSING_MARKUP.search(body):
        return None
    if ended_by_close:
        return "connection closed before the page's closing markup (no Content-Length)"
    last = text.rstrip()[-1:]
    if last.isalnum():
        return "text stops mid-word and no closing markup follows"
    return None
