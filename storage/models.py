"""SQLAlchemy 2.x ORM classes of dtmon, mapped onto the Core tables of :mod:`storage.schema`
(where every column is defined and commented), with their relationships.

Migrations in ``storage/migrations`` follow the schema.
"""

from __future__ import annotations

from sqlalchemy.orm import DeclarativeBase, Mapped, relationship

from storage import schema


class Base(DeclarativeBase):
    """Declarative base of every dtmon table."""

    metadata = schema.metadata


# --- sources and articles -------------------------------------------------------------------


class Source(Base):
    """A monitored site, mirrored from the registry in ``config/sources.yaml``."""

    __table__ = schema.sources


class Article(Base):
    """One article page, stored once under its canonical URL."""

    __table__ = schema.articles

    source: Mapped[Source] = relationship()
    urls: Mapped[list[ArticleUrl]] = relationship(
        back_populates="article", cascade="all, delete-orphan", order_by="ArticleUrl.id"
    )


class ArticleUrl(Base):
    """Every URL that led to an article (aliases, share links, redirects, old domains)."""

    __table__ = schema.article_urls

    article: Mapped[Article] = relationship(back_populates="urls")


class Story(Base):
    """One story: an article and its syndicated copies on other sites."""

    __table__ = schema.stories


# --- dedup index (monitor.dedup) ------------------------------------------------------------


class ArticleFingerprint(Base):
    """MinHash signature of an article's shingles."""

    __table__ = schema.article_fingerprints


class LshBucket(Base):
    """One LSH band bucket of an article: articles sharing a bucket are duplicate candidates."""

    __table__ = schema.lsh_buckets


class SentenceFingerprint(Base):
    """A long sentence of an article (hash of its match tokens), with the article's source."""

    __table__ = schema.sentence_fingerprints


# --- alerts outbox (monitor.alerts) ---------------------------------------------------------


class AlertOutbox(Base):
    """One alert to deliver to one rule's channels."""

    __table__ = schema.alert_outbox


# --- downstream hand-off and search (monitor.queue, monitor.api) ------------------------------


class StoryDelivery(Base):
    """A story handed to a downstream consumer, leased until acked."""

    __table__ = schema.story_deliveries


# Full-text search over articles' title and text is created by the hand-written migration 0002
# (SQLite: an FTS5 table kept in sync by triggers; PostgreSQL: a GIN index on this document).
# Those objects are named with FULLTEXT_PREFIX and are not models.
FULLTEXT_PREFIX = "articles_fts"
POSTGRES_FULLTEXT_DOCUMENT = "to_tsvector('simple', articles.title || ' ' || articles.text)"


def include_in_schema_comparison(
    _object: object, name: str | None, _type: str, reflected: bool, _compare_to: object
) -> bool:
    """Alembic ``include_object`` hook: the full-text objects of migration 0002 are expected."""
    return not (reflected and name is not None and name.startswith(FULLTEXT_PREFIX))


# --- crawl runs -----------------------------------------------------------------------------


class CrawlRun(Base):
    """One crawl (on demand, daemon job or demo) over one or more sources."""

    __table__ = schema.crawl_runs

    sources: Mapped[list[CrawlRunSource]] = relationship(
        back_populates="run", cascade="all, delete-orphan", order_by="CrawlRunSource.id"
    )


class CrawlRunSource(Base):
    """Counts and errors of one source within one crawl run."""

    __table__ = schema.crawl_run_sources

    run: Mapped[CrawlRun] = relationship(back_populates="sources")


class DaemonLease(Base):
    """The lease of the one crawl daemon a database may have (monitor.daemon)."""

    __table__ = schema.daemon_lease


class SchedulerJob(Base):
    """APScheduler's job store table (SQLAlchemyJobStore)."""

    __table__ = schema.apscheduler_jobs


class FetchState(Base):
    """HTTP validators of a fetched URL, for conditional requests on the next crawl."""

    __table__ = schema.fetch_state


class OwedArticle(Base):
    """An article URL discovered and not stored, fetched again until stored or given up."""

    __table__ = schema.owed_articles
