"""`dtmon crawl` (on demand) and `dtmon demo` (the offline mirror at t1, then t2)."""

from __future__ import annotations

import time
from collections.abc import Sequence
from pathlib import Path
from typing import Annotated

import typer
from redis.exceptions import RedisError
from rich.live import Live
from rich.table import Table
from sqlalchemy.orm import Session, sessionmaker

from crawler.distributed import DEFAULT_DEPLOYMENT, redis_url, seed_requests
from crawler.sources import Registry, SourceConfigError, load_registry
from monitor.alerts import Dispatcher, alerts_settings
from monitor.cli.alerts import drain_and_report, rules_or_exit
from monitor.cli.common import (
    JsonOption,
    console,
    database_session,
    echo_json_line,
    fail,
    open_database,
)
from monitor.crawling import CrawlOptions, CrawlOutcome, run_crawl, run_sources, stop_signals
from monitor.mirror import DEFAULT_MIRROR_PATH, MirrorError, MirrorServer
from monitor.records import owed_record
from storage.db import StorageError
from storage.models import CrawlRunSource
from storage.repository import list_owed

_COLUMNS = ("pages fetched", "not modified", "articles new", "articles seen", "errors")


def crawl(
    source: Annotated[list[str] | None, typer.Option(
        "--source", "-s", help="Crawl only this source (repeatable); default: every source.")]
    = None,
    sources: Annotated[list[Path] | None, typer.Option(
        "--sources", help="Extra YAML file of sources in the registry's schema (repeatable); "
                          "a minimal entry is `name` + `start_urls`.")] = None,
    via: Annotated[str | None, typer.Option(
        "--via", help="Send every request to this mirror server (e.g. http://127.0.0.1:8765) "
                      "with X-Original-Scheme/-Host headers; stored URLs stay the real ones.")]
    = None,
    refresh: Annotated[bool, typer.Option(
        "--refresh", help="Refetch articles that are already stored.")] = False,
    alerts: Annotated[Path | None, typer.Option(
        "--alerts", help="Alert rules file (default: config/alerts.yaml); new relevant stories "
                         "are alerted, and delivered right after the crawl.")] = None,
    alerts_timeout: Annotated[float, typer.Option(
        help="After the crawl, retry failing alerts for at most this many seconds (they stay "
             "queued for the next crawl or the daemon).")] = 30.0,
    distributed: Annotated[bool, typer.Option(
        "--distributed", help="Queue the start requests in Redis for `dtmon worker`s instead "
                              "of crawling here.")] = False,
    redis: Annotated[str | None, typer.Option(
        "--redis", help="With --distributed: the deployment's Redis server (default: "
                        "$DTMON_REDIS_URL, else redis://127.0.0.1:6379).")] = None,
    deployment: Annotated[str, typer.Option(
        "--deployment", help="With --distributed: the deployment's name (Redis key prefix).")]
    = DEFAULT_DEPLOYMENT,
) -> None:
    """Crawl the registry's sources now and store every new article once.

    Shows live per-source progress, then a summary: pages fetched, articles new and already
    seen, errors. The spider's full log is kept beside the database (data/logs/ by default,
    or $DTMON_LOG_DIR). Then the alerts of the new
    stories are delivered (see `dtmon alerts`). Articles that could not be stored are owed and
    fetched again by the next crawls (see `dtmon pending`). Ctrl-C or SIGTERM stops the crawl
    cleanly: the run is recorded `interrupted`.
    """
    registry = _load_registry(sources or [])
    names = list(source or [])
    _check_names(registry, names)
    if distributed:
        _seed(redis or redis_url(), deployment, names, sources or [])
        return
    rules = rules_or_exit(alerts)
    outcome = _crawl_with_progress(CrawlOptions(
        sources=names, sources_files=sources or [], via=via, refresh=refresh,
        extra_settings=alerts_settings(rules.path)))
    if rules:
        _, sessions = open_database()
        drain_and_report(Dispatcher(sessions, rules), alerts_timeout)
    if outcome.status != "ok":
        raise typer.Exit(1)


def demo(
    path: Annotated[Path, typer.Argument(
        help="Offline mirror folder (manifest.json + bodies).")] = DEFAULT_MIRROR_PATH,
    port: Annotated[int, typer.Option(help="Port of the mirror server (0: any free port).")]
    = 0,
) -> None:
    """Crawl the offline mirror at t1, then at t2, into the default database.

    Starts `dtmon mirror serve` over PATH on 127.0.0.1, crawls every registry source the
    mirror serves through `--via`, switches the mirror to t2 and crawls again: the second
    crawl adds only what is new.
    """
    try:
        mirror = MirrorServer(path, snapshot="t1", port=port).start()
    except (MirrorError, OSError) as exc:
        fail(f"cannot serve the mirror: {exc}")
    try:
        registry = _load_registry([])
        names = [s.name for s in registry.sources if set(s.all_hosts) & mirror.hosts]
        console.print(f"Mirror of {len(names)} sources at {mirror.url} ({path})")
        for snapshot in ("t1", "t2"):
            mirror.set_snapshot(snapshot)
            console.rule(f"crawl at {snapshot}")
            outcome = _crawl_with_progress(CrawlOptions(sources=names, via=mirror.url,
                                                        trigger="demo"))
            if outcome.status != "ok":
                raise typer.Exit(1)
    finally:
        mirror.stop()
    console.print("Read what was found: [bold]dtmon articles list[/] "
                  "(add --json for scripts), [bold]dtmon articles show ID[/].")


