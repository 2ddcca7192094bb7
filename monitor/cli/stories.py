"""`dtmon stories` commands: each story once, with every place it appeared."""

from __future__ import annotations

from typing import Annotated

import typer
from rich.table import Table
from sqlalchemy import func, select
from sqlalchemy.orm import Session, joinedload

from monitor.cli.common import console, database_session, echo_json_line, fail
from storage.models import Article, Source, Story

app = typer.Typer(help="Stories: an article and its copies on other sites.", no_args_is_help=True)

JsonOption = Annotated[bool, typer.Option("--json", help="One JSON object per line.")]


def _iso(value: object) -> str | None:
    return value.isoformat() if value is not None else None


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
    return [
        {
            "id": story_id,
            "title": titles.get(representative_id),
            "copies": copies,
            "sources": sorted(sources[story_id]),
            "first_published": _iso(first),
        }
        for story_id, representative_id, copies, first in rows
    ]


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
            "published": a.published or _iso(a.published_at),
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
    table = Table("id", "title", "copies", "sources", "first published")
    for s in stories:
        table.add_row(
            str(s["id"]), s["title"] or "", str(s["copies"]), ", ".join(s["sources"]),
            s["first_published"] or "",
        )
    console.print(table)


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
    table = Table("source", "url", "published", "title", title=f"story {story_id}")
    for c in copies:
        table.add_row(c["source"], c["url"], c["published"] or "", c["title"])
    console.print(table)
