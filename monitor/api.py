"""The HTTP API and web page of dtmon (FastAPI; started by ``dtmon serve``).

JSON: ``/stories`` (filters, full-text ``q``, pagination), ``/stories/{id}``, ``/articles/{id}``,
``/articles/{id}/raw`` (the HTML as fetched), ``/sources`` (with health), the work queue
(``/queue/claim``, ``/queue/ack``, ``/queue/release``, ``/queue/status``), an Atom feed of
relevant stories (``/feed.atom``, ``?province=``) and the OpenAPI description
(``/openapi.json``, browsable at ``/docs``). The page at ``/`` lists the latest relevant
stories. Bad parameters get a 4xx answer saying what is wrong (never echoing a large input);
an unreachable database a 503.

Claim, ack and release need a consumer's bearer token (monitor.auth). Links in answers are
relative, or start with the configured public URL: never with the request's Host header.
Under load, requests queue rather than fail: at most ``connections`` of them hold a database
connection (the pool has exactly that many, plus one), the others wait without holding a
thread. On SQLite the writing requests take turns on a connection of their own (the extra
one), so they never wait in SQLite's busy handler for one another, nor for a reader's slot
while holding the turn. Request bodies over ``MAX_BODY_BYTES`` are refused with 413 before
being read.
The pages (``/``, ``/nguon``, ``/docs``) are in monitor/web/pages.py. Instants in JSON carry
their offset (Vietnam time, monitor.clock).
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable, Iterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from datetime import date
from typing import Annotated, Any, TypeVar

import anyio
from fastapi import Depends, FastAPI, HTTPException, Query, Request
from fastapi import Path as PathParam
from fastapi.encoders import jsonable_encoder
from fastapi.exceptions import RequestValidationError
from fastapi.responses import HTMLResponse, JSONResponse, Response
from pydantic import BaseModel, Field
from sqlalchemy import func, select
from sqlalchemy.exc import DataError
from sqlalchemy.orm import Session, selectinload, sessionmaker
from starlette.datastructures import URL

from monitor import queue
from monitor.auth import Access, Consumer, acting_as, authenticated_consumer
from monitor.clock import iso
from monitor.feed import atom_feed
from monitor.health import assess, source_history
from monitor.records import article_record, story_record
from monitor.search import (
    EARLIEST_DAY,
    LATEST_DAY,
    SearchError,
    StoryFilter,
    StoryView,
    find_stories,
    load_stories,
)
from storage.db import StorageError, init_db, make_engine, session_factory, session_scope
from storage.models import Article, Source
from storage.repository import decompress_html

T = TypeVar("T")
FEED_SIZE = 50
PAGE_SIZE = 20
MAX_PAGE_SIZE = 100
MAX_ID = 2**31 - 1  # ids are 32-bit integers on PostgreSQL
MAX_BODY_BYTES = 64 * 1024  # an ack of 1,000 ids (the most it may name) is under 12 KiB
MAX_HTTP_CLAIM = 100  # stories per claim over HTTP
MAX_LEASE_SECONDS = 3600
DB_CONNECTIONS = 4  # requests at the database at once (a connection each); 2 cores serve them
MAX_ECHOED_INPUT = 100  # characters of a rejected value repeated in a 422
# The raw HTML is the scraped page itself: never let it run scripts or act as our origin.
RAW_HTML_HEADERS = {"Content-Security-Policy": "sandbox", "X-Content-Type-Options": "nosniff"}


# --- application and dependencies -----------------------------------------------------------


@dataclass(frozen=True)
class ServiceSettings:
    """How the application serves: who may do what, its public URL, its database concurrency."""

    access: Access = field(default_factory=lambda: Access({}))  # default: no consumer
    public_url: str | None = None  # e.g. https://news.example.vn/dtmon; None: relative links
    connections: int = DB_CONNECTIONS


def create_app(
    database_url: str | None = None, settings: ServiceSettings | None = None
) -> FastAPI:
    """The dtmon web application on ``database_url`` (default: the configured database)."""
    settings = settings or ServiceSettings()
    engine = make_engine(database_url, pool_size=settings.connections + 1)
    init_db(engine)

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        app.state.connection_slots = anyio.Semaphore(settings.connections)
        app.state.write_turn = anyio.Lock() if engine.dialect.name == "sqlite" else None
        yield
        engine.dispose()

    reads_need_token = settings.access.reads_need_token
    app = FastAPI(
        title="dtmon",
        summary="Digital-transformation news from Vietnamese provincial portals, newspapers "
        "and VOV.",
        version="0.1.0",
        lifespan=lifespan,
        max_body_size=MAX_BODY_BYTES,
        dependencies=[Depends(authenticated_consumer)] if reads_need_token else None,
        docs_url=None,  # served by monitor.web.pages from the swagger-ui-bundle package
    )
    app.state.sessions = session_factory(engine)
    app.state.access = settings.access
    app.state.public_url = settings.public_url.rstrip("/") if settings.public_url else ""
    app.add_exception_handler(RequestValidationError, _invalid_request)
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


async def _invalid_request(_request: Request, exc: Exception) -> JSONResponse:
    """FastAPI's 422, without repeating inputs longer than ``MAX_ECHOED_INPUT``."""
    assert isinstance(exc, RequestValidationError)
    errors = []
    for error in exc.errors():
        shown = {"type": error["type"], "loc": error["loc"], "msg": error["msg"]}
        if len(repr(error.get("input"))) <= MAX_ECHOED_INPUT:
            shown["input"] = error.get("input")
        errors.append(shown)
    return JSONResponse({"detail": jsonable_encoder(errors)}, status_code=422)


