"""Article extraction: trafilatura at the core, cleanup around it only where it has evidence.

The page is decoded and parsed once with lxml (comments, processing instructions and control
bytes left out). Metadata (title, date, author, credited source, tags, canonical URL) is read
from that tree first, preferring structured metadata (``article:published_time``, JSON-LD,
``itemprop``) over visible lines. On Vietnamese portals (a .vn host, a page declaring or written
in Vietnamese) boilerplate blocks common there (related-news lists, rating polls, visit
counters, share/print tools, image captions, sign-off lines, portlet headings) are pruned before
trafilatura extracts the body; on any other page trafilatura's own body is kept and only lines
with evidence against them are dropped (link teasers, widget blocks, date stamps, trailing
credits). The lead ("sapo", standfirst) next to the headline is put back in front. An article
without text says why in ``Article.failure``.
"""

from __future__ import annotations

import json
import re
import unicodedata
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field, replace
from datetime import UTC, date, datetime, timedelta
from itertools import islice
from urllib.parse import urljoin

import trafilatura
from lxml import etree
from lxml import html as lxml_html

from vntext import normalize_text

_ETH = str.maketrans({"ð": "đ", "Ð": "Đ"})

# --- parsing ----------------------------------------------------------------------------------

_TOO_DEEP = "Excessive depth"
_CONTROL_BYTES = bytes(c for c in range(32) if chr(c) not in "\t\n\r")
_CONTROL_CHARACTERS = re.compile(f"[{re.escape(_CONTROL_BYTES.decode('ascii'))}]+")
# An XHTML page's "<?xml … encoding=…?>": lxml refuses a decoded string that declares one.
_XML_DECLARATION = re.compile(r"^\s*<\?xml[^>]*>")
# Tags that only nest (never carry a paragraph break of their own): taken out of markup that is
# nested too deep for the parser.
_NESTING_TAG = re.compile(
    r"</?(?:div|span|section|article|main|aside|font|center|b|i|em|strong|u|small|big"
    r"|table|tbody|thead|tr|td|th|ul|ol|blockquote|form|label|a|abbr|sup|sub)\b[^>]*>",
    re.I,
)

# --- decoding ---------------------------------------------------------------------------------

_META_CHARSET = re.compile(rb"""<meta[^>]+charset\s*=\s*["']?\s*([A-Za-z0-9_.:\-]+)""", re.I)
_CODEC_ALIASES = {"windows-1258": "cp1258", "x-cp1258": "cp1258", "utf8": "utf-8"}

# --- boilerplate ------------------------------------------------------------------------------

# Class/id fragments of blocks that are never article body (matched on lower-cased class + id).
_BOILERPLATE_CLASS = re.compile(
    r"related|relate-|other-?news|othernews|tin-?khac|tinkhac|tin-?lien-?quan|tinlienquan"
    r"|tin-?moi|tin-?cung|cung-?chuyen-?muc|same-?cat|news-?other|more-?news|read-?more|xem-?them"
    r"|comment|binh-?luan|y-?kien|social|share|rating|poll|vote|danh-?gia"
    r"|counter|online|thong-?ke|thongke|statistic|lien-?ket|lienket|weblink"
    r"|breadcrumb|trending|tags?\b|tag-|keyword|tu-?khoa|print|toolbar|\btool\b|font-?size"
    r"|advert|banner|quang-?cao|sidebar|widget|newsletter|subscribe"
)
# Headings that open a block of links or widgets rather than article text.
_BOILERPLATE_HEADING = re.compile(
    r"^\s*(tin khác|các tin khác|tin liên quan|bài viết liên quan|bài liên quan|tin cùng"
    r"|cùng chuyên mục|cùng chủ đề|bài viết khác|các bài khác|tin bài khác|tin tức khác"
    r"|tin tức liên quan|tin mới|những tin|tin đã đưa|tin xem nhiều|tin đọc nhiều|đọc nhiều"
    r"|xem nhiều|tin nổi bật|văn bản mới|đọc thêm|xem thêm|có thể bạn quan tâm"
    r"|bình luận|ý kiến bạn đọc|gửi ý kiến|liên kết website|thống kê truy cập"
    r"|đánh giá|bình chọn|thăm dò ý kiến|từ khóa|từ khoá|tags?)\b",
    re.I,
)
# Short lines that are widget remnants (view counts, share/print tools, ratings, labels).
_BOILERPLATE_LINE = re.compile(
    r"lượt xem|lượt truy cập|người đang online|đang truy cập|đang online|tổng truy cập"
    r"|^\s*(chia sẻ|in bài|in trang|gửi email|gửi bài|đánh giá|bình chọn|từ khó[aá]|tags?:"
    r"|bình luận|ý kiến|xem thêm|đọc thêm|tin liên quan|tin khác|bài viết liên quan|lưu bài)",
    re.I,
)
_CAPTION_CLASS = re.compile(r"caption|image_?desc|img-?desc|photo-?desc|desc-?img|chu-?thich|\bpic")
_LEAD_CLASS = re.compile(
    r"sapo|summary|\blead|hometext|chapeau|tom-?tat|tomtat|article-?desc|news-?desc|intro"
    r"|excerpt|teaser|abstract|quote-?lead|\bdescription|preface|standfirst|sub-?headline|chapo\b"
)
# "Read more:", "Lea también:", "À lire aussi »": a short label before a link.
_TEASER_LABEL = re.compile(r"^[^:»|]{2,30}[:»|]\s*")
_WRITTEN_URL = re.compile(r"https?:|www\.|@")
_TEASER_CHARS = 200
_TEASER_DEPTH = 4  # a link, then up to three of its ancestors
# Lines that end an article's text without being part of it: a copyright notice, a picture
# credit.
_TRAILER = re.compile(
    r"^(?:©|\(c\)|copyright\b)|^(?:foto|fotos|photo|photos|bild|titelbild|beitragsbild"
    r"|cr[ée]dits?(?: photos?)?|credits?|fot)\s*:",
    re.I,
)
# Widget blocks named in any language's templates (a narrower list than the portals' one).
_WIDGET_CLASS = re.compile(
    r"breadcrumb|newsletter|subscribe|related|sidebar|share|social|author-?(?:box|bio|info|desc)"
    r"|about-?(?:the-?)?author"
)
_TAG_CLASS = re.compile(r"tags?\b|tag-|keyword|tu-?khoa")
_NOT_LEAD_CLASS = re.compile(r"author|site-?desc|newsletter")
_LEAD_DISTANCE = 60  # elements between the headline and its lead, at most
_STANDFIRST_DISTANCE = 12
_STANDFIRST_CHARS = 80
# The visible headline of pages without <h1> or og:title (old ASP/ASP.NET portals).
_TITLE_CLASS = re.compile(
    r"(news|article|post|entry|detail|content|story)[-_]?(title|headline|name)"
    r"|(title|headline)[-_]?(news|detail|article|post)|tieu-?de|\bheadline\b"
)
# A title's tail after " - " / " | " naming the site rather than the article.
_TITLE_SEPARATOR = re.compile(r"\s+[|–—-]\s+|\s*::\s*")
_SITE_NAME = re.compile(
    r"^(cổng (thông tin|ttđt|tt)|trang (thông tin|tin|ttđt)|báo |tạp chí|đài |website|portal"
    r"|[\w.-]+\.(vn|com|net|org)$)",
    re.I,
)
_LOGO_CLASS = re.compile(r"logo|brand|banner|site-?name|header")
# A portlet's own heading (Liferay's <h1 class="portlet-title">: the section's name above the
# article, R §2.2 Bắc Giang), not the article's headline.
_PORTLET_HEADING_CLASS = re.compile(r"\bportlet-title\b")
_DATE_CLASS = re.compile(r"date|time|ngay|publish|post")
_BYLINE_CLASS = re.compile(r"author|byline|tac-?gia|tacgia|writer|signature|\bsource|nguon")
_RIGHT_ALIGNED = re.compile(r"text-align\s*:\s*right")
_WIDGET_TAGS = {"select", "option", "input", "button", "textarea", "figcaption"}
_BLOCK_TAGS = {"p", "div", "section", "article", "ul", "ol", "table", "h1", "h2", "h3", "h4", "h5"}

