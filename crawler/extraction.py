"""Article extraction: trafilatura at the core, Vietnamese-portal cleanup around it."""

from __future__ import annotations

import re
import unicodedata
from dataclasses import dataclass, field

import trafilatura
from lxml import html as lxml_html

from crawler.vietnamese import normalize_text

_META_CHARSET = re.compile(rb"""<meta[^>]+charset\s*=\s*["']?([A-Za-z0-9_\-]+)""", re.I)
_CODEC_ALIASES = {"windows-1258": "cp1258", "x-cp1258": "cp1258"}


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

    @property
    def is_empty(self) -> bool:
        """True when no usable body text was found."""
        return not self.text.strip()


def _codec(name: str | None) -> str | None:
    if not name:
        return None
    name = name.strip().lower()
    return _CODEC_ALIASES.get(name, name)


def decode_html(data: bytes | str, encoding: str | None = None) -> str:
    """Decode page bytes: the HTTP charset first, then the meta charset, then UTF-8/cp1258."""
    if isinstance(data, str):
        return normalize_text_keep_lines(data)
    candidates = [_codec(encoding)]
    meta = _META_CHARSET.search(data[:4096])
    if meta:
        candidates.append(_codec(meta.group(1).decode("ascii", "ignore")))
    candidates += ["utf-8", "cp1258"]
    for codec in candidates:
        if not codec:
            continue
        try:
            return normalize_text_keep_lines(data.decode(codec))
        except (LookupError, UnicodeDecodeError):
            continue
    return normalize_text_keep_lines(data.decode("utf-8", "replace"))


def normalize_text_keep_lines(text: str) -> str:
    """NFC the markup itself (cp1258 and NFD pages yield combining marks)."""
    return unicodedata.normalize("NFC", text)


def extract_article(html: bytes | str, url: str, *, encoding: str | None = None) -> Article:
    """Extract the article of one page; never raises, returns an empty Article on garbage."""
    try:
        return _extract(decode_html(html, encoding), url)
    except Exception:  # noqa: BLE001 - garbage input must never break a crawl
        return Article()


def _extract(markup: str, url: str) -> Article:
    tree = lxml_html.fromstring(markup) if markup.strip() else None
    if tree is None:
        return Article()
    doc = trafilatura.bare_extraction(
        tree, url=url, include_comments=False, with_metadata=True
    )
    if doc is None:
        return Article()
    return Article(
        title=normalize_text(doc.title or ""),
        text=normalize_text(doc.text or ""),
        published=doc.date,
        author=normalize_text(doc.author) if doc.author else None,
        tags=[normalize_text(t) for t in doc.tags or []],
        language=doc.language,
        canonical_url=doc.url,
    )