async def _refused_value(_request: Request, _exc: Exception) -> JSONResponse:
    return JSONResponse(
        {"detail": "a parameter holds a value the database refuses (e.g. a NUL character)"},
        status_code=422,
    )


async def _unavailable(_request: Request, exc: Exception) -> JSONResponse:
    return JSONResponse({"detail": f"database unavailable: {exc}"}, status_code=503)


async def connection_slot(request: Request) -> AsyncIterator[None]:
    """Wait (holding no thread) until one of the pool's connections is free for this request."""
    async with request.app.state.connection_slots:
        yield


def database(
    request: Request, _slot: Annotated[None, Depends(connection_slot)]
) -> Iterator[Session]:
    """One transaction per request, committed when the endpoint succeeds."""
    sessions: sessionmaker[Session] = request.app.state.sessions
    with session_scope(sessions) as session:
        yield session


DB = Annotated[Session, Depends(database)]


async def in_write_turn(request: Request, operation: Callable[[Session], T]) -> T:
    """``operation`` in one committed transaction, in one trip to the thread pool.

    On SQLite it first waits for the server's other writes to finish, then uses the writers'
    own connection: the turn is held only while the transaction runs. On PostgreSQL (row locks;
    claims skip each other's rows) it takes an ordinary connection slot.
    """
    turn: anyio.Lock | None = request.app.state.write_turn
    async with turn or request.app.state.connection_slots:
        return await anyio.to_thread.run_sync(_transaction, request.app.state.sessions,
                                              operation)


def _transaction(sessions: sessionmaker[Session], operation: Callable[[Session], T]) -> T:
    with session_scope(sessions) as session:
        return operation(session)


async def story_filter(
    since: Annotated[date | None, Query(ge=EARLIEST_DAY, le=LATEST_DAY,
                                        description="Copies dated on or after (YYYY-MM-DD).")]
    = None,
    until: Annotated[date | None, Query(ge=EARLIEST_DAY, le=LATEST_DAY,
                                        description="Copies dated on or before (YYYY-MM-DD).")]
    = None,
    province: Annotated[str | None, Query(max_length=100, description="e.g. Hưng Yên")] = None,
    source: Annotated[str | None, Query(max_length=100, description="Registry name.")] = None,
    relevant: Annotated[bool | None, Query(description="On-topic copies only (or off).")]
    = None,
    q: Annotated[str | None, Query(min_length=1, max_length=200,
                                   description="Words that must all appear (full text).")]
    = None,
) -> StoryFilter:
    """The story filters of a request (a story matches when one copy matches them all).

    Async, as is every dependency that does no I/O: a sync one costs a trip to the thread pool.
    """
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
        "next": link(request, request.url.include_query_params(offset=following))
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
    record["raw_html"] = link(request, request.app.url_path_for("article_raw",
                                                                 article_id=article_id))
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
    body = atom_feed(views, province=province, self_url=link(request, request.url),
                     site_url=link(request, request.app.url_path_for("home")))
    return Response(body, media_type="application/atom+xml; charset=utf-8")


