"""`dtmon articles list|show`: read what was stored, as a table or as JSON lines."""

from __future__ import annotations

from datetime import date
from typing import Annotated, Any

import typer

from monitor.cli.common import (
    console,
    database_connection,
    database_session,
    echo_json_line,
    fail,
    fitted_table,
    plain,
    print_plain,
    province_filter,
    source_filter,
    where_database,
)
from monitor.clock import published_text
from storage.reading import article_rows

# The table of `articles list` reads through SQLAlchemy Core (storage.reading) and so starts
# without the ORM; the ORM (storage.repository, monitor.records) is imported where --json or
# `articles show` need whole articles.

app = typer.Typer(help="Read the stored articles.", no_args_is_help=True)

JsonOption = Annotated[bool, typer.Option("--json", help="One JSON object per line.")]


@app.command("list")
def list_articles(
    source: Annotated[str | None, typer.Option(
        help="Only this source (registry name; case and diacritics do not matter).")] = None,
    province: Annotated[str | None, typer.Option(
        help="Only this province, e.g. 'Huế' or 'hue' (case and diacritics do not matter).")]
    = None,
    since: Annotated[str | None, typer.Option(
        help="Only articles dated on or after this day (YYYY-MM-DD).")] = None,
    relevant: Annotated[bool | None, typer.Option(
        "--relevant/--not-relevant", help="Only on-topic (or only off-topic) articles.")]
    = None,
    limit: Annotated[int | None, typer.Option(
        min=1, help="At most this many, newest first.")] = None,
    as_json: JsonOption = False,
) -> None:
    """List stored articles, newest first (with --json: every field and the full text)."""
    since_day = _parse_day(since) if since else None
    if as_json:
        _print_article_records(since=since_day, source=source, province=province,
                               relevant=relevant, limit=limit)
        return
    table = fitted_table(("id", "published", "source", "province", "relevant", "title"),
                         shrink=("title",), right=("id",))
    with database_connection() as connection:
        rows = article_rows(connection, since=since_day, source=source_filter(connection, source),
                            province=province_filter(connection, province), relevant=relevant,
                            limit=limit)
        for row in rows:
            table.add_row(str(row.id), published_text(row.published)[:10], plain(row.source),
                          plain(row.province), _yes_no(row.relevant), plain(row.title))
    console.print(table)
    print_plain(f"{table.row_count} article(s) in {where_database()}; dates as published "
                f"(Vietnam time)", style="dim")


def _print_article_records(*, source: str | None, province: str | None, **filters: Any) -> None:
    """Every field of the articles passing the filters, one JSON object per line."""
    from monitor.records import article_record
    from storage.repository import iter_articles

    with database_session() as session:
        for article in iter_articles(session, source=source_filter(session, source),
                                     province=province_filter(session, province), **filters):
            echo_json_line(article_record(article))


@app.command("show")
def show_article(
    article: Annotated[str, typer.Argument(
        help="Article id, or any form of its URL (share link, old domain, other case…).")],
    as_json: JsonOption = False,
    html: Annotated[bool, typer.Option(
        "--html", help="Print the raw HTML as fetched instead.")] = False,
) -> None:
    """Show one article: metadata, every URL that led to it, topic terms and the clean text."""
    from crawler.urls import url_key
    from monitor.records import article_record
    from storage.repository import decompress_html, get_article

    with database_session() as session:
        found = get_article(session, article) or get_article(session, url_key(article))
        if found is None:
            fail(f"no stored article with id or URL {article!r} in {where_database()}")
        if html:
            typer.echo(decompress_html(found.raw_html).decode("utf-8", "replace"))
            return
        record = article_record(found)
        if as_json:
            echo_json_line(record)
            return
        for field in ("id", "url", "title", "published", "author", "original_source",
                      "province", "source", "tags", "relevant", "topic_score", "matched",
                      "story_id", "fetched_at"):
            print_plain(f"{field}: {record[field]}")
        print_plain("urls:")
        for url in record["urls"]:
            print_plain(f"  {url}")
        console.rule()
        print_plain(record["text"])


def _parse_day(value: str) -> date:
    try:
        return date.fromisoformat(value)
    except ValueError:
        fail(f"--since wants a day as YYYY-MM-DD, not {value!r}")


def _yes_no(value: bool | None) -> str:
    return {True: "yes", False: "no", None: "?"}[value]
