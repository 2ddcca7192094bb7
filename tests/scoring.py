"""The body-text metric of ``../shared/sites/README.md``, shared by the extraction tests: a bag
of whitespace tokens after NFC and lower-casing, scored against the gold body."""

from __future__ import annotations

import unicodedata
from collections import Counter


def _tokens(text: str) -> Counter[str]:
    return Counter(unicodedata.normalize("NFC", text).lower().split())


def precision_recall(extracted: str, expected: str) -> tuple[float, float]:
    """Token precision and recall of ``extracted`` against ``expected``."""
    got, want = _tokens(extracted), _tokens(expected)
    overlap = sum((got & want).values())
    precision = overlap / sum(got.values()) if got else 0.0
    recall = overlap / sum(want.values()) if want else 0.0
    return precision, recall


def f1(precision: float, recall: float) -> float:
    """The harmonic mean of ``precision`` and ``recall`` (0 when both are 0)."""
    total = precision + recall
    return 2 * precision * recall / total if total else 0.0
