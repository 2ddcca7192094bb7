"""The registry-driven spider: ``scrapy crawl news [-a sources=vov,hue] [-a sources_file=x.yaml]``.

For each selected source it reads the feeds (feedparser), sitemaps (index → shards → ``<loc>``)
and listing pages (configured CSS selector or generic discovery; pagination by a GET/POST
template or by the page's own next link), turns every article link into one request per
``url_key`` (share links, lower-case SharePoint paths and old-domain URLs collapse), and yields
an :class:`~crawler.items.ArticleItem` per extracted article page.

Per-source counters live in the crawler stats under ``dtmon/<source>/<counter>``:
``pages_fetched`` (every response of the source), ``links_found`` (article candidates),
``links_known`` (skipped: already stored), ``articles_requested``, ``articles_found`` (items
yielded), ``errors``, ``interstitials`` (crawler/middlewares.py), ``empty_pages``,
``not_modified``, ``duplicates``, ``no_date`` (articles without a publication date),
``discovery_pages`` (feeds, sitemaps and first listing pages read) and ``discovery_empty`` (those
without a single article link: the sign of a changed layout). Error messages are collected in
``spider.source_errors[name]``.

Every article requested and not stored is **owed** (see ``owed``, an :class:`OwedLedger` the
storage pipeline sets to the database's ``owed_articles``): a fetch error other than "gone"
(4xx), an interstitial, a truncated body, an empty extraction, a page that is really the home
or a listing page, an exception while processing it, a storage failure, the per-source cap
(``DTMON_MAX_ARTICLES_PER_SOURCE`` articles requested per run, 0: none; the rest are deferred)
or a crawl stopped before it was fetched. Each run starts with the owed articles that are due,
whatever the listings say. URLs longer than ``crawler.urls.MAX_URL_LENGTH`` are refused
(``url_too_long``), as no database column could hold them.

Feeds, sitemaps and listing pages are requested conditionally (``meta["dtmon_conditional"]``,
see crawler/incremental.py): a ``304`` counts as ``not_modified`` and is not followed.

Already stored articles are skipped through an optional hook, the attribute (or spider
argument) ``known_url_keys``: a callable ``url_keys -> the stored ones`` (or a collection of
keys) that the storage pipeline sets from the database when the spider opens; it is asked once
per page, for all its links. Default: nothing is known.
"""

from __future__ import annotations

import re
import time
import zlib
from collections import Counter
from collections.abc import AsyncIterator, Callable, Collection, Iterable, Iterator, Sequence
from datetime import UTC, datetime
from typing import Any, Protocol
from urllib.parse import urljoin, urlsplit

import feedparser
import scrapy
from scrapy.crawler import Crawler
from scrapy.exceptions import IgnoreRequest
from scrapy.http import FormRequest, Request, Response, TextResponse
from scrapy.spidermiddlewares.httperror import HttpError
from scrapy.utils.sitemap import Sitemap
from twisted.python.failure import Failure

from crawler.discovery import ListingPage
from crawler.extraction import extract_article
from crawler.extractors import ArticleExtractor, Extracted
from crawler.incremental import CONDITIONAL
from crawler.items import ArticleItem
from crawler.middlewares import InterstitialPage
from crawler.safety import (
    DecompressionTooLarge,
    ForbiddenHost,
    gunzip_capped,
    not_an_article_reason,
    text_digest,
    truncation_reason,
    xml_entity_refusal,
)
from crawler.sources import Listing, Registry, Source, bare_host, load_registry
from crawler.urls import MAX_URL_LENGTH, canonical_url, declared_home, url_key
from storage.repository import OwedLink

KnownUrlKeys = Callable[[Collection[str]], set[str]]

_CHARSET = re.compile(r"charset\s*=\s*[\"']?([\w.:-]+)", re.I)
_GZIP_MAGIC = b"\x1f\x8b"
_DIGITS = re.compile(r"\d+")
_SAME_PAGE_SIZE = 0.25  # pages whose sizes differ by more than this share are not the same
_DISCOVERY = "dtmon_discovery"  # meta flag of feed, sitemap and listing requests
# 4xx answers that are passing states (time-out, too early, too many requests): the article is
# owed. Any other 4xx says it is gone or forbidden: fetching it again is no use.
_RETRYABLE_STATUS = frozenset({408, 425, 429})
DEFAULT_MAX_ARTICLES_PER_SOURCE = 200


