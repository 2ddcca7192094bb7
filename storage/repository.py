"""Reading and writing dtmon's tables. Every function takes a Session; the caller owns the
transaction (see :func:`storage.db.session_scope`).

Writers that may race with other processes (sources, articles and their URLs, run stats,
validators) insert inside a SAVEPOINT and, when a unique constraint says another process got
there first, fall back to the row it stored.
"""

from __future__ import annotations

import hashlib
import zlib
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from functools import cache
from itertools import islice
from typing import TypeVar

from sqlalchemy import Delete, Insert, Select, bindparam, delete, func, insert, or_, select, update
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session, selectinload

from storage.models import (
    Article,
    ArticleUrl,
    CrawlRun,
    CrawlRunSource,
    FetchState,
    OwedArticle,
    Source,
)
from storage.reading import article_query
from storage.schema import VIETNAM, utc_naive
from vntext import match_key

# Stays well below every backend's limit on bound parameters per statement.
_IN_CHUNK = 500

T = TypeVar("T")


# --- time and content helpers ---------------------------------------------------------------


def utcnow() -> datetime:
    """The current time as naive UTC."""
    return utc_naive(datetime.now(UTC))


def published_at_utc(published: str | None) -> datetime | None:
    """The UTC instant of a page's ISO 8601 date (``None`` when absent, unreadable or at the
    edge of the calendar, like ASP.NET's "no date" 0001-01-01T00:00:00+07:00).

    A bare date means midnight in Vietnam (+07:00), as does a time without an offset.
    """
    if not published:
        return None
    try:
        moment = datetime.fromisoformat(published.strip())
        if moment.tzinfo is None:
            moment = moment.replace(tzinfo=VIETNAM)
        return utc_naive(moment)
    except (ValueError, OverflowError):
        return None


def content_hash(text: str) -> str:
    """sha256 hex of the normalised body: equal for copies differing only in case, spacing,
    punctuation or tone-mark placement."""
    return hashlib.sha256(match_key(text).encode("utf-8")).hexdigest()


def decompress_html(raw_html: bytes) -> bytes:
    """The response body stored (compressed) in ``Article.raw_html``."""
    return zlib.decompress(raw_html) if raw_html else b""


# --- sources --------------------------------------------------------------------------------


def ensure_source(session: Session, name: str, province: str | None) -> Source:
    """The source row called ``name``, created (with ``province``) when missing."""
    return _find_or_add_source(session, name, province)[0]


def _find_or_add_source(session: Session, name: str, province: str | None
                        ) -> tuple[Source, bool]:
    return _get_or_insert(
        session,
        lambda: session.scalar(select(Source).where(Source.name == name)),
        lambda: Source(name=name, province=province, created_at=utcnow()),
    )


# --- articles -------------------------------------------------------------------------------


@dataclass
class ArticleData:
    """An article as the crawler hands it to storage (``raw_html`` uncompressed)."""

    source_name: str
    url: str
    url_key: str
    title: str
    text: str
    province: str | None = None
    urls: list[str] = field(default_factory=list)  # every URL that led to the page
    published: str | None = None  # ISO 8601, or a bare date
    author: str | None = None
    original_source: str | None = None
    tags: list[str] = field(default_factory=list)
    language: str | None = None
    raw_html: bytes = b""
    content_hash: str | None = None  # computed from ``text`` when absent
    fetched_at: datetime | None = None  # now when absent
    topic_score: float | None = None
    relevant: bool | None = None
    topic_matches: dict[str, int] | None = None

    def all_urls(self) -> list[str]:
        """The canonical URL then every other URL, each once."""
        return list(dict.fromkeys([self.url, *self.urls]))


def known_url_keys(session: Session, keys: Iterable[str]) -> set[str]:
    """Those of ``keys`` that already belong to a stored article."""
    found: set[str] = set()
    for chunk in _chunks(set(keys)):
        found.update(session.scalars(select(Article.url_key).where(Article.url_key.in_(chunk))))
    return found


def find_article_by_urls(session: Session, url_key: str, urls: Iterable[str]) -> Article | None:
    """The stored article with this URL key or reached by any of ``urls`` (the URL key's
    first). One query for an article's usual handful of URLs; the article is loaded only
    when there is one."""
    article_id = _stored_article_id(session, url_key, urls)
    return None if article_id is None else session.get_one(Article, article_id)


