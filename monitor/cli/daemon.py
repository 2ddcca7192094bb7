"""`dtmon daemon` (scheduled crawling), `dtmon status` (source health), `dtmon runs list|show`."""

from __future__ import annotations

import logging
import signal
from datetime import datetime
from pathlib import Path
from typing import Annotated

import typer
from rich.table import Table

from crawler.sources import SourceConfigError, load_registry
from monitor.cli.common import (
    console,
    database_missing,
    database_session,
    echo_json_line,
    fail,
    fitted_table,
    open_database,
    plain,
    print_plain,
    where_database,
)
from monitor.clock import TABLE_TIME_NOTE, local_text
from monitor.health import SourceHealth, assess, health_report
from monitor.records import run_record
from storage.db import StorageError
from storage.models import CrawlRun
from storage.repository import get_run, list_runs

runs_app = typer.Typer(help="Read the crawl run records.", no_args_is_help=True)

JsonOption = Annotated[bool, typer.Option("--json", help="JSON output, for scripts.")]
SourcesOption = Annotated[list[Path] | None, typer.Option(
    "--sources", help="Extra YAML file of sources in the registry's schema (repeatable).")]


def daemon(
    source: Annotated[list[str] | None, typer.Option(
        "--source", "-s", help="Schedule only this source (repeatable); default: every source.")]
    = None,
    sources: SourcesOption = None,
    via: Annotated[str | None, typer.Option(
        "--via", help="Send every request to this mirror server (see `dtmon crawl --via`).")]
    = None,
    interval_seconds: Annotated[float | None, typer.Option(
        "--interval-seconds", min=1, help="Crawl every source this often, instead of each "
                                          "source's schedule (for tests and demos).")] = None,
    alerts: Annotated[Path | None, typer.Option(
        "--alerts", help="Alert rules file (default: config/alerts.yaml): new relevant stories "
                         "are delivered within seconds; operator rules also get source-health "
                         "alerts (always logged).")] = None,
    workers: Annotated[int, typer.Option(min=1, help="Sources crawled at the same time.")] = 4,
    time_limit: Annotated[float, typer.Option(
        "--time-limit", min=1, help="Seconds a crawl may run before it is stopped (failed).")]
    = 1800,
    stop_grace: Annotated[float, typer.Option(
        "--stop-grace", min=0, help="On SIGTERM/SIGINT, seconds running crawls may take to "
                                    "finish before they are stopped.")] = 30,
) -> None:
    """Crawl every source on its schedule until stopped (SIGTERM or Ctrl-C).

    Schedules are kept in the database and survive restarts; each crawl runs in its own
    process under a time limit; one daemon per database. Source-health problems (failing
    sources, layout drift) raise operator alerts. Runs: `dtmon runs list`; health: `dtmon
    status`.
    """
    from crawler.via import parse_via
    from monitor.alerts import AlertsConfigError
    from monitor.daemon import CrawlDaemon, DaemonAlreadyRunning, DaemonOptions

    _configure_logging()
    if via:
        try:
            parse_via(via)
        except ValueError as exc:
            fail(str(exc))
    url, _ = open_database()
    options = DaemonOptions(sources=source or [], sources_files=sources or [], via=via,
                            interval_seconds=interval_seconds, alerts_file=alerts,
                            workers=workers, time_limit=time_limit, stop_grace=stop_grace)
    try:
        crawl_daemon = CrawlDaemon(options, url)
    except (SourceConfigError, AlertsConfigError, KeyError, StorageError) as exc:
        fail(exc.args[0] if isinstance(exc, KeyError) and exc.args else str(exc))
    for signum in (signal.SIGTERM, signal.SIGINT):
        signal.signal(signum, lambda number, _frame: crawl_daemon.stop(
            signal.Signals(number).name))
    try:
        crawl_daemon.run()
    except DaemonAlreadyRunning as exc:
        fail(str(exc))
    except StorageError as exc:
        fail(str(exc))


