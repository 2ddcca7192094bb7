"""What `dtmon` read commands print, as a user runs them (real processes, real databases: the
crawled mirror on SQLite and on PostgreSQL).

* The default database lives in the user's data folder, whatever the current folder; read-only
  commands never create a database and name the one they looked at.
* One clock: every instant in every `--json` output carries its offset; a date-only article
  keeps its day (the Huế article of 2022-11-20 is listed as 2022-11-20).
* Province and source filters ignore diacritics and case; an unknown value lists the known.
* Tables fit 80 columns with every header whole; scraped text is shown as text.
"""

from __future__ import annotations

import json
import os
import re
import sqlite3
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from monitor.ingest import ingest_article
from monitor.topics import load_topics
from storage.db import make_engine, session_factory, session_scope
from storage.repository import ArticleData
from tests.fixtures.shared_data import REPO_ROOT

MARKUP_TITLE = "Chuyển đổi số [/] [link=https://evil.example]bấm vào[/link] [bold red]Hưng Yên"
HUE_S_URL_PART = "hue-s"
# An instant in ISO 8601: a date, "T", a time; it must end with Z or an offset.
INSTANT = re.compile(r"^\d{4}-\d{2}-\d{2}[T ]\d{2}:\d{2}")
OFFSET = re.compile(r"(Z|[+-]\d{2}:\d{2})$")


def dtmon(*args: str, database: str | None, cwd: Path, columns: int = 80,
          data_home: Path | None = None) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "COLUMNS": str(columns), "PYTHONPATH": str(REPO_ROOT)}
    env.pop("DTMON_DATABASE_URL", None)
    if database is not None:
        env["DTMON_DATABASE_URL"] = database
    if data_home is not None:
        env["XDG_DATA_HOME"] = str(data_home)
    return subprocess.run([sys.executable, "-m", "monitor", *args], cwd=cwd, env=env,
                          capture_output=True, text=True, timeout=120)


def json_lines(done: subprocess.CompletedProcess[str]) -> list[dict]:
    assert done.returncode == 0, done.stderr
    return [json.loads(line) for line in done.stdout.splitlines()]


@pytest.fixture(scope="module")
def database(crawled_database: str) -> Iterator[str]:
    """The crawled mirror plus one relevant article whose title is Rich markup."""
    engine = make_engine(crawled_database)
    with session_scope(session_factory(engine)) as session:
        ingest_article(session, ArticleData(
            source_name="hungyen", url="https://hungyen.gov.vn/markup-test.html",
            url_key="https://hungyen.gov.vn/markup-test.html", title=MARKUP_TITLE,
            text="Hưng Yên đẩy mạnh chuyển đổi số, chính quyền số, kinh tế số và xã hội số. " * 5,
            province="Hưng Yên", published="2030-01-02T09:00:00+07:00"), load_topics())
    engine.dispose()
    yield crawled_database


# --- the default database ---------------------------------------------------------------------


