"""SQLAlchemy 2.x models: the database schema of dtmon.

Each section belongs to one concern; migrations in ``storage/migrations`` follow this file.
"""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import (
    JSON,
    BigInteger,
    Boolean,
    DateTime,
    Float,
    ForeignKey,
    Index,
    Integer,
    LargeBinary,
    SmallInteger,
    String,
    Text,
    Unicode,
    UniqueConstraint,
    func,
)
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column, relationship


class Base(DeclarativeBase):
    """Declarative base of every dtmon table."""


# The longest URL (in characters; stored URLs are percent-encoded ASCII) any URL column holds on
# every backend. PostgreSQL's B-tree index entries, behind the unique URL columns, stop at about
# 2,700 bytes; the crawler refuses longer URLs (crawler.urls.MAX_URL_LENGTH).
URL_LENGTH = 2500


# --- sources and articles -------------------------------------------------------------------


class Source(Base):
    """A monitored site, mirrored from the registry in ``config/sources.yaml``."""

    __tablename__ = "sources"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    name: Mapped[str] = mapped_column(String(100), unique=True)
    province: Mapped[str | None] = mapped_column(String(100))
    created_at: Mapped[datetime] = mapped_column(DateTime)


class Article(Base):
    """One article page, stored once under its canonical URL."""

    __tablename__ = "articles"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    source_id: Mapped[int] = mapped_column(ForeignKey("sources.id"), index=True)
    url: Mapped[str] = mapped_column(String(URL_LENGTH), unique=True)
    # Identity of the URL (crawler.urls.url_key): equal for every form of the same page.
    url_key: Mapped[str] = mapped_column(String(URL_LENGTH), unique=True)
    title: Mapped[str] = mapped_column(Text)
    text: Mapped[str] = mapped_column(Text)
    # As the page states it: ISO 8601 with offset, or a bare date when the page shows no time.
    published: Mapped[str | None] = mapped_column(String(40))
    # The same instant in UTC (midnight local for a bare date), for sorting and filtering.
    published_at: Mapped[datetime | None] = mapped_column(DateTime, index=True)
    author: Mapped[str | None] = mapped_column(String(300))
    original_source: Mapped[str | None] = mapped_column(String(300))
    province: Mapped[str | None] = mapped_column(String(100), index=True)
    tags: Mapped[list[str]] = mapped_column(JSON, default=list)
    language: Mapped[str | None] = mapped_column(String(10))
    raw_html: Mapped[bytes] = mapped_column(LargeBinary)  # zlib-compressed response body
    content_hash: Mapped[str] = mapped_column(String(64), index=True)
    fetched_at: Mapped[datetime] = mapped_column(DateTime, index=True)
    # Topic selection (monitor.topics): filled when the article is stored, redone by rescore.
    topic_score: Mapped[float | None] = mapped_column(Float)
    relevant: Mapped[bool | None] = mapped_column(Boolean, index=True)
    topic_matches: Mapped[dict[str, int] | None] = mapped_column(JSON)
    # Story (monitor.dedup): the copies of one story share it.
    story_id: Mapped[int | None] = mapped_column(ForeignKey("stories.id"), index=True)

    source: Mapped[Source] = relationship()
    urls: Mapped[list[ArticleUrl]] = relationship(
        back_populates="article", cascade="all, delete-orphan", order_by="ArticleUrl.id"
    )

    __table_args__ = (
        # The story list's order (monitor.search.matching_stories), read without sorting.
        Index("ix_articles_dated_story", func.coalesce(published_at, fetched_at), story_id),
        # "Has a relevant copy" (lists, feed, queue) answered from the index alone.
        Index("ix_articles_story_relevant", story_id, relevant),
        # Each source's article count and latest fetch (/sources, the page).
        Index("ix_articles_source_fetched", source_id, fetched_at),
    )


class ArticleUrl(Base):
    """Every URL that led to an article (aliases, share links, redirects, old domains)."""

    __tablename__ = "article_urls"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    url: Mapped[str] = mapped_column(String(URL_LENGTH), unique=True)
    article_id: Mapped[int] = mapped_column(ForeignKey("articles.id"), index=True)

    article: Mapped[Article] = relationship(back_populates="urls")


class Story(Base):
    """One story: an article and its syndicated copies on other sites."""

    __tablename__ = "stories"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    created_at: Mapped[datetime] = mapped_column(DateTime, index=True)
    # The earliest published copy (see monitor.dedup).
    representative_id: Mapped[int | None] = mapped_column(
        ForeignKey("articles.id", use_alter=True, name="fk_story_representative")
    )


