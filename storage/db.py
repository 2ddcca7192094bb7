"""Database access: where the database is, engines tuned per backend, migrations, sessions.

SQLite (the default, one file in the user's data folder: ``~/.local/share/dtmon/dtmon.db`` on
Linux, by platformdirs) and PostgreSQL (``postgresql+psycopg://``) are
both supported. All ``DateTime`` columns hold naive UTC.

SQLite runs in WAL mode with a long busy timeout so that several processes (crawler, daemon,
CLI) can share one file. The ``sqlite3`` driver's legacy transaction mode is kept on purpose:
reads take no lock and a write transaction begins at its first INSERT/UPDATE/DELETE, so
read-then-write code never hits a stale-snapshot "database is locked". Its one defect, a
SAVEPOINT that is not inside a transaction, is repaired here: a savepoint first opens a
``BEGIN IMMEDIATE`` transaction when none is open.

Operational failures (unreachable server, read-only file, full disk, lock timeout) surface as
:class:`StorageError` with a message meant for the user.
"""

from __future__ import annotations

import os
import re
import sqlite3
import time
from collections.abc import Iterator
from contextlib import contextmanager
from functools import partial
from pathlib import Path
from typing import TYPE_CHECKING, Any

from sqlalchemy import Connection, Engine, create_engine, event, text
from sqlalchemy.engine import URL, make_url
from sqlalchemy.exc import ArgumentError, DBAPIError, NoSuchModuleError, OperationalError

if TYPE_CHECKING:
    from alembic.config import Config
    from sqlalchemy.orm import Session, sessionmaker

DATABASE_URL_ENV = "DTMON_DATABASE_URL"
SUPPORTED_URLS = "sqlite:///path/to/file.db or postgresql://user:password@host:port/database"
MIGRATIONS_DIR = Path(__file__).resolve().parent / "migrations"
SQLITE_CACHE_KIB = 64 * 1024  # an engine's page cache, filled only as pages are read
SQLITE_BUSY_TIMEOUT_MS = 30_000
_REVISION_LINE = re.compile(r"^revision\b[^=\n]*=\s*[\"']([^\"']+)[\"']", re.MULTILINE)
_DOWN_REVISION_LINE = re.compile(r"^down_revision\b[^=\n]*=(.*)$", re.MULTILINE)
_QUOTED = re.compile(r"[\"']([^\"']+)[\"']")
# Any constant will do: it only has to be the same in every dtmon process.
_PG_MIGRATION_LOCK = 0x64746D6F6E  # "dtmon"

# sqlite3 primary result codes (https://www.sqlite.org/rescode.html).
_SQLITE_MESSAGES = {
    5: "the database is locked by another process; retry when it has finished",
    8: "the database is read-only: check the permissions of the file and of its folder",
    10: "disk I/O error while accessing the database",
    13: "the disk is full: free some space and retry",
    14: "cannot open the database file: check that its folder exists and is writable",
}
# PostgreSQL SQLSTATEs (https://www.postgresql.org/docs/current/errcodes-appendix.html).
_POSTGRES_MESSAGES = {
    "53100": "the database server's disk is full",
    "25006": "the database is read-only (a standby server or a read-only transaction)",
    "53300": "the database server has too many connections",
}


class StorageError(RuntimeError):
    """A database failure the user can act on; ``str()`` says what happened."""


def default_database_path() -> Path:
    """The default SQLite file: ``dtmon.db`` in the user's data folder (platformdirs)."""
    from platformdirs import user_data_path

    return user_data_path("dtmon", appauthor=False) / "dtmon.db"


def database_url() -> str:
    """The configured database URL: ``$DTMON_DATABASE_URL``, else the default SQLite file.

    Nothing is created here: writers call :func:`prepare_database`, readers
    :func:`missing_database`.
    """
    configured = os.environ.get(DATABASE_URL_ENV, "").strip()
    if configured:
        return configured
    return f"sqlite:///{default_database_path()}"


def sqlite_path(url: str) -> Path | None:
    """The file of a SQLite URL (``None`` for another backend)."""
    parsed = parse_url(url)
    return Path(parsed.database) if parsed.get_backend_name() == "sqlite" else None


def prepare_database(url: str) -> None:
    """Before writing: create the folder of the default SQLite file when it is missing."""
    path = sqlite_path(url)
    if path is None or path != default_database_path():
        return
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise StorageError(f"cannot create the database folder {path.parent}: {exc}") from exc


