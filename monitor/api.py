"""The HTTP API and web page of dtmon (FastAPI; started by ``dtmon serve``).

JSON: ``/stories`` (filters, full-text ``q``, pagination), ``/stories/{id}``, ``/articles/{id}``,
``/articles/{id}/raw`` (the HTML as fetched), ``/sources`` (with health), the work queue
(``/queue/claim``, ``/queue/ack``, ``/queue/release``, ``/queue/status``), an Atom feed of
relevant stories (``/feed.atom``, ``?province=``) and the OpenAPI description
(``/openapi.json``, browsable at ``/docs``). The page at ``/`` lists the latest relevant
stories. Bad parameters get a 4xx answer saying what is wrong; an unreachable database a 503.
The pages (``/``, ``/nguon``, ``/docs``) are in monitor/web/pages.py. Instants in JSON carry
their offset (Vietnam time, monitor.clock).
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager
from datetime import date
from typing import Annotated, Any

from fastapi import Depends, FastAPI, HTTPException, Query, Request
from fastapi import Path as PathParam
from fastapi.responses import HTMLResponse, JSONResponse, Response
from pydantic import BaseModel, Field
from sqlalchemy import func, select
from sqlalchemy.exc import DataError
from sqlalchemy.orm import Session, selectinload, sessionmaker

from monitor import queue
from monitor.clock import iso
from monitor.feed import atom_feed
from monitor.health import assess, source_history
from monitor.records import article_record, story_record
from monitor.search import SearchError, StoryFilter, StoryView, find_stories, load_stories
from storage.db import StorageError, init_db, make_engine, session_factory, session_scope
from storage.models import Article, Source
from storage.repository import decompress_html

FEED_SIZE = 50
PAGE_SIZE = 20
MAX_PAGE_SIZE = 100
MAX_ID = 2**31 - 1  # ids are 32-bit integers on PostgreSQL
# The raw HTML is the scraped page itself: never let it run scripts or act as our origin.
RAW_HTML_HEADERS = {"Content-Security-Policy": "sandbox", "X-Content-Type-Options": "nosniff"}


# --- application and dependencies -----------------------------------------------------------


def create_app(database_url: str | None = None) -> FastAPI:
    """The dtmon web application on ``database_url`` (default: the configured database)."""
    engine = make_engine(database_url)
    init_db(engine)

    @asynccontextmanager
    async def lifespan(_app: FastAPI) -> AsyncIterator[None]:
        yield
        engine.dispose()

    app = FastAPI(
        title="dtmon",
        summary="Digital-transformation news from Vietnamese provincial portals, newspapers "
        "and VOV.",
        version="0.1.0",
        lifespan=lifespan,
        docs_url=None,  # served by monitor.web.pages from the swagger-ui-bundle package
    )
    app.state.sessions = session_factory(engine)
    app.add_exception_handler(SearchError, _unprocessable)
    app.add_exception_handler(queue.QueueError, _unprocessable)
    app.add_exception_handler(DataError, _refused_value)
    app.add_exception_handler(StorageError, _unavailable)
    for route in _ROUTES:
        app.add_api_route(**route)
    from monitor.web import pages

    app.include_router(pages.router)
    pages.mount_swagger_ui(app)
    return app


async def _unprocessable(_request: Request, exc: Exception) -> JSONResponse:
    return JSONResponse({"detail": str(exc)}, status_code=422)


async def _refused_value(_request: Request, _exc: Exception) -> JSONResponse:
    return JSONResponse(
        {"detail": "a parameter holds a value the database refuses (e.g. a NUL character)"},
        status_code=422,
    )


async def _unavailable(_request: Request, exc: Exception) -> JSONResponse:
    return JSONResponse({"detail": f"database unavailable: {exc}"}, status_code=503)


def database(request: Request) -> Iterator[Session]:
    """One transaction per request, committed when the endpoint succeeds."""
    sessions: sessionmaker[Session] = request.app.state.sessions
    with session_scope(sessions) as session:
        yield session


DB = Annotated[Session, Depends(database)]


def story_filter(
    since: Annotated[date | None, Query(description="Copies dated on or after (YYYY-MM-DD).")]
    = None,
    until: Annotated[date | None, Query(description="Copies dated on or before (YYYY-MM-DD).")]
    = None,
    province: Annotated[str | None, Query(max_length=100, description="e.g. Hưng Yên")] = None,
    source: Annotated[str | None, Query(max_length=100, description="Registry name.")] = None,
    relevant: Annotated[bool | None, Query(description="On-topic copies only (or off).")]
    = None,
    q: Annotated[str | None, Query(min_length=1, max_length=200,
                                   description="Words that must all appear (full text).")]
    = None,
) -> StoryFilter:
    """The story filters of a request (a story matches when one copy matches them all)."""
    if since and until and since > until:
        raise HTTPException(422, f"since ({since}) is after until ({until})")
    return StoryFilter(since=since, until=until, province=province or None,
                       source=source or None, relevant=relevant, query=q)


Filters = Annotated[StoryFilter, Depends(story_filter)]
RowId = Annotated[int, PathParam(ge=1, le=MAX_ID, description="Id as listed.")]
Limit = Annotated[int, Query(ge=1, le=MAX_PAGE_SIZE, description="Page size.")]
Offset = Annotated[int, Query(ge=0, le=1_000_000, description="Stories to skip.")]


# --- JSON endpoints -------------------------------------------------------------------------


def list_stories(
    request: Request, session: DB, filters: Filters, limit: Limit = PAGE_SIZE, offset: Offset = 0
) -> dict[str, Any]:
    """Stories newest first, each with its representative (no text) and every copy."""
    views, total = find_stories(session, filters, limit=limit, offset=offset)
    following = offset + limit
    return {
        "total": total,
        "limit": limit,
        "offset": offset,
        "next": str(request.url.include_query_params(offset=following))
        if following < total else None,
        "items": [_story_json(request, view, with_text=False) for view in views],
    }


def get_story(request: Request, session: DB, story_id: RowId) -> dict[str, Any]:
    """One story: the representative's clean text and metadata, and every copy."""
    views = load_stories(session, [story_id])
    if not views:
        raise HTTPException(404, f"no story {story_id}")
    return _story_json(request, views[0], with_text=True)


