"""Storage layer on SQLite and PostgreSQL: migrations, idempotent and concurrent article
storage, raw HTML, crawl runs, HTTP validators, article queries, user-facing errors."""

from __future__ import annotations

import multiprocessing
import os
import stat
from datetime import date, datetime
from pathlib import Path

import pytest
from alembic import command
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import Engine, func, inspect, select, text
from sqlalchemy.orm import Session

from storage.db import (
    DATABASE_URL_ENV,
    StorageError,
    alembic_config,
    database_url,
    init_db,
    make_engine,
    migration_connection,
    session_factory,
    session_scope,
)
from storage.models import Article, Base, Source
from storage.repository import (
    ArticleData,
    add_article,
    content_hash,
    decompress_html,
    ensure_source,
    find_article_by_urls,
    finish_run,
    get_article,
    get_run,
    get_validators,
    iter_articles,
    known_url_keys,
    list_runs,
    published_at_utc,
    save_validators,
    source_stats,
    start_run,
)

# Children build their own engines and never touch the parent's pooled connections, so fork
# is safe here, and far quicker than spawn (no re-import of SQLAlchemy and Alembic).
PROCESSES = multiprocessing.get_context("fork")


def article_data(n: int = 1, **changes) -> ArticleData:
    """A plausible article; ``n`` varies its identity."""
    fields = {
        "source_name": "hagiang",
        "province": "Tuyên Quang",
        "url": f"https://hagiang.gov.vn/tin-tuc/chuyen-doi-so-{n}.html",
        "url_key": f"hagiang.gov.vn/tin-tuc/chuyen-doi-so-{n}.html",
        "title": f"Chuyển đổi số cấp xã, bài {n}",
        "text": f"Tỉnh đẩy mạnh chuyển đổi số trong cải cách hành chính. Bài {n}.",
        "published": "2025-07-01",
        "raw_html": b"<html><body>" + b"<p>chuyen doi so</p>" * 200 + b"</body></html>",
        "fetched_at": datetime(2025, 7, 2, 8, 0),
    }
    fields.update(changes)
    return ArticleData(**fields)


def current_revision(engine: Engine) -> str | None:
    with engine.connect() as connection:
        return MigrationContext.configure(connection).get_current_revision()


def head_revision(engine: Engine) -> str:
    with engine.connect() as connection:
        return ScriptDirectory.from_config(alembic_config(connection)).get_current_head()


# --- configuration --------------------------------------------------------------------------