def missing_database(url: str) -> Path | None:
    """The SQLite file of ``url`` when it does not exist (read-only commands never create
    one); ``None`` when it exists or the backend is a server."""
    path = sqlite_path(url)
    return path if path is not None and not path.exists() else None


def describe_database(url: str) -> str:
    """The database as shown to the user: a SQLite file's path, else the URL without its
    password."""
    path = sqlite_path(url)
    return str(path) if path is not None else parse_url(url).render_as_string(hide_password=True)


def parse_url(url: str) -> URL:
    """``url`` checked and normalised: SQLite files and PostgreSQL only, else StorageError."""
    try:
        parsed = _normalise_url(make_url(url))
    except ArgumentError as exc:
        raise StorageError(f"invalid database URL: expected {SUPPORTED_URLS}") from exc
    backend = parsed.get_backend_name()
    if backend not in ("sqlite", "postgresql"):
        raise StorageError(f"unsupported database URL ({backend}): dtmon stores into "
                           f"{SUPPORTED_URLS}")
    if backend == "sqlite" and parsed.database in (None, "", ":memory:"):
        raise StorageError("an in-memory SQLite database (sqlite://) would vanish when the "
                           "command ends: give a file, sqlite:///path/to/file.db")
    return parsed


def make_engine(url: str | None = None, pool_size: int | None = None) -> Engine:
    """An engine for ``url`` (default :func:`database_url`), tuned for its backend.

    ``pool_size`` fixes the number of pooled connections (no overflow) for a server that
    bounds its own concurrency; default: SQLAlchemy's pool. On SQLite the connections of a
    fixed pool share the page cache budget (each caches its own pages).
    """
    pool = {} if pool_size is None else {"pool_size": pool_size, "max_overflow": 0}
    parsed = parse_url(url or database_url())
    try:
        if parsed.get_backend_name() == "sqlite":
            engine = create_engine(parsed, **pool)
            cache_kib = SQLITE_CACHE_KIB // (pool_size or 1)
            event.listen(engine, "connect",
                         partial(_configure_sqlite_connection, cache_kib=cache_kib))
            event.listen(engine, "savepoint", _begin_before_savepoint)
            return engine
        return create_engine(parsed, pool_pre_ping=True, **pool)
    except NoSuchModuleError as exc:
        raise StorageError(f"unsupported database driver {parsed.drivername!r}: use "
                           f"{SUPPORTED_URLS}") from exc


def session_factory(engine: Engine) -> sessionmaker[Session]:
    """A session factory bound to ``engine``; objects stay readable after commit."""
    from sqlalchemy.orm import sessionmaker  # the ORM: not imported by Core-only readers

    return sessionmaker(bind=engine, expire_on_commit=False)


@contextmanager
def session_scope(factory: sessionmaker[Session]) -> Iterator[Session]:
    """One transaction: commit when the block succeeds, roll back when it raises."""
    session = factory()
    url = session.get_bind().url
    try:
        with storage_errors(url):
            yield session
            session.commit()
    except BaseException:
        session.rollback()
        raise
    finally:
        session.close()


@contextmanager
def storage_errors(url: URL | str) -> Iterator[None]:
    """Turn operational database failures inside the block into :class:`StorageError`."""
    try:
        yield
    except OperationalError as exc:
        raise StorageError(describe_failure(exc, url)) from exc


def describe_failure(exc: DBAPIError, url: URL | str) -> str:
    """A one-line, user-facing explanation of an operational database failure."""
    where = make_url(url).render_as_string(hide_password=True)
    # A failure can hide behind a later one (SQLite drops the transaction on a full disk, so
    # the rollback to the savepoint fails too): explain the first known cause in the chain.
    for error in _exception_chain(exc):
        known = _known_cause(error.orig) if isinstance(error, DBAPIError) else None
        if known:
            return f"{where}: {known}"
    original = exc.orig
    detail = str(original).strip().splitlines()[0] if str(original).strip() else repr(original)
    if not isinstance(original, sqlite3.Error) and getattr(original, "sqlstate", None) is None:
        return f"cannot connect to the database {where}: {detail}"  # no answer from a server
    return f"{where}: {detail}"


def _known_cause(original: BaseException) -> str | None:
    if isinstance(original, sqlite3.Error):
        return _SQLITE_MESSAGES.get(getattr(original, "sqlite_errorcode", 0) & 0xFF)
    return _POSTGRES_MESSAGES.get(getattr(original, "sqlstate", None) or "")


