"""Generic link discovery on listing pages: article links and the next page, with no per-site
selectors.

A link is judged by three independent signals, none of which decides alone:

* its **URL shape** — article URLs carry a numeric id (``-c8524487.html``, ``post123.vov``,
  ``?nid=428620``), a GUID, a date (``/2024/05/12/``) or a long hyphenated slug; category pages
  have short paths or words like ``chuyen-muc``/``tag``;
* its **text** — a headline is several words and not a navigation label ("Trang chủ", "Xem thêm");
* its **place** — links inside navigation, header, footer, sidebars, pagers or "Tin khác"-style
  boxes are dropped, and links that sit in repeated sibling blocks (cards, list items) are
  favoured.
"""

from __future__ import annotations

import re
from collections import Counter
from dataclasses import dataclass, field
from functools import cached_property, lru_cache
from urllib.parse import SplitResult, urljoin, urlsplit

from lxml import html as lxml_html

from vntext import match_key, normalize_text

_SKIPPED_SCHEMES = ("javascript:", "mailto:", "tel:", "data:", "#")
_ASSET_EXTENSIONS = re.compile(
    r"\.(jpe?g|png|gif|webp|svg|ico|pdf|docx?|xlsx?|pptx?|zip|rar|7z|mp[34]|avi|css|js|xml|rss)$",
    re.I,
)
_NUMERIC_ID = re.compile(r"(?<![0-9])(?!(?:19|20)\d\d(?![0-9]))\d{4,}")
_GUID = re.compile(r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}", re.I)
_DATE_IN_PATH = re.compile(r"/(?:19|20)\d\d[/-](?:0?[1-9]|1[0-2])(?:[/-]|$)|/(?:19|20)\d{6}(?:/|$)")
_WORD_SPLIT = re.compile(r"[-_+]+")
_PAGE_EXTENSIONS = re.compile(r"\.(html?|aspx?|php|jsp|vov|cfm)$", re.I)
# Path words that mark category, tag, search and utility pages rather than articles.
_CATEGORY_WORDS = {
    "chuyen-muc", "danh-muc", "chuyen-de", "chu-de", "category", "categories", "tag", "tags",
    "topic", "topics", "tim-kiem", "search", "lien-he", "contact", "login", "dang-nhap",
    "dang-ky", "rss", "feed", "sitemap", "gioi-thieu", "so-do-site", "author", "tac-gia",
    "listnews", "newslist", "danh-sach",
}
# Class/id words of page regions that hold navigation rather than the listing ("menu" also in
# the compounds old portals use: "leftmenu", "menutop"; not "ArticleInMenu", a listing).
_CHROME_REGION = re.compile(
    r"(?:^|[\s_-])(?:(?:left|right|top|main|sub|side)?menus?(?:top|bar|left|right)?|nav|navbar|navigation|sidebar|breadcrumbs?|pagination|pager|"
    r"paging|footer|header|topbar|top-bar|top-links|lienket|lien-ket|weblink|tinkhac|tin-khac|"
    r"tinlienquan|tin-lien-quan|related|other-news|most-read|docnhieu|doc-nhieu|xemnhieu|"
    r"xem-nhieu|social|share|sharing|toolbar)(?:$|[\s_-])",
    re.I,
)
_CHROME_TAGS = {"nav", "header", "footer", "aside"}
# Headings of boxes that list *other* articles (not the listing itself).
_SIDEBAR_HEADINGS = {
    match_key(text)
    for text in (
        "Tin khác", "Các tin khác", "Tin liên quan", "Bài liên quan", "Tin cùng chuyên mục",
        "Đọc nhiều", "Đọc nhiều nhất", "Xem nhiều", "Xem nhiều nhất", "Tin nổi bật",
        "Tin đọc nhiều", "Có thể bạn quan tâm", "Liên kết website", "Liên kết",
    )
}
_CATEGORY_PREFIXES = tuple(word + "-" for word in _CATEGORY_WORDS)
_NAV_LABELS = {
    match_key(text)
    for text in (
        "Trang chủ", "Liên hệ", "Xem thêm", "Xem tiếp", "Chi tiết", "Xem chi tiết", "Đọc tiếp",
        "Đọc thêm", "Trang sau", "Trang trước", "Trang tiếp", "Tiếp", "Tiếp theo", "Sau",
        "Trước", "Tất cả", "Tất cả chuyên mục", "Quay lại", "Về đầu trang", "In bài", "Gửi bài",
        "Chia sẻ", "Bình luận", "Đăng nhập", "Đăng ký", "Sơ đồ site", "Sơ đồ cổng", "RSS",
        "English", "Tiếng Anh", "Xem kết quả", "Next", "Previous", "More", "Read more", "Home",
    )
}
_NEXT_LABELS = {
    match_key(text)
    for text in ("Trang sau", "Trang tiếp", "Tiếp", "Tiếp theo", "Sau", "Next", "Next page")
} | {"»", "›", ">", ">>", "→", "tiếp »", "sau »"}
_NEXT_CLASS = re.compile(r"(?:^|[\s_-])next(?:$|[\s_-])", re.I)
# A root-relative href that urljoin would only prefix with the origin: no "//" host, no
# backslash or ";" (path parameters), no "." or ".." segment, no empty query.
_PLAIN_ROOT_PATH = re.compile(r"(?!.*/\.\.?(?:[/?#]|$))(?!.*\?(?:#|$))/(?![/\\])[^\\;]*$")
_HEADLINE_WORDS = 5
_MIN_TITLE_WORDS = 3