def _nothing_known(_keys: Collection[str]) -> set[str]:
    return set()


class OwedLedger(Protocol):
    """Where owed articles are kept between runs (the storage pipeline's database ledger)."""

    def due(self, source: str, limit: int) -> list[OwedLink]:
        """Up to ``limit`` owed articles of ``source`` to fetch at the start of this run."""

    def owe(self, links: list[OwedLink], error: str, attempted: bool) -> None:
        """Record ``links`` as owed after ``error`` (``attempted``: fetched and failed)."""


class MemoryLedger:
    """A ledger that only remembers this crawl's owed articles (no database)."""

    def __init__(self) -> None:
        self.owed: dict[str, tuple[OwedLink, str]] = {}

    def due(self, source: str, limit: int) -> list[OwedLink]:
        return []

    def owe(self, links: list[OwedLink], error: str, attempted: bool) -> None:
        self.owed.update((link.key, (link, error)) for link in links)


class NewsSpider(scrapy.Spider):
    """Crawl the registry's sources (all, or ``-a sources=a,b``) for article pages."""

    name = "news"

    def __init__(
        self,
        sources: str | Sequence[str] = "",
        sources_file: str | Sequence[str] = "",
        registry: Registry | None = None,
        known_url_keys: KnownUrlKeys | Collection[str] | None = None,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        self.registry = registry or load_registry(extra=_split_arg(sources_file))
        self.selected: list[Source] = self.registry.select(_split_arg(sources))
        self.source_errors: dict[str, list[str]] = {s.name: [] for s in self.selected}
        self.known_url_keys: KnownUrlKeys = _as_lookup(known_url_keys)
        self._requested_keys: set[str] = set()
        # Article links requested in this crawl because they were not stored before it.
        self._unstored_keys: set[str] = set()
        self._yielded_keys: set[str] = set()
        self._visited_listings: set[tuple] = set()
        self._listing_digests: dict[str, set[str]] = {s.name: set() for s in self.selected}
        # The URL keys of each source's feeds, sitemaps and listings (_discovery_url_keys).
        self._discovery_keys: dict[str, set[str]] = {}
        # Listing pages whose text digest is not computed yet (see _listing_digests_near).
        self._undigested_listings: dict[str, list[Response]] = {}
        self._home_digests: dict[str, str | None] = {}  # None: no usable home page text
        # Articles (with their text digest and link) waiting for their source's home page.
        self._awaiting_home: dict[str, list[tuple[ArticleItem, str, OwedLink]]] = {}
        self.owed: OwedLedger = MemoryLedger()
        # Article pages are extracted here, in the event loop, unless from_crawler sets a pool.
        self.extractor = ArticleExtractor(workers=0)
        # Article requests not finished yet (owed when the crawl stops before they are).
        self._pending: dict[str, OwedLink] = {}
        self._requested_per_source: Counter[str] = Counter()
        # Sources whose feed, sitemap or listing pages had an error (their validators are not
        # saved: a page not read must be read again), and discovery requests not answered yet
        # per source (a crawl stopped early saves no validators for those sources).
        self.discovery_failed: set[str] = set()
        self._discovery_pending: Counter[str] = Counter()

    @classmethod
    def from_crawler(cls, crawler: Crawler, *args: Any, **kwargs: Any) -> NewsSpider:
        """The spider of a crawl: article pages are extracted by the crawl's pool of
        extraction processes (see crawler/extractors.py)."""
        spider = super().from_crawler(crawler, *args, **kwargs)
        spider.extractor = ArticleExtractor.from_crawler(crawler)
        return spider

    @property
    def discovery_unfinished(self) -> set[str]:
        """Sources with feed, sitemap or listing requests still unanswered."""
        return {name for name, count in self._discovery_pending.items() if count > 0}

    @property
    def max_articles_per_source(self) -> int:
        """The cap on articles requested per source and run (0: no cap). A spider made
        without a crawler (seeding a distributed crawl) has the default."""
        settings = getattr(self, "settings", None)
        if settings is None:
            return DEFAULT_MAX_ARTICLES_PER_SOURCE
        return settings.getint("DTMON_MAX_ARTICLES_PER_SOURCE", DEFAULT_MAX_ARTICLES_PER_SOURCE)

    # ------------------------------------------------------------------ start

    async def start(self) -> AsyncIterator[Request]:
        """The owed articles due now, then the feeds, sitemaps and listing pages, of every
        selected source."""
        for source in self.selected:
            for request in self._owed_requests(source):
                yield request
            self.logger.info(
                "[%s] start: %d feed(s), %d sitemap(s), %d listing(s)", source.name,
                len(source.feeds), len(source.sitemaps), len(source.listings))
            for request in self._discovery_requests(source):
                yield request

    def _owed_requests(self, source: Source) -> Iterator[Request]:
        cap = self.max_articles_per_source
        due = self.owed.due(source.name, cap or 1_000_000)
        if due:
            self.logger.info("[%s] fetching %d owed article(s) again", source.name, len(due))
        for link in due:
            self._count(source, "owed_retried")
            yield from self._follow_article(source, link, [], known=False)

    def _discovery_requests(self, source: Source) -> Iterator[Request]:
        conditional = {CONDITIONAL: True}
        for url in source.feeds:
            yield self._request(source, url, self.parse_feed, **conditional)
        for url in source.sitemaps:
            yield self._request(source, url, self.parse_sitemap, **conditional)
        for index, listing in enumerate(source.listings):
            self._visited_listings.add(("GET", url_key(listing.url, self.registry), ()))
            yield self._request(source, listing.url, self.parse_listing,
                                dtmon_listing=index, dtmon_page=1, **conditional)

    def _request(self, source: Source, url: str, callback: Callable, **meta: Any) -> Request:
        if callback in (self.parse_feed, self.parse_sitemap, self.parse_listing):
            meta[_DISCOVERY] = True
            self._discovery_pending[source.name] += 1
        return Request(url, callback=callback, errback=self.on_error,
                       meta={"dtmon_source": source.name, **meta})

    # ------------------------------------------------------------------ feeds and sitemaps

    def parse_feed(self, response: Response) -> Iterator[Request]:
        """RSS/Atom: every entry's link is an article candidate."""
        source = self._fetched(response)
        if refusal := xml_entity_refusal(response.body):
            self._discovery_error(source, f"feed {response.url} not read: {refusal}")
            return
        feed = feedparser.parse(response.body)
        links = [entry.get("link") for entry in feed.entries if entry.get("link")]
        if feed.bozo and not links:
            self._discovery_error(source, f"malformed feed {response.url}: "
                                          f"{feed.get('bozo_exception')}")
            return
        self.logger.info("[%s] feed %s: %d entries", source.name, response.url, len(links))
        candidates = self._discovered(source, links, response.url)
        yield from self._follow_articles(source,
                                         self._article_links(source, candidates, response.url))

    def parse_sitemap(self, response: Response) -> Iterator[Request]:
        """Sitemap index → shard sitemaps (newest first); urlset → article candidates."""
        source = self._fetched(response)
        if refusal := xml_entity_refusal(response.body):
            self._discovery_error(source, f"sitemap {response.url} not read: {refusal}")
            return
        sitemap = read_sitemap(response.body, self.settings.getint("DOWNLOAD_MAXSIZE"))
        if sitemap is None:
            self._discovery_error(source, f"malformed sitemap {response.url}")
            return
        kind, entries = sitemap
        if kind == "sitemapindex":
            shards = newest_first(entries)[: self.settings.getint("DTMON_SITEMAP_MAX_SHARDS", 3)]
            self.logger.info("[%s] sitemap index %s: %d shard(s), reading %d",
                             source.name, response.url, len(entries), len(shards))
            for entry in shards:
                if self._allowed(source, entry["loc"]):
                    yield self._request(source, entry["loc"], self.parse_sitemap,
                                        **{CONDITIONAL: True})
            return
        links = [entry["loc"] for entry in entries]
        self.logger.info("[%s] sitemap %s: %d URL(s)", source.name, response.url, len(links))
        candidates = self._discovered(source, links, response.url)
        yield from self._follow_articles(source,
                                         self._article_links(source, candidates, response.url))

    # ------------------------------------------------------------------ listings

    def parse_listing(self, response: Response) -> Iterator[Request]:
        """A listing page: its article links, then the next page while the page links an
        article not stored before this crawl (whether this page or a feed or sitemap read
        earlier in the crawl requested it)."""
        started, cpu = time.perf_counter(), time.process_time()
        source = self._fetched(response)
        listing: Listing = source.listings[response.meta["dtmon_listing"]]
        page: int = response.meta["dtmon_page"]
        html = response.text if isinstance(response, TextResponse) else ""
        parsed = ListingPage(html, response.url)  # parsed once for links and next page
        links = self._listing_links(source, listing, response, parsed)
        self._remember_listing(source, response)
        candidates = (self._discovered(source, links, response.url) if page == 1
                      else self._article_candidates(source, links))
        article_links = self._article_links(source, candidates, response.url)
        new = list(self._follow_articles(source, article_links))
        self.logger.info("[%s] listing %s page %d: %d article link(s), %d new (%.2f s, "
                         "CPU %.2f s)", source.name, response.url, page, len(links), len(new),
                         time.perf_counter() - started, time.process_time() - cpu)
        yield from new
        if not any(link.key in self._unstored_keys for link in article_links):
            return
        if page >= listing.max_pages:
            self.logger.info("[%s] listing %s: stopped at max_pages=%d", source.name,
                             listing.url, listing.max_pages)
            return
        next_request = self._next_listing_request(source, listing, response, parsed, page)
        if next_request is not None:
            yield next_request

    def _listing_links(self, source: Source, listing: Listing, response: Response,
                       parsed: ListingPage) -> list[str]:
        if not parsed.html:
            return []
        if listing.links:
            hrefs = response.css(listing.links).xpath("descendant-or-self::*/@href").getall()
            return [urljoin(response.url, href.strip()) for href in hrefs]
        return parsed.article_links(source.all_hosts)

    def _next_listing_request(self, source: Source, listing: Listing, response: Response,
                              parsed: ListingPage, page: int) -> Request | None:
        meta = {"dtmon_listing": response.meta["dtmon_listing"], "dtmon_page": page + 1}
        template = listing.next_page
        if template is None:
            url = parsed.next_page(page)
            if url is None or not self._allowed(source, url):
                return None
            return self._listing_request(source, url, "GET", {}, meta)
        values = response.meta.get("dtmon_values") or template.values_from(response.text)
        try:
            url, form = template.render(template.first + page - 1, values)
        except KeyError as missing:
            self._discovery_error(source, f"listing {listing.url}: no value for {missing} on "
                                          "page 1")
            return None
        return self._listing_request(source, url, template.method, form,
                                     {**meta, "dtmon_values": values})

    def _listing_request(self, source: Source, url: str, method: str, form: dict[str, str],
                         meta: dict[str, Any]) -> Request | None:
        visit = (method, url_key(url, self.registry), tuple(sorted(form.items())))
        if visit in self._visited_listings:
            return None
        self._visited_listings.add(visit)
        if method == "POST":
            self._discovery_pending[source.name] += 1
            return FormRequest(url, formdata=form, callback=self.parse_listing,
                               errback=self.on_error,
                               meta={"dtmon_source": source.name, _DISCOVERY: True, **meta})
        return self._request(source, url, self.parse_listing, **meta, **{CONDITIONAL: True})

    # ------------------------------------------------------------------ articles

    def _article_candidates(self, source: Source, links: Iterable[str]) -> list[str]:
        """The links that may be articles of ``source`` (its hosts, its article URL pattern)."""
        hosts = _bare_hosts(source)
        return [link for link in dict.fromkeys(links)
                if _on_hosts(link, hosts) and source.is_article_url(link) is not False]

    def _discovered(self, source: Source, links: Iterable[str], url: str) -> list[str]:
        """The article candidates of a feed, sitemap or first listing page, counted."""
        candidates = self._article_candidates(source, links)
        self._count(source, "discovery_pages")
        if not candidates:
            self._count(source, "discovery_empty")
            self.logger.warning("[%s] no article link on %s (layout changed?)", source.name, url)
        return candidates

    def _article_links(self, source: Source, candidates: list[str], found_on: str
                       ) -> list[OwedLink]:
        """The article candidates found on ``found_on`` as links of ``source``, keyed."""
        return [OwedLink(source.name, link, url_key(link, self.registry), found_on)
                for link in candidates]

    def _follow_articles(self, source: Source, links: list[OwedLink]) -> Iterator[Request]:
        """One request per new article link: unseen in this crawl, not stored; those over the
        per-source cap are owed to the next run."""
        self._count(source, "links_found", len(links))
        known = self.known_url_keys({link.key for link in links
                                     if link.key not in self._requested_keys})
        deferred: list[OwedLink] = []
        for link in links:
            yield from self._follow_article(source, link, deferred, link.key in known)
        if deferred:
            self._count(source, "deferred", len(deferred))
            self.owed.owe(deferred, f"deferred: over the cap of {self.max_articles_per_source} "
                                    "articles per source and run", attempted=False)

    def _follow_article(self, source: Source, link: OwedLink, deferred: list[OwedLink],
                        known: bool) -> Iterator[Request]:
        """The request for ``link`` unless requested already in this crawl, ``known``
        (stored), too long to store, or over the per-source cap (then it goes to
        ``deferred``)."""
        if link.key in self._requested_keys:
            return
        self._requested_keys.add(link.key)
        if known:
            self._count(source, "links_known")
            return
        if len(link.url) > MAX_URL_LENGTH:
            self._count(source, "url_too_long")
            self._error(source, f"URL longer than {MAX_URL_LENGTH} characters refused "
                                f"({len(link.url)}): {link.url[:100]}…")
            return
        cap = self.max_articles_per_source
        if cap and self._requested_per_source[source.name] >= cap:
            deferred.append(link)
            return
        self._requested_per_source[source.name] += 1
        self._unstored_keys.add(link.key)
        self._pending[link.key] = link
        self._count(source, "articles_requested")
        yield self._request(source, link.url, self.parse_article, dtmon_link=link.url,
                            dtmon_article=link)

    async def parse_article(self, response: Response) -> AsyncIterator[ArticleItem | Request]:
        """An article page → one ArticleItem, extracted by :attr:`extractor` (a worker
        process) while the event loop goes on fetching. A page that cannot be one (empty,
        truncated, not an article) or that raises is reported under its source and owed."""
        source = self._fetched(response)
        try:
            outputs = list(self._article(source, response, await self._extract(response)))
        except Exception as exc:  # noqa: BLE001 - one bad page must not go silently
            self._owe(source, response.meta, f"{type(exc).__name__}: {exc} at {response.url}",
                      error=True)
            return
        for output in outputs:
            yield output

    async def _extract(self, response: Response) -> Extracted | None:
        """The page extracted and analysed, counted in ``extract_us`` / ``analyse_us``;
        ``None`` when it is not a text page."""
        if not isinstance(response, TextResponse):
            return None
        extracted = await self.extractor.extract(response.body, response.url,
                                                 _http_charset(response))
        source = self.registry.get(response.meta["dtmon_source"])
        self._count(source, "extract_us", round(extracted.extract_seconds * 1e6))
        self._count(source, "analyse_us", round(extracted.analyse_seconds * 1e6))
        return extracted

    def _article(self, source: Source, response: Response, extracted: Extracted | None
                 ) -> Iterator[ArticleItem | Request]:
        link: OwedLink = response.meta["dtmon_article"]
        if extracted is None:
            self._empty(source, response.url, "not a text page")
            self._owe(source, response.meta, f"not a text page: {response.url}")
            return
        article = extracted.article
        if article.is_empty:
            why = f"no article text extracted ({article.failure})"
            self._empty(source, response.url, why)
            self._owe(source, response.meta, f"{why}: {response.url}")
            return
        if reason := truncation_reason(response.body, "partial" in response.flags, article.text):
            self._count(source, "truncated")
            self._owe(source, response.meta, f"truncated body, not stored ({reason}): "
                                             f"{response.url}", error=True)
            return
        digest = text_digest(article.text)
        if reason := self._not_an_article(source, response, article.canonical_url, digest):
            self._owe(source, response.meta, f"not stored, {reason}: {link.url}", error=True)
            return
        url = canonical_url(response.url, self.registry, page_canonical=article.canonical_url)
        key = url_key(url, self.registry)
        self._requested_keys.add(url_key(response.url, self.registry))
        if key in self._yielded_keys:
            self._count(source, "duplicates")
            self._pending.pop(link.key, None)
            return
        self._yielded_keys.add(key)
        item = ArticleItem(
            source=source.name,
            province=source.province,
            url=url,
            urls=_urls_that_led_to(response),
            found_on=link.found_on,
            title=article.title,
            text=article.text,
            published=article.published,
            author=article.author,
            original_source=article.original_source,
            tags=list(article.tags),
            language=article.language,
            raw_html=response.body,
            analysis=extracted.analysis,
            fetched_at=datetime.now(UTC),
            etag=_header(response, "ETag"),
            last_modified=_header(response, "Last-Modified"),
        )
        if home := declared_home(response.url, article.canonical_url):
            yield from self._unless_home_page(source, home, item, digest, link)
        else:
            yield self._found(source, item, link)

    def _found(self, source: Source, item: ArticleItem, link: OwedLink) -> ArticleItem:
        """``item`` goes to the storage pipeline, which stores it or owes it."""
        self._pending.pop(link.key, None)
        self._count(source, "articles_found")
        if not item["published"]:
            self._count(source, "no_date")
        return item

    # ------------------------------------------------------------------ the home-page check

    def _unless_home_page(self, source: Source, home: str, item: ArticleItem, digest: str,
                          link: OwedLink) -> Iterator[ArticleItem | Request]:
        """Yield ``item`` unless its text is the home page's (a removed article answered with
        the home page); the home page is fetched once per source when first needed."""
        pending = self._awaiting_home.setdefault(source.name, [])
        pending.append((item, digest, link))
        if source.name in self._home_digests:
            yield from self._settle_home_check(source)
        elif len(pending) == 1:
            yield Request(home, callback=self.parse_home, errback=self.on_home_error,
                          dont_filter=True, priority=10, meta={"dtmon_source": source.name})

    def parse_home(self, response: Response) -> Iterator[ArticleItem]:
        """The home page of a source whose articles declare it canonical: keep its text digest."""
        source = self._fetched(response)
        self._home_digests[source.name] = _page_digest(response)
        yield from self._settle_home_check(source)

    def on_home_error(self, failure: Failure) -> Iterator[ArticleItem]:
        """The home page could not be read: the articles waiting for it are kept."""
        source = self.registry.get(failure.request.meta["dtmon_source"])
        self.logger.warning("[%s] home page %s not read (%s): articles declaring it canonical "
                            "are kept", source.name, failure.request.url, failure.value)
        self._home_digests[source.name] = None
        yield from self._settle_home_check(source)

    def _settle_home_check(self, source: Source) -> Iterator[ArticleItem]:
        home = self._home_digests[source.name]
        for item, digest, link in self._awaiting_home.pop(source.name, []):
            if home is not None and digest == home:
                self._owe_link(source, link, f"not stored, home page (same text as "
                                             f"{source.name}'s home page): {link.url}",
                               error=True)
            else:
                yield self._found(source, item, link)

    def _remember_listing(self, source: Source, response: Response) -> None:
        """Keep a listing page: an "article" with the same text is not one. Its text is
        extracted only when an article page of about its size needs the comparison (a listing
        of thousands of links takes seconds to extract, and most are never compared)."""
        self._undigested_listings.setdefault(source.name, []).append(response)

    def _listing_digests_near(self, source: Source, size: int) -> set[str]:
        """The text digests of the source's listing pages, those of a body size near ``size``
        computed now (a listing served in place of an article has the listing's size)."""
        pending = self._undigested_listings.get(source.name, [])
        near = [page for page in pending
                if abs(len(page.body) - size) <= _SAME_PAGE_SIZE * max(len(page.body), size)]
        for page in near:
            pending.remove(page)
            if digest := _page_digest(page):
                self._listing_digests[source.name].add(digest)
        return self._listing_digests[source.name]

    def _not_an_article(self, source: Source, response: Response, page_canonical: str | None,
                        digest: str) -> str | None:
        listings = self._discovery_url_keys(source)
        return not_an_article_reason(
            response.url, page_canonical, lambda url: url_key(url, self.registry) in listings,
            digest, self._listing_digests_near(source, len(response.body)))

    def _discovery_url_keys(self, source: Source) -> set[str]:
        """The URL keys of the source's feeds, sitemaps and listing pages (keyed once)."""
        keys = self._discovery_keys.get(source.name)
        if keys is None:
            urls = (*source.feeds, *source.sitemaps, *(listing.url for listing in source.listings))
            keys = self._discovery_keys[source.name] = {url_key(url, self.registry)
                                                        for url in urls}
        return keys

    # ------------------------------------------------------------------ errors and bookkeeping

    def on_error(self, failure: Failure) -> None:
        """Errback of every request: count and describe the failure under its source; an
        article that may still be fetched (not gone, not forbidden) is owed."""
        request = failure.request
        source = self.registry.get(request.meta["dtmon_source"])
        self._answered(source, request.meta)
        article = "dtmon_article" in request.meta
        if failure.check(InterstitialPage):
            # Counted and logged by InterstitialMiddleware.
            if article:
                self._owe(source, request.meta, str(failure.value))
            return
        if failure.check(HttpError):
            status = failure.value.response.status
            if status == 304:
                self._count(source, "not_modified")
                return
            if status == 404 and request.meta.get("dtmon_page", 1) > 1:
                self.logger.info("[%s] listing ends before page %d (404 at %s)", source.name,
                                 request.meta["dtmon_page"], request.url)
                return
            message = f"HTTP {status} at {request.url}"
            retryable = status >= 500 or status in _RETRYABLE_STATUS
        else:
            message = f"{failure.type.__name__}: {failure.getErrorMessage()} at {request.url}"
            retryable = not _refused_for_good(failure)
        if not article:
            self._discovery_error(source, message)
        elif retryable:
            self._owe(source, request.meta, message, error=True)
        else:
            self._pending.pop(request.meta["dtmon_article"].key, None)
            self._error(source, message)

    def _owe(self, source: Source, meta: dict[str, Any], message: str,
             error: bool = False) -> None:
        """The article of a request with ``meta`` is owed (an error too when ``error``)."""
        self._owe_link(source, meta["dtmon_article"], message, error)

    def _owe_link(self, source: Source, link: OwedLink, message: str, error: bool) -> None:
        self._pending.pop(link.key, None)
        if error:
            self._error(source, message)
        self._count(source, "owed")
        self.owed.owe([link], message, attempted=True)

    def owe_item(self, item: ArticleItem, message: str) -> None:
        """The storage pipeline could not store ``item``: an error of its source, owed."""
        source = self.registry.get(item["source"])
        link = item["urls"][0] if item.get("urls") else item["url"]
        self._owe_link(source, OwedLink(source.name, link, url_key(link, self.registry),
                                        item.get("found_on")), message, error=True)

    def closed(self, reason: str) -> None:
        """Owe the articles requested and not finished (a stopped crawl); log one summary
        line per source."""
        for link in self._pending.values():
            self._count(self.registry.get(link.source), "owed")
        if self._pending:
            self.owed.owe(list(self._pending.values()),
                          f"not fetched: the crawl stopped ({reason})", attempted=False)
        self._pending.clear()
        stats = self.crawler.stats
        for source in self.selected:
            counts = {what: stats.get_value(f"dtmon/{source.name}/{what}", 0) for what in (
                "pages_fetched", "articles_requested", "articles_found", "links_known",
                "errors", "interstitials", "empty_pages", "owed", "deferred")}
            self.logger.info("[%s] done (%s): %s", source.name, reason,
                             ", ".join(f"{k}={v}" for k, v in counts.items()))

    def _fetched(self, response: Response) -> Source:
        source = self.registry.get(response.meta["dtmon_source"])
        self._answered(source, response.meta)
        self._count(source, "pages_fetched")
        return source

    def _answered(self, source: Source, meta: dict[str, Any]) -> None:
        if meta.get(_DISCOVERY):
            self._discovery_pending[source.name] -= 1

    def _allowed(self, source: Source, url: str) -> bool:
        return _on_hosts(url, _bare_hosts(source))

    def _count(self, source: Source, what: str, count: int = 1) -> None:
        self.crawler.stats.inc_value(f"dtmon/{source.name}/{what}", count)

    def _error(self, source: Source, message: str) -> None:
        self._count(source, "errors")
        self.source_errors.setdefault(source.name, []).append(message)
        self.logger.error("[%s] %s", source.name, message)

    def _discovery_error(self, source: Source, message: str) -> None:
        """An error reading a feed, sitemap or listing page of ``source``."""
        self.discovery_failed.add(source.name)
        self._error(source, message)

    def _empty(self, source: Source, url: str, why: str) -> None:
        """A page with no article text: counted, and recorded as an error with its reason."""
        self._count(source, "empty_pages")
        self._error(source, f"{why}, not stored: {url}")


def _bare_hosts(source: Source) -> set[str]:
    return {bare_host(h) for h in source.all_hosts}


def _on_hosts(url: str, hosts: set[str]) -> bool:
    """Whether ``url`` is an http(s) URL on one of ``hosts`` (bare host names)."""
    try:
        parts = urlsplit(url)
    except ValueError:
        return False
    return parts.scheme in ("http", "https") and bare_host(parts.hostname or "") in hosts


def _refused_for_good(failure: Failure) -> bool:
    """Whether a request failed by the crawler's own rule for its URL, which another try would
    not change: robots.txt forbids it, or it is on a host its source does not allow. (A
    redirect off the source's hosts, a redirect loop or an oversized body may be the site's
    passing state: such articles are owed.)"""
    error = failure.value
    if isinstance(error, ForbiddenHost):
        return not failure.request.meta.get("redirect_urls")
    return isinstance(error, IgnoreRequest) and "robots.txt" in str(error)


def _split_arg(value: str | Sequence[str]) -> list[str]:
    items = value.split(",") if isinstance(value, str) else list(value)
    return [item.strip() for item in items if item and item.strip()]


def _as_lookup(known: KnownUrlKeys | Collection[str] | None) -> KnownUrlKeys:
    if known is None:
        return _nothing_known
    if callable(known):
        return known
    stored = frozenset(known)
    return lambda keys: stored.intersection(keys)


def read_sitemap(body: bytes, max_size: int = 0) -> tuple[str, list[dict[str, Any]]] | None:
    """(type, entries with a ``loc``) of a sitemap, gunzipped (up to ``max_size`` bytes, 0: no
    cap) if needed; None if unreadable.

    Scrapy's Sitemap parses with lxml without resolving entities or touching the network.
    """
    if body.startswith(_GZIP_MAGIC):
        try:
            body = gunzip_capped(body, max_size)
        except (OSError, EOFError, zlib.error, DecompressionTooLarge):
            return None
    try:
        sitemap = Sitemap(body)
        entries = [entry for entry in sitemap if entry.get("loc")]
    except (StopIteration, SyntaxError, ValueError):
        return None
    if sitemap.type not in ("sitemapindex", "urlset"):
        return None
    return sitemap.type, entries


def newest_first(entries: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Shards by ``lastmod``, then by the numbers in their URL (``/2025/6/``), newest first."""

    def recency(entry: dict[str, Any]) -> tuple:
        numbers = tuple(int(n) for n in _DIGITS.findall(urlsplit(entry["loc"]).path))
        return entry.get("lastmod") or "", numbers

    return sorted(entries, key=recency, reverse=True)


def _page_digest(response: Response) -> str | None:
    """The text digest of a page's extracted text, None when it has no text."""
    text = extract_article(response.body, response.url, encoding=_http_charset(response)).text
    return text_digest(text) if text.strip() else None


def _http_charset(response: Response) -> str | None:
    match = _CHARSET.search(_header(response, "Content-Type") or "")
    return match.group(1) if match else None


def _header(response: Response, name: str) -> str | None:
    value = response.headers.get(name)
    return value.decode("latin-1") if value else None


def _urls_that_led_to(response: Response) -> list[str]:
    """The link as found, every redirect source, the final URL: unique, in order."""
    chain = [response.meta.get("dtmon_link"), *response.meta.get("redirect_urls", []),
             response.url]
    return list(dict.fromkeys(url for url in chain if url))
