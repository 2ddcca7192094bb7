"""Rescoring the stored articles with a topic model (``dtmon topics rescore``), after
``config/topics.yaml`` changed: the stored title and text are scored again, nothing is fetched.
"""

from __future__ import annotations

from dataclasses import dataclass

from sqlalchemy import Row, select, update
from sqlalchemy.orm import Session

from monitor.topics import TopicModel
from storage.models import Article

_RESCORE_BATCH = 500


@dataclass
class RescoreSummary:
    """What a rescore changed."""

    articles: int = 0
    updated: int = 0  # score, relevance or matches differ from what was stored
    promoted: int = 0  # now relevant, was not
    demoted: int = 0  # was relevant, now is not
    relevant: int = 0  # relevant after the rescore


def rescore_articles(
    session: Session, model: TopicModel, batch: int = _RESCORE_BATCH
) -> RescoreSummary:
    """Recompute topic_score, relevant and topic_matches of every stored article.

    Reads the stored title and text only (no refetch), in primary-key pages of ``batch`` rows,
    and commits the changed rows after each page, so memory stays flat and a long rescore never
    holds one huge transaction. Paging by key rather than a streaming cursor keeps working on
    PostgreSQL, where committing closes a server-side cursor.
    """
    summary = RescoreSummary()
    last_id = 0
    columns = (
        Article.id,
        Article.title,
        Article.text,
        Article.topic_score,
        Article.relevant,
        Article.topic_matches,
    )
    while True:
        query = select(*columns).where(Article.id > last_id).order_by(Article.id).limit(batch)
        rows = session.execute(query).all()
        if not rows:
            return summary
        changes = [change for row in rows if (change := _rescore_row(row, model, summary))]
        if changes:
            session.execute(update(Article), changes)
        session.commit()
        last_id = rows[-1].id


def _rescore_row(row: Row, model: TopicModel, summary: RescoreSummary) -> dict | None:
    result = model.score(row.title, row.text)
    summary.articles += 1
    summary.relevant += result.relevant
    was = bool(row.relevant)
    summary.promoted += result.relevant and not was
    summary.demoted += was and not result.relevant
    stored = (row.topic_score, row.relevant, row.topic_matches)
    if stored == (result.score, result.relevant, result.matched):
        return None
    summary.updated += 1
    return {
        "id": row.id,
        "topic_score": result.score,
        "relevant": result.relevant,
        "topic_matches": result.matched,
    }
