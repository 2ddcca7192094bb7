"""Source health: how each source's crawls went, and whether its layout drifted.

Computed from the run records (``crawl_runs`` / ``crawl_run_sources`` and the spider counters
in their ``stats``), newest first, so it needs no table of its own:

* last success (a finished run without error for the source), consecutive failures;
* articles found in the last run, share of article pages with an empty body or no date;
* problems: ``failing`` (:data:`FAILURES_TO_ALERT` failed runs in a row), ``layout_drift`` (a
  feed, sitemap or first listing page with no article link, where earlier runs found links),
  ``extraction_degraded`` (most article pages of the latest run that read some came out empty
  or undated, where earlier runs did better).

:func:`check_run` compares a source's problems after a run with those before it and raises an
operator alert for each new one (logged, and enqueued for the ``operator: true`` rules of the
alerts file, which the alert dispatcher delivers).
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable, Sequence
from dataclasses import asdict, dataclass, field
from datetime import datetime
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker

from monitor.alerts import AlertRules, raise_operator_alert
from monitor.clock import iso
from storage import repository
from storage.db import session_scope
from storage.models import CrawlRun, CrawlRunSource

logger = logging.getLogger("dtmon.health")

FAILURES_TO_ALERT = 3
DEGRADED_SHARE = 0.5
HISTORY_RUNS = 50

OperatorAlert = Callable[[str, str, str], None]  # (kind, source, message)


@dataclass(frozen=True)
class RunOutcome:
    """One finished run as seen by one source."""

    run_id: int
    started_at: datetime
    status: str  # the run's status
    errors: int
    stats: dict[str, int]

    @property
    def succeeded(self) -> bool:
        return self.status in ("ok", "partial") and self.errors == 0

    @property
    def failed(self) -> bool:
        return self.status == "failed" or (self.status in ("ok", "partial") and self.errors > 0)

    def count(self, name: str) -> int:
        return int(self.stats.get(name, 0))

    @property
    def article_pages(self) -> int:
        """Article pages read: extracted ones and empty ones."""
        return self.count("articles_found") + self.count("empty_pages")


@dataclass
class SourceHealth:
    """The health of one source, from its recent runs."""

    source: str
    runs: int = 0
    last_run_at: datetime | None = None
    last_status: str | None = None
    last_success_at: datetime | None = None
    consecutive_failures: int = 0
    articles_found: int | None = None  # in the last run
    empty_share: float | None = None  # of the article pages of the latest run that read some
    no_date_share: float | None = None
    problems: dict[str, str] = field(default_factory=dict)  # kind -> explanation
    failed_runs: int = 0  # all runs of the source recorded failed (crashed, killed, timed out)
    interrupted_runs: int = 0  # stopped by SIGINT/SIGTERM or a daemon shutdown
    owed: int = 0  # articles not stored yet, fetched again by the next runs
    gave_up: int = 0  # owed articles given up after too many failed attempts

    @property
    def state(self) -> str:
        """``never crawled``, ``ok``, or the problems' kinds."""
        if not self.runs:
            return "never crawled"
        return ", ".join(sorted(self.problems)) or "ok"

    def record(self) -> dict[str, Any]:
        """A JSON-ready dict (times in ISO 8601)."""
        data = asdict(self)
        for key in ("last_run_at", "last_success_at"):
            data[key] = iso(data[key])
        data["state"] = self.state
        return data


def source_history(session: Session, source: str, limit: int = HISTORY_RUNS
                   ) -> list[RunOutcome]:
    """The finished runs that covered ``source``, newest first."""
    rows = session.execute(
        select(CrawlRun, CrawlRunSource)
        .join(CrawlRunSource.run)
        .where(CrawlRunSource.source_name == source, CrawlRun.status != "running")
        .order_by(CrawlRun.started_at.desc(), CrawlRun.id.desc())
        .limit(limit)
    ).all()
    return [RunOutcome(run.id, run.started_at, run.status, stats.errors, dict(stats.stats or {}))
            for run, stats in rows]


def assess(source: str, history: Sequence[RunOutcome]) -> SourceHealth:
    """The health of ``source`` given its finished runs, newest first."""
    health = SourceHealth(source, runs=len(history))
    if not history:
        return health
    last = history[0]
    health.last_run_at, health.last_status = last.started_at, last.status
    health.articles_found = last.count("articles_found")
    health.last_success_at = next((r.started_at for r in history if r.succeeded), None)
    health.consecutive_failures = _consecutive_failures(history)
    if health.consecutive_failures >= FAILURES_TO_ALERT:
        health.problems["failing"] = f"{health.consecutive_failures} failed runs in a row"
    _assess_links(health, history)
    _assess_extraction(health, history)
    return health