# --- credits (author / original source) -------------------------------------------------------

_SOURCE_LINE = re.compile(r"^\(?\s*(?:nguồn(?: tin)?|source)\s*[:：\-–]\s*(.+?)\)?\.?$", re.I)
_THEO_LINE = re.compile(r"^\(?\s*theo\s+(.+?)\)?\.?$", re.I)
_AUTHOR_LABEL = re.compile(
    r"^\s*(?:tác giả|bài và ảnh|bài, ảnh|bài|ảnh|tin, ảnh|tin|phóng viên|người viết|by)\s*[:：]\s*",
    re.I,
)
_NON_PERSON = re.compile(
    r"^(cổng|báo|ban |sở |ubnd|uỷ ban|ủy ban|trung tâm|văn phòng|đài|tạp chí|cục |bộ |phòng "
    r"|thông tấn|ttxvn|tòa soạn|toà soạn|web|portal|admin|quản trị)",
    re.I,
)
_TRAILING_CREDIT = re.compile(r"^(.+?)\s*\(\s*(?:theo|nguồn\s*:?)\s+([^()]{2,50})\)$", re.I)
_AGENCY_CODES = re.compile(r"^(?:TTXVN|VNA|VOV|VTV|VNS|AFP|AP|Reuters|Xinhua)(?:/[A-Z.]{2,8})*$")
_ANONYMOUS = {"pv", "ctv", "btv", "bbt", "nhóm pv", "pv-ctv", "ptv"}

# --- dates ------------------------------------------------------------------------------------

_DATE = re.compile(
    r"(?<!\d)(\d{1,2})\s*[/.\-]\s*(\d{1,2})\s*[/.\-]\s*(\d{4})(?!\d)"
    r"|ngày\s+(\d{1,2})\s+tháng\s+(\d{1,2})\s+năm\s+(\d{4})",
    re.I,
)
_TIME = re.compile(r"(?<!\d)([01]?\d|2[0-3])\s*[:hg]\s*([0-5]\d)(?:\s*:\s*([0-5]\d))?(?!\d)")
_DATE_WORDS = re.compile(
    r"thứ\s+\w+|chủ nhật|gmt\s*[+-]?\s*\d*|utc|ngày|cập nhật|đăng|lúc|giờ|\bam\b|\bpm\b", re.I
)
_RELATIVE = re.compile(r"trước|vừa xong|hôm qua|hôm nay|ago", re.I)
_CLOCK_CLASS = re.compile(r"clock|time-?now|today|current-?date|header|top-?bar|topbar|weather")
_DATE_META = (
    "article:published_time",
    "og:published_time",
    "datepublished",
    "pubdate",
    "publishdate",
    "publish-date",
    "dc.date.issued",
    "dc.date",
    "date",
)
_DEFAULT_OFFSET = "+07:00"
# A publication date outside these bounds is a placeholder (ASP.NET's 0001-01-01, 9999-12-31)
# or a typo, not a date: treated as missing.
_EARLIEST_DATE = date(1990, 1, 1)
_FUTURE_SLACK = timedelta(days=1)
_DATE_LINE_MAX = 160
_DATE_SCAN_LIMIT = 60