@pytest.fixture(scope="module")
def default_home(database: str, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A user data folder holding the crawled mirror as the default database (SQLite only)."""
    home = tmp_path_factory.mktemp("data-home")
    (home / "dtmon").mkdir()
    with sqlite3.connect(database.removeprefix("sqlite:///")) as origin, \
            sqlite3.connect(home / "dtmon" / "dtmon.db") as copy:
        origin.backup(copy)
    origin.close()
    copy.close()
    return home


@pytest.mark.parametrize("crawled_database", ["sqlite"], indirect=True)  # the default is a file
def test_articles_list_finds_the_default_database_from_any_folder(
    default_home: Path, tmp_path: Path
) -> None:
    elsewhere = tmp_path / "somewhere" / "else"
    elsewhere.mkdir(parents=True)
    from_root = json_lines(dtmon("articles", "list", "--json", database=None, cwd=REPO_ROOT,
                                 data_home=default_home))
    from_elsewhere = json_lines(dtmon("articles", "list", "--json", database=None,
                                      cwd=elsewhere, data_home=default_home))
    assert len(from_root) == 22  # the 21 gold articles and the markup one
    assert from_elsewhere == from_root
    assert list(elsewhere.iterdir()) == []

    status = dtmon("status", database=None, cwd=elsewhere, data_home=default_home)
    assert f"database: {default_home / 'dtmon' / 'dtmon.db'}" in status.stdout


READ_ONLY_COMMANDS = [
    ["articles", "list"], ["articles", "list", "--json"], ["articles", "show", "1"],
    ["stories", "list"], ["stories", "show", "1"], ["runs", "list"], ["runs", "show", "1"],
    ["export", "--since", "2020-01-01"], ["queue", "status"], ["alerts", "pending"],
    ["queue", "claim", "--consumer", "x"],
]


@pytest.mark.parametrize("command", READ_ONLY_COMMANDS, ids=" ".join)
def test_read_only_commands_create_no_database_and_name_the_missing_one(
    command: list[str], tmp_path: Path
) -> None:
    home, cwd = tmp_path / "home", tmp_path / "cwd"
    cwd.mkdir()
    done = dtmon(*command, database=None, cwd=cwd, data_home=home)
    assert done.returncode == 1
    expected = home / "dtmon" / "dtmon.db"
    assert done.stderr.strip().splitlines() == [
        f"error: no database at {expected}: nothing was crawled into it (`dtmon crawl` creates "
        "it; $DTMON_DATABASE_URL names another)"]
    assert not home.exists() and list(cwd.iterdir()) == []

    typo = tmp_path / "dtmom.db"
    done = dtmon(*command, database=f"sqlite:///{typo}", cwd=cwd)
    assert done.returncode == 1 and str(typo) in done.stderr
    assert not typo.exists()


def test_status_without_a_database_says_so_and_creates_none(tmp_path: Path) -> None:
    done = dtmon("status", database=None, cwd=tmp_path, data_home=tmp_path / "home")
    assert done.returncode == 0, done.stderr
    assert done.stdout.startswith(
        f"database: {tmp_path / 'home' / 'dtmon' / 'dtmon.db'} (not created yet")
    assert "never" in done.stdout
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize(("url", "message"), [
    ("mysql://root@localhost/dtmon", "error: unsupported database URL (mysql): dtmon stores "
                                     "into sqlite:///path/to/file.db or postgresql://"),
    ("sqlite://", "error: an in-memory SQLite database (sqlite://) would vanish when the "
                  "command ends"),
    ("data/dtmon.db", "error: invalid database URL: expected sqlite:///"),
])
def test_unsupported_database_urls_are_one_line_errors(url: str, message: str,
                                                       tmp_path: Path) -> None:
    for command in (["articles", "list"], ["crawl", "--source", "vov"]):
        done = dtmon(*command, database=url, cwd=tmp_path)
        assert done.returncode == 1
        lines = done.stderr.strip().splitlines()
        assert len(lines) == 1 and lines[0].startswith(message), done.stderr
    assert list(tmp_path.iterdir()) == []


# --- one clock ------------------------------------------------------------------------------


def _instants(value: object, path: str = "") -> Iterator[tuple[str, str]]:
    if isinstance(value, dict):
        for key, item in value.items():
            yield from _instants(item, f"{path}.{key}")
    elif isinstance(value, list):
        for index, item in enumerate(value):
            yield from _instants(item, f"{path}[{index}]")
    elif isinstance(value, str) and INSTANT.match(value):
        yield path, value


JSON_COMMANDS = [
    ["articles", "list", "--json"], ["articles", "show", "1", "--json"],
    ["stories", "list", "--json"], ["stories", "show", "1", "--json"],
    ["runs", "list", "--json"], ["runs", "show", "1", "--json"], ["status", "--json"],
    ["alerts", "pending", "--json"], ["queue", "status", "--json"],
    ["queue", "claim", "--consumer", "clock-test", "--limit", "3"],
]


@pytest.mark.parametrize("command", JSON_COMMANDS, ids=" ".join)
def test_every_instant_in_json_output_carries_its_offset(
    command: list[str], database: str, tmp_path: Path
) -> None:
    records = json_lines(dtmon(*command, database=database, cwd=tmp_path))
    assert records or command[0] in ("alerts", "queue")
    found = [(path, value) for record in records for path, value in _instants(record)]
    naive = [(path, value) for path, value in found if not OFFSET.search(value)]
    assert naive == []
    if command[0] in ("articles", "runs", "status"):
        assert found  # published, fetched_at, started_at, last_run_at… were checked


def test_export_instants_carry_their_offset(database: str, tmp_path: Path) -> None:
    records = json_lines(dtmon("export", "--since", "2000-01-01", database=database,
                               cwd=tmp_path))
    found = [item for record in records for item in _instants(record)]
    assert found and all(OFFSET.search(value) for _, value in found)


def test_the_hue_article_dated_by_day_keeps_its_day(database: str, tmp_path: Path) -> None:
    articles = json_lines(dtmon("articles", "list", "--json", database=database, cwd=tmp_path))
    hue_s = next(a for a in articles if HUE_S_URL_PART in a["url"].lower())
    assert hue_s["published"] == "2022-11-20"
    stories = json_lines(dtmon("stories", "list", "--json", database=database, cwd=tmp_path))
    story = next(s for s in stories if s["id"] == hue_s["story_id"])
    assert story["first_published"] == "2022-11-20"
    table = dtmon("stories", "list", database=database, cwd=tmp_path, columns=200).stdout
    row = next(line for line in table.splitlines() if "Hue-S" in line)
    assert "2022-11-20" in row and "2022-11-19" not in row
    shown = dtmon("stories", "show", str(story["id"]), database=database, cwd=tmp_path).stdout
    assert "2022-11-20" in shown and "Vietnam time" in shown


def test_tables_show_vietnam_time_and_say_so(database: str, tmp_path: Path) -> None:
    run = json_lines(dtmon("runs", "list", "--json", database=database, cwd=tmp_path))[0]
    assert run["started_at"].endswith("+07:00")
    table = dtmon("runs", "list", database=database, cwd=tmp_path).stdout
    assert run["started_at"][:16].replace("T", " ") in table
    assert "Vietnam time" in table


# --- filters --------------------------------------------------------------------------------


def _ids(database: str, cwd: Path, *args: str) -> list[int]:
    return [a["id"] for a in json_lines(dtmon("articles", "list", "--json", *args,
                                              database=database, cwd=cwd))]


def test_province_and_source_filters_ignore_diacritics_and_case(database: str,
                                                                tmp_path: Path) -> None:
    exact = _ids(database, tmp_path, "--province", "Hưng Yên")
    assert len(exact) >= 5
    for spelling in ("hung yen", "HƯNG YÊN", "hungyen"):
        assert _ids(database, tmp_path, "--province", spelling) == exact
    hungyen = _ids(database, tmp_path, "--source", "hungyen")
    assert hungyen and _ids(database, tmp_path, "--source", "HungYen") == hungyen
    assert _ids(database, tmp_path, "--province", "hue") == \
        _ids(database, tmp_path, "--province", "Huế")


@pytest.mark.parametrize(("option", "value", "known"), [
    ("--province", "Hưng Yênn", "Hưng Yên"), ("--source", "hungyn", "hungyen")])
def test_an_unknown_filter_value_lists_the_known_ones(
    option: str, value: str, known: str, database: str, tmp_path: Path
) -> None:
    done = dtmon("articles", "list", option, value, database=database, cwd=tmp_path)
    assert done.returncode == 1 and done.stdout == ""
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1, done.stderr
    assert lines[0].startswith(f"error: unknown {option[2:]} {value!r}; known: ")
    assert known in lines[0]


def test_a_negative_limit_is_refused(database: str, tmp_path: Path) -> None:
    done = dtmon("articles", "list", "--limit", "-1", database=database, cwd=tmp_path)
    assert done.returncode == 2 and "--limit" in done.stderr


def test_acking_a_story_never_claimed_fails(database: str, tmp_path: Path) -> None:
    done = dtmon("queue", "ack", "--consumer", "nobody", "1", database=database, cwd=tmp_path)
    assert done.returncode == 1
    assert "'nobody' never claimed story 1" in done.stderr


# --- terminal output ------------------------------------------------------------------------

TABLES = [["articles", "list"], ["stories", "list"], ["runs", "list"], ["status"]]


@pytest.mark.parametrize("command", TABLES, ids=" ".join)
def test_tables_fit_80_columns_with_whole_headers(command: list[str], database: str,
                                                  tmp_path: Path) -> None:
    done = dtmon(*command, database=database, cwd=tmp_path, columns=80)
    assert done.returncode == 0, done.stderr
    lines = done.stdout.splitlines()
    table = [line for line in lines if re.search(r"\S {2,}\S", line) or set(line) == {"─"}]
    assert len(table) >= 3 and all(len(line) <= 80 for line in table), done.stdout
    header = next(line for line in lines if line.split() and line.split()[0] in ("id", "source"))
    wanted = {"articles": ["id", "published", "source", "province", "relevant", "title"],
              "stories": ["id", "first published", "copies", "sources", "title"],
              "runs": ["id", "trigger", "status", "started", "seconds", "pages", "new",
                       "errors", "sources"],
              "status": ["source", "state", "last success", "failures", "articles", "empty",
                         "no date", "owed"]}[command[0]]
    assert re.split(r"\s{2,}", header.strip()) == wanted
    if command == ["articles", "list"]:
        assert any(line.endswith("…") for line in lines)  # long titles cut, on one line
        assert len(lines) == 2 + 22 + 1  # header, rule, one line per article, the count


def test_json_output_is_not_cut_to_the_terminal(database: str, tmp_path: Path) -> None:
    narrow = dtmon("articles", "list", "--json", database=database, cwd=tmp_path, columns=40)
    wide = dtmon("articles", "list", "--json", database=database, cwd=tmp_path, columns=300)
    assert narrow.stdout == wide.stdout


def test_story_urls_are_never_cut(database: str, tmp_path: Path) -> None:
    stories = json_lines(dtmon("stories", "list", "--json", database=database, cwd=tmp_path))
    story = next(s for s in stories if s["copies"] > 1)
    copies = json_lines(dtmon("stories", "show", str(story["id"]), "--json",
                              database=database, cwd=tmp_path))[0]["copies"]
    shown = dtmon("stories", "show", str(story["id"]), database=database, cwd=tmp_path,
                  columns=60).stdout
    for copy in copies:
        assert copy["url"] in shown.replace("\n", "")


@pytest.mark.parametrize("command", [["articles", "list"], ["stories", "list"],
                                     ["articles", "show", "MARKUP"]], ids=" ".join)
def test_a_title_made_of_rich_markup_prints_as_text(command: list[str], database: str,
                                                    tmp_path: Path) -> None:
    if command[-1] == "MARKUP":
        command = [*command[:-1], "https://hungyen.gov.vn/markup-test.html"]
    done = dtmon(*command, database=database, cwd=tmp_path, columns=300)
    assert done.returncode == 0, done.stderr
    assert MARKUP_TITLE in done.stdout


# --- a quick start ---------------------------------------------------------------------------

# What `dtmon articles list` must start without (bench/cli.py times it): the ORM and the
# migrations (its table reads through SQLAlchemy Core), the crawler and its registry, the web
# server, alerting, Parquet, Redis, pydantic (Typer 0.29 imports it for every command: typer is
# pinned below that), and the PostgreSQL driver when the database is SQLite.
NOT_IMPORTED_BY_ARTICLES_LIST = ("sqlalchemy.orm", "alembic", "storage.models",
                                 "storage.repository", "scrapy", "trafilatura",
                                 "crawler.sources", "fastapi", "uvicorn", "apprise", "pyarrow",
                                 "redis", "pydantic")


def test_articles_list_imports_neither_the_orm_nor_the_crawler(database: str,
                                                              tmp_path: Path) -> None:
    env = {**os.environ, "DTMON_DATABASE_URL": database, "PYTHONPATH": str(REPO_ROOT)}
    done = subprocess.run(
        [sys.executable, "-X", "importtime", "-m", "monitor", "articles", "list",
         "--source", "hung yen", "--province", "HƯNG YÊN", "--since", "2020-01-01", "--relevant"],
        cwd=tmp_path, env=env, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert "Hưng Yên" in done.stdout and "3 article(s)" in done.stdout
    imported = {line.rsplit("|", 1)[1].strip() for line in done.stderr.splitlines()
                if line.startswith("import time:")}
    assert "storage.reading" in imported  # the list of imports is the real one
    unwanted = {*NOT_IMPORTED_BY_ARTICLES_LIST, *(["psycopg"] if "sqlite" in database else [])}
    assert sorted(name for name in imported
                  if any(name == u or name.startswith(f"{u}.") for u in unwanted)) == []


def test_csv_export_has_no_byte_order_mark_unless_asked(database: str, tmp_path: Path) -> None:
    plain_csv = dtmon("export", "--since", "2000-01-01", "--format", "csv",
                      "--output", str(tmp_path / "a.csv"), database=database, cwd=tmp_path)
    excel_csv = dtmon("export", "--since", "2000-01-01", "--format", "csv", "--bom",
                      "--output", str(tmp_path / "b.csv"), database=database, cwd=tmp_path)
    assert plain_csv.returncode == excel_csv.returncode == 0
    assert not (tmp_path / "a.csv").read_bytes().startswith(b"\xef\xbb\xbf")
    assert (tmp_path / "b.csv").read_bytes().startswith(b"\xef\xbb\xbf")
    assert (tmp_path / "b.csv").read_bytes()[3:] == (tmp_path / "a.csv").read_bytes()