def get_article(request: Request, session: DB, article_id: RowId) -> dict[str, Any]:
    """One stored article with its clean text and every URL that led to it."""
    article = session.get(Article, article_id, options=[selectinload(Article.urls)])
    if article is None:
        raise HTTPException(404, f"no article {article_id}")
    record = article_record(article)
    record["raw_html"] = str(request.url_for("article_raw", article_id=article_id))
    return record


def article_raw(session: DB, article_id: RowId) -> Response:
    """The article's HTML exactly as fetched (sandboxed: it never runs in this origin)."""
    raw = session.scalar(select(Article.raw_html).where(Article.id == article_id))
    if raw is None:
        raise HTTPException(404, f"no article {article_id}")
    return Response(decompress_html(raw), media_type="text/html", headers=RAW_HTML_HEADERS)


def list_sources(session: DB) -> list[dict[str, Any]]:
    """Every source with its province, stored articles, and health from its recent crawls."""
    return source_overview(session)


def feed(
    request: Request,
    session: DB,
    province: Annotated[str | None, Query(max_length=100, description="e.g. Huế")] = None,
) -> Response:
    """Atom feed of the latest relevant stories, of one province if asked."""
    filters = StoryFilter(province=province or None, relevant=True)
    views, _ = find_stories(session, filters, limit=FEED_SIZE)
    body = atom_feed(views, province=province, self_url=str(request.url),
                     site_url=str(request.url_for("home")))
    return Response(body, media_type="application/atom+xml; charset=utf-8")


class ClaimRequest(BaseModel):
    """A worker of ``consumer`` asking for stories."""

    consumer: str = Field(min_length=1, max_length=100)
    limit: int = Field(default=10, ge=1, le=queue.MAX_CLAIM)
    lease_seconds: float = Field(default=queue.DEFAULT_LEASE_SECONDS, gt=0, le=7 * 86400)