def _seed(redis: str, deployment: str, names: Sequence[str], files: Sequence[Path]) -> None:
    try:
        result = seed_requests(redis, deployment, names, files)
    except RedisError as exc:
        fail(f"cannot seed the deployment at {redis}: {exc}")
    round_ = "new round" if result.new_round else "round in progress"
    console.print(f"{result.queued} start request(s) queued in {redis} for deployment "
                  f"{deployment!r} ({round_}; {result.skipped} already queued this round"
                  + (f", {result.recovered} requeued from dead workers" if result.recovered
                     else "") + "). Workers: [bold]dtmon worker[/].")


def _crawl_with_progress(options: CrawlOptions) -> CrawlOutcome:
    url, sessions = open_database()
    started = time.monotonic()
    try:
        with stop_signals() as interrupt, Live(progress_table([]), console=console,
                                               refresh_per_second=4, transient=True) as live:
            outcome = run_crawl(options, sessions, url, interrupt=interrupt,
                                on_progress=lambda rows: live.update(progress_table(rows)))
    except (StorageError, ValueError) as exc:
        fail(str(exc))
    _print_summary(sessions, outcome, time.monotonic() - started)
    return outcome


def progress_table(rows: Sequence[CrawlRunSource], title: str = "crawling…") -> Table:
    """Per-source counters of a run, with a total line."""
    table = Table(title=title, title_justify="left")
    table.add_column("source")
    for column in _COLUMNS:
        table.add_column(column, justify="right")
    totals = [0] * len(_COLUMNS)
    for row in rows:
        values = (row.pages_fetched, row.not_modified, row.articles_new, row.articles_seen,
                  row.errors)
        totals = [a + b for a, b in zip(totals, values, strict=True)]
        table.add_row(row.source_name, *(str(v) for v in values))
    table.add_section()
    table.add_row("total", *(str(v) for v in totals), style="bold")
    return table


def _print_summary(sessions: sessionmaker[Session], outcome: CrawlOutcome,
                   seconds: float) -> None:
    rows = run_sources(sessions, outcome.run_id)
    console.print(progress_table(rows, title=f"run {outcome.run_id}: {outcome.status} "
                                             f"in {seconds:.1f} s"))
    new = sum(row.articles_new for row in rows)
    seen = sum(row.articles_seen for row in rows)
    owed = sum((row.stats or {}).get("owed", 0) + (row.stats or {}).get("deferred", 0)
               for row in rows)
    if outcome.status == "interrupted":
        console.print(f"Interrupted: run {outcome.run_id} stopped; {new} new article(s) "
                      f"stored before the stop, {owed} owed to the next crawl.")
    elif outcome.status != "ok":
        console.print(f"[red]The crawl failed (exit {outcome.returncode}); see "
                      f"{outcome.log_path}[/]")
    elif new == 0:
        console.print(f"Nothing new: {seen} article(s) found were already stored.")
    else:
        console.print(f"{new} new article(s) stored, {seen} already stored.")
    if owed and outcome.status == "ok":
        console.print(f"{owed} article(s) not stored are owed to the next crawl "
                      "(dtmon pending).")
    for row in rows:
        for message in (row.error_messages or [])[:3]:
            console.print(f"  [yellow]{row.source_name}[/]: {message}", highlight=False)
    console.print(f"Log: {outcome.log_path}", style="dim")


def pending(
    source: Annotated[str | None, typer.Option(
        "--source", "-s", help="Only the articles owed by this source.")] = None,
    as_json: JsonOption = False,
) -> None:
    """Articles discovered and not stored yet: each later crawl fetches them again (with
    backoff) until stored, or gives up after a number of attempts (state gave_up).

    Per article: source, state, failed attempts, next attempt, last error, URL and the page
    that linked it.
    """
    with database_session() as session:
        records = [owed_record(owed) for owed in list_owed(session, source)]
    if as_json:
        for record in records:
            echo_json_line(record)
        return
    table = Table()
    for column in ("source", "state", "attempts", "next attempt", "last error", "url"):
        table.add_column(column, overflow="fold")
    for record in records:
        table.add_row(record["source"], record["state"], str(record["attempts"]),
                      (record["next_attempt_at"] or "")[:16].replace("T", " "),
                      record["last_error"] or "", record["url"])
    console.print(table, highlight=False, markup=False)
    gave_up = sum(record["state"] == "gave_up" for record in records)
    console.print(f"{len(records) - gave_up} article(s) owed, {gave_up} given up", style="dim")


def _load_registry(extra: Sequence[Path]) -> Registry:
    try:
        return load_registry(extra=extra)
    except SourceConfigError as exc:
        fail(str(exc))


def _check_names(registry: Registry, names: Sequence[str]) -> None:
    try:
        registry.select(names)
    except KeyError as exc:
        fail(exc.args[0] if exc.args else str(exc))