def status(
    sources: SourcesOption = None,
    as_json: JsonOption = False,
) -> None:
    """The database in use, and the health of every source and its problems (failing,
    layout_drift, extraction_degraded).

    Per source: last success, failures in a row, articles found in the last run, the shares
    of empty and undated article pages, runs failed and interrupted, articles owed and given
    up (see `dtmon pending`). A run whose process is gone is marked failed first. The database
    is $DTMON_DATABASE_URL, else dtmon.db in the user's data folder; a missing one is
    reported, not created.
    """
    try:
        registry = load_registry(extra=sources or [])
    except SourceConfigError as exc:
        fail(str(exc))
    names = [source.name for source in registry.sources]
    missing = database_missing()
    if missing:
        report = [assess(name, []) for name in names]
    else:
        _, sessions = open_database(create=False)
        try:
            report = health_report(sessions, names)
        except StorageError as exc:
            fail(str(exc))
    if as_json:
        for health in report:
            echo_json_line(health.record())
        return
    print_plain(f"database: {where_database()}"
                + (" (not created yet: nothing crawled)" if missing else ""))
    console.print(_health_table(report))
    problems = [h for h in report if h.problems]
    for health in problems:
        for kind, message in health.problems.items():
            print_plain(f"{health.source} {kind}: {message}", style="yellow")
    crawled = sum(1 for h in report if h.runs)
    print_plain(f"{len(report)} source(s), {crawled} crawled, {len(problems)} with problems; "
                f"runs failed: {sum(h.failed_runs for h in report)}, interrupted: "
                f"{sum(h.interrupted_runs for h in report)}; articles owed: "
                f"{sum(h.owed for h in report)}, given up: {sum(h.gave_up for h in report)} "
                f"(dtmon pending); {TABLE_TIME_NOTE}", style="dim")


def _health_table(report: list[SourceHealth]) -> Table:
    numeric = ("failures", "articles", "empty", "no date", "owed")
    table = fitted_table(("source", "state", "last success", *numeric),
                         shrink=("state",), right=numeric)
    for health in report:
        style = "red" if health.problems else ("dim" if not health.runs else None)
        table.add_row(
            plain(health.source), plain(health.state), _when(health.last_success_at),
            str(health.consecutive_failures),
            "" if health.articles_found is None else str(health.articles_found),
            _share(health.empty_share), _share(health.no_date_share), str(health.owed),
            style=style)
    return table


@runs_app.command("list")
def list_run_records(
    limit: Annotated[int, typer.Option(min=1, help="At most this many, newest first.")] = 20,
    as_json: JsonOption = False,
) -> None:
    """The latest crawl runs: trigger, status, time, per-source totals."""
    with database_session() as session:
        runs = list_runs(session, limit=limit)
        if as_json:
            for run in runs:
                echo_json_line(run_record(run))
            return
        if not runs:
            print_plain(f"No crawl run in {where_database()}.")
            return
        table = fitted_table(("id", "trigger", "status", "started", "seconds", "pages", "new",
                              "errors", "sources"),
                             shrink=("sources",), right=("id", "seconds", "pages", "new",
                                                         "errors"))
        for run in runs:
            table.add_row(str(run.id), run.trigger, run.status, local_text(run.started_at),
                          _seconds(run), *(str(sum(getattr(s, field) for s in run.sources))
                                           for field in ("pages_fetched", "articles_new",
                                                         "errors")),
                          plain(_source_names(run)))
        console.print(table)
        print_plain(TABLE_TIME_NOTE, style="dim")


@runs_app.command("show")
def show_run(
    run_id: Annotated[int, typer.Argument(help="The run's id (see `dtmon runs list`).")],
    as_json: JsonOption = False,
) -> None:
    """One crawl run: its per-source counters and error messages."""
    with database_session() as session:
        run = get_run(session, run_id)
        if run is None:
            fail(f"no crawl run {run_id}")
        record = run_record(run)
    if as_json:
        echo_json_line(record)
        return
    print_plain(f"run {run.id} ({run.trigger}): {run.status}, started "
                f"{local_text(run.started_at, seconds=True)} Vietnam time, {_seconds(run)} s")
    table = fitted_table(("source", "pages", "not modified", "new", "seen", "errors",
                          "counters"), fold=("counters",),
                         right=("pages", "not modified", "new", "seen", "errors"))
    for row in record["sources"]:
        counters = ", ".join(f"{k}={v}" for k, v in sorted(row["stats"].items()))
        table.add_row(row["source"], str(row["pages_fetched"]), str(row["not_modified"]),
                      str(row["articles_new"]), str(row["articles_seen"]), str(row["errors"]),
                      counters)
    console.print(table)
    for row in record["sources"]:
        for message in row["error_messages"]:
            print_plain(f"  {row['source']}: {message}", style="yellow")


def _configure_logging() -> None:
    logging.basicConfig(level=logging.INFO,
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")


def _when(moment: datetime | None) -> str:
    return local_text(moment) if moment is not None else "never"


def _share(value: float | None) -> str:
    return "" if value is None else f"{value:.0%}"


def _seconds(run: CrawlRun) -> str:
    if run.finished_at is None:
        return "running"
    return f"{(run.finished_at - run.started_at).total_seconds():.1f}"


def _source_names(run: CrawlRun) -> str:
    names = [row.source_name for row in run.sources]
    return ", ".join(names) if len(names) <= 3 else f"{len(names)} sources"
