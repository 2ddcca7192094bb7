"""`dtmon stories` commands: each story once, with every place it appeared."""

from __future__ import annotations

from typing import Annotated

import typer
from sqlalchemy import func, select
from sqlalchemy.orm import Session, joinedload

from monitor.cli.common import (
    console,
    database_session,
    echo_json_line,
    fail,
    fitted_table,
    plain,
    print_plain,
    where_database,
)
from monitor.clock import published_iso, published_text
from storage.models import Article, Source, Story

app = typer.Typer(help="Stories: an article and its copies on other sites.", no_args_is_help=True)

JsonOption = Annotated[bool, typer.Option("--json", help="One JSON object per line.")]


def _story_summaries(session: Session, limit: int) -> list[dict]:
    """The newest ``limit`` stories by first publication, with counts and sources."""
    first_published = func.min(Article.published_at)
    rows = session.execute(
        select(Story.id, Story.representative_id, func.count(Article.id), first_published)
        .join(Article, Article.story_id == Story.id)
        .group_by(Story.id, Story.representative_id)
        .order_by(first_published.desc().nulls_last(), Story.id.desc())
        .limit(limit)
    ).all()
    story_ids = [row[0] for row in rows]
    sources: dict[int, set[str]] = {i: set() for i in story_ids}
    for story_id, name in session.execute(
        select(Article.story_id, Source.name)
        .join(Source, Source.id == Article.source_id)
        .where(Article.story_id.in_(story_ids))
    ):
        sources[story_id].add(name)
    titles = dict(
        session.execute(
            select(Article.id, Article.title).where(Article.id.in_([r[1] for r in rows]))
        ).all()
    )
    first_dates = _first_dates(session, story_ids)
    return [
        {
            "id": story_id,
            "title": titles.get(representative_id),
            "copies": copies,
            "sources": sorted(sources[story_id]),
            "first_published": first_dates.get(story_id),
        }
        for story_id, representative_id, copies, _first in rows
    ]


def _first_dates(session: Session, story_ids: list[int]) -> dict[int, str | None]:
    """Each story's earliest copy's date as its page gives it (a bare day stays a day)."""
    firsts: dict[int, str | None] = {}
    for story_id, published in session.execute(
        select(Article.story_id, Article.published)
        .where(Article.story_id.in_(story_ids))
        .order_by(Article.published_at.desc().nulls_first(), Article.id.desc())
    ):
        firsts[story_id] = published_iso(published)  # the last one written is the earliest
    return firsts


def _story_copies(session: Session, story_id: int) -> list[dict]:
    """Every copy of a story, earliest published first."""
    articles = session.scalars(
        select(Article)
        .options(joinedload(Article.source))
        .where(Article.story_id == story_id)
        .order_by(Article.published_at.asc().nulls_last(), Article.id)
    ).all()
    return [
        {
            "article_id": a.id,
            "source": a.source.name,
            "url": a.url,
            "published": published_iso(a.published),
            "title": a.title,
        }
        for a in articles
    ]


@app.command("list")
def list_stories(
    as_json: JsonOption = False,
    limit: Annotated[int, typer.Option(min=1, help="Show at most this many stories.")] = 50,
) -> None:
    """List stories, newest first: representative title, copies, sources, first published."""
    with database_session() as session:
        stories = _story_summaries(session, limit)
    if as_json:
        for story in stories:
            echo_json_line(story)
        return
    if not stories:
        print_plain(f"No story in {where_database()}.")
        return
    table = fitted_table(("id", "first published", "copies", "sources", "title"),
                         shrink=("sources", "title"), right=("id", "copies"))
    for s in stories:
        table.add_row(str(s["id"]), published_text(s["first_published"]), str(s["copies"]),
                      plain(", ".join(s["sources"])),
                      plain(s["title"]))
    console.print(table)
    print_plain("dates as published (Vietnam time)", style="dim")


@app.command("show")
def show_story(
    story_id: Annotated[int, typer.Argument(help="Story id (see `dtmon stories list`).")],
    as_json: JsonOption = False,
) -> None:
    """Show every copy of a story: source, URL, published, title."""
    with database_session() as session:
        copies = _story_copies(session, story_id)
    if not copies:
        fail(f"no story {story_id}")
    if as_json:
        echo_json_line({"id": story_id, "copies": copies})
        return
    print_plain(f"story {story_id}: {len(copies)} copies (dates in Vietnam time)")
    for c in copies:
        console.rule(style="dim")
        print_plain(f"{published_text(c['published'])}  {c['source']}  (article {c['article_id']})")
        print_plain(c["title"])
        print_plain(c["url"])  # never cut: a reader copies it
