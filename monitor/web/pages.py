"""The web pages of `dtmon serve`, in Vietnamese: the analyst's morning view (``/``: latest
relevant stories with their lead and strongest topic terms, a province × month chart drawn
server-side as SVG, filters, pagination), the sources page (``/nguon``: health, last success,
errors) and the API's Swagger UI (``/docs``) served from the ``swagger-ui-bundle`` package, so
that nothing is loaded from a CDN. Times are shown in Vietnam time."""

from __future__ import annotations

import math
import re
from collections import Counter
from dataclasses import dataclass
from datetime import date, datetime
from functools import cache
from pathlib import Path
from typing import Annotated, Any

from fastapi import APIRouter, FastAPI, Query, Request
from fastapi.openapi.docs import get_swagger_ui_html
from fastapi.responses import HTMLResponse
from fastapi.staticfiles import StaticFiles
from fastapi.templating import Jinja2Templates
from jinja2 import pass_context
from sqlalchemy import func, select
from sqlalchemy.orm import Session, aliased

from monitor.api import DB, link, source_overview
from monitor.clock import TIME_ZONE_LABEL, in_vietnam, local_text, published_text
from monitor.search import SearchError, StoryFilter, StoryView, find_stories
from storage.models import Article, CrawlRun, CrawlRunSource, Story
from storage.repository import owed_counts

TEMPLATES = Jinja2Templates(directory=Path(__file__).resolve().parent / "templates")


@pass_context
def _template_url_for(context: dict[str, Any], name: str, /, **params: Any) -> str:
    """``url_for`` in the page's templates: a link as :func:`monitor.api.link` makes it,
    never from the request's Host header."""
    request: Request = context["request"]
    return link(request, request.app.url_path_for(name, **params))


TEMPLATES.env.globals["url_for"] = _template_url_for
PAGE_SIZE = 20
LEAD_CHARS = 280  # the lead: whole first sentences up to about this length
TOP_TERMS = 5  # topic terms shown per story, strongest first
CHART_MONTHS = 12  # the chart's columns: the latest months holding relevant stories
NO_PROVINCE = "Toàn quốc"  # stories of national sources (VOV) with no province
_SENTENCE_END = re.compile(r"(?<=[.!?…])\s+")

router = APIRouter(include_in_schema=False)


def mount_swagger_ui(app: FastAPI) -> None:
    """Serve Swagger UI's files from the installed package under ``/static/swagger-ui``."""
    from swagger_ui_bundle import swagger_ui_path

    app.mount("/static/swagger-ui", StaticFiles(directory=swagger_ui_path), name="swagger-ui")


@router.get("/docs", name="swagger_ui_html", response_class=HTMLResponse)
def swagger_ui(request: Request) -> HTMLResponse:
    """Swagger UI over ``/openapi.json``, every file from this server."""
    static = "/static/swagger-ui"
    return get_swagger_ui_html(
        openapi_url=request.app.openapi_url, title="dtmon API",
        swagger_js_url=f"{static}/swagger-ui-bundle.js", swagger_css_url=f"{static}/swagger-ui.css",
        swagger_favicon_url=f"{static}/favicon-32x32.png")


# --- the morning view -------------------------------------------------------------------------


