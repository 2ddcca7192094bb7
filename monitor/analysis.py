"""What storing an article needs from its text alone, computed where the article is extracted.

:func:`analyse_article` is what the crawler's extraction processes run on each extracted article
(``DTMON_ARTICLE_ANALYSIS`` in crawler/settings.py names it): the topic result and the dedup
fingerprint, the CPU-heavy part of storing that reads no table. The module imports only the
topic model and the dedup code, so that an extraction process stays small.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import cache

from monitor.similarity import Fingerprint
from monitor.topics import TopicModel, TopicResult, load_topics


@dataclass(frozen=True)
class ArticleAnalysis:
    """An article's topic result and dedup fingerprint."""

    topic: TopicResult
    fingerprint: Fingerprint

    @classmethod
    def of(cls, topics: TopicModel, title: str, text: str) -> ArticleAnalysis:
        """Score and fingerprint an article."""
        return cls(topics.score(title, text), Fingerprint.of(text))


@cache
def _topic_model() -> TopicModel:
    return load_topics()


def analyse_article(title: str, text: str) -> ArticleAnalysis:
    """The analysis of an extracted article with the configured topic model."""
    return ArticleAnalysis.of(_topic_model(), title, text)
