"""The database schema of dtmon as SQLAlchemy Core tables: the one definition of every column.

The ORM classes of :mod:`storage.models` are mapped onto these tables. Read-only commands
(`dtmon articles list`) query them with Core alone and so start without importing the ORM
(see bench/cli.py). Each section belongs to one concern; migrations in ``storage/migrations``
follow this file.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone

from sqlalchemy import (
    JSON,
    BigInteger,
    Boolean,
    Column,
    DateTime,
    Float,
    ForeignKey,
    Index,
    Integer,
    LargeBinary,
    MetaData,
    SmallInteger,
    String,
    Table,
    Text,
    Unicode,
    UniqueConstraint,
    func,
)

metadata = MetaData()

# The longest URL (in characters; stored URLs are percent-encoded ASCII) any URL column holds on
# every backend. PostgreSQL's B-tree index entries, behind the unique URL columns, stop at about
# 2,700 bytes; the crawler refuses longer URLs (crawler.urls.MAX_URL_LENGTH).
URL_LENGTH = 2500
# Vietnam's offset: a bare date, or a time without an offset, on a Vietnamese page is local.
VIETNAM = timezone(timedelta(hours=7))


def utc_naive(moment: datetime) -> datetime:
    """``moment`` as naive UTC, the form every DateTime column holds (naive input is UTC)."""
    if moment.tzinfo is None:
        return moment
    return moment.astimezone(UTC).replace(tzinfo=None)


def required(name: str, *args: object, **kwargs: object) -> Column:
    """A NOT NULL column (a primary key column is one anyway)."""
    return Column(name, *args, nullable=False, **kwargs)


# --- sources and articles -------------------------------------------------------------------

# A monitored site, mirrored from the registry in ``config/sources.yaml``.
sources = Table(
    "sources", metadata,
    Column("id", Integer, primary_key=True),
    required("name", String(100), unique=True),
    Column("province", String(100)),
    required("created_at", DateTime),
)

# One article page, stored once under its canonical URL.
articles = Table(
    "articles", metadata,
    Column("id", Integer, primary_key=True),
    required("source_id", ForeignKey("sources.id"), index=True),
    required("url", String(URL_LENGTH), unique=True),
    # Identity of the URL (crawler.urls.url_key): equal for every form of the same page.
    required("url_key", String(URL_LENGTH), unique=True),
    required("title", Text),
    required("text", Text),
    # As the page states it: ISO 8601 with offset, or a bare date when the page shows no time.
    Column("published", String(40)),
    # The same instant in UTC (midnight local for a bare date), for sorting and filtering.
    Column("published_at", DateTime, index=True),
    Column("author", String(300)),
    Column("original_source", String(300)),
    Column("province", String(100), index=True),
    required("tags", JSON, default=list),
    Column("language", String(10)),
    required("raw_html", LargeBinary),  # zlib-compressed response body
    required("content_hash", String(64), index=True),
    required("fetched_at", DateTime, index=True),
    # Topic selection (monitor.topics): filled when the article is stored, redone by rescore.
    Column("topic_score", Float),
    Column("relevant", Boolean, index=True),
    Column("topic_matches", JSON),
    # Story (monitor.dedup): the copies of one story share it.
    Column("story_id", ForeignKey("stories.id"), index=True),
)
# When an article is dated: as published, else when it was fetched.
ARTICLE_DATED = func.coalesce(articles.c.published_at, articles.c.fetched_at)
# The story list's order (monitor.search.matching_stories), read without sorting.
Index("ix_articles_dated_story", ARTICLE_DATED, articles.c.story_id)
# "Has a relevant copy" (lists, feed, queue) answered from the index alone.
Index("ix_articles_story_relevant", articles.c.story_id, articles.c.relevant)
# Each source's article count and latest fetch (/sources, the page).
Index("ix_articles_source_fetched", articles.c.source_id, articles.c.fetched_at)

# Every URL that led to an article (aliases, share links, redirects, old domains).
article_urls = Table(
    "article_urls", metadata,
    Column("id", Integer, primary_key=True),
    required("url", String(URL_LENGTH), unique=True),
    required("article_id", ForeignKey("articles.id"), index=True),
)

# One story: an article and its syndicated copies on other sites.
stories = Table(
    "stories", metadata,
    Column("id", Integer, primary_key=True),
    required("created_at", DateTime, index=True),
    # The earliest published copy (see monitor.dedup).
    Column("representative_id",
           ForeignKey("articles.id", use_alter=True, name="fk_story_representative")),
)


# --- dedup index (monitor.dedup) ------------------------------------------------------------

# MinHash signature of an article's shingles (little-endian uint32 values).
article_fingerprints = Table(
    "article_fingerprints", metadata,
    Column("article_id", ForeignKey("articles.id"), primary_key=True),
    required("signature", LargeBinary),
)

# One LSH band bucket of an article: articles sharing a bucket are duplicate candidates. The
# primary key (band, bucket_hash, article_id) is the lookup index; on SQLite the table is that
# index itself (WITHOUT ROWID).
lsh_buckets = Table(
    "lsh_buckets", metadata,
    Column("band", SmallInteger, primary_key=True),
    Column("bucket_hash", BigInteger, primary_key=True),  # signed 64-bit
    Column("article_id", ForeignKey("articles.id"), primary_key=True, index=True),
    sqlite_with_rowid=False,
)

# A long sentence of an article (hash of its match tokens), with the article's source. Articles
# sharing a sentence are duplicate candidates even when their lengths differ too much for the
# LSH buckets; a sentence found in several articles of one source is that source's boilerplate.
# The primary key (sentence_hash, article_id) is the lookup index (WITHOUT ROWID on SQLite).
sentence_fingerprints = Table(
    "sentence_fingerprints", metadata,
    Column("sentence_hash", BigInteger, primary_key=True),  # signed 64-bit
    Column("article_id", ForeignKey("articles.id"), primary_key=True, index=True),
    required("source_id", Integer),
    sqlite_with_rowid=False,
)


# --- alerts outbox (monitor.alerts) ---------------------------------------------------------

# One alert to deliver to one rule's channels, written in the transaction that made its story
# (or by an operator alert); the dispatcher claims, sends and marks it.
alert_outbox = Table(
    "alert_outbox", metadata,
    Column("id", Integer, primary_key=True),
    required("rule", String(100)),
    required("kind", String(20)),  # story | operator
    Column("story_id", ForeignKey("stories.id"), index=True),
    Column("article_id", ForeignKey("articles.id")),
    # "story:<id>" or "operator:<kind>:<source>:<day>": also the receivers' idempotency key.
    required("dedup_key", String(300)),
    Column("payload", JSON),  # operator alerts: kind, source, message
    required("created_at", DateTime),
    # Immediate: created_at; digest: the end of its window (rows of one window go together).
    required("due_at", DateTime),
    required("next_attempt_at", DateTime, index=True),
    required("attempts", Integer, default=0),
    # A dispatcher's claim: its token, valid until lease_until (then another may take it).
    Column("claim_token", String(36), index=True),
    Column("lease_until", DateTime),
    # Channels (digests of their URLs) that already accepted it, so a retry skips them.
    required("delivered", JSON, default=list),
    Column("sent_at", DateTime, index=True),
    Column("last_error", Text),
    UniqueConstraint("rule", "story_id"),
    UniqueConstraint("rule", "dedup_key"),
)


# --- downstream hand-off and search (monitor.queue, monitor.api) ------------------------------

# A story handed to a downstream consumer: leased until ``lease_expires_at``, done once
# ``acked_at`` is set. Each consumer (a downstream program, any number of workers) has its own
# row per story.
story_deliveries = Table(
    "story_deliveries", metadata,
    Column("consumer", String(100), primary_key=True),
    Column("story_id", ForeignKey("stories.id"), primary_key=True, index=True),
    required("claimed_at", DateTime),
    required("lease_expires_at", DateTime),
    required("attempts", Integer, default=1),
    Column("acked_at", DateTime),
)


# --- crawl runs -----------------------------------------------------------------------------

# One crawl (on demand, daemon job or demo) over one or more sources.
crawl_runs = Table(
    "crawl_runs", metadata,
    Column("id", Integer, primary_key=True),
    required("started_at", DateTime, index=True),
    Column("finished_at", DateTime),
    # running|ok|failed|interrupted (stopped by SIGINT/SIGTERM or a daemon shutdown)
    required("status", String(20), default="running"),
    required("trigger", String(20), default="cli"),
    # The process that owns the run, so that a run whose process is gone can be marked failed.
    Column("pid", Integer),
    Column("host", String(200)),
)

# Counts and errors of one source within one crawl run.
crawl_run_sources = Table(
    "crawl_run_sources", metadata,
    Column("id", Integer, primary_key=True),
    required("run_id", ForeignKey("crawl_runs.id"), index=True),
    required("source_name", String(100), index=True),
    required("pages_fetched", Integer, default=0),
    required("not_modified", Integer, default=0),
    required("articles_new", Integer, default=0),
    required("articles_seen", Integer, default=0),
    required("errors", Integer, default=0),
    required("error_messages", JSON, default=list),
    required("stats", JSON, default=dict),
    UniqueConstraint("run_id", "source_name"),
)

# The lease of the one crawl daemon a database may have (monitor.daemon). The holder renews
# ``heartbeat_at``; a lease whose heartbeat is older than its expiry can be taken over (the
# holder died without releasing it).
daemon_lease = Table(
    "daemon_lease", metadata,
    Column("name", String(50), primary_key=True),
    required("owner", String(200)),  # host, pid and a random token
    required("acquired_at", DateTime),
    required("heartbeat_at", DateTime),
)

# APScheduler's job store table (SQLAlchemyJobStore): daemon schedules survive restarts.
# Declared here, exactly as APScheduler 3.x defines it, so that migrations create it.
apscheduler_jobs = Table(
    "apscheduler_jobs", metadata,
    Column("id", Unicode(191), primary_key=True),
    Column("next_run_time", Float(25), index=True),
    required("job_state", LargeBinary),
)

# HTTP validators of a fetched URL, for conditional requests on the next crawl.
fetch_state = Table(
    "fetch_state", metadata,
    Column("url", String(URL_LENGTH), primary_key=True),
    Column("etag", String(300)),
    Column("last_modified", String(100)),
    required("fetched_at", DateTime),
)

# An article URL discovered and not stored (fetch error, truncated body, interstitial,
# extraction or storage failure, per-source cap, interrupted crawl): fetched again at the start
# of later runs, with backoff, until stored (the row is deleted) or given up.
owed_articles = Table(
    "owed_articles", metadata,
    Column("id", Integer, primary_key=True),
    required("url_key", String(URL_LENGTH), unique=True),
    required("url", String(URL_LENGTH)),
    required("source_name", String(100), index=True),
    Column("found_on", Text),  # the feed/sitemap/listing that linked it
    required("state", String(20), default="owed"),  # owed | gave_up
    required("attempts", Integer, default=0),  # fetches that failed
    Column("last_error", Text),
    required("first_seen_at", DateTime),
    Column("last_attempt_at", DateTime),
    required("next_attempt_at", DateTime, index=True),
)