def test_database_url_defaults_to_a_file_under_data(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv(DATABASE_URL_ENV, raising=False)
    assert database_url() == f"sqlite:///{tmp_path / 'data' / 'dtmon.db'}"
    assert (tmp_path / "data").is_dir()

    monkeypatch.setenv(DATABASE_URL_ENV, "postgresql://dtmon@db.example/dtmon")
    assert database_url() == "postgresql://dtmon@db.example/dtmon"
    assert make_engine(database_url()).url.drivername == "postgresql+psycopg"


# --- migrations -----------------------------------------------------------------------------


def test_migrations_apply_from_empty_reapply_as_no_op_and_reverse(database_url: str) -> None:
    engine = make_engine(database_url)
    init_db(engine)
    assert current_revision(engine) == head_revision(engine)
    assert set(Base.metadata.tables) <= set(inspect(engine).get_table_names())

    init_db(engine)  # already current: nothing to do, nothing fails
    assert current_revision(engine) == head_revision(engine)

    with migration_connection(engine) as connection:
        command.downgrade(alembic_config(connection), "base")
    assert set(inspect(engine).get_table_names()) == {"alembic_version"}
    init_db(engine)
    assert current_revision(engine) == head_revision(engine)
    engine.dispose()


def test_models_and_migrations_agree(engine: Engine) -> None:
    with engine.connect() as connection:
        context = MigrationContext.configure(connection, opts={"compare_type": True})
        differences = compare_metadata(context, Base.metadata)
    assert differences == [], (
        "storage/models.py and storage/migrations disagree; run scripts/regen-migration "
        f"and review the new 0001: {differences}"
    )


def _init_db_worker(url: str, barrier) -> None:
    engine = make_engine(url)
    barrier.wait()
    init_db(engine)
    engine.dispose()


def test_processes_starting_at_once_both_migrate(database_url: str) -> None:
    barrier = PROCESSES.Barrier(2)
    workers = [
        PROCESSES.Process(target=_init_db_worker, args=(database_url, barrier)) for _ in "ab"
    ]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join(60)
    assert [worker.exitcode for worker in workers] == [0, 0]
    engine = make_engine(database_url)
    assert current_revision(engine) == head_revision(engine)
    engine.dispose()


# --- articles -------------------------------------------------------------------------------


def test_add_article_stores_once_and_records_new_url_forms(session: Session) -> None:
    first, created = add_article(session, article_data())
    session.commit()
    assert created

    again, created_again = add_article(session, article_data())
    assert (again.id, created_again) == (first.id, False)

    share_link = "https://hagiang.gov.vn/Tin-Tuc/chuyen-doi-so-1.html?utm_source=zalo"
    alias, created_alias = add_article(session, article_data(urls=[share_link]))
    session.commit()

    assert (alias.id, created_alias) == (first.id, False)
    assert session.scalar(select(func.count()).select_from(Article)) == 1
    assert [u.url for u in alias.urls] == [article_data().url, share_link]
    # Another URL key, but reached through a known URL: the same article.
    other_key = article_data(url_key="other-key", urls=[share_link])
    assert add_article(session, other_key) == (first, False)
    assert find_article_by_urls(session, "unknown", [share_link]) is first
    assert known_url_keys(session, [first.url_key, "unknown"]) == {first.url_key}


def _add_article_worker(url: str, barrier, results, alias: str) -> None:
    engine = make_engine(url)
    with session_scope(session_factory(engine)) as session:
        session.execute(select(1))  # connected before the race starts
        barrier.wait()
        _, created = add_article(session, article_data(urls=[alias]))
    results.put(created)
    engine.dispose()


def test_processes_adding_the_same_article_at_once_store_one_row(
    engine: Engine, database_url: str
) -> None:
    aliases = [f"https://hagiang.gov.vn/?p=1&via={n}" for n in range(4)]
    barrier, results = PROCESSES.Barrier(len(aliases)), PROCESSES.Queue()
    workers = [
        PROCESSES.Process(target=_add_article_worker, args=(database_url, barrier, results, alias))
        for alias in aliases
    ]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join(60)
    assert [worker.exitcode for worker in workers] == [0] * len(workers)

    assert sorted(results.get(timeout=5) for _ in workers) == [False, False, False, True]
    with session_factory(engine)() as session:
        article = session.scalars(select(Article)).one()
        assert {u.url for u in article.urls} == {article.url, *aliases}


def test_raw_html_dates_and_hash_are_derived_on_store(session: Session) -> None:
    data = article_data()
    article, _ = add_article(session, data)
    session.commit()
    session.expire_all()

    stored = session.get(Article, article.id)
    assert len(stored.raw_html) < len(data.raw_html)  # stored compressed
    assert decompress_html(stored.raw_html) == data.raw_html
    assert stored.content_hash == content_hash(data.text)
    # A bare date is midnight in Vietnam: 17:00 UTC the day before.
    assert stored.published_at == datetime(2025, 6, 30, 17, 0)
    assert stored.source.name == "hagiang"


@pytest.mark.parametrize(
    ("published", "expected"),
    [
        ("2025-07-01", datetime(2025, 6, 30, 17, 0)),
        ("2025-07-01T08:30:00+07:00", datetime(2025, 7, 1, 1, 30)),
        ("2025-07-01T08:30:00Z", datetime(2025, 7, 1, 8, 30)),
        ("2025-07-01T08:30", datetime(2025, 7, 1, 1, 30)),  # no offset: Vietnam time
        ("01/07/2025", None),
        (None, None),
    ],
)
def test_published_at_is_utc(published: str | None, expected: datetime | None) -> None:
    assert published_at_utc(published) == expected


def test_content_hash_ignores_case_spacing_and_tone_placement() -> None:
    assert content_hash("Chuyển đổi số  hoá.") == content_hash("chuyển đổi số hóa")
    assert content_hash("chuyển đổi số") != content_hash("chuyển đổi sổ")


def test_iter_articles_filters_and_streams_newest_first(session: Session) -> None:
    add_article(session, article_data(1, published="2025-06-01", relevant=True))
    add_article(session, article_data(2, published="2025-07-05T09:00:00+07:00", relevant=False))
    add_article(
        session,
        article_data(
            3, source_name="vov", province=None, url_key="vov.vn/3", published=None, relevant=True
        ),
    )
    session.commit()

    def keys(**filters) -> list[str]:
        return [a.url_key.rsplit("-", 1)[-1] for a in iter_articles(session, batch=1, **filters)]

    # Undated article 3 sorts by its fetch time (2025-07-02).
    assert keys() == ["2.html", "vov.vn/3", "1.html"]
    assert keys(source="hagiang") == ["2.html", "1.html"]
    assert keys(province="Tuyên Quang", relevant=True) == ["1.html"]
    assert keys(relevant=False) == ["2.html"]
    assert keys(since=date(2025, 7, 2)) == ["2.html", "vov.vn/3"]
    assert keys(since=datetime(2025, 7, 5, 1, 0)) == ["2.html"]  # naive: UTC
    assert keys(limit=1) == ["2.html"]


def test_get_article_by_id_canonical_url_or_alias(session: Session) -> None:
    article, _ = add_article(session, article_data(urls=["https://hagiang.gov.vn/?p=1"]))
    session.commit()
    assert get_article(session, article.id) is article
    assert get_article(session, str(article.id)) is article
    assert get_article(session, article.url) is article
    assert get_article(session, "https://hagiang.gov.vn/?p=1") is article
    assert get_article(session, "https://hagiang.gov.vn/?p=2") is None


def test_ensure_source_creates_once(session: Session) -> None:
    source = ensure_source(session, "hue", "Huế")
    session.commit()
    assert ensure_source(session, "hue", None) is source
    # An article's province never rewrites its source's.
    add_article(session, article_data(source_name="hue", province="Đà Nẵng"))
    session.commit()
    session.expire_all()
    assert session.scalars(select(Source)).one().province == "Huế"


# --- crawl runs and validators --------------------------------------------------------------


def test_crawl_runs_round_trip(engine: Engine) -> None:
    factory = session_factory(engine)
    with session_scope(factory) as session:
        run_id = start_run(session, "cli").id
        stats = source_stats(session, run_id, "hagiang")
        stats.pages_fetched += 3
        stats.error_messages = [*stats.error_messages, "timeout on page 2"]
        assert source_stats(session, run_id, "hagiang") is stats
        source_stats(session, run_id, "vov").articles_new += 1
    with session_scope(factory) as session:
        source_stats(session, run_id, "hagiang").errors += 1
        finish_run(session, run_id, "ok")

    with session_scope(factory) as session:
        run = get_run(session, run_id)
        assert (run.status, run.trigger) == ("ok", "cli")
        assert run.finished_at >= run.started_at
        hagiang, vov = run.sources
        assert (hagiang.source_name, hagiang.pages_fetched, hagiang.errors) == ("hagiang", 3, 1)
        assert hagiang.error_messages == ["timeout on page 2"]
        assert (vov.source_name, vov.articles_new) == ("vov", 1)
        later = start_run(session, "daemon")
        assert [r.id for r in list_runs(session)] == [later.id, run_id]
        assert get_run(session, 999) is None


def test_validators_round_trip(session: Session) -> None:
    url = "https://vov.vn/rss/chuyen-doi-so.rss"
    assert get_validators(session, url) == (None, None)
    save_validators(session, url, '"abc"', "Tue, 01 Jul 2025 01:00:00 GMT")
    session.commit()
    assert get_validators(session, url) == ('"abc"', "Tue, 01 Jul 2025 01:00:00 GMT")
    save_validators(session, url, None, "Wed, 02 Jul 2025 01:00:00 GMT")
    session.commit()
    session.expire_all()
    assert get_validators(session, url) == (None, "Wed, 02 Jul 2025 01:00:00 GMT")


# --- errors the user sees -------------------------------------------------------------------


def test_read_only_sqlite_file_gives_a_clear_storage_error(tmp_path: Path) -> None:
    path = tmp_path / "dtmon.db"
    writable = make_engine(f"sqlite:///{path}")
    init_db(writable)
    writable.dispose()
    path.chmod(stat.S_IRUSR | stat.S_IRGRP | stat.S_IROTH)
    # root ignores permissions: open the file the way a read-only mount would then be seen.
    url = f"sqlite:///file:{path}?mode=ro&uri=true" if os.geteuid() == 0 else f"sqlite:///{path}"

    engine = make_engine(url)
    factory = session_factory(engine)
    with (
        pytest.raises(StorageError, match="read-only") as raised,
        session_scope(factory) as session,
    ):
        ensure_source(session, "hagiang", None)
    assert str(path) in str(raised.value)
    engine.dispose()


def test_full_sqlite_disk_gives_a_clear_storage_error(sqlite_url: str) -> None:
    engine = make_engine(sqlite_url)
    init_db(engine)
    big = article_data(raw_html=os.urandom(256 * 1024))  # random bytes do not compress
    with (
        pytest.raises(StorageError, match="disk is full"),
        session_scope(session_factory(engine)) as session,
    ):
        # The file may not grow any more: what a full disk looks like to SQLite.
        page_count = session.execute(text("PRAGMA page_count")).scalar_one()
        session.execute(text(f"PRAGMA max_page_count = {page_count}"))
        add_article(session, big)
    engine.dispose()


def test_missing_sqlite_folder_gives_a_clear_storage_error(tmp_path: Path) -> None:
    engine = make_engine(f"sqlite:///{tmp_path / 'absent' / 'dtmon.db'}")
    with pytest.raises(StorageError, match="cannot open the database file"):
        init_db(engine)
    engine.dispose()


def test_unreachable_postgresql_gives_a_clear_storage_error() -> None:
    engine = make_engine("postgresql://postgres@127.0.0.1:1/dtmon")
    with pytest.raises(StorageError, match="cannot connect to the database .*127.0.0.1:1"):
        init_db(engine)
    engine.dispose()