def _consecutive_failures(history: Iterable[RunOutcome]) -> int:
    count = 0
    for run in history:
        if run.succeeded:
            break
        count += run.failed  # interrupted runs neither break nor extend the streak
    return count


def _assess_links(health: SourceHealth, history: Sequence[RunOutcome]) -> None:
    """Layout drift: the latest run that read discovery pages found one without links."""
    readers = [run for run in history if run.count("discovery_pages")]
    if not readers:
        return
    latest, earlier = readers[0], readers[1:]
    empty, read = latest.count("discovery_empty"), latest.count("discovery_pages")
    if empty and any(run.count("links_found") for run in earlier):
        health.problems["layout_drift"] = (
            f"{empty} of {read} feed/sitemap/listing page(s) had no article link in run "
            f"{latest.run_id}; earlier runs found links there")


def _assess_extraction(health: SourceHealth, history: Sequence[RunOutcome]) -> None:
    """Shares of empty/undated article pages in the latest run that read some, vs before."""
    readers = [run for run in history if run.article_pages]
    if not readers:
        return
    latest, earlier = readers[0], readers[1:]
    pages = latest.article_pages
    health.empty_share = latest.count("empty_pages") / pages
    found = latest.count("articles_found")
    health.no_date_share = latest.count("no_date") / found if found else None
    before_pages = sum(run.article_pages for run in earlier)
    before_found = sum(run.count("articles_found") for run in earlier)
    degraded = []
    if (health.empty_share >= DEGRADED_SHARE and before_pages
            and sum(run.count("empty_pages") for run in earlier) / before_pages < DEGRADED_SHARE):
        degraded.append(f"{health.empty_share:.0%} of article pages empty")
    if (health.no_date_share is not None and health.no_date_share >= DEGRADED_SHARE
            and before_found
            and sum(run.count("no_date") for run in earlier) / before_found < DEGRADED_SHARE):
        degraded.append(f"{health.no_date_share:.0%} of articles without a date")
    if degraded:
        health.problems["extraction_degraded"] = (
            f"{' and '.join(degraded)} in run {latest.run_id} ({pages} page(s)); "
            "earlier runs did better")


def health_report(sessions: sessionmaker[Session], sources: Iterable[str]) -> list[SourceHealth]:
    """The health of every source in ``sources`` (in that order), with its counts of failed
    and interrupted runs and of owed articles."""
    with sessions() as session:
        owed = repository.owed_counts(session)
        report = []
        for name in sources:
            health = assess(name, source_history(session, name))
            runs = repository.run_counts(session, name)
            health.failed_runs = runs.get("failed", 0)
            health.interrupted_runs = runs.get("interrupted", 0)
            health.owed = owed.get(name, {}).get("owed", 0)
            health.gave_up = owed.get(name, {}).get("gave_up", 0)
            report.append(health)
        return report


def check_run(sessions: sessionmaker[Session], run_id: int, alert: OperatorAlert
              ) -> list[SourceHealth]:
    """After run ``run_id``: raise an operator alert for every problem it revealed.

    A problem is new when the source's history without this run did not show it, so a
    source that stays broken is reported once, when it breaks. Returns the sources' health.
    """
    with sessions() as session:
        run = session.get(CrawlRun, run_id)
        names = [row.source_name for row in run.sources] if run else []
        healths = []
        for name in names:
            history = [r for r in source_history(session, name)
                       if (r.started_at, r.run_id) <= (run.started_at, run.id)]
            now = assess(name, history)
            before = assess(name, [r for r in history if r.run_id != run_id])
            for kind in sorted(set(now.problems) - set(before.problems)):
                alert(kind, name, now.problems[kind])
            healths.append(now)
    return healths


class OperatorAlerts:
    """Operator alerts: logged, and enqueued to the ``operator: true`` rules of ``rules``
    (delivered by the alert dispatcher)."""

    def __init__(self, sessions: sessionmaker[Session], rules: AlertRules | None = None) -> None:
        self.sessions = sessions
        self.rules = rules
        self.raised: list[tuple[str, str, str]] = []

    def __call__(self, kind: str, source: str, message: str) -> None:
        logger.warning("OPERATOR ALERT %s [%s]: %s", kind, source, message)
        self.raised.append((kind, source, message))
        if not self.rules:
            return  # no alert channels configured: the log is the alert
        try:
            with session_scope(self.sessions) as session:
                raise_operator_alert(session, kind, source, message, rules=self.rules)
        except Exception as exc:  # the alert channels must never stop the crawler
            logger.error("operator alert %s [%s] not queued for the alert channels: %s", kind,
                         source, exc)