def _stored_article_id(session: Session, url_key: str, urls: Iterable[str]) -> int | None:
    """The id of :func:`find_article_by_urls`'s article (Core: a new article, the usual case,
    costs no ORM query)."""
    session.flush()  # a Core statement: the session's pending rows count, as the ORM's autoflush
    connection, urls = session.connection(), list(dict.fromkeys(urls))
    for chunk in _chunks(urls) if urls else [[]]:
        article_id = connection.execute(_article_id_query(), {"key": url_key, "urls": chunk}
                                        ).scalar()
        if article_id is not None:
            return article_id
    return None


@cache
def _article_id_query() -> Select:
    """The id of the article with URL key ``key`` or reached by one of ``urls`` (the key's
    first), built once: building and keying a statement per article costs more than running
    it."""
    articles, article_urls = Article.__table__, ArticleUrl.__table__
    keyed = articles.c.url_key == bindparam("key")
    reached = articles.c.id.in_(select(article_urls.c.article_id).where(
        article_urls.c.url.in_(bindparam("urls", expanding=True))))
    return select(articles.c.id).where(or_(keyed, reached)).order_by(keyed.desc()).limit(1)


def add_article(session: Session, data: ArticleData) -> tuple[Article, bool]:
    """Store an article once: returns ``(article, True)`` when new.

    When it is already stored (same URL key or any shared URL), only its unseen URLs are
    recorded and ``(existing, False)`` is returned. Safe when processes store it at once.
    The new row and its URLs are two Core inserts in a SAVEPOINT (the ORM's unit of work
    cost more than the rest of storing an article), then the article is loaded.
    """
    urls = data.all_urls()
    article = find_article_by_urls(session, data.url_key, urls)
    if article is None:
        row = _article_row(_source_id(session, data.source_name, data.province), data)
        try:
            with session.begin_nested():
                connection = session.connection()
                article_id = connection.execute(_insert_article(), row).scalar_one()
                connection.execute(_insert_url(),
                                   [{"url": url, "article_id": article_id} for url in urls])
        except IntegrityError:  # another process stored it meanwhile
            article = find_article_by_urls(session, data.url_key, urls)
            if article is None:
                raise
        else:
            return session.get_one(Article, article_id), True
    record_urls(session, article, urls)
    return article, False


@cache
def _insert_article() -> Insert:
    """The insert of a new article's row, returning its id (built once, its values bound as
    parameters: a ``values()`` statement is built and keyed anew for each row)."""
    return insert(Article.__table__).returning(Article.__table__.c.id)


@cache
def _insert_url() -> Insert:
    return insert(ArticleUrl.__table__)


def _source_id(session: Session, name: str, province: str | None) -> int:
    """The id of source ``name`` (created when missing). An id found in the database is
    remembered for the session's life; one just created is not (its SAVEPOINT may still be
    rolled back)."""
    known: dict[str, int] = session.info.setdefault("dtmon_source_ids", {})
    if name in known:
        return known[name]
    found = session.connection().execute(_source_id_query(), {"name": name}).scalar()
    if found is not None:
        known[name] = found
        return found
    return _find_or_add_source(session, name, province)[0].id


@cache
def _source_id_query() -> Select:
    """The id of the source called ``name`` (Core: the writer asks it of each source in each
    group)."""
    sources = Source.__table__
    return select(sources.c.id).where(sources.c.name == bindparam("name"))


def record_urls(session: Session, article: Article, urls: Iterable[str]) -> None:
    """Attach those of ``urls`` not yet recorded anywhere to ``article``."""
    urls = list(dict.fromkeys(urls))
    known = set()
    for chunk in _chunks(urls):
        known.update(session.scalars(select(ArticleUrl.url).where(ArticleUrl.url.in_(chunk))))
    for url in urls:
        if url not in known:
            _get_or_insert(
                session,
                lambda url=url: session.scalar(select(ArticleUrl).where(ArticleUrl.url == url)),
                lambda url=url: ArticleUrl(url=url, article_id=article.id),
            )
    session.expire(article, ["urls"])