class StoriesRequest(BaseModel):
    """Stories a consumer is done with (ack) or gives back (release)."""

    consumer: str = Field(min_length=1, max_length=100)
    story_ids: list[Annotated[int, Field(ge=1, le=MAX_ID)]] = Field(
        min_length=1, max_length=queue.MAX_CLAIM
    )


def queue_claim(request: Request, session: DB, body: ClaimRequest) -> dict[str, Any]:
    """Lease relevant stories the consumer has not done yet; ack them when processed."""
    claimed = queue.claim(session, body.consumer, body.limit, body.lease_seconds)
    return {"items": [_absolute_links(request, item.record()) for item in claimed]}


def queue_ack(session: DB, body: StoriesRequest) -> dict[str, Any]:
    """Mark stories done for the consumer: never handed to it again."""
    return {"consumer": body.consumer, "acked": queue.ack(session, body.consumer, body.story_ids)}


def queue_release(session: DB, body: StoriesRequest) -> dict[str, Any]:
    """Hand leased stories back at once, for another worker."""
    released = queue.release(session, body.consumer, body.story_ids)
    return {"consumer": body.consumer, "released": released}


def queue_status(
    session: DB, consumer: Annotated[str, Query(min_length=1, max_length=100)]
) -> dict[str, Any]:
    """Stories done, leased now, and still available for the consumer."""
    status = queue.status(session, consumer)
    return {"consumer": status.consumer, "done": status.done, "leased": status.leased,
            "available": status.available}


# --- shared reads ---------------------------------------------------------------------------


def source_overview(session: Session) -> list[dict[str, Any]]:
    """Every known source: province, stored articles, latest article and crawl health."""
    counts = dict(session.execute(
        select(Article.source_id, func.count()).group_by(Article.source_id)
    ).all())
    latest = dict(session.execute(
        select(Article.source_id, func.max(Article.fetched_at)).group_by(Article.source_id)
    ).all())
    overview = []
    for source in session.scalars(select(Source).order_by(Source.name)):
        last = latest.get(source.id)
        overview.append({
            "name": source.name,
            "province": source.province,
            "articles": counts.get(source.id, 0),
            "last_article_fetched_at": iso(last),
            "health": assess(source.name, source_history(session, source.name)).record(),
        })
    return overview


def _story_json(request: Request, view: StoryView, *, with_text: bool) -> dict[str, Any]:
    record = story_record(view.id, view.representative, view.copies, with_text=with_text)
    return _absolute_links(request, record)


def _absolute_links(request: Request, record: dict[str, Any]) -> dict[str, Any]:
    """Turn the ``raw_html`` paths of a story record into URLs on this server."""
    for entry in [record["representative"], *record["copies"]]:
        article_id = entry.get("article_id", entry.get("id"))
        entry["raw_html"] = str(request.url_for("article_raw", article_id=article_id))
    return record


_ROUTES: list[dict[str, Any]] = [
    {"path": "/stories", "endpoint": list_stories, "methods": ["GET"], "tags": ["stories"]},
    {"path": "/stories/{story_id}", "endpoint": get_story, "methods": ["GET"],
     "tags": ["stories"]},
    {"path": "/articles/{article_id}", "endpoint": get_article, "methods": ["GET"],
     "tags": ["articles"]},
    {"path": "/articles/{article_id}/raw", "endpoint": article_raw, "methods": ["GET"],
     "name": "article_raw", "tags": ["articles"], "response_class": HTMLResponse},
    {"path": "/sources", "endpoint": list_sources, "methods": ["GET"], "tags": ["sources"]},
    {"path": "/feed.atom", "endpoint": feed, "methods": ["GET"], "tags": ["feed"],
     "response_class": Response},
    {"path": "/queue/claim", "endpoint": queue_claim, "methods": ["POST"], "tags": ["queue"]},
    {"path": "/queue/ack", "endpoint": queue_ack, "methods": ["POST"], "tags": ["queue"]},
    {"path": "/queue/release", "endpoint": queue_release, "methods": ["POST"],
     "tags": ["queue"]},
    {"path": "/queue/status", "endpoint": queue_status, "methods": ["GET"], "tags": ["queue"]},
]