_TITLE_REPEAT_LINES = 3
_SECTION_LABEL_WORDS = 6
_LAYOUT_CELL_CHARS = 300
_WORD = re.compile(r"[^\W\d_]{2,}")
_MIN_BODY_WORDS = 5
_VIETNAMESE_HOST = re.compile(r"^(?:https?:)?//[^/?#]*\.vn(?::\d+)?(?:[/?#]|$)", re.I)
_VIETNAMESE_LETTERS = re.compile(r"[ăâđêôơưạảấầẩẫậắằẳẵặẹẻẽếềểễệỉịọỏốồổỗộớờởỡợụủứừửữựỳỵỷỹ]")


@dataclass(frozen=True)
class Article:
    """The clean, normalised content of one article page."""

    title: str = ""
    text: str = ""
    published: str | None = None
    author: str | None = None
    original_source: str | None = None
    tags: list[str] = field(default_factory=list)
    language: str | None = None
    canonical_url: str | None = None
    failure: str | None = None  # why no body text came out (set whenever ``is_empty``)

    @property
    def is_empty(self) -> bool:
        """True when no usable body text was found (fewer than a few words)."""
        words = islice(_WORD.finditer(self.text), _MIN_BODY_WORDS)
        return sum(1 for _ in words) < _MIN_BODY_WORDS


@dataclass
class _Credits:
    """Author and credited outlet, first found wins."""

    author: str | None = None
    source: str | None = None

    def take(self, text: str) -> bool:
        """Record ``text`` if it is a credit line; return whether it was one."""
        author, source = parse_credit(text)
        if author is None and source is None:
            return False
        self.author = self.author or author
        self.source = self.source or source
        return True


# --- public API -------------------------------------------------------------------------------


def extract_article(html: bytes | str, url: str, *, encoding: str | None = None) -> Article:
    """Extract the article of one page.

    ``encoding`` is the HTTP charset when known; otherwise the meta charset is used, then
    UTF-8, then windows-1258. Never raises: when no body text can be extracted, the article
    is empty and its ``failure`` says why (garbage, markup without text, an internal error).
    """
    try:
        markup = decode_html(_without_controls(html), encoding)
        tree = _parse(markup)
        if tree is None:
            return Article(failure="no HTML document in the response")
        article = _extract(tree, markup, url)
    except Exception as error:  # noqa: BLE001 - arbitrary input must never break a crawl
        return Article(failure=f"extraction failed: {type(error).__name__}: {error}"[:300])
    if article.is_empty:
        return replace(article, failure="no article text found on the page")
    return article


def decode_html(data: bytes | str, encoding: str | None = None) -> str:
    """Decode page bytes (HTTP charset, else meta charset, else UTF-8/cp1258) and NFC them.

    Bytes that are valid UTF-8 with non-ASCII characters are UTF-8 whatever the labels say:
    a mislabelled "iso-8859-1" page would otherwise decode into mojibake without any error.
    """
    if isinstance(data, str):
        return unicodedata.normalize("NFC", data)
    meta = _META_CHARSET.search(data[:4096])
    candidates = [encoding, meta.group(1).decode("ascii") if meta else None, "utf-8", "cp1258"]
    if not data.isascii():
        candidates.insert(0, "utf-8")
    for name in candidates:
        codec = _codec(name)
        if codec is None:
            continue
        try:
            # cp1258 yields base letters + combining tone marks: NFC composes them.
            return unicodedata.normalize("NFC", data.decode(codec))
        except (LookupError, UnicodeDecodeError):
            continue
    return unicodedata.normalize("NFC", data.decode("utf-8", "replace"))


def parse_credit(text: str) -> tuple[str | None, str | None]:
    """Read a sign-off line: ``"Nguồn: X"``/``"Theo X"`` → source, a name → author.

    ``"Hà Phương/VOV.VN"`` gives both. Returns ``(None, None)`` for anything else.
    """
    text = normalize_text(text).strip(" .;")
    if not text or len(text) > 80 or "\n" in text:
        return None, None
    if _AGENCY_CODES.match(text):  # "VNA/VNS", "TTXVN"
        return None, text.split("/")[0]
    if credited := _TRAILING_CREDIT.match(text):  # "Hoàng Lan (Theo Báo Cao Bằng)"
        name, outlet = credited.group(1).strip(" .,-–"), credited.group(2).strip(" .")
        return (name if is_person_name(name) else None), outlet
    for pattern in (_SOURCE_LINE, _THEO_LINE):
        match = pattern.match(text)
        if match and len(match.group(1)) <= 50:
            return None, match.group(1).strip(" .")
    text = _AUTHOR_LABEL.sub("", text)
    if text.lower() in _ANONYMOUS:
        return None, None
    parts = re.split(r"\s*/\s*|\s+[-–]\s+", text, maxsplit=1)
    name = parts[0]
    outlet = parts[1].strip(" .()") if len(parts) > 1 else None
    if outlet:
        theo = _THEO_LINE.match(outlet)
        outlet = theo.group(1) if theo else outlet
    if is_person_name(name):
        return name, outlet or None
    return None, None


def is_person_name(text: str) -> bool:
    """True for a short run of capitalised words that looks like a person's name."""
    words = text.split()
    if not 2 <= len(words) <= 5 or len(text) > 40 or _NON_PERSON.match(text):
        return False
    return all(w[0].isupper() and w.replace(".", "").replace("-", "").isalpha() for w in words)


# --- pipeline ---------------------------------------------------------------------------------


def _codec(name: str | None) -> str | None:
    if not name:
        return None
    name = name.strip().lower()
    return _CODEC_ALIASES.get(name, name)


def _without_controls(data: bytes | str) -> bytes | str:
    """``data`` without NUL and the other C0 controls (bar tab and line ends), at which libxml2
    stops reading; in UTF-8 and the one-byte codepages those bytes are never part of a letter."""
    if isinstance(data, bytes):
        return data.translate(None, _CONTROL_BYTES)
    return _CONTROL_CHARACTERS.sub("", data)