def _article_row(source_id: int, data: ArticleData) -> dict:
    """The ``articles`` row of a new article."""
    return {
        "source_id": source_id,
        "url": data.url,
        "url_key": data.url_key,
        "title": data.title,
        "text": data.text,
        "published": data.published,
        "published_at": published_at_utc(data.published),
        "author": data.author,
        "original_source": data.original_source,
        "province": data.province,
        "tags": list(data.tags),
        "language": data.language,
        "raw_html": zlib.compress(data.raw_html, 6),
        "content_hash": data.content_hash or content_hash(data.text),
        "fetched_at": utc_naive(data.fetched_at) if data.fetched_at else utcnow(),
        "topic_score": data.topic_score,
        "relevant": data.relevant,
        "topic_matches": data.topic_matches,
    }


def iter_articles(
    session: Session,
    *,
    since: datetime | date | None = None,
    source: str | None = None,
    province: str | None = None,
    relevant: bool | None = None,
    limit: int | None = None,
    batch: int = 500,
) -> Iterator[Article]:
    """Stream the articles that pass the filters (see :func:`storage.reading.article_query`),
    newest first, ``batch`` rows at a time."""
    statement = article_query(select(Article), since=since, source=source, province=province,
                              relevant=relevant, limit=limit)
    yield from session.scalars(statement.execution_options(yield_per=batch))


def get_article(session: Session, id_or_url: int | str) -> Article | None:
    """The article with this id, or reached by this URL (canonical, alias or URL key)."""
    if isinstance(id_or_url, int) or id_or_url.isdigit():
        return session.get(Article, int(id_or_url))
    return session.scalar(
        select(Article)
        .outerjoin(Article.urls)
        .where(
            or_(
                Article.url == id_or_url,
                Article.url_key == id_or_url,
                ArticleUrl.url == id_or_url,
            )
        )
        .limit(1)
    )


# --- crawl runs -----------------------------------------------------------------------------


def start_run(session: Session, trigger: str, pid: int | None = None,
              host: str | None = None) -> CrawlRun:
    """Record a crawl run starting now (``trigger``: cli, daemon, demo...), owned by process
    ``pid`` on ``host``; id assigned."""
    run = CrawlRun(started_at=utcnow(), status="running", trigger=trigger, pid=pid, host=host)
    session.add(run)
    session.flush()
    return run


def source_stats(session: Session, run_id: int, source_name: str) -> CrawlRunSource:
    """The counters of ``source_name`` within run ``run_id``, created at zero when missing."""
    stats, _ = _get_or_insert(
        session,
        lambda: session.scalar(
            select(CrawlRunSource).where(
                CrawlRunSource.run_id == run_id, CrawlRunSource.source_name == source_name
            )
        ),
        lambda: CrawlRunSource(
            run_id=run_id,
            source_name=source_name,
            pages_fetched=0,
            not_modified=0,
            articles_new=0,
            articles_seen=0,
            errors=0,
            error_messages=[],
            stats={},
        ),
    )
    return stats


def run_sources(session: Session, run_id: int) -> dict[str, CrawlRunSource]:
    """The per-source counters of run ``run_id`` recorded so far, by source name (one
    query)."""
    return {stats.source_name: stats for stats in session.scalars(
        select(CrawlRunSource).where(CrawlRunSource.run_id == run_id))}


def mark_run(session: Session, run_id: int, status: str) -> CrawlRun:
    """Set run ``run_id``'s status without finishing it (its owner finishes it)."""
    run = session.get_one(CrawlRun, run_id)
    run.status = status
    return run


def finish_run(session: Session, run_id: int, status: str) -> CrawlRun:
    """Mark run ``run_id`` finished now with ``status`` (ok or failed)."""
    run = session.get_one(CrawlRun, run_id)
    run.status = status
    run.finished_at = utcnow()
    return run


def running_runs(session: Session) -> Sequence[CrawlRun]:
    """The runs still recorded ``running``."""
    return session.scalars(select(CrawlRun).where(CrawlRun.status == "running")).all()


def run_counts(session: Session, source: str) -> dict[str, int]:
    """How many runs covering ``source`` ended in each status."""
    rows = session.execute(
        select(CrawlRun.status, func.count())
        .join(CrawlRunSource, CrawlRunSource.run_id == CrawlRun.id)
        .where(CrawlRunSource.source_name == source)
        .group_by(CrawlRun.status)
    ).all()
    return {status: count for status, count in rows}


def list_runs(session: Session, limit: int = 20) -> Sequence[CrawlRun]:
    """The latest ``limit`` runs, newest first, with their per-source counters."""
    return session.scalars(
        select(CrawlRun)
        .options(selectinload(CrawlRun.sources))
        .order_by(CrawlRun.started_at.desc(), CrawlRun.id.desc())
        .limit(limit)
    ).all()


