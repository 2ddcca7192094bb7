"""Extraction on pages nobody here wrote: ``../shared/extraction-dev`` (990 real multilingual
pages with gold snippets, metric of its README, code in bench/extraction_corpus.py).

``extract_article`` must score at least plain trafilatura's F1 on it, both measured in this
session, and never raise. A full pass with both extractors takes about two minutes on 2 cores.
"""

from __future__ import annotations

import pytest

from bench import extraction_corpus as corpus
from bench.extraction import dtmon_text, plain_text


@pytest.fixture(scope="module")
def pages() -> list[corpus.GoldPage]:
    found = corpus.extraction_dev()
    if not found:
        pytest.skip(f"extraction-dev corpus not found at {corpus.EXTRACTION_DEV}: put dtmon's "
                    "shared/ folder beside the repo or set DTMON_EXTRACTION_DEV")
    return found


def test_extract_article_is_at_least_as_good_as_plain_trafilatura(
    pages: list[corpus.GoldPage],
) -> None:
    ours, plain = corpus.score(dtmon_text, pages), corpus.score(plain_text, pages)
    summary = (f"extract_article P {ours.precision:.3f} R {ours.recall:.3f} F1 {ours.f1:.3f}; "
               f"plain trafilatura P {plain.precision:.3f} R {plain.recall:.3f} "
               f"F1 {plain.f1:.3f}")
    assert ours.exceptions == 0, summary
    assert ours.f1 >= plain.f1, summary