ConsumerName = Annotated[str | None, Field(
    default=None, min_length=1, max_length=100,
    description="Optional: the token's consumer (another name is refused with 403).")]


class ClaimRequest(BaseModel):
    """A worker of the token's consumer asking for stories."""

    consumer: ConsumerName = None
    limit: int = Field(default=10, ge=1, le=MAX_HTTP_CLAIM)
    lease_seconds: float = Field(default=queue.DEFAULT_LEASE_SECONDS, gt=0,
                                 le=MAX_LEASE_SECONDS)


class StoriesRequest(BaseModel):
    """Stories the token's consumer is done with (ack) or gives back (release)."""

    consumer: ConsumerName = None
    story_ids: list[Annotated[int, Field(ge=1, le=MAX_ID)]] = Field(
        min_length=1, max_length=queue.MAX_CLAIM
    )


async def queue_claim(request: Request, consumer: Consumer, body: ClaimRequest) -> dict[str, Any]:
    """Lease relevant stories the consumer has not done yet; ack them when processed."""
    name = acting_as(consumer, body.consumer)
    claimed = await in_write_turn(
        request, lambda session: queue.claim(session, name, body.limit, body.lease_seconds))
    return {"items": [_link_record(request, item.record()) for item in claimed]}


async def queue_ack(request: Request, consumer: Consumer, body: StoriesRequest) -> dict[str, Any]:
    """Mark stories done for the consumer: never handed to it again."""
    name = acting_as(consumer, body.consumer)
    acked = await in_write_turn(request, lambda session: queue.ack(session, name, body.story_ids))
    return {"consumer": name, "acked": acked}


async def queue_release(
    request: Request, consumer: Consumer, body: StoriesRequest
) -> dict[str, Any]:
    """Hand leased stories back at once, for another worker."""
    name = acting_as(consumer, body.consumer)
    released = await in_write_turn(
        request, lambda session: queue.release(session, name, body.story_ids))
    return {"consumer": name, "released": released}


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
    return _link_record(request, record)


def _link_record(request: Request, record: dict[str, Any]) -> dict[str, Any]:
    """Turn the ``raw_html`` paths of a story record into links to this server."""
    for entry in [record["representative"], *record["copies"]]:
        entry["raw_html"] = link(request, entry["raw_html"])
    return record


def link(request: Request, target: Any) -> str:
    """A link to ``target`` (a path, or a URL of this server whose host is ignored): the
    configured public URL followed by its path and query, or the bare path and query."""
    url = URL(str(target))
    path = url.path + (f"?{url.query}" if url.query else "")
    return request.app.state.public_url + path


_WRITE_REFUSALS: dict[int | str, dict[str, Any]] = {
    401: {"description": "No bearer token, or not a configured consumer's token."},
    403: {"description": "The body names another consumer than the token's."},
    413: {"description": f"The body is over {MAX_BODY_BYTES} bytes."},
}
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
    {"path": "/queue/claim", "endpoint": queue_claim, "methods": ["POST"], "tags": ["queue"],
     "responses": _WRITE_REFUSALS},
    {"path": "/queue/ack", "endpoint": queue_ack, "methods": ["POST"], "tags": ["queue"],
     "responses": _WRITE_REFUSALS},
    {"path": "/queue/release", "endpoint": queue_release, "methods": ["POST"],
     "tags": ["queue"], "responses": _WRITE_REFUSALS},
    {"path": "/queue/status", "endpoint": queue_status, "methods": ["GET"], "tags": ["queue"]},
]