def _parse(markup: str) -> etree._Element | None:
    """The page's tree without comments and processing instructions (React's ``<!-- -->``
    separators would otherwise split text that trafilatura then loses). Markup nested deeper
    than libxml2 follows (256 levels) is parsed again with its nesting tags taken out, since
    libxml2 drops whatever lies below that depth."""
    if declaration := _XML_DECLARATION.match(markup):
        markup = markup[declaration.end():]
    if not markup.strip():
        return None
    parser = lxml_html.HTMLParser(remove_comments=True, remove_pis=True, collect_ids=False)
    try:
        tree = lxml_html.document_fromstring(markup, parser=parser)
        if any(_TOO_DEEP in entry.message for entry in parser.error_log):
            tree = lxml_html.document_fromstring(_NESTING_TAG.sub(" ", markup), parser=parser)
    except (etree.ParserError, ValueError):
        return None
    return tree if tree is not None and tree.tag == "html" else None


def _extract(tree: etree._Element, markup: str, url: str) -> Article:
    head = _HeadData(tree)
    page = _PageIndex(tree)
    title = _title(tree, head, page)
    title_node = _find_title_node(page, title)
    published = _published(tree, head, page, title_node)
    tags = _tags(page, head)
    credits = _Credits()
    _byline_credits(page, head, credits)
    headline = title_node if title_node is not None else next(tree.iter("h1"), None)
    leads = _lead_texts(page, headline)
    if _is_vietnamese_page(tree, head, title, url):
        lines = _portal_lines(tree, page, url, title, credits, title_node)
        if not lines:  # the pruning took the article's container: trafilatura's own choice
            lines = _unpruned_lines(markup, url, title)
    else:
        lines = _generic_lines(tree, page, url, title)
        leads += _standfirst(headline)
    lines = _with_leads(leads, lines)
    text = normalize_text("\n".join(lines))
    return Article(
        title=title,
        text=text,
        published=published,
        author=credits.author,
        original_source=credits.source,
        tags=tags,
        language=_language(tree, text),
        canonical_url=head.canonical(url),
    )


def _is_vietnamese_page(tree: etree._Element, head: _HeadData, title: str, url: str) -> bool:
    """Evidence that the Vietnamese-portal rules apply: a Vietnamese site (.vn), a page that
    declares Vietnamese, or one that declares nothing and has a Vietnamese headline."""
    if _VIETNAMESE_HOST.match(url):
        return True
    declared = (tree.get("lang") or head.first("og:locale", "content-language") or "").lower()
    if declared:
        return declared.startswith("vi")
    return bool(_VIETNAMESE_LETTERS.search(title.lower()))


def _portal_lines(
    tree: etree._Element, page: _PageIndex, url: str, title: str, credits: _Credits,
    title_node: etree._Element | None,
) -> list[str]:
    """Vietnamese portals: boilerplate blocks and the section headings above the headline
    (a portlet's title) pruned before trafilatura."""
    _prune(page, credits)
    if title_node is not None and title_node in page.position:
        where = page.position[title_node]
        for heading in list(page.root.iter("h1", "h2")):
            if page.position.get(heading, where) < where and title_node not in heading.iter():
                _drop(heading)
    return _clean_lines(_doc_lines(_trafilatura(tree, url)), title, credits, page)


def _generic_lines(tree: etree._Element, page: _PageIndex, url: str, title: str) -> list[str]:
    """Any other page: trafilatura's own decisions, then only the cleanup with evidence."""
    lines = _doc_lines(_trafilatura(tree, url))
    teasers = _link_teasers(page, {line for line in lines if len(line) <= _TEASER_CHARS})
    lines = [line for line in lines if line not in teasers and not _is_date_line(line)]
    while lines and len(lines[-1]) <= _TEASER_CHARS and _TRAILER.search(lines[-1]):
        lines.pop()
    widgets = _widget_text(page, sum(len(line) for line in lines))
    return [line for line in lines if _squash(line) not in widgets] if widgets else lines


def _widget_text(page: _PageIndex, body_chars: int) -> str:
    """The text of the page's blocks marked as widgets (share, related, newsletter…) that
    cannot be the article's container: each holds less than half the extracted text."""
    texts = []
    for node, marks in page.marked:
        if node.tag in ("body", "html", "main", "article") or not _WIDGET_CLASS.search(marks):
            continue
        text = _text(node)
        if text and len(text) < body_chars / 2:
            texts.append(text.casefold())
    return "\n".join(texts)


def _unpruned_lines(markup: str, url: str, title: str) -> list[str]:
    """The generic extraction of a fresh parse of ``markup`` (the first tree is pruned)."""
    tree = _parse(markup)
    return _generic_lines(tree, _PageIndex(tree), url, title) if tree is not None else []


def _trafilatura(tree: etree._Element, url: str) -> object:
    return trafilatura.bare_extraction(
        tree, url=url, include_comments=False, include_tables=True, include_images=False,
        with_metadata=False,
    )


def _link_teasers(page: _PageIndex, candidates: set[str]) -> set[str]:
    """Those of ``candidates`` (short lines of the body) that are paragraphs only pointing
    elsewhere on the page: "Read more: <link>", "Lea también: <link>", or one link alone (not a
    URL written out)."""
    teasers: set[str] = set()
    if not candidates:
        return teasers
    for link in page.root.iter("a"):
        node = link
        for _ in range(_TEASER_DEPTH):
            text = _text(node)
            if len(text) > _TEASER_CHARS:
                break
            if text in candidates:
                if _only_points_elsewhere(node, text):
                    teasers.add(text)
                break
            node = node.getparent()
            if node is None:
                break
    return teasers