@dataclass(frozen=True)
class _Link:
    url: str
    text: str
    element: lxml_html.HtmlElement


@dataclass(frozen=True, slots=True)
class _Region:
    """What an element says about the links inside it."""

    item: bool  # an <article> or <li>: a card or list item
    chrome: bool  # page chrome: nav, header, footer, sidebar, pager (by tag, class or id)
    navigation: bool  # navigation even inside an item (its own header/footer is not)
    sidebar: bool  # a box headed "Tin khác", "Đọc nhiều"...: other articles


@dataclass
class _PageFacts:
    """Per-element facts computed once per page, so that discovery stays linear in the page
    size: a listing of thousands of links in one container asks them about the same parents
    thousands of times."""

    sibling_signatures: dict[lxml_html.HtmlElement, Counter] = field(default_factory=dict)
    regions: dict[lxml_html.HtmlElement, _Region] = field(default_factory=dict)

    def twins(self, node: lxml_html.HtmlElement, parent: lxml_html.HtmlElement) -> int:
        """How many children of ``parent`` share ``node``'s tag and class."""
        counts = self.sibling_signatures.get(parent)
        if counts is None:
            counts = Counter((c.tag, c.get("class")) for c in parent.iterchildren())
            self.sibling_signatures[parent] = counts
        return counts[(node.tag, node.get("class"))]

    def region(self, element: lxml_html.HtmlElement) -> _Region:
        known = self.regions.get(element)
        if known is None:
            tag = element.tag if isinstance(element.tag, str) else ""
            marker = f"{element.get('class') or ''} {element.get('id') or ''}"
            known = self.regions[element] = _Region(
                item=tag in ("article", "li"),
                chrome=tag in _CHROME_TAGS or bool(_CHROME_REGION.search(marker)),
                navigation=tag in ("nav", "aside") or _is_navigation_marker(marker),
                sidebar=_has_sidebar_heading(element))
        return known


