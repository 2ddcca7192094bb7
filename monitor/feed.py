"""Atom 1.0 (RFC 4287) feed of stories, for any feed reader.

Entry ids are tag URIs of the story id, so an entry keeps its identity when a story gains an
earlier copy (its representative changes) or the server is reached under another host name.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from xml.etree import ElementTree as ET

from monitor.search import StoryView
from storage.repository import utcnow

ATOM = "http://www.w3.org/2005/Atom"
TAG_AUTHORITY = "tag:dtmon.local,2026"
SUMMARY_CHARS = 600

ET.register_namespace("", ATOM)


def atom_feed(
    stories: Sequence[StoryView], *, province: str | None, self_url: str, site_url: str
) -> bytes:
    """The Atom document (UTF-8) of ``stories``, newest first."""
    root = ET.Element(f"{{{ATOM}}}feed")
    title = "dtmon: chuyển đổi số" + (f" — {province}" if province else "")
    _add(root, "id", f"{TAG_AUTHORITY}:feed" + (f":{province}" if province else ""))
    _add(root, "title", title)
    _add(root, "subtitle", "Digital-transformation news from Vietnamese provincial portals, "
                           "newspapers and VOV")
    _add(root, "updated", _rfc3339(max((_updated(s) for s in stories), default=utcnow())))
    _add(root, "link", rel="self", type="application/atom+xml", href=self_url)
    _add(root, "link", rel="alternate", type="text/html", href=site_url)
    author = _add(root, "author")
    _add(author, "name", "dtmon")
    _add(root, "generator", "dtmon")
    for story in stories:
        _entry(root, story)
    return ET.tostring(root, encoding="utf-8", xml_declaration=True)


def _entry(root: ET.Element, story: StoryView) -> None:
    representative = story.representative
    entry = _add(root, "entry")
    _add(entry, "id", f"{TAG_AUTHORITY}:story:{story.id}")
    _add(entry, "title", representative.title)
    _add(entry, "updated", _rfc3339(_updated(story)))
    if representative.published_at:
        _add(entry, "published", _rfc3339(representative.published_at))
    _add(entry, "link", rel="alternate", type="text/html", href=representative.url)
    for copy in story.copies:
        if copy.id != representative.id:
            _add(entry, "link", rel="related", type="text/html", href=copy.url,
                 title=copy.source.name)
    for name in dict.fromkeys(copy.source.name for copy in story.copies):
        _add(_add(entry, "author"), "name", name)
    for term in (representative.topic_matches or {}):
        _add(entry, "category", term=term)
    _add(entry, "summary", _summary(representative.text))


def _updated(story: StoryView) -> datetime:
    """When the story last changed: its newest copy was stored."""
    return max(copy.fetched_at for copy in story.copies)


def _summary(text: str) -> str:
    if len(text) <= SUMMARY_CHARS:
        return text
    return text[:SUMMARY_CHARS].rsplit(" ", 1)[0] + " …"


def _rfc3339(moment: datetime) -> str:
    """A naive UTC datetime as RFC 3339 (``Z``)."""
    return moment.replace(microsecond=0).isoformat() + "Z"


def _add(parent: ET.Element, tag: str, text: str | None = None, **attributes: str) -> ET.Element:
    element = ET.SubElement(parent, f"{{{ATOM}}}{tag}", attributes)
    if text is not None:
        element.text = _xml_safe(text)
    return element


def _xml_safe(text: str) -> str:
    """``text`` without the control characters XML 1.0 cannot carry (they do occur in pages)."""
    return "".join(c for c in text if c >= " " or c in "\t\n\r")