def _exception_chain(exc: BaseException) -> Iterator[BaseException]:
    seen: set[int] = set()
    current: BaseException | None = exc
    while current is not None and id(current) not in seen:
        seen.add(id(current))
        yield current
        current = current.__cause__ or current.__context__


def alembic_config(connection: Connection) -> Config:
    """An Alembic configuration running dtmon's migrations over ``connection``."""
    from alembic.config import Config

    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS_DIR))
    config.attributes["connection"] = connection
    return config


def init_db(engine: Engine) -> None:
    """Bring the schema to the latest migration (Alembic ``upgrade head``).

    Idempotent, and safe when several processes start at once: the upgrade runs under a
    database-wide lock, so the later ones find the schema current and do nothing. A database
    already at the head is recognised with one query, without loading Alembic (every command
    starts here: see bench/cli.py).
    """
    if _at_head(engine):
        return
    from alembic import command

    with storage_errors(engine.url), migration_connection(engine) as connection:
        command.upgrade(alembic_config(connection), "head")


def migration_heads() -> set[str]:
    """The head revisions of the migrations folder, read from the version files' ``revision``
    and ``down_revision`` lines (Alembic's own reading imports every file)."""
    revisions: set[str] = set()
    parents: set[str] = set()
    for path in (MIGRATIONS_DIR / "versions").glob("*.py"):
        text = path.read_text("utf-8")
        revisions.update(_REVISION_LINE.findall(text))
        for line in _DOWN_REVISION_LINE.findall(text):
            parents.update(_QUOTED.findall(line))
    return revisions - parents


def _at_head(engine: Engine) -> bool:
    heads = migration_heads()
    try:
        with engine.connect() as connection:
            current = set(connection.scalars(text("SELECT version_num FROM alembic_version")))
    except DBAPIError:
        return False  # no schema yet (or unreadable: the upgrade will say why)
    return bool(heads) and current == heads


@contextmanager
def migration_connection(engine: Engine) -> Iterator[Connection]:
    """A connection in a transaction that holds the database's migration lock until commit."""
    with engine.begin() as connection:
        if engine.dialect.name == "sqlite":
            # DDL inside one write transaction: atomic, and other processes wait for it.
            _begin_immediate(connection.connection.dbapi_connection)
        elif engine.dialect.name == "postgresql":
            connection.execute(
                text("SELECT pg_advisory_xact_lock(:key)"), {"key": _PG_MIGRATION_LOCK}
            )
        yield connection


def _normalise_url(url: URL) -> URL:
    """Route plain ``postgresql://``/``postgres://`` URLs to the psycopg 3 driver."""
    if url.drivername in ("postgresql", "postgres"):
        return url.set(drivername="postgresql+psycopg")
    return url


def _configure_sqlite_connection(
    dbapi_connection: sqlite3.Connection, _record: Any, *, cache_kib: int
) -> None:
    """Per-connection SQLite settings: wait for locks, WAL, enforced foreign keys, and a page
    cache that holds the hot part of the indexes (the default 2 MiB makes every duplicate
    lookup of a large database read pages from the OS)."""
    dbapi_connection.execute(f"PRAGMA busy_timeout = {SQLITE_BUSY_TIMEOUT_MS}")
    _enable_wal(dbapi_connection)
    dbapi_connection.execute("PRAGMA synchronous = NORMAL")
    dbapi_connection.execute("PRAGMA foreign_keys = ON")
    dbapi_connection.execute(f"PRAGMA cache_size = -{cache_kib}")


def _enable_wal(dbapi_connection: sqlite3.Connection) -> None:
    """Switch to WAL, retrying while another process writes the still rollback-journal file.

    SQLite answers "locked" at once there instead of calling the busy handler; this only
    happens while a new database file is being created by several processes.
    """
    deadline = time.monotonic() + SQLITE_BUSY_TIMEOUT_MS / 1000
    while True:
        try:
            dbapi_connection.execute("PRAGMA journal_mode = WAL")
            return
        except sqlite3.OperationalError as exc:
            if exc.sqlite_errorcode & 0xFF != sqlite3.SQLITE_BUSY or time.monotonic() > deadline:
                raise
            time.sleep(0.02)


def _begin_before_savepoint(connection: Connection, _name: str) -> None:
    """Open a real transaction first: a bare SQLite SAVEPOINT would commit on release."""
    _begin_immediate(connection.connection.dbapi_connection)


def _begin_immediate(dbapi_connection: Any) -> None:
    """Start a write transaction now (waiting for the lock) unless one is already open."""
    if not dbapi_connection.in_transaction:
        dbapi_connection.execute("BEGIN IMMEDIATE")
