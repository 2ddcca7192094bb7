"""Finding stories: filters by date, province, source, relevance and full-text search.

A story matches when one of its copies matches every filter. Full-text search uses the index
of migration 0002 (SQLite FTS5, PostgreSQL ``to_tsvector('simple', …)``): every word of the
query must appear in the copy's title or text, diacritics included.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import date, datetime, time, timedelta

from sqlalchemy import ColumnElement, Integer, Select, column, exists, func, literal_column, select
from sqlalchemy import text as sql_text
from sqlalchemy.orm import Session, aliased, joinedload, selectinload

from storage.models import POSTGRES_FULLTEXT_DOCUMENT, Article, Source, Story
from storage.repository import VIETNAM, utc_naive
from vntext import normalize_text

_WORD = re.compile(r"\w+")
# Days a date filter may name: any day a stored copy can carry, with room to spare, and far
# from the ends of the calendar (day 1 and day 9999-12-31 overflow once moved to UTC).
EARLIEST_DAY = date(1900, 1, 1)
LATEST_DAY = date(2999, 12, 31)


class SearchError(ValueError):
    """A filter that cannot be applied; ``str()`` says why."""


@dataclass(frozen=True)
class StoryFilter:
    """What a story's copy must satisfy; ``None`` leaves a criterion out.

    ``since``/``until`` are days in Vietnam time, both inclusive, on the copy's date (published,
    else fetched).
    """

    since: date | None = None
    until: date | None = None
    province: str | None = None
    source: str | None = None
    relevant: bool | None = None
    query: str | None = None

    def __post_init__(self) -> None:
        for name, day in (("since", self.since), ("until", self.until)):
            if day is not None and not EARLIEST_DAY <= day <= LATEST_DAY:
                raise SearchError(f"{name} must be between {EARLIEST_DAY} and {LATEST_DAY}, "
                                  f"not {day}")


@dataclass(frozen=True)
class StoryView:
    """A story's representative and every copy (representative included), earliest first."""

    id: int
    representative: Article
    copies: list[Article]


def search_words(query: str) -> list[str]:
    """The words of a search query, lower-cased NFC; raises SearchError when there is none."""
    words = _WORD.findall(normalize_text(query).lower())
    if not words:
        raise SearchError(f"the search {query!r} has no word to look for")
    return words


def fulltext_condition(session: Session, query: str) -> ColumnElement[bool]:
    """A condition on ``Article`` (unaliased): the copy contains every word of ``query``."""
    words = search_words(query)
    if session.get_bind().dialect.name == "postgresql":
        tsquery = func.plainto_tsquery("simple", " ".join(words))
        return literal_column(POSTGRES_FULLTEXT_DOCUMENT).bool_op("@@")(tsquery)
    # FTS5: each word as a quoted string, so no query syntax ever reaches MATCH.
    match = " ".join('"' + word.replace('"', '""') + '"' for word in words)
    rowids = (
        sql_text("SELECT rowid FROM articles_fts WHERE articles_fts MATCH :fts_match")
        .bindparams(fts_match=match)
        .columns(column("rowid", Integer))
    )
    return Article.id.in_(rowids)


def copy_conditions(session: Session, filters: StoryFilter) -> list[ColumnElement[bool]]:
    """The conditions on one ``Article`` row that ``filters`` asks for."""
    dated = func.coalesce(Article.published_at, Article.fetched_at)
    conditions: list[ColumnElement[bool]] = []
    if filters.since is not None:
        conditions.append(dated >= _vietnam_midnight_utc(filters.since))
    if filters.until is not None:
        conditions.append(dated < _vietnam_midnight_utc(filters.until + timedelta(days=1)))
    if filters.province is not None:
        conditions.append(Article.province == filters.province)
    if filters.source is not None:
        conditions.append(
            Article.source_id.in_(select(Source.id).where(Source.name == filters.source))
        )
    if filters.relevant is not None:
        conditions.append(Article.relevant.is_(filters.relevant))
    if filters.query:
        conditions.append(fulltext_condition(session, filters.query))
    return conditions


def _vietnam_midnight_utc(day: date) -> datetime:
    return utc_naive(datetime.combine(day, time(), tzinfo=VIETNAM))


def matching_stories(session: Session, filters: StoryFilter) -> Select[tuple[int]]:
    """Ids of the stories with a copy matching ``filters``, newest representative first.

    The representatives are read in the order of the index of migration 0018 (their date, then
    their story), so a page stops after its rows instead of sorting every story.
    """
    representative = aliased(Article)
    has_match = exists().where(Article.story_id == Story.id, *copy_conditions(session, filters))
    return (
        select(Story.id)
        .select_from(representative)
        .join(Story, (Story.id == representative.story_id)
              & (Story.representative_id == representative.id))
        .where(has_match)
        .order_by(
            func.coalesce(representative.published_at, representative.fetched_at).desc(),
            representative.story_id.desc(),
        )
    )


def find_stories(
    session: Session, filters: StoryFilter, *, limit: int, offset: int = 0
) -> tuple[list[StoryView], int]:
    """One page of matching stories (newest first) and how many match in all."""
    ids_query = matching_stories(session, filters)
    total = session.scalar(select(func.count()).select_from(ids_query.order_by(None).subquery()))
    ids = list(session.scalars(ids_query.limit(limit).offset(offset)))
    return load_stories(session, ids), total or 0


def load_stories(session: Session, story_ids: Sequence[int]) -> list[StoryView]:
    """The stories ``story_ids`` with their copies, in the order given (missing ids left out)."""
    if not story_ids:
        return []
    articles = session.scalars(
        select(Article)
        .options(joinedload(Article.source), selectinload(Article.urls))
        .where(Article.story_id.in_(story_ids))
        .order_by(Article.published_at.asc().nulls_last(), Article.id)
    ).all()
    representatives = dict(
        session.execute(
            select(Story.id, Story.representative_id).where(Story.id.in_(story_ids))
        ).all()
    )
    copies: dict[int, list[Article]] = {}
    for article in articles:
        copies.setdefault(article.story_id, []).append(article)
    views = []
    for story_id in story_ids:
        by_id = {article.id: article for article in copies.get(story_id, [])}
        representative = by_id.get(representatives.get(story_id))
        if representative is not None:
            views.append(StoryView(story_id, representative, copies[story_id]))
    return views