def _only_points_elsewhere(node: etree._Element, text: str) -> bool:
    linked = sum(len(_text(a)) for a in node.iter("a"))
    label = _TEASER_LABEL.match(text)
    if label and linked >= 0.9 * (len(text) - label.end()) > 0:
        return True
    return (linked >= 0.9 * len(text) and len(text) <= 160 and not _WRITTEN_URL.search(text)
            and not any(n.tag in ("li", "td", "dd") for n in _lineage(node)))


def _doc_lines(doc: object) -> list[str]:
    raw = getattr(doc, "text", None) or ""
    return [line for line in normalize_text(raw).split("\n") if line.strip()]


class _PageIndex:
    """The page body and its elements that carry a class or id, listed in one pass."""

    def __init__(self, tree: etree._Element) -> None:
        body = tree.find("body")
        self.root = body if body is not None else tree
        self.position: dict[etree._Element, int] = {}
        self.marked: list[tuple[etree._Element, str]] = []
        for index, node in enumerate(self.root.iter(etree.Element)):
            self.position[node] = index
            if marks := _marks(node):
                self.marked.append((node, marks))

    def with_marks(self, pattern: re.Pattern[str]) -> Iterator[etree._Element]:
        """Elements whose class/id matches ``pattern``, in document order."""
        return (node for node, marks in self.marked if pattern.search(marks))


class _HeadData:
    """The page's <meta>, <link rel=canonical> and JSON-LD, read once."""

    def __init__(self, tree: etree._Element) -> None:
        self.meta: dict[str, list[str]] = {}
        for node in tree.iter("meta"):
            key = (node.get("property") or node.get("name") or node.get("itemprop") or "").lower()
            content = node.get("content")
            if key and content and content.strip():
                self.meta.setdefault(key, []).append(normalize_text(content))
        self.canonical_href = next(
            (
                node.get("href")
                for node in tree.iter("link")
                if (node.get("rel") or "").lower() == "canonical" and node.get("href")
            ),
            None,
        )
        self.jsonld = list(_jsonld_objects(tree))

    def first(self, *keys: str) -> str | None:
        """The first meta content under any of ``keys``."""
        for key in keys:
            if self.meta.get(key):
                return self.meta[key][0]
        return None

    def jsonld_value(self, key: str) -> object:
        """The first JSON-LD value under ``key``."""
        return next((obj[key] for obj in self.jsonld if obj.get(key)), None)

    def canonical(self, url: str) -> str | None:
        """rel=canonical, else og:url, made absolute against the page URL."""
        href = self.canonical_href or self.first("og:url")
        return urljoin(url, href.strip()) if href and href.strip() else None


def _jsonld_objects(tree: etree._Element) -> Iterator[dict]:
    for script in tree.iter("script"):
        if (script.get("type") or "").lower() != "application/ld+json" or not script.text:
            continue
        try:
            data = json.loads(script.text)
        except ValueError:
            continue
        yield from _flatten_jsonld(data)


def _flatten_jsonld(data: object) -> Iterator[dict]:
    if isinstance(data, list):
        for item in data:
            yield from _flatten_jsonld(item)
    elif isinstance(data, dict):
        yield data
        yield from _flatten_jsonld(data.get("@graph", []))


# --- title ------------------------------------------------------------------------------------


def _title(tree: etree._Element, head: _HeadData, page: _PageIndex) -> str:
    """The headline: og:title, the first <h1> outside the site's header (or the longer heading
    right under it when that <h1> is a portlet's or section's label), the heading <title>
    repeats, the JSON-LD headline, a headline-classed element, then <title>; a tail naming the
    site (" - Cổng thông tin điện tử tỉnh X") is cut off."""
    site = head.first("og:site_name")
    headline = head.jsonld_value("headline")
    title_tag = next(tree.iter("title"), None)
    page_title = _text(title_tag) if title_tag is not None else ""
    candidates = [
        head.first("og:title", "twitter:title"),
        _first_article_h1(tree),
        _heading_named_by_title(page, _without_site_name(normalize_text(page_title), site)),
        headline if isinstance(headline, str) else None,
        _headline_element_text(page),
        page_title,
    ]
    titles = [_without_site_name(normalize_text(c), site) for c in candidates if c and c.strip()]
    site_key = (site or "").casefold()
    return next((t for t in titles if t and t.casefold() != site_key), titles[0] if titles else "")


def _heading_named_by_title(page: _PageIndex, page_title: str) -> str | None:
    """The <h2>/<h3> whose text the <title> repeats, on pages without an <h1>."""
    wanted = page_title.casefold()
    if len(wanted) < 10:
        return None
    for heading in page.root.iter("h2", "h3"):
        if _text(heading).casefold() == wanted:
            return _text(heading)
    return None


def _first_article_h1(tree: etree._Element) -> str | None:
    """The first <h1> outside the site's header that is not a section label: a short <h1>
    followed, before any paragraph, by a longer heading is the section's, not the article's."""
    for h1 in tree.iter("h1"):
        if _in_site_header(h1) or _PORTLET_HEADING_CLASS.search(_marks(h1)):
            continue
        text = _text(h1)
        following = h1.xpath("following::*[self::h1 or self::h2 or self::h3 or self::p]"
                             "[position() <= 3]")
        for node in following:
            if node.tag == "p" and _text(node):
                break
            if node.tag != "p" and len(_text(node)) > max(len(text) * 1.5, 30) \
                    and len(text.split()) <= _SECTION_LABEL_WORDS:
                return _text(node)
        return text or None
    return None


def _without_site_name(title: str, site: str | None) -> str:
    """``title`` without trailing parts that name the site."""
    separators = list(_TITLE_SEPARATOR.finditer(title))
    site_key = (site or "").casefold()
    while separators:
        tail = title[separators[-1].end():].strip()
        if tail.casefold() != site_key and not _SITE_NAME.match(tail):
            break
        title = title[: separators.pop().start()]
    return title.strip()


