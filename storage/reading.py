"""Queries over the Core tables of :mod:`storage.schema`, without the ORM: what read-only
commands need to start quickly (`dtmon articles list`, see bench/cli.py). The ORM readers of
:mod:`storage.repository` build on the same queries."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import date, datetime, time
from typing import TypeVar

from sqlalchemy import Connection, Row, Select, select

from storage.schema import ARTICLE_DATED, VIETNAM, articles, sources, utc_naive

S = TypeVar("S", bound=Select)


def article_query(
    statement: S,
    *,
    since: datetime | date | None = None,
    source: str | None = None,
    province: str | None = None,
    relevant: bool | None = None,
    limit: int | None = None,
) -> S:
    """``statement`` (a select from the articles table, or of the Article class) narrowed to the
    articles that pass the filters, newest first, at most ``limit`` of them.

    ``since`` keeps articles dated (published, else fetched) at or after it; a bare date means
    midnight in Vietnam, a naive datetime is UTC. ``source`` is a registry name.
    """
    statement = statement.order_by(ARTICLE_DATED.desc(), articles.c.id.desc())
    if since is not None:
        statement = statement.where(_as_utc_moment(since) <= ARTICLE_DATED)
    if source is not None:
        source_id = select(sources.c.id).where(sources.c.name == source).scalar_subquery()
        statement = statement.where(articles.c.source_id == source_id)
    if province is not None:
        statement = statement.where(articles.c.province == province)
    if relevant is not None:
        statement = statement.where(articles.c.relevant.is_(relevant))
    if limit is not None:
        statement = statement.limit(limit)
    return statement


def article_rows(connection: Connection, **filters: object) -> Iterator[Row]:
    """One row per article passing ``filters`` (see :func:`article_query`), newest first:
    ``id``, ``published``, ``source`` (its name), ``province``, ``relevant``, ``title``."""
    columns = select(articles.c.id, articles.c.published, sources.c.name.label("source"),
                     articles.c.province, articles.c.relevant, articles.c.title)
    statement = columns.join_from(articles, sources, articles.c.source_id == sources.c.id)
    yield from connection.execute(article_query(statement, **filters))


def _as_utc_moment(moment: datetime | date) -> datetime:
    if isinstance(moment, datetime):
        return utc_naive(moment)
    return utc_naive(datetime.combine(moment, time(), tzinfo=VIETNAM))
