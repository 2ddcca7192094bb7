"""`dtmon articles list|show`: read what was stored, as a table or as JSON lines."""

from __future__ import annotations

from datetime import date
from typing import Annotated

import typer
from rich.table import Table

from crawler.urls import url_key
from monitor.cli.common import console, database_session, echo_json_line, fail
from monitor.records import article_record
from storage.repository import decompress_html, get_article, iter_articles

app = typer.Typer(help="Read the stored articles.", no_args_is_help=True)

JsonOption = Annotated[bool, typer.Option("--json", help="One JSON object per line.")]


@app.command("list")
def list_articles(
    source: Annotated[str | None, typer.Option(help="Only this source (registry name).")]
    = None,
    province: Annotated[str | None, typer.Option(help="Only this province, e.g. 'Huế'.")]
    = None,
    since: Annotated[str | None, typer.Option(
        help="Only articles dated on or after this day (YYYY-MM-DD).")] = None,
    relevant: Annotated[bool | None, typer.Option(
        "--relevant/--not-relevant", help="Only on-topic (or only off-topic) articles.")]
    = None,
    limit: Annotated[int | None, typer.Option(help="At most this many, newest first.")] = None,
    as_json: JsonOption = False,
) -> None:
    """List stored articles, newest first (with --json: every field and the full text)."""
    since_day = _parse_day(since) if since else None
    with database_session() as session:
        articles = iter_articles(session, since=since_day, source=source, province=province,
                                 relevant=relevant, limit=limit)
        if as_json:
            for article in articles:
                echo_json_line(article_record(article))
            return
        table = Table()
        for column, width in (("id", 4), ("published", 10), ("source", 10), ("province", 11),
                              ("relevant", 3)):
            table.add_column(column, no_wrap=True, min_width=width)
        table.add_column("title")
        count = 0
        for article in articles:
            count += 1
            table.add_row(str(article.id), (article.published or "")[:10], article.source.name,
                          article.province or "", _yes_no(article.relevant), article.title)
        console.print(table)
        console.print(f"{count} article(s)", style="dim")


@app.command("show")
def show_article(
    article: Annotated[str, typer.Argument(
        help="Article id, or any form of its URL (share link, old domain, other case…).")],
    as_json: JsonOption = False,
    html: Annotated[bool, typer.Option(
        "--html", help="Print the raw HTML as fetched instead.")] = False,
) -> None:
    """Show one article: metadata, every URL that led to it, topic terms and the clean text."""
    with database_session() as session:
        found = get_article(session, article) or get_article(session, url_key(article))
        if found is None:
            fail(f"no stored article with id or URL {article!r}")
        if html:
            typer.echo(decompress_html(found.raw_html).decode("utf-8", "replace"))
            return
        record = article_record(found)
        if as_json:
            echo_json_line(record)
            return
        for field in ("id", "url", "title", "published", "author", "original_source",
                      "province", "source", "tags", "relevant", "topic_score", "matched",
                      "story_id"):
            console.print(f"[bold]{field}:[/] {record[field]}", highlight=False)
        console.print("[bold]urls:[/]")
        for url in record["urls"]:
            console.print(f"  {url}", highlight=False)
        console.rule()
        console.print(record["text"], highlight=False)


def _parse_day(value: str) -> date:
    try:
        return date.fromisoformat(value)
    except ValueError:
        fail(f"--since wants a day as YYYY-MM-DD, not {value!r}")


def _yes_no(value: bool | None) -> str:
    return {True: "yes", False: "no", None: "?"}[value]