# --- dedup index (monitor.dedup) ------------------------------------------------------------


class ArticleFingerprint(Base):
    """MinHash signature of an article's shingles (little-endian uint32 values)."""

    __tablename__ = "article_fingerprints"

    article_id: Mapped[int] = mapped_column(ForeignKey("articles.id"), primary_key=True)
    signature: Mapped[bytes] = mapped_column(LargeBinary)


class LshBucket(Base):
    """One LSH band bucket of an article: articles sharing a bucket are duplicate candidates.

    The primary key (band, bucket_hash, article_id) is the lookup index; on SQLite the table is
    that index itself (WITHOUT ROWID).
    """

    __tablename__ = "lsh_buckets"
    __table_args__ = ({"sqlite_with_rowid": False},)

    band: Mapped[int] = mapped_column(SmallInteger, primary_key=True)
    bucket_hash: Mapped[int] = mapped_column(BigInteger, primary_key=True)  # signed 64-bit
    article_id: Mapped[int] = mapped_column(ForeignKey("articles.id"), primary_key=True, index=True)


class SentenceFingerprint(Base):
    """A long sentence of an article (hash of its match tokens), with the article's source.

    Articles sharing a sentence are duplicate candidates even when their lengths differ too much
    for the LSH buckets; a sentence found in several articles of one source is that source's
    boilerplate. The primary key (sentence_hash, article_id) is the lookup index (WITHOUT ROWID
    on SQLite).
    """

    __tablename__ = "sentence_fingerprints"
    __table_args__ = ({"sqlite_with_rowid": False},)

    sentence_hash: Mapped[int] = mapped_column(BigInteger, primary_key=True)  # signed 64-bit
    article_id: Mapped[int] = mapped_column(ForeignKey("articles.id"), primary_key=True, index=True)
    source_id: Mapped[int] = mapped_column(Integer)


# --- alerts outbox (monitor.alerts) ---------------------------------------------------------


