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
    Integer,
    LargeBinary,
    SmallInteger,
    String,
    Text,
    UniqueConstraint,
)
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column, relationship


class Base(DeclarativeBase):
    """Declarative base of every dtmon table."""


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
    url: Mapped[str] = mapped_column(String(2048), unique=True)
    # Identity of the URL (crawler.urls.url_key): equal for every form of the same page.
    url_key: Mapped[str] = mapped_column(String(2048), unique=True)
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


class ArticleUrl(Base):
    """Every URL that led to an article (aliases, share links, redirects, old domains)."""

    __tablename__ = "article_urls"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    url: Mapped[str] = mapped_column(String(2048), unique=True)
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


# --- crawl runs -----------------------------------------------------------------------------


class CrawlRun(Base):
    """One crawl (on demand, daemon job or demo) over one or more sources."""

    __tablename__ = "crawl_runs"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    started_at: Mapped[datetime] = mapped_column(DateTime, index=True)
    finished_at: Mapped[datetime | None] = mapped_column(DateTime)
    status: Mapped[str] = mapped_column(String(20), default="running")  # running|ok|failed
    trigger: Mapped[str] = mapped_column(String(20), default="cli")
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


class FetchState(Base):
    """HTTP validators of a fetched URL, for conditional requests on the next crawl."""

    __tablename__ = "fetch_state"

    url: Mapped[str] = mapped_column(String(2048), primary_key=True)
    etag: Mapped[str | None] = mapped_column(String(300))
    last_modified: Mapped[str | None] = mapped_column(String(100))
    fetched_at: Mapped[datetime] = mapped_column(DateTime)