def get_run(session: Session, run_id: int) -> CrawlRun | None:
    """Run ``run_id`` with its per-source counters, or ``None``."""
    return session.get(CrawlRun, run_id, options=[selectinload(CrawlRun.sources)])


# --- HTTP validators ------------------------------------------------------------------------


def get_validators(session: Session, url: str) -> tuple[str | None, str | None]:
    """``(etag, last_modified)`` saved for ``url``; ``(None, None)`` when never fetched."""
    state = session.get(FetchState, url)
    return (state.etag, state.last_modified) if state else (None, None)


def save_validators(
    session: Session, url: str, etag: str | None, last_modified: str | None
) -> None:
    """Remember the validators of ``url``'s latest response, for a conditional request."""
    state, _ = _get_or_insert(
        session,
        lambda: session.get(FetchState, url),
        lambda: FetchState(url=url, fetched_at=utcnow()),
    )
    state.etag = etag
    state.last_modified = last_modified
    state.fetched_at = utcnow()


# --- owed articles -------------------------------------------------------------------------


@dataclass(frozen=True)
class OwedPolicy:
    """When an owed article is fetched again: the first retry at the next run, then after
    ``backoff`` doubled at each failed attempt (at most ``max_backoff``); given up after
    ``max_attempts`` failed fetches."""

    max_attempts: int = 8
    backoff: timedelta = timedelta(minutes=15)
    max_backoff: timedelta = timedelta(days=1)

    def wait_after(self, attempts: int) -> timedelta:
        """The wait before the next fetch of an article that failed ``attempts`` times."""
        if attempts <= 1:
            return timedelta(0)
        return min(self.backoff * 2 ** (attempts - 2), self.max_backoff)


@dataclass(frozen=True)
class OwedLink:
    """An article link a crawl owes: its source, URL, URL key and the page that linked it."""

    source: str
    url: str
    key: str
    found_on: str | None


def owe_articles(session: Session, links: Sequence[OwedLink], *, error: str, attempted: bool,
                 policy: OwedPolicy) -> list[OwedArticle]:
    """Record the articles of ``links`` as owed after ``error``; return those given up now.

    ``attempted``: each was fetched and failed (its attempts and backoff grow, up to giving
    up); otherwise it was deferred (the per-source cap, a stopped crawl) and is due at the
    next run. A listing may defer thousands at once, so deferred links are written with a few
    bulk statements and never loaded; attempted ones (one at a time, in practice) are.
    """
    now = utcnow()
    links = list({link.key: link for link in links}.values())
    existing = _owed_keys(session, [link.key for link in links])
    _insert_owed(session, [link for link in links if link.key not in existing], error, now)
    if attempted:
        return _fetch_failed(session, links, error, now, policy)
    _set_last_error(session, [link for link in links if link.key in existing], error)
    return []


def _owed_keys(session: Session, keys: Sequence[str]) -> set[str]:
    """Those of ``keys`` that are owed (or given up) already."""
    found: set[str] = set()
    for chunk in _chunks(keys):
        found.update(session.scalars(select(OwedArticle.url_key)
                                     .where(OwedArticle.url_key.in_(chunk))))
    return found


def _insert_owed(session: Session, links: Sequence[OwedLink], error: str, now: datetime
                 ) -> None:
    """New owed rows, due now, in one statement; a row another process inserted meanwhile
    (same URL key) is left as it is."""
    if not links:
        return
    rows = [{"url_key": link.key, "url": link.url, "source_name": link.source,
             "found_on": link.found_on, "state": "owed", "attempts": 0, "last_error": error,
             "first_seen_at": now, "next_attempt_at": now} for link in links]
    dialect = postgresql if session.get_bind().dialect.name == "postgresql" else sqlite
    table = OwedArticle.__table__  # a Core insert: the ORM's bulk path costs ~40 µs a row
    session.execute(dialect.insert(table).on_conflict_do_nothing(
        index_elements=[table.c.url_key]), rows)


def _set_last_error(session: Session, links: Sequence[OwedLink], error: str) -> None:
    """Owed rows linked again: their latest error, and the page that linked them (a listing's
    links share it, so one statement per page and chunk)."""
    by_page: dict[str | None, list[str]] = {}
    for link in links:
        by_page.setdefault(link.found_on, []).append(link.key)
    for found_on, keys in by_page.items():
        values: dict[str, str] = {"last_error": error}
        if found_on:
            values["found_on"] = found_on
        for chunk in _chunks(keys):
            session.execute(update(OwedArticle).where(OwedArticle.url_key.in_(chunk))
                            .values(**values).execution_options(synchronize_session=False))


