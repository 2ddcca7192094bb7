"""Helpers every `dtmon` command shares: opening the database, failing clearly, JSON lines."""

from __future__ import annotations

import json
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import date, datetime
from typing import Annotated, Any, NoReturn

import typer
from rich.console import Console
from sqlalchemy.orm import Session, sessionmaker

from monitor.crawling import reap_orphaned_runs
from storage.db import StorageError, database_url, init_db, make_engine, session_factory

console = Console()
err_console = Console(stderr=True)

JsonOption = Annotated[bool, typer.Option("--json", help="JSON output, for scripts.")]


def fail(message: str, code: int = 1) -> NoReturn:
    """Print ``error: message`` on stderr and exit with ``code`` (no traceback)."""
    err_console.print(f"[bold red]error:[/] {message}", highlight=False, soft_wrap=True)
    raise typer.Exit(code)


def open_database(url: str | None = None) -> tuple[str, sessionmaker[Session]]:
    """The database URL and a session factory on the migrated database, with the runs whose
    process is gone marked failed; exits on failure."""
    url = url or database_url()
    try:
        engine = make_engine(url)
        init_db(engine)
        sessions = session_factory(engine)
        reap_orphaned_runs(sessions)
    except StorageError as exc:
        fail(str(exc))
    return url, sessions


@contextmanager
def database_session(url: str | None = None) -> Iterator[Session]:
    """A read session on the configured database; storage failures exit cleanly."""
    _, sessions = open_database(url)
    try:
        with sessions() as session:
            yield session
    except StorageError as exc:
        fail(str(exc))


def json_default(value: Any) -> Any:
    """JSON encoding of the values dtmon records hold (dates as ISO 8601)."""
    if isinstance(value, datetime | date):
        return value.isoformat()
    if isinstance(value, bytes | bytearray):
        return value.decode("utf-8", "replace")
    raise TypeError(f"cannot encode {type(value).__name__} as JSON")


def echo_json_line(record: dict[str, Any]) -> None:
    """Print one JSON object on one line, Vietnamese text kept as is."""
    typer.echo(json.dumps(record, ensure_ascii=False, default=json_default))