def _in_site_header(node: etree._Element) -> bool:
    """Whether ``node`` sits in the site's logo, banner or header (a site-name <h1>)."""
    return any(n.tag == "header" or _LOGO_CLASS.search(_marks(n)) for n in _lineage(node))


def _headline_element_text(page: _PageIndex) -> str | None:
    """The text of the first headline-classed element that reads like a headline."""
    for node in page.with_marks(_TITLE_CLASS):
        text = _text(node)
        if 10 <= len(text) <= 300 and _link_density(node) < 0.5 and not _in_site_header(node):
            return text
    return None


def _find_title_node(page: _PageIndex, title: str) -> etree._Element | None:
    """The visible element holding the title (the date line follows it)."""
    if not title:
        return None
    wanted = title.casefold()
    for node in page.root.iter(etree.Element):
        if node.tag in ("script", "style", "a") or len(node) > 3:
            continue
        start = (node.text or "").strip()[:8].translate(_ETH).casefold()
        if start and not wanted.startswith(start):
            continue
        text = _text(node)
        if abs(len(text) - len(wanted)) <= 2 and normalize_text(text).casefold() == wanted:
            return node
    return None


# --- date -------------------------------------------------------------------------------------


def _published(
    tree: etree._Element, head: _HeadData, page: _PageIndex, title_node: etree._Element | None
) -> str | None:
    structured = _structured_date(tree, head)
    if structured and "T" in structured:
        return structured
    visible = plausible_date(_visible_date(page, title_node))
    if visible and (structured is None or visible.startswith(structured)):
        return visible
    return structured or plausible_date(_fallback_date(tree))


def plausible_date(value: str | None, now: datetime | None = None) -> str | None:
    """``value`` (ISO 8601 or a bare date) if it lies between 1990 and a day from ``now``,
    else None: such a date is a placeholder or a typo, as good as none."""
    if not value:
        return None
    try:
        day = date.fromisoformat(value[:10])
    except ValueError:
        return None
    latest = ((now or datetime.now(UTC)) + _FUTURE_SLACK).date()
    return value if _EARLIEST_DATE <= day <= latest else None


def _structured_date(tree: etree._Element, head: _HeadData) -> str | None:
    candidates = [head.first(*_DATE_META), head.jsonld_value("datePublished")]
    for node in tree.xpath('//*[@itemprop="datePublished"]')[:1]:
        candidates.append(node.get("content") or node.get("datetime") or _text(node))
    for value in candidates:
        parsed = plausible_date(_iso(value)) if isinstance(value, str) else None
        if parsed:
            return parsed
    return None


def _iso(value: str) -> str | None:
    """ISO 8601 with an offset (Vietnam's when none is given) or a bare date."""
    value = value.strip()
    if re.fullmatch(r"\d{4}-\d{2}-\d{2}", value):
        return value
    try:
        moment = datetime.fromisoformat(value.replace(" ", "T", 1))
    except ValueError:
        return None
    if moment.tzinfo is None:
        return moment.strftime("%Y-%m-%dT%H:%M:%S") + _DEFAULT_OFFSET
    return moment.isoformat(timespec="seconds")


def _visible_date(page: _PageIndex, title_node: etree._Element | None) -> str | None:
    """The first absolute date line after the title (never a header clock or "3 giờ trước")."""
    for node in _date_line_candidates(page, title_node):
        text = _text(node)
        if len(text) > _DATE_LINE_MAX or _RELATIVE.search(text):
            continue
        parsed = parse_vietnamese_date(text)
        if parsed:
            return parsed
    return None


def _date_line_candidates(
    page: _PageIndex, title_node: etree._Element | None
) -> Iterator[etree._Element]:
    if title_node is not None:
        following = title_node.itersiblings()
        parent = title_node.getparent()
        # Date lines sit right after the title, sometimes one level up (title in a header div).
        siblings = list(following)[:_DATE_SCAN_LIMIT]
        if parent is not None:
            siblings += list(parent.itersiblings())[:5]
        for sibling in siblings:
            yield from sibling.iter(etree.Element)
        return
    for node in page.with_marks(_DATE_CLASS):
        if not _in_clock(node):
            yield node


def _in_clock(node: etree._Element) -> bool:
    return any(_CLOCK_CLASS.search(_marks(n)) or n.tag == "header" for n in _lineage(node))


def parse_vietnamese_date(text: str) -> str | None:
    """Parse a Vietnamese date line ("Thứ Hai, 20/07/2024 08:15", "08:15 - 20/07/2024",
    "ngày 20 tháng 7 năm 2024") into ISO 8601 with +07:00, or a bare date without a time."""
    match = _DATE.search(text)
    if not match:
        return None
    groups = [g for g in match.groups() if g is not None]
    day, month, year = (int(g) for g in groups)
    try:
        datetime(year, month, day)
    except ValueError:
        return None
    date = f"{year:04d}-{month:02d}-{day:02d}"
    clock = _nearby_time(text, match.start(), match.end())
    return f"{date}T{clock}{_DEFAULT_OFFSET}" if clock else date


def _nearby_time(text: str, start: int, end: int) -> str | None:
    after = _TIME.search(text[end : end + 25])
    before = list(_TIME.finditer(text[max(0, start - 25) : start]))
    match = after or (before[-1] if before else None)
    if not match:
        return None
    hour, minute, second = match.group(1), match.group(2), match.group(3) or "00"
    return f"{int(hour):02d}:{minute}:{second}"


def _fallback_date(tree: etree._Element) -> str | None:
    from htmldate import find_date

    try:
        return find_date(tree, extensive_search=False, original_date=True)
    except Exception:  # noqa: BLE001 - htmldate is a best-effort last resort
        return None


