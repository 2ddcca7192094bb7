"""Extraction quality on corpora with gold snippets, shared by ``bench/extraction.py`` and the
tests: reading ``../shared/extraction-dev`` and the mirror's gold answers, the snippet metric of
``../shared/extraction-dev/README.md``, and the deterministic development / held-out split.

Metric: in each page's extracted text (whitespace collapsed) a ``with`` snippet found is a true
positive, one missing a false negative; a ``without`` snippet found is a false positive, one
missing a true negative. Counts are summed over the pages; an exception counts as nothing
extracted (and is counted).
"""

from __future__ import annotations

import gzip
import hashlib
import json
import os
import re
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from email.message import Message
from pathlib import Path

_SHARED = Path(__file__).resolve().parents[2] / "shared"
EXTRACTION_DEV = Path(os.environ.get("DTMON_EXTRACTION_DEV") or _SHARED / "extraction-dev")
HELD_OUT_SHARE = 20  # percent of the pages, chosen by a hash of their URL
_SPACES = re.compile(r"\s+")


@dataclass(frozen=True)
class GoldPage:
    """One page with the snippets its extracted text must and must not contain."""

    url: str
    html: bytes
    with_: tuple[str, ...]
    without: tuple[str, ...]
    encoding: str | None = None

    @property
    def key(self) -> str:
        """A short stable name of the page (a hash of its URL), for records of its scores."""
        return hashlib.sha256(self.url.encode("utf-8")).hexdigest()[:16]

    @property
    def held_out(self) -> bool:
        """Whether the page belongs to the held-out part (the first 4 bytes of its key)."""
        return int(self.key[:8], 16) % 100 < HELD_OUT_SHARE


@dataclass
class Score:
    """Snippet counts summed over pages, and the exceptions met."""

    tp: int = 0
    fn: int = 0
    fp: int = 0
    tn: int = 0
    exceptions: int = 0
    pages: int = 0

    @property
    def precision(self) -> float:
        return self.tp / (self.tp + self.fp) if self.tp + self.fp else 0.0

    @property
    def recall(self) -> float:
        return self.tp / (self.tp + self.fn) if self.tp + self.fn else 0.0

    @property
    def f1(self) -> float:
        total = self.precision + self.recall
        return 2 * self.precision * self.recall / total if total else 0.0

    @property
    def accuracy(self) -> float:
        total = self.tp + self.fn + self.fp + self.tn
        return (self.tp + self.tn) / total if total else 0.0

    def __add__(self, other: Score) -> Score:
        return Score(*(a + b for a, b in zip(self.counts(), other.counts(), strict=True)))

    def counts(self) -> tuple[int, ...]:
        """(tp, fn, fp, tn, exceptions, pages)."""
        return self.tp, self.fn, self.fp, self.tn, self.exceptions, self.pages

    def add(self, page: GoldPage, text: str) -> None:
        """Count ``page``'s snippets against its extracted ``text``."""
        text = squash(text)
        self.pages += 1
        for snippet in page.with_:
            if squash(snippet) in text:
                self.tp += 1
            else:
                self.fn += 1
        for snippet in page.without:
            if squash(snippet) in text:
                self.fp += 1
            else:
                self.tn += 1


Extractor = Callable[[GoldPage], str | None]


def squash(text: str) -> str:
    """Whitespace collapsed, as the metric compares texts."""
    return _SPACES.sub(" ", text).strip()


def score(extract: Extractor, pages: Iterable[GoldPage]) -> Score:
    """The metric of ``extract`` (page → text or None) over ``pages``."""
    result = Score()
    for page in pages:
        try:
            text = extract(page) or ""
        except Exception:  # noqa: BLE001 - an exception counts as nothing extracted
            result.exceptions += 1
            text = ""
        result.add(page, text)
    return result


def extraction_dev(root: Path = EXTRACTION_DEV) -> list[GoldPage]:
    """The pages of ``../shared/extraction-dev`` (bytes as saved, URL without its ``hard::``
    style prefix); an empty list when the corpus is absent."""
    index = root / "evaldata.json"
    if not index.exists():
        return []
    entries = json.loads(index.read_text("utf-8"))
    return [
        GoldPage(url=key.split("::", 1)[-1],
                 html=gzip.decompress((root / "pages" / entry["file"]).read_bytes()),
                 with_=tuple(entry["with"]), without=tuple(entry["without"]))
        for key, entry in sorted(entries.items())
    ]


def mirror_gold(sites: Path) -> list[GoldPage]:
    """The mirror's gold articles as snippet pages: each body paragraph must be found, each
    boilerplate marker must not; an empty list when the mirror is absent."""
    manifest_path = sites / "manifest.json"
    if not manifest_path.exists():
        return []
    manifest = json.loads(manifest_path.read_text("utf-8"))
    resources = {r["url"]: r for r in manifest["resources"] if r.get("file")}
    pages = []
    for path in sorted((sites / "gold").glob("*.json")):
        gold = json.loads(path.read_text("utf-8"))
        resource = resources[gold["url"]]
        pages.append(GoldPage(url=gold["url"], html=(sites / resource["file"]).read_bytes(),
                              with_=tuple(gold["body"]), without=tuple(gold["boilerplate_markers"]),
                              encoding=http_charset(resource["headers"].get("Content-Type", ""))))
    return pages


def http_charset(content_type: str) -> str | None:
    """The charset parameter of a Content-Type header value."""
    message = Message()
    message["Content-Type"] = content_type
    return message.get_param("charset")


def split(pages: list[GoldPage]) -> tuple[list[GoldPage], list[GoldPage]]:
    """(development, held-out) parts of ``pages``, by a stable hash of each URL."""
    return [p for p in pages if not p.held_out], [p for p in pages if p.held_out]