class ListingPage:
    """A listing page, parsed once for both its article links and its next page (a listing of
    thousands of links costs its parse and link walk once, not once per question)."""

    def __init__(self, html: str | bytes, base_url: str) -> None:
        self.html = html
        self.base_url = base_url

    @cached_property
    def links(self) -> list[_Link]:
        """Every followable link of the page, in page order."""
        tree = _parse(self.html)
        return [] if tree is None else list(_links(tree, self.base_url))

    def article_links(self, allowed_hosts: set[str] | frozenset[str] | list[str]) -> list[str]:
        """The absolute URLs of the article links, in page order, unique.

        ``allowed_hosts`` are the hosts the source serves (compared without ``www.``); links
        to other hosts are never returned.
        """
        hosts = {_bare_host(h) for h in allowed_hosts}
        page = _page_identity(urlsplit(self.base_url))
        links = [link for link in self.links
                 if _bare_host((parts := urlsplit(link.url)).hostname) in hosts
                 and _page_identity(parts) != page]
        facts = _PageFacts()
        in_chrome = {id(link.element) for link in links if _in_chrome(link.element, facts)}
        candidates = [link for link in links if id(link.element) not in in_chrome
                      and _url_score(link.url) > 0]
        blocks = _repeated_blocks(candidates, facts)
        found: dict[str, None] = {}
        for link in candidates:
            if _is_article(link, blocks):
                found.setdefault(link.url, None)
        return list(found)

    def next_page(self, current_page: int = 1) -> str | None:
        """The URL of the page after ``current_page``, or None.

        Looks for ``rel=next``, a "next" label or class ("Trang sau", "Tiếp", "»",
        ``class=next``) and finally a numbered pager link whose text is ``current_page + 1``.
        ``javascript:`` pagers are not followable and give None.
        """
        for link in self.links:
            if "next" in (link.element.get("rel") or "").lower().split():
                return link.url
        for link in self.links:
            label = link.text.strip()
            if match_key(label) in _NEXT_LABELS or label in _NEXT_LABELS:
                return link.url
            if _NEXT_CLASS.search(link.element.get("class") or "") and not label.isdigit():
                return link.url
        wanted = str(current_page + 1)
        for link in self.links:
            if link.text.strip() == wanted and _in_pager(link.element):
                return link.url
        return None


def find_article_links(html: str | bytes, base_url: str, allowed_hosts: set[str] | frozenset[str]
                       | list[str]) -> list[str]:
    """The article links of a listing page (see :meth:`ListingPage.article_links`)."""
    return ListingPage(html, base_url).article_links(allowed_hosts)


def find_next_page(html: str | bytes, base_url: str, current_page: int = 1) -> str | None:
    """The URL of a listing's page after ``current_page`` (see :meth:`ListingPage.next_page`)."""
    return ListingPage(html, base_url).next_page(current_page)


def looks_like_article_url(url: str) -> bool:
    """Whether ``url``'s shape alone marks an article page (generic mode's strongest URL
    signal: a numeric id, GUID, date or long slug, and no category word)."""
    return _url_score(url) == 2


def _parse(html: str | bytes) -> lxml_html.HtmlElement | None:
    if not html or not (html.strip() if isinstance(html, str) else html.strip()):
        return None
    try:
        tree = lxml_html.fromstring(html)
    except (ValueError, TypeError):
        return None
    for junk in tree.xpath("//script|//style|//noscript|//template"):
        junk.drop_tree()
    return tree


def _links(tree: lxml_html.HtmlElement, base_url: str):
    base = urljoin(base_url, tree.xpath("string(//base/@href)") or base_url)
    origin = _origin(base)
    for anchor in tree.iter("a"):
        href = (anchor.get("href") or "").strip()
        if not href or href.lower().startswith(_SKIPPED_SCHEMES):
            continue
        url = _join(base, origin, href).split("#", 1)[0]
        if not url.startswith(("http://", "https://")):
            continue
        yield _Link(url, _link_text(anchor), anchor)


def _origin(url: str) -> str | None:
    """``scheme://host`` of an absolute http(s) URL, else None."""
    parts = urlsplit(url)
    return f"{parts.scheme}://{parts.netloc}" if parts.scheme in ("http", "https") else None


def _join(base: str, origin: str | None, href: str) -> str:
    """``urljoin(base, href)``, with a shortcut for the common root-relative href (``/a/b``,
    no dot segment): a listing of thousands of links joins each one."""
    if origin and _PLAIN_ROOT_PATH.match(href):
        return origin + href
    return urljoin(base, href)


def _link_text(anchor: lxml_html.HtmlElement) -> str:
    text = normalize_text(" ".join(anchor.text_content().split()))
    return text or normalize_text(anchor.get("title") or "")


def _bare_host(host: str | None) -> str:
    host = (host or "").lower().rstrip(".")
    return host[4:] if host.startswith("www.") else host


def _page_identity(parts: SplitResult) -> tuple[str, str, str]:
    """What makes two URLs the same page for discovery: host without www, path, query."""
    return _bare_host(parts.hostname), parts.path.rstrip("/"), parts.query


