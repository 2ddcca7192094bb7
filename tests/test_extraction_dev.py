"""Extraction on pages nobody here wrote: ``../shared/extraction-dev`` (990 real multilingual
pages with gold snippets, metric of its README, code in bench/extraction_corpus.py).

``extract_article`` must score at least plain trafilatura's F1 on it and never raise.
``extract_article`` is measured on every page at every run. Plain trafilatura's counts are
recorded per page in ``tests/data/extraction_dev_plain.json`` for the pinned trafilatura, lxml
and jusText (it takes a minute to measure and changes only with them): every twentieth page is
measured again and must give its recorded counts, and with other versions installed, or other
pages in the corpus, every page is measured afresh. ``python -m tests.test_extraction_dev``
records them again.
"""

from __future__ import annotations

import json
import sys
from importlib.metadata import version
from pathlib import Path

import pytest

from bench import extraction_corpus as corpus
from bench.extraction import dtmon_text, plain_text

PLAIN_RECORD = Path(__file__).parent / "data" / "extraction_dev_plain.json"
RECHECKED_EVERY = 20


@pytest.fixture(scope="module")
def pages() -> list[corpus.GoldPage]:
    found = corpus.extraction_dev()
    if not found:
        pytest.skip(f"extraction-dev corpus not found at {corpus.EXTRACTION_DEV}: put dtmon's "
                    "shared/ folder beside the repo or set DTMON_EXTRACTION_DEV")
    return found


def extractor_versions() -> dict[str, str]:
    """The versions plain trafilatura's output depends on."""
    return {name: version(name) for name in ("trafilatura", "lxml", "justext")}


def recorded_plain_counts(pages: list[corpus.GoldPage]) -> dict[str, tuple[int, ...]] | None:
    """Plain trafilatura's recorded counts per page key, or None when they were recorded with
    other versions or on other pages."""
    record = json.loads(PLAIN_RECORD.read_text("utf-8"))
    counts = {key: tuple(value) for key, value in record["pages"].items()}
    if record["versions"] != extractor_versions() or set(counts) != {p.key for p in pages}:
        return None
    return counts


def test_extract_article_is_at_least_as_good_as_plain_trafilatura(
    pages: list[corpus.GoldPage],
) -> None:
    recorded = recorded_plain_counts(pages)
    if recorded is None:
        plain = corpus.score(plain_text, pages)
    else:
        for page in pages[::RECHECKED_EVERY]:
            assert corpus.score(plain_text, [page]).counts() == recorded[page.key], (
                f"plain trafilatura no longer gives its recorded counts on {page.url}: "
                "record them again (python -m tests.test_extraction_dev)")
        plain = sum((corpus.Score(*counts) for counts in recorded.values()), corpus.Score())
    ours = corpus.score(dtmon_text, pages)
    summary = (f"extract_article P {ours.precision:.3f} R {ours.recall:.3f} F1 {ours.f1:.3f}; "
               f"plain trafilatura P {plain.precision:.3f} R {plain.recall:.3f} "
               f"F1 {plain.f1:.3f}")
    assert ours.exceptions == 0, summary
    assert ours.f1 >= plain.f1, summary


def record_plain_counts() -> None:
    """Measure plain trafilatura on every page and write PLAIN_RECORD."""
    pages = corpus.extraction_dev()
    if not pages:
        sys.exit(f"extraction-dev corpus not found at {corpus.EXTRACTION_DEV}")
    counts = {page.key: corpus.score(plain_text, [page]).counts() for page in pages}
    lines = ",\n".join(f"  {json.dumps(key)}: {json.dumps(value)}"
                        for key, value in sorted(counts.items()))
    PLAIN_RECORD.write_text(f'{{"versions": {json.dumps(extractor_versions())},\n'
                            f' "pages": {{\n{lines}\n}}}}\n', "utf-8")
    print(f"recorded plain trafilatura's counts on {len(counts)} pages in {PLAIN_RECORD}")


if __name__ == "__main__":
    record_plain_counts()
