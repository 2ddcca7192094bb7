"""What happens when a crawled article arrives: one transaction stores it, scores its topic
and links it into its story, so that a crash never leaves an article half-processed."""

from __future__ import annotations

from dataclasses import dataclass

from sqlalchemy.orm import Session

from monitor.alerts.outbox import enqueue_story_alerts
from monitor.alerts.rules import AlertRules
from monitor.analysis import ArticleAnalysis
from monitor.dedup import assign_story
from monitor.topics import TopicModel
from storage.repository import ArticleData, add_article


@dataclass(frozen=True)
class IngestResult:
    """The outcome of ingesting one article."""

    article_id: int
    created: bool
    relevant: bool | None
    story_id: int | None


def ingest_article(session: Session, data: ArticleData, topics: TopicModel,
                   alerts: AlertRules | None = None,
                   analysis: ArticleAnalysis | None = None) -> IngestResult:
    """Store ``data`` once, with its topic result and story, inside the caller's transaction.

    An article already stored (under any of its URLs) only gains the URLs not seen before.
    A new article also writes the outbox rows of the ``alerts`` rules its story matches
    (once per rule and story), in the same transaction. ``analysis`` is the article's, when
    computed already (else it is computed here with ``topics``).
    """
    analysis = analysis or ArticleAnalysis.of(topics, data.title, data.text)
    result = analysis.topic
    data.topic_score = result.score
    data.relevant = result.relevant
    data.topic_matches = result.matched
    article, created = add_article(session, data)
    if created:
        session.flush()
        assign_story(session, article, analysis.fingerprint)
        if alerts:
            enqueue_story_alerts(session, alerts, article)
    return IngestResult(article.id, created, article.relevant, article.story_id)