# --- tags -------------------------------------------------------------------------------------


def _tags(page: _PageIndex, head: _HeadData) -> list[str]:
    for node in page.with_marks(_TAG_CLASS):
        if not _in_clock(node):
            tags = [_text(a) for a in node.iter("a")] or _label_list(_text(node))
            if tags := _unique(tags):
                return tags
    listed = head.meta.get("article:tag") or []
    keywords = head.jsonld_value("keywords") or head.first("news_keywords", "keywords") or ""
    if isinstance(keywords, list):
        listed = listed or [str(k) for k in keywords]
    return _unique(listed or _label_list(str(keywords)))


def _label_list(text: str) -> list[str]:
    text = re.sub(r"^\s*(từ khó[aá]|tags?|keywords?)\s*:?", "", text, flags=re.I)
    return [part for part in re.split(r"[,;]", text)]


def _unique(items: Iterable[str]) -> list[str]:
    seen: dict[str, None] = {}
    for item in items:
        item = normalize_text(item).strip(" #,;")
        if item and len(item) <= 60:
            seen.setdefault(item, None)
    return list(seen)


# --- credits ----------------------------------------------------------------------------------


def _byline_credits(page: _PageIndex, head: _HeadData, credits: _Credits) -> None:
    """Author/source from byline elements and structured metadata."""
    author = head.jsonld_value("author")
    for candidate in author if isinstance(author, list) else [author]:
        name = candidate.get("name") if isinstance(candidate, dict) else candidate
        if isinstance(name, str) and is_person_name(normalize_text(name)):
            credits.author = credits.author or normalize_text(name)
    for node in page.with_marks(_BYLINE_CLASS):
        if len(node) <= 3:
            credits.take(_text(node))
    meta_author = head.first("author", "article:author", "dc.creator")
    if meta_author and is_person_name(meta_author):
        credits.author = credits.author or meta_author


def _is_sign_off(node: etree._Element) -> bool:
    """A short right-aligned or all-bold/italic line, the usual place for author/source."""
    if node.tag not in ("p", "div") or len(node) > 3:
        return False
    style = (node.get("style") or "").lower()
    aligned = bool(_RIGHT_ALIGNED.search(style) or re.search(r"right", node.get("class") or ""))
    children = [c for c in node if isinstance(c.tag, str)]
    emphasised = len(children) == 1 and children[0].tag in ("b", "strong", "em", "i")
    if not (aligned or emphasised):  # most paragraphs: decided without reading their text
        return False
    text = _text(node)
    if not text or len(text) > 80:
        return False
    return aligned or _text(children[0]) == text


# --- pruning ----------------------------------------------------------------------------------


def _prune(page: _PageIndex, credits: _Credits) -> None:
    root = page.root
    doomed = list(root.iter(*_WIDGET_TAGS))
    doomed += [node for node, marks in page.marked if _is_boilerplate_block(node, marks)]
    doomed += [node for node in page.with_marks(_CAPTION_CLASS) if len(_text(node)) < 300]
    for node in root.iter("p", "div", "figure", "table", "center"):
        if (_is_image_block(node) or _is_caption_under_image(node)
                or (_is_sign_off(node) and credits.take(_text(node)))):
            doomed.append(node)
    doomed += _headed_boilerplate(root)
    for node in doomed:
        _drop(node)
    _unwrap_layout_tables(root)


def _is_boilerplate_block(node: etree._Element, marks: str) -> bool:
    """A block whose class/id marks it as a widget (related news, share, poll, counter…)."""
    if node.tag in ("body", "html", "main", "article", "form"):
        return False
    if not _BOILERPLATE_CLASS.search(marks):
        return False
    if _LEAD_CLASS.search(marks) and not _TAG_CLASS.search(marks):  # "tags-summary" is tags
        return False
    # A container holding the article itself is never dropped for a stray class word.
    return len(_text(node)) < 2000 or _link_density(node) > 0.5


def _is_image_block(node: etree._Element) -> bool:
    """An image with at most a caption's worth of text."""
    return node.find(".//img") is not None and len(_text(node)) < 250


def _is_caption_under_image(node: etree._Element) -> bool:
    """A short line all in italics right under an image block: the image's caption."""
    children = [c for c in node if isinstance(c.tag, str)]
    if len(children) != 1 or children[0].tag not in ("em", "i"):
        return False
    previous = next(node.itersiblings(etree.Element, preceding=True), None)
    if previous is None or _text(previous):
        return False
    if previous.tag != "img" and previous.find(".//img") is None:
        return False
    text = _text(node)
    return 0 < len(text) < 250 and _text(children[0]) == text


def _headed_boilerplate(root: etree._Element) -> list[etree._Element]:
    """Blocks opened by a heading such as "Tin khác" or "Bình luận" (the heading and its list)."""
    doomed = []
    for node in root.iter("h2", "h3", "h4", "h5", "h6", "p", "span", "strong", "div"):
        if len(node) > 2:
            continue
        text = _text(node)
        if not text or len(text) > 60 or not _BOILERPLATE_HEADING.match(text):
            continue
        block = _heading_block(node)
        if block is not None:
            doomed.append(block)
    return doomed


def _heading_block(heading: etree._Element) -> etree._Element | None:
    """The smallest ancestor that is the heading plus links, not the article text."""
    node = heading
    while node.getparent() is not None and node.tag not in _BLOCK_TAGS - {"p"}:
        node = node.getparent()
    parent = node.getparent()
    if parent is None or parent.tag in ("body", "html"):
        return node
    rest = len(_text(parent)) - len(_text(node))
    link_text = sum(len(_text(a)) for a in parent.iter("a"))
    if rest - link_text < 200:
        return parent
    return node