@lru_cache(maxsize=8192)
def _url_score(url: str) -> int:
    """2 = looks like an article, 1 = could be one, 0 = not an article page."""
    parts = urlsplit(url)
    path = parts.path
    segments = [s for s in path.split("/") if s]
    if not segments or _ASSET_EXTENSIONS.search(path):
        return 0
    if any(_PAGE_EXTENSIONS.sub("", s).lower() in _CATEGORY_WORDS for s in segments) or any(
        s.lower().startswith(_CATEGORY_PREFIXES) for s in segments
    ):
        return 0
    last = _PAGE_EXTENSIONS.sub("", segments[-1])
    if (_NUMERIC_ID.search(last) or _GUID.search(path) or _DATE_IN_PATH.search(path)
            or re.search(r"=\d{4,}(?:&|$)", parts.query)):
        return 2
    words = [w for w in _WORD_SPLIT.split(max(segments, key=_slug_words)) if w]
    if len(words) >= 5:
        return 2
    if len(words) >= 3 or _PAGE_EXTENSIONS.search(segments[-1]) or len(segments) >= 3:
        return 1
    return 0


def _slug_words(segment: str) -> int:
    return len([w for w in _WORD_SPLIT.split(_PAGE_EXTENSIONS.sub("", segment)) if w])


def _text_score(text: str) -> int:
    """2 = a headline, 1 = a short title, 0 = no title or a navigation label."""
    key = match_key(text)
    if not key or key in _NAV_LABELS or text.isdigit():
        return 0
    words = len(text.split())
    if words >= _HEADLINE_WORDS:
        return 2
    return 1 if words >= _MIN_TITLE_WORDS else 0


def _in_chrome(element: lxml_html.HtmlElement, facts: _PageFacts) -> bool:
    """True when the link sits in navigation, header/footer, a sidebar or an "other news" box."""
    inside_item = False
    for ancestor in element.iterancestors():
        region = facts.region(ancestor)
        inside_item = inside_item or region.item
        # An <article>'s own header/footer (card header, meta line) is not page chrome.
        if region.navigation if inside_item else region.chrome:
            return True
        if region.sidebar:
            return True
    return False


def _is_navigation_marker(marker: str) -> bool:
    match = _CHROME_REGION.search(marker)
    return bool(match) and "header" not in match.group(0).lower() and "footer" not in (
        match.group(0).lower())


def _has_sidebar_heading(element: lxml_html.HtmlElement) -> bool:
    for child in element.iterchildren():
        if not isinstance(child.tag, str):
            continue
        is_heading = child.tag in ("h2", "h3", "h4", "h5", "h6") or "title" in (
            child.get("class") or "").lower()
        if is_heading and match_key(child.text_content()) in _SIDEBAR_HEADINGS:
            return True
    return False


def _in_pager(element: lxml_html.HtmlElement) -> bool:
    for ancestor in element.iterancestors():
        marker = f"{ancestor.get('class') or ''} {ancestor.get('id') or ''}".lower()
        if any(word in marker for word in ("pag", "phan-trang", "phantrang")):
            return True
    return False


def _block_of(element: lxml_html.HtmlElement, facts: _PageFacts, max_depth: int = 6
              ) -> tuple | None:
    """The repeated sibling block (card, list item) holding ``element``, if any."""
    node = element
    for _ in range(max_depth):
        parent = node.getparent()
        if parent is None:
            return None
        if facts.twins(node, parent) >= 2:
            return (id(parent), (node.tag, node.get("class")))
        node = parent
    return None


def _repeated_blocks(links: list[_Link], facts: _PageFacts) -> dict[int, tuple]:
    """Map link element ids to their block, for blocks holding two or more distinct URLs."""
    by_block: dict[tuple, set[str]] = {}
    block_of: dict[int, tuple] = {}
    for link in links:
        block = _block_of(link.element, facts)
        if block is not None:
            block_of[id(link.element)] = block
            by_block.setdefault(block, set()).add(link.url)
    return {eid: b for eid, b in block_of.items() if len(by_block[b]) >= 2}


def _is_article(link: _Link, blocks: dict[int, tuple]) -> bool:
    url_score, text_score = _url_score(link.url), _text_score(link.text)
    in_block = id(link.element) in blocks
    if url_score == 2:
        return text_score >= 1 or (in_block and not link.text)
    return url_score == 1 and text_score == 2 and in_block
