"""Helpers every `dtmon` command shares: opening the database, failing clearly, JSON lines,
tables that fit the terminal and show scraped text as text."""

from __future__ import annotations

import json
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING, Annotated, Any, NoReturn

import typer
from rich import box
from rich.console import Console
from rich.table import Table
from rich.text import Text
from sqlalchemy import Connection, Engine

from monitor.clock import json_value
from storage.db import (
    StorageError,
    database_url,
    describe_database,
    init_db,
    make_engine,
    missing_database,
    prepare_database,
    session_factory,
    storage_errors,
)

if TYPE_CHECKING:
    from sqlalchemy.orm import Session, sessionmaker

console = Console()
err_console = Console(stderr=True)

JsonOption = Annotated[bool, typer.Option("--json", help="JSON output, for scripts.")]


def fail(message: str, code: int = 1) -> NoReturn:
    """Print ``error: message`` on stderr and exit with ``code`` (no traceback)."""
    err_console.print(Text.assemble(("error:", "bold red"), " ", message), soft_wrap=True)
    raise typer.Exit(code)


def open_database(url: str | None = None, *, create: bool = True
                  ) -> tuple[str, sessionmaker[Session]]:
    """The database URL and a session factory on the migrated database, runs orphaned by a
    dead process marked failed (see :func:`open_engine`); exits on failure."""
    from monitor.crawling import reap_orphaned_runs

    url, engine = open_engine(url, create=create)
    sessions = session_factory(engine)
    try:
        reap_orphaned_runs(sessions)
    except StorageError as exc:
        fail(str(exc))
    return url, sessions


def open_engine(url: str | None = None, *, create: bool = True) -> tuple[str, Engine]:
    """The database URL and an engine on the migrated database; exits on failure.

    With ``create=False`` (read-only commands) a SQLite file that does not exist is an error
    naming it, never a new empty database.
    """
    url = url or database_url()
    try:
        if create:
            prepare_database(url)
        elif (missing := missing_database(url)) is not None:
            fail(f"no database at {missing}: nothing was crawled into it (`dtmon crawl` "
                 f"creates it; $DTMON_DATABASE_URL names another)")
        engine = make_engine(url)
        init_db(engine)
    except StorageError as exc:
        fail(str(exc))
    return url, engine


@contextmanager
def database_session(url: str | None = None) -> Iterator[Session]:
    """A read session on the configured database (never created here); storage failures
    exit cleanly."""
    _, sessions = open_database(url, create=False)
    try:
        with sessions() as session:
            yield session
    except StorageError as exc:
        fail(str(exc))


@contextmanager
def database_connection(url: str | None = None) -> Iterator[Connection]:
    """A read connection (SQLAlchemy Core: no ORM to import, no runs to reap) on the configured
    database (never created here); storage failures exit cleanly."""
    _, engine = open_engine(url, create=False)
    try:
        with storage_errors(engine.url), engine.connect() as connection:
            yield connection
    except StorageError as exc:
        fail(str(exc))


def database_missing() -> bool:
    """Whether the configured database is a SQLite file that does not exist yet (exits on a
    bad database URL)."""
    try:
        return missing_database(database_url()) is not None
    except StorageError as exc:
        fail(str(exc))


def where_database(url: str | None = None) -> str:
    """The database in use as shown to users (file path, or URL without password)."""
    try:
        return describe_database(url or database_url())
    except StorageError as exc:
        fail(str(exc))


def json_default(value: Any) -> Any:
    """JSON encoding of the values dtmon records hold (instants as ISO 8601 with offset)."""
    if isinstance(value, bytes | bytearray):
        return value.decode("utf-8", "replace")
    return json_value(value)


def echo_json_line(record: dict[str, Any]) -> None:
    """Print one JSON object on one line, Vietnamese text kept as is."""
    typer.echo(json.dumps(record, ensure_ascii=False, default=json_default))


def fitted_table(columns: Iterable[str], *, shrink: Iterable[str] = (), fold: Iterable[str] = (),
                 right: Iterable[str] = (), **options: Any) -> Table:
    """A table that fits the terminal: headers are never cut (each column is at least as wide
    as its header), cells stay on one line, ``shrink`` columns (titles: fill them with
    :func:`plain`) give way first and are cut with an ellipsis, ``fold`` columns (URLs) wrap
    instead of being cut."""
    table = Table(box=box.SIMPLE_HEAD, show_edge=False, pad_edge=False, collapse_padding=True,
                  **options)
    shrink, fold, right = set(shrink), set(fold), set(right)
    for name in columns:
        table.add_column(
            name, min_width=len(name), justify="right" if name in right else "left",
            no_wrap=name not in shrink | fold, overflow="fold" if name in fold else "ellipsis",
            ratio=1 if name in shrink else None,
        )
    return table


def plain(value: object, *, one_line: bool = True) -> Text:
    """Scraped or stored text as a table cell: shown as is (never read as Rich markup); on one
    line, cut with an ellipsis when the column is narrower, unless ``one_line`` is false."""
    text = "" if value is None else str(value)
    return Text(text, no_wrap=True, overflow="ellipsis") if one_line else Text(text)


def print_plain(*parts: object, style: str | None = None) -> None:
    """Print text as is (a title holding ``[/]`` or ``[link=…]`` stays text)."""
    console.print(Text(" ".join(str(part) for part in parts), style=style or ""),
                  highlight=False, soft_wrap=True)


def province_filter(session: Session | Connection, value: str | None) -> str | None:
    """The stored or registry province that ``value`` spells (see :func:`resolve_name`)."""
    if value is None:
        return None
    from sqlalchemy import select, union

    from storage.schema import articles, sources

    stored = session.scalars(union(
        select(articles.c.province).where(articles.c.province.is_not(None)).distinct(),
        select(sources.c.province).where(sources.c.province.is_not(None)),
    ))
    return resolve_name("province", value, list(stored),
                        lambda registry: [p.name for p in registry.provinces])


def source_filter(session: Session | Connection, value: str | None) -> str | None:
    """The stored or registry source name that ``value`` spells (see :func:`resolve_name`)."""
    if value is None:
        return None
    from sqlalchemy import select

    from storage.schema import sources

    return resolve_name("source", value, list(session.scalars(select(sources.c.name))),
                        lambda registry: [s.name for s in registry.sources])


def resolve_name(kind: str, value: str, stored: list[str],
                 from_registry: Callable[[Any], list[str]]) -> str:
    """The ``kind`` name (a province, a source) that ``value`` spells, ignoring diacritics,
    case and spaces: among the ``stored`` names, else the source registry's. Exits naming the
    known ones when there is none."""
    from vntext import name_key

    wanted = name_key(value)
    found = next((name for name in stored if name_key(name) == wanted), None)
    if found is not None:
        return found
    from crawler.sources import SourceConfigError, default_registry  # YAML, pydantic models

    try:
        registered = from_registry(default_registry())
    except SourceConfigError:
        registered = []
    names = sorted(set(stored) | set(registered))
    found = next((name for name in names if name_key(name) == wanted), None)
    if found is None:
        fail(f"unknown {kind} {value!r}; known: {', '.join(names) or 'none'}")
    return found