def _fetch_failed(session: Session, links: Sequence[OwedLink], error: str, now: datetime,
                  policy: OwedPolicy) -> list[OwedArticle]:
    """One more failed attempt for each of ``links`` (owed rows); those given up now. A row
    another crawl settled meanwhile (it stored the article) is gone and stays gone."""
    rows: dict[str, OwedArticle] = {}
    for chunk in _chunks([link.key for link in links]):
        rows.update((owed.url_key, owed) for owed in session.scalars(
            select(OwedArticle).where(OwedArticle.url_key.in_(chunk))))
    given_up = []
    for link in links:
        owed = rows.get(link.key)
        if owed is None:
            continue
        owed.found_on = link.found_on or owed.found_on
        owed.last_error = error
        owed.attempts += 1
        owed.last_attempt_at = now
        owed.next_attempt_at = now + policy.wait_after(owed.attempts)
        if owed.attempts >= policy.max_attempts and owed.state != "gave_up":
            owed.state = "gave_up"
            given_up.append(owed)
    return given_up


def due_owed(session: Session, source: str, limit: int) -> Sequence[OwedArticle]:
    """Up to ``limit`` owed articles of ``source`` due now, longest owed first."""
    return session.scalars(
        select(OwedArticle)
        .where(OwedArticle.source_name == source, OwedArticle.state == "owed",
               OwedArticle.next_attempt_at <= utcnow())
        .order_by(OwedArticle.first_seen_at, OwedArticle.id)
        .limit(limit)
    ).all()


def settle_owed(session: Session, url_keys: Iterable[str]) -> int:
    """Forget the owed articles with these URL keys (they are stored); how many there were."""
    session.flush()  # a Core statement: the session's pending changes go first, as the ORM's
    connection, settled = session.connection(), 0
    for chunk in _chunks(set(url_keys)):
        settled += connection.execute(_settle_owed(), {"keys": chunk}).rowcount
    return settled


@cache
def _settle_owed() -> Delete:
    """The delete of the owed rows with URL keys ``keys``, built once (the writer runs it for
    each article it stores)."""
    owed = OwedArticle.__table__
    return delete(owed).where(owed.c.url_key.in_(bindparam("keys", expanding=True)))


def list_owed(session: Session, source: str | None = None) -> Sequence[OwedArticle]:
    """Every owed or given-up article (of ``source``), by source then age."""
    statement = select(OwedArticle).order_by(OwedArticle.source_name, OwedArticle.first_seen_at,
                                             OwedArticle.id)
    if source is not None:
        statement = statement.where(OwedArticle.source_name == source)
    return session.scalars(statement).all()


def owed_counts(session: Session) -> dict[str, dict[str, int]]:
    """Per source: how many articles are ``owed`` and how many ``gave_up``."""
    counts: dict[str, dict[str, int]] = {}
    rows = session.execute(select(OwedArticle.source_name, OwedArticle.state, func.count())
                           .group_by(OwedArticle.source_name, OwedArticle.state)).all()
    for source, state, count in rows:
        counts.setdefault(source, {"owed": 0, "gave_up": 0})[state] = count
    return counts


# --- helpers --------------------------------------------------------------------------------


def _chunks(items: Iterable[T], size: int = _IN_CHUNK) -> Iterator[list[T]]:
    """``items`` in lists of at most ``size`` (IN clauses stay under parameter limits)."""
    iterator = iter(items)
    while chunk := list(islice(iterator, size)):
        yield chunk


def _get_or_insert(
    session: Session, lookup: Callable[[], T | None], make: Callable[[], T]
) -> tuple[T, bool]:
    """``(row, created)``: the row ``lookup`` finds, else ``make()`` inserted in a SAVEPOINT.

    If the insert breaks a unique constraint (another process inserted it meanwhile), the
    savepoint is rolled back and the other process's row is returned.
    """
    existing = lookup()
    if existing is not None:
        return existing, False
    row = make()
    try:
        with session.begin_nested():
            session.add(row)
    except IntegrityError:
        existing = lookup()
        if existing is None:
            raise
        return existing, False
    return row, True
