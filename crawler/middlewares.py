"""Request/response-level middlewares of the crawler: anti-bot interstitial detection."""

from __future__ import annotations

import logging
import re
from html import unescape

from lxml import html as lxml_html
from scrapy import Request, Spider
from scrapy.crawler import Crawler
from scrapy.exceptions import IgnoreRequest
from scrapy.http import Response, TextResponse

logger = logging.getLogger(__name__)

# Titles of challenge pages (Cloudflare, Sucuri, Incapsula, DDoS-Guard, generic captchas).
# News headlines use the same words ("xác minh thông tin dân cư", "kiểm tra an ninh mạng"):
# only the challenge phrasings count, and only in a title as short as a challenge page's.
_CHALLENGE_TITLE = re.compile(
    r"attention required|just a moment|checking your browser|please wait\b|one more step|"
    r"security check|ddos protection|ddos-guard|access denied|are you a robot|"
    r"verify you are (a )?human|human verification|pardon our interruption|captcha|"
    r"kiểm tra trình duyệt|xác minh (bảo mật|bạn|rằng bạn)|chờ một chút",
    re.I,
)
_CHALLENGE_TITLE_CHARS = 60
# Markup only challenge pages carry.
_CHALLENGE_MARKERS = ("cf-browser-verification", "cf_chl_", "/cdn-cgi/challenge-platform",
                      "challenge-form", "_incapsula_resource", "sucuri_cloudproxy", "ddos-guard",
                      "enable javascript and cookies to continue")
# Captcha widgets: also on real pages (comment forms), so they only count on near-empty pages.
_CAPTCHA_MARKERS = ("g-recaptcha", "h-captcha", "hcaptcha.com", "recaptcha/api", "cf-turnstile",
                    "please enable javascript")


def _any_of(markers: tuple[str, ...]) -> re.Pattern[str]:
    return re.compile("|".join(map(re.escape, markers)), re.I)


_CHALLENGE_MARKUP = _any_of(_CHALLENGE_MARKERS)
_CAPTCHA_MARKUP = _any_of(_CAPTCHA_MARKERS)
_JS_REDIRECT = re.compile(
    r"(?:window\.|document\.|top\.|self\.)?location(?:\.href)?\s*=|location\.(?:replace|assign)\s*\(",
    re.I,
)
_META_REFRESH = re.compile(r"<meta[^>]+http-equiv\s*=\s*[\"']?refresh", re.I)
# Each title element's text (to the end of the page when it is not closed: no tag inside).
_TITLE_ELEMENT = re.compile(r"<title\b[^>]*>(.*?)(?:</title\s*>|$)", re.I | re.S)
# A real article or listing has far more visible text than any challenge or redirect stub.
_STUB_TEXT_CHARS = 600
_CHALLENGE_TEXT_CHARS = 2500


class InterstitialPage(IgnoreRequest):
    """Raised for an anti-bot interstitial: the page is dropped and its request's errback told."""

    def __init__(self, url: str, reason: str) -> None:
        super().__init__(f"anti-bot interstitial ({reason}) at {url}")
        self.url = url
        self.reason = reason


def detect_interstitial(html: str | bytes) -> str | None:
    """Return why ``html`` is an anti-bot interstitial or JS/meta-redirect stub, else None.

    Only small pages qualify: a challenge title or challenge/captcha markup on a page with
    little visible text, or a page whose only content is a script/meta refresh that moves the
    browser elsewhere.
    """
    if isinstance(html, bytes):
        html = html.decode("utf-8", "replace")
    if not html.strip() or not _may_be_interstitial(html):
        return None
    try:
        tree = lxml_html.fromstring(html)
    except (ValueError, TypeError):
        return None
    title = " ".join(tree.xpath("string(//title)").split())
    scripts = " ".join(tree.xpath("//script/text()"))
    for junk in tree.xpath("//script|//style|//noscript|//title"):
        junk.drop_tree()
    text_chars = len("".join(tree.text_content().split()))
    if text_chars <= _CHALLENGE_TEXT_CHARS:
        if len(title) <= _CHALLENGE_TITLE_CHARS and _CHALLENGE_TITLE.search(title):
            return f"challenge page titled {title!r}"
        if match := _CHALLENGE_MARKUP.search(html):
            return f"challenge markup {match.group(0)!r}"
    if text_chars > _STUB_TEXT_CHARS:
        return None
    if match := _CAPTCHA_MARKUP.search(html):
        return f"captcha page {match.group(0)!r}"
    if _JS_REDIRECT.search(scripts) or _META_REFRESH.search(html):
        return "redirect stub (script or meta refresh, almost no text)"
    return None


def _may_be_interstitial(html: str) -> bool:
    """False when no verdict of :func:`detect_interstitial` can apply, told without parsing
    the page (the parse cost the event loop more than half a millisecond per page): no
    challenge or captcha marker, no redirect (every form names ``location`` or ``refresh``),
    no title element reading like a challenge."""
    lower = html.lower()
    return (any(marker in lower for marker in _CHALLENGE_MARKERS + _CAPTCHA_MARKERS)
            or ("location" in lower and _JS_REDIRECT.search(html) is not None)
            or ("refresh" in lower and _META_REFRESH.search(html) is not None)
            or any(_CHALLENGE_TITLE.search(" ".join(unescape(title).split()))
                   for title in _TITLE_ELEMENT.findall(html)))


class InterstitialMiddleware:
    """Downloader middleware: drop anti-bot interstitials before any spider callback sees them.

    Counted in ``dtmon/<source>/interstitials`` (the source is ``request.meta["dtmon_source"]``)
    and logged as a warning; the request's errback receives :class:`InterstitialPage`.
    """

    def __init__(self, crawler: Crawler) -> None:
        self.crawler = crawler

    @classmethod
    def from_crawler(cls, crawler: Crawler) -> InterstitialMiddleware:
        return cls(crawler)

    def process_response(self, request: Request, response: Response, spider: Spider | None = None
                         ) -> Response:
        if not isinstance(response, TextResponse) or not _is_html(response):
            return response
        reason = detect_interstitial(response.body)
        if reason is None:
            return response
        source = request.meta.get("dtmon_source", "unknown")
        if self.crawler.stats is not None:
            self.crawler.stats.inc_value(f"dtmon/{source}/interstitials")
            self.crawler.stats.inc_value("dtmon/interstitials")
        logger.warning("[%s] anti-bot interstitial dropped (%s): %s", source, reason, response.url)
        raise InterstitialPage(response.url, reason)


def _is_html(response: TextResponse) -> bool:
    content_type = response.headers.get(b"Content-Type", b"").decode("latin-1").lower()
    return "html" in content_type or (not content_type and b"<html" in response.body[:1024].lower())