@router.get("/", name="home", response_class=HTMLResponse)
def home(
    request: Request,
    session: DB,
    province: Annotated[str | None, Query(max_length=100)] = None,
    since: Annotated[str | None, Query(max_length=10)] = None,
    until: Annotated[str | None, Query(max_length=10)] = None,
    q: Annotated[str | None, Query(max_length=200)] = None,
    page: Annotated[int, Query(ge=1, le=10_000)] = 1,
) -> HTMLResponse:
    """The latest relevant stories (lead, strongest terms, copies), filtered by province, days
    and words, and the chart of relevant stories per province and month."""
    form = {"province": province or "", "since": since or "", "until": until or "", "q": q or ""}
    error, views, total = None, [], 0
    try:
        filters = StoryFilter(since=_form_day(since, "Từ ngày"), until=_form_day(until, "Đến ngày"),
                              province=province or None, relevant=True, query=q or None)
        views, total = find_stories(session, filters, limit=PAGE_SIZE,
                                    offset=(page - 1) * PAGE_SIZE)
    except (SearchError, ValueError) as exc:
        error = str(exc)
    context = {
        "form": form,
        "error": error,
        "stories": [story_card(view) for view in views],
        "total": total,
        "page": page,
        "pages": max(1, -(-total // PAGE_SIZE)),
        "provinces": _provinces(session),
        "chart": province_month_chart(session),
        "time_zone": TIME_ZONE_LABEL,
    }
    return TEMPLATES.TemplateResponse(request, "index.html", context,
                                      status_code=400 if error else 200)


def _form_day(value: str | None, label: str) -> date | None:
    if not value:
        return None
    try:
        return date.fromisoformat(value)
    except ValueError:
        raise ValueError(f"{label}: ngày viết theo dạng YYYY-MM-DD, không phải {value!r}") \
            from None


def _provinces(session: Session) -> list[str]:
    return list(session.scalars(
        select(Article.province).where(Article.province.is_not(None)).distinct()
        .order_by(Article.province)))


def story_card(view: StoryView) -> dict[str, Any]:
    """What the page shows of a story: title, date, source, province, lead, strongest topic
    terms and every copy."""
    first = view.representative
    return {
        "id": view.id,
        "title": first.title,
        "url": first.url,
        "published": published_text(first.published),
        "source": first.source.name,
        "province": first.province,
        "lead": lead(first.text or ""),
        "terms": strongest_terms(first.topic_matches or {}),
        "copies": [{"source": c.source.name, "published": published_text(c.published),
                    "url": c.url} for c in view.copies],
    }


def lead(text: str, limit: int = LEAD_CHARS) -> str:
    """The first sentences of ``text``, whole, up to about ``limit`` characters (a first
    sentence longer than that is cut at a word, with an ellipsis)."""
    first_paragraph = text.strip().split("\n", 1)[0] if text.strip() else ""
    taken = ""
    for sentence in _SENTENCE_END.split(first_paragraph):
        if taken and len(taken) + 1 + len(sentence) > limit:
            break
        taken = f"{taken} {sentence}".strip()
    if len(taken) > limit:
        taken = taken[:limit].rsplit(" ", 1)[0] + " …"
    return taken


def strongest_terms(matches: dict[str, int], top: int = TOP_TERMS) -> list[str]:
    """The ``top`` topic terms that weigh most in the story's score (weight × (1 + ln n));
    negative and unknown terms are left out."""
    weights = _term_weights()
    strength = {term: weights[term] * (1 + math.log(count))
                for term, count in matches.items() if weights.get(term, 0) > 0 and count > 0}
    return sorted(strength, key=lambda term: (-strength[term], term))[:top]


@cache
def _term_weights() -> dict[str, float]:
    from monitor.topics import load_topics

    return dict(load_topics().config.terms)


# --- the chart ------------------------------------------------------------------------------


@dataclass(frozen=True)
class ChartCell:
    """One province's relevant stories in one month, and the colours that show the count."""

    month: str  # YYYY-MM
    count: int
    fill: str
    ink: str


@dataclass(frozen=True)
class ChartRow:
    """One province of the chart: its stories per month and in all."""

    province: str
    total: int
    cells: list[ChartCell]


def province_month_chart(session: Session) -> dict[str, Any]:
    """Relevant stories per province (of the representative) and month (its date in Vietnam
    time): rows sorted by total, the latest :data:`CHART_MONTHS` months with stories."""
    counts = Counter((province or NO_PROVINCE, month)
                     for province, month in _relevant_story_months(session))
    months = sorted({month for _, month in counts})[-CHART_MONTHS:]
    totals = Counter()
    for (province, _), n in counts.items():
        totals[province] += n
    peak = max((counts[(p, m)] for p in totals for m in months), default=0)
    rows = [ChartRow(province, total,
                     [_cell(month, counts[(province, month)], peak) for month in months])
            for province, total in sorted(totals.items(), key=lambda item: (-item[1], item[0]))]
    return {"months": months, "rows": rows, "max_total": max(totals.values(), default=0),
            "stories": sum(totals.values())}


def _relevant_story_months(session: Session) -> list[tuple[str | None, str]]:
    """(province, month) of each story with a relevant copy, from its representative."""
    representative = aliased(Article)
    relevant = select(Article.id).where(Article.story_id == Story.id,
                                        Article.relevant.is_(True)).exists()
    rows = session.execute(
        select(representative.province,
               func.coalesce(representative.published_at, representative.fetched_at))
        .join(Story, Story.representative_id == representative.id)
        .where(relevant)
    ).all()
    return [(province, f"{in_vietnam(moment):%Y-%m}") for province, moment in rows if moment]


def _cell(month: str, count: int, peak: int) -> ChartCell:
    """A cell in a blue from light to dark with ``count`` / ``peak`` (grey for none)."""
    if not count or not peak:
        return ChartCell(month, 0, "#f4f6f8", "#1d2733")
    share = 0.25 + 0.75 * count / peak
    fill = (f"#{round(222 - 190 * share):02x}{round(235 - 150 * share):02x}"
            f"{round(247 - 90 * share):02x}")
    return ChartCell(month, count, fill, "#ffffff" if share > 0.6 else "#1d2733")


# --- the sources page -----------------------------------------------------------------------


@router.get("/nguon", name="sources_page", response_class=HTMLResponse)
def sources_page(request: Request, session: DB) -> HTMLResponse:
    """Every source: province, health, last success, failures in a row, stored articles,
    articles still owed, and the errors of its latest run."""
    overview, errors, owed = source_overview(session), latest_errors(session), \
        owed_articles(session)
    rows = [{
        **source,
        "last_success": local_text(_parsed(source["health"]["last_success_at"])),
        "last_run": local_text(_parsed(source["health"]["last_run_at"])),
        "errors": errors.get(source["name"], []),
        "owed": owed.get(source["name"], 0),
    } for source in overview]
    context = {"sources": rows, "time_zone": TIME_ZONE_LABEL,
               "problems": sum(1 for row in rows if row["health"]["problems"])}
    return TEMPLATES.TemplateResponse(request, "sources.html", context)


def latest_errors(session: Session) -> dict[str, list[str]]:
    """Each source's error messages in its latest finished run."""
    latest = (select(CrawlRunSource.source_name, func.max(CrawlRun.id).label("run_id"))
              .join(CrawlRun, CrawlRun.id == CrawlRunSource.run_id)
              .where(CrawlRun.status != "running")
              .group_by(CrawlRunSource.source_name).subquery())
    rows = session.execute(
        select(CrawlRunSource.source_name, CrawlRunSource.error_messages)
        .join(latest, (latest.c.source_name == CrawlRunSource.source_name)
              & (latest.c.run_id == CrawlRunSource.run_id)))
    return {name: list(messages or []) for name, messages in rows}


def owed_articles(session: Session) -> dict[str, int]:
    """Articles each source still owes: found, not stored yet, fetched again next run."""
    return {source: counts["owed"] for source, counts in owed_counts(session).items()}


def _parsed(value: str | None) -> datetime | None:
    return datetime.fromisoformat(value) if value else None