class AlertOutbox(Base):
    """One alert to deliver to one rule's channels, written in the transaction that made its
    story (or by an operator alert); the dispatcher claims, sends and marks it."""

    __tablename__ = "alert_outbox"
    __table_args__ = (
        UniqueConstraint("rule", "story_id"),
        UniqueConstraint("rule", "dedup_key"),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    rule: Mapped[str] = mapped_column(String(100))
    kind: Mapped[str] = mapped_column(String(20))  # story | operator
    story_id: Mapped[int | None] = mapped_column(ForeignKey("stories.id"), index=True)
    article_id: Mapped[int | None] = mapped_column(ForeignKey("articles.id"))
    # "story:<id>" or "operator:<kind>:<source>:<day>": also the receivers' idempotency key.
    dedup_key: Mapped[str] = mapped_column(String(300))
    payload: Mapped[dict | None] = mapped_column(JSON)  # operator alerts: kind, source, message
    created_at: Mapped[datetime] = mapped_column(DateTime)
    # Immediate: created_at; digest: the end of its window (rows of one window go together).
    due_at: Mapped[datetime] = mapped_column(DateTime)
    next_attempt_at: Mapped[datetime] = mapped_column(DateTime, index=True)
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    # A dispatcher's claim: its token, valid until lease_until (then another may take it).
    claim_token: Mapped[str | None] = mapped_column(String(36), index=True)
    lease_until: Mapped[datetime | None] = mapped_column(DateTime)
    # Channels (digests of their URLs) that already accepted it, so a retry skips them.
    delivered: Mapped[list[str]] = mapped_column(JSON, default=list)
    sent_at: Mapped[datetime | None] = mapped_column(DateTime, index=True)
    last_error: Mapped[str | None] = mapped_column(Text)


# --- downstream hand-off and search (monitor.queue, monitor.api) ------------------------------


class StoryDelivery(Base):
    """A story handed to a downstream consumer: leased until ``lease_expires_at``, done once
    ``acked_at`` is set. Each consumer (a downstream program, any number of workers) has its own
    row per story."""

    __tablename__ = "story_deliveries"

    consumer: Mapped[str] = mapped_column(String(100), primary_key=True)
    story_id: Mapped[int] = mapped_column(ForeignKey("stories.id"), primary_key=True, index=True)
    claimed_at: Mapped[datetime] = mapped_column(DateTime)
    lease_expires_at: Mapped[datetime] = mapped_column(DateTime)
    attempts: Mapped[int] = mapped_column(Integer, default=1)
    acked_at: Mapped[datetime | None] = mapped_column(DateTime)


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

    __tablename__ = "crawl_runs"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    started_at: Mapped[datetime] = mapped_column(DateTime, index=True)
    finished_at: Mapped[datetime | None] = mapped_column(DateTime)
    # running|ok|failed|interrupted (stopped by SIGINT/SIGTERM or a daemon shutdown)
    status: Mapped[str] = mapped_column(String(20), default="running")
    trigger: Mapped[str] = mapped_column(String(20), default="cli")
    # The process that owns the run, so that a run whose process is gone can be marked failed.
    pid: Mapped[int | None] = mapped_column(Integer)
    host: Mapped[str | None] = mapped_column(String(200))
    sources: Mapped[list[CrawlRunSource]] = relationship(
        back_populates="run", cascade="all, delete-orphan", order_by="CrawlRunSource.id"
    )


class CrawlRunSource(Base):
    """Counts and errors of one source within one crawl run."""

    __tablename__ = "crawl_run_sources"
    __table_args__ = (UniqueConstraint("run_id", "source_name"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    run_id: Mapped[int] = mapped_column(ForeignKey("crawl_runs.id"), index=True)
    source_name: Mapped[str] = mapped_column(String(100), index=True)
    pages_fetched: Mapped[int] = mapped_column(Integer, default=0)
    not_modified: Mapped[int] = mapped_column(Integer, default=0)
    articles_new: Mapped[int] = mapped_column(Integer, default=0)
    articles_seen: Mapped[int] = mapped_column(Integer, default=0)
    errors: Mapped[int] = mapped_column(Integer, default=0)
    error_messages: Mapped[list[str]] = mapped_column(JSON, default=list)
    stats: Mapped[dict] = mapped_column(JSON, default=dict)

    run: Mapped[CrawlRun] = relationship(back_populates="sources")


class DaemonLease(Base):
    """The lease of the one crawl daemon a database may have (monitor.daemon).

    The holder renews ``heartbeat_at``; a lease whose heartbeat is older than its expiry can
    be taken over (the holder died without releasing it).
    """

    __tablename__ = "daemon_lease"

    name: Mapped[str] = mapped_column(String(50), primary_key=True)
    owner: Mapped[str] = mapped_column(String(200))  # host, pid and a random token
    acquired_at: Mapped[datetime] = mapped_column(DateTime)
    heartbeat_at: Mapped[datetime] = mapped_column(DateTime)


class SchedulerJob(Base):
    """APScheduler's job store table (SQLAlchemyJobStore): daemon schedules survive restarts.

    Declared here, exactly as APScheduler 3.x defines it, so that migrations create it.
    """

    __tablename__ = "apscheduler_jobs"

    id: Mapped[str] = mapped_column(Unicode(191), primary_key=True)
    next_run_time: Mapped[float | None] = mapped_column(Float(25), index=True)
    job_state: Mapped[bytes] = mapped_column(LargeBinary)


class FetchState(Base):
    """HTTP validators of a fetched URL, for conditional requests on the next crawl."""

    __tablename__ = "fetch_state"

    url: Mapped[str] = mapped_column(String(URL_LENGTH), primary_key=True)
    etag: Mapped[str | None] = mapped_column(String(300))
    last_modified: Mapped[str | None] = mapped_column(String(100))
    fetched_at: Mapped[datetime] = mapped_column(DateTime)


class OwedArticle(Base):
    """An article URL discovered and not stored (fetch error, truncated body, interstitial,
    extraction or storage failure, per-source cap, interrupted crawl): fetched again at the
    start of later runs, with backoff, until stored (the row is deleted) or given up."""

    __tablename__ = "owed_articles"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    url_key: Mapped[str] = mapped_column(String(URL_LENGTH), unique=True)
    url: Mapped[str] = mapped_column(String(URL_LENGTH))
    source_name: Mapped[str] = mapped_column(String(100), index=True)
    found_on: Mapped[str | None] = mapped_column(Text)  # the feed/sitemap/listing that linked it
    state: Mapped[str] = mapped_column(String(20), default="owed")  # owed | gave_up
    attempts: Mapped[int] = mapped_column(Integer, default=0)  # fetches that failed
    last_error: Mapped[str | None] = mapped_column(Text)
    first_seen_at: Mapped[datetime] = mapped_column(DateTime)
    last_attempt_at: Mapped[datetime | None] = mapped_column(DateTime)
    next_attempt_at: Mapped[datetime] = mapped_column(DateTime, index=True)
