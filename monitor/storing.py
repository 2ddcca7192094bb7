"""The crawl writer's work: one article stored with its story, alerts and owed-list settlement,
and the writer process that stores groups of them (monitor/writer.py groups them).

This module holds what the writer process runs, and imports only storing's own code (no
Scrapy), so that the process stays small.
"""

from __future__ import annotations

from dataclasses import dataclass

from sqlalchemy.orm import Session, sessionmaker

from monitor.alerts.rules import AlertRules, load_rules
from monitor.analysis import ArticleAnalysis
from monitor.ingest import IngestResult, ingest_article
from monitor.topics import TopicModel, load_topics
from monitor.writer import NotStored, Stored, store_group
from storage import repository
from storage.db import make_engine, session_factory


@dataclass(frozen=True)
class StoreJob:
    """An article for the writer: its record, its analysis (``None``: computed when stored)
    and the URL keys it settles in the owed list."""

    data: repository.ArticleData
    analysis: ArticleAnalysis | None
    settle: set[str]


def store_article(session: Session, job: StoreJob, topics: TopicModel,
                  alerts: AlertRules | None) -> IngestResult:
    """Store one article with its story and alerts, and settle it in the owed list (inside
    the writer's savepoint for it)."""
    result = ingest_article(session, job.data, topics, alerts, job.analysis)
    repository.settle_owed(session, job.settle)
    return result


# --- inside the writer process -------------------------------------------------------------

_writer: tuple[sessionmaker[Session], TopicModel, AlertRules] | None = None


def start_writer(database_url: str, alerts_path: str | None) -> None:
    """Initialise the writer process: its own engine, topic model and alert rules."""
    global _writer
    _writer = (session_factory(make_engine(database_url)), load_topics(),
               load_rules(alerts_path))


def store_jobs(jobs: list[StoreJob]) -> list[Stored | NotStored]:
    """Store one group (one transaction, a savepoint per article) in the writer process."""
    assert _writer is not None, "the writer process is initialised first"
    sessions, topics, alerts = _writer
    return store_group(sessions, lambda session, job: store_article(session, job, topics,
                                                                    alerts), jobs)