def _unwrap_layout_tables(root: etree._Element) -> None:
    """Tables used for page layout become plain divs, so that the extractor sees the page's
    blocks rather than rows of cells. A layout table holds another table, a cell with a
    paragraph's worth of text, or (at most four cells) cells holding paragraphs; a table of
    figures does none of these."""
    for table in list(root.iter("table")):
        if _is_layout_table(table):
            for node in table.iter("table", "tbody", "thead", "tfoot", "tr", "td", "th"):
                node.tag = "div"


def _is_layout_table(table: etree._Element) -> bool:
    if table.tag != "table":  # already unwrapped with the table around it
        return False
    cells = table.findall(".//td")
    if not cells:
        return False
    if table.find(".//table") is not None:
        return True
    if any(len(_text(cell)) > _LAYOUT_CELL_CHARS for cell in cells):
        return True
    holds_blocks = any(c.find("div") is not None or c.find("p") is not None for c in cells)
    return holds_blocks and len(cells) <= 4


def _drop(node: etree._Element) -> None:
    """Remove ``node`` but keep its tail text."""
    parent = node.getparent()
    if parent is None:
        return
    tail = node.tail
    previous = node.getprevious()
    if tail:
        if previous is not None:
            previous.tail = (previous.tail or "") + tail
        else:
            parent.text = (parent.text or "") + tail
    parent.remove(node)


# --- body text --------------------------------------------------------------------------------


def _clean_lines(
    lines: list[str], title: str, credits: _Credits, page: _PageIndex
) -> list[str]:
    lines = _without_title_copy(lines, title, page)
    kept = [line for line in lines if not _is_noise_line(line)]
    while kept and credits.take(kept[-1]):
        kept.pop()
    return kept


def _without_title_copy(lines: list[str], title: str, page: _PageIndex) -> list[str]:
    """The headline repeated at the top of the body (after a tag or date line, at times) is
    dropped once, unless the page itself has a paragraph that repeats the headline."""
    wanted = title.casefold()
    for index, line in enumerate(lines[:_TITLE_REPEAT_LINES]):
        if line.casefold() == wanted:
            if any(_text(p).casefold() == wanted for p in page.root.iter("p")):
                return lines
            return lines[:index] + lines[index + 1:]
    return lines


def _is_date_line(line: str) -> bool:
    """A short line that is only a date or time stamp ("23.10.2018", "3:59 PM",
    "Letzte Änderung 14.02.2019")."""
    if len(line) > 40 or not (_DATE.search(line) or _TIME.search(line)):
        return False
    rest = _DATE_WORDS.sub("", _DATE.sub("", _TIME.sub("", line)))
    return len(re.findall(r"\w+", rest)) <= 2


def _is_noise_line(line: str) -> bool:
    if len(line) > 100:
        return False
    if _BOILERPLATE_LINE.search(line):
        return True
    # A line that is nothing but a date stamp.
    stripped = _DATE_WORDS.sub("", _DATE.sub("", _TIME.sub("", line)))
    return bool(_DATE.search(line)) and len(re.findall(r"\w+", stripped)) <= 2


def _lead_texts(page: _PageIndex, headline: etree._Element | None) -> list[str]:
    """Lead ("sapo", teaser) paragraphs: lead-classed blocks of prose next to the headline
    (author bios, site descriptions and teaser lists elsewhere on the page are not leads)."""
    if headline is None or headline not in page.position:
        return []
    where = page.position[headline]
    leads: list[str] = []
    for node in page.with_marks(_LEAD_CLASS):
        marks = _marks(node)
        if (node.tag == "body" or _TAG_CLASS.search(marks) or _NOT_LEAD_CLASS.search(marks)
                or abs(page.position[node] - where) > _LEAD_DISTANCE):
            continue
        text = _text(node)
        if (40 <= len(text) <= 1500 and _link_density(node) < 0.2
                and not any(text in lead for lead in leads)):
            leads.append(text)
    return leads


def _standfirst(headline: etree._Element | None) -> list[str]:
    """The paragraph of prose that follows the headline within a few elements (a standfirst
    in an <h2> or a plain <p>, which trafilatura often leaves out)."""
    if headline is None:
        return []
    for node in headline.xpath(f"following::*[position() <= {_STANDFIRST_DISTANCE}]"):
        if node.tag not in ("p", "h2", "h3", "div") or any(
                child.tag in _BLOCK_TAGS for child in node):
            continue
        text = _text(node)
        if len(text) >= _STANDFIRST_CHARS:
            return [text] if len(text) <= 1000 and _link_density(node) < 0.2 else []
    return []


def _with_leads(leads: list[str], lines: list[str]) -> list[str]:
    body = _squash(" ".join(lines))
    missing = [lead for lead in leads if _squash(lead)[:80] not in body]
    return missing[:1] + lines


def _language(tree: etree._Element, text: str) -> str | None:
    lang = (tree.get("lang") or tree.get("xml:lang") or "").strip().lower()
    if lang:
        return re.split(r"[-_]", lang)[0] or None
    return "vi" if _VIETNAMESE_LETTERS.search(text.lower()) else None


# --- small helpers ----------------------------------------------------------------------------


def _text(node: etree._Element) -> str:
    """The node's text with whitespace collapsed (the markup is already NFC)."""
    return " ".join(node.text_content().split())


def _squash(text: str) -> str:
    return " ".join(text.casefold().split())


def _marks(node: etree._Element) -> str:
    return f"{node.get('class') or ''} {node.get('id') or ''}".lower().strip()


def _lineage(node: etree._Element) -> Iterator[etree._Element]:
    while node is not None:
        yield node
        node = node.getparent()


def _link_density(node: etree._Element) -> float:
    total = len(_text(node)) or 1
    return sum(len(_text(a)) for a in node.iter("a")) / total
