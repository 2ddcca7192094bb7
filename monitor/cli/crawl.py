"""`dtmon crawl` (on demand) and `dtmon demo` (the offline mirror at t1, then t2).

Exit status of a crawl (also `dtmon demo` and `dtmon worker`): see :data:`EXIT_CODES`;
1 is a problem found before crawling (configuration, database), 2 a wrong option.
"""

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
    fitted_table,
    open_database,
    plain,
    print_plain,
    where_database,
)
from monitor.clock import TABLE_TIME_NOTE, local_text
from monitor.crawling import (
    CrawlOptions,
    CrawlOutcome,
    failed_sources,
    run_crawl,
    run_sources,
    stop_signals,
)
from monitor.mirror import DEFAULT_MIRROR_PATH, MirrorError, MirrorServer
from monitor.records import owed_record
from storage.db import StorageError
from storage.models import CrawlRunSource
from storage.repository import list_owed

_COLUMNS = ("pages fetched", "not modified", "articles new", "articles seen", "errors")
# Exit status per run status: 0 whether or not anything was new; distinct codes when sources
# failed, so that scripts and cron jobs can tell "nothing new" from "nothing reachable".
EXIT_CODES = {"ok": 0, "partial": 3, "failed": 4, "interrupted": 130}


def exit_code(status: str) -> int:
    """The exit status of a crawl that ended with run status ``status``."""
    return EXIT_CODES.get(status, EXIT_CODES["failed"])


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

    Shows live per-source progress, then a summary that says first whether the crawl worked:
    pages fetched, articles new and already seen, errors. The spider's full log is kept beside
    the database (logs/ next to the SQLite file, or $DTMON_LOG_DIR). Then the alerts of the
    new stories are delivered (see `dtmon alerts`). Articles that could not be stored are owed
    and fetched again by the next crawls (see `dtmon pending`). Ctrl-C or SIGTERM stops the
    crawl cleanly: the run is recorded `interrupted`.

    Exit status: 0 the crawl worked (new articles or nothing new), 3 some sources failed
    (partial), 4 every source failed or the crawler crashed (failed), 130 interrupted by
    Ctrl-C or SIGTERM, 1 nothing was crawled (configuration or database error).
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
    raise typer.Exit(exit_code(outcome.status))


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
                raise typer.Exit(exit_code(outcome.status))
    finally:
        mirror.stop()
    console.print("Read what was found: [bold]dtmon articles list[/] "
                  "(add --json for scripts), [bold]dtmon articles show ID[/].")
    print_plain(f"Database: {where_database()}", style="dim")


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
    table = fitted_table(("source", *_COLUMNS), right=_COLUMNS, title=title,
                         title_justify="left")
    totals = [0] * len(_COLUMNS)
    for row in rows:
        values = (row.pages_fetched, row.not_modified, row.articles_new, row.articles_seen,
                  row.errors)
        totals = [a + b for a, b in zip(totals, values, strict=True)]
        table.add_row(plain(row.source_name), *(str(v) for v in values))
    table.add_section()
    table.add_row("total", *(str(v) for v in totals), style="bold")
    return table


def _print_summary(sessions: sessionmaker[Session], outcome: CrawlOutcome,
                   seconds: float) -> None:
    """The verdict first (what a script or a reader needs), then the counters and errors."""
    rows = run_sources(sessions, outcome.run_id)
    print_plain(_verdict(outcome, rows), style=None if outcome.status == "ok" else "bold red")
    console.print(progress_table(rows, title=f"run {outcome.run_id}: {outcome.status} "
                                             f"in {seconds:.1f} s"))
    owed = _owed(rows)
    if owed and outcome.status in ("ok", "partial"):
        print_plain(f"{owed} article(s) not stored are owed to the next crawl (dtmon pending).")
    for row in rows:
        for message in (row.error_messages or [])[:3]:
            print_plain(f"  {row.source_name}: {message}", style="yellow")
    print_plain(f"Log: {outcome.log_path}", style="dim")


def _verdict(outcome: CrawlOutcome, rows: Sequence[CrawlRunSource]) -> str:
    new = sum(row.articles_new for row in rows)
    seen = sum(row.articles_seen for row in rows)
    stored = (f"{new} new article(s) stored, {seen} already stored" if new
              else f"nothing new: {seen} article(s) found were already stored")
    failed = failed_sources(rows)
    names = ", ".join(row.source_name for row in failed[:5]) + (", …" if len(failed) > 5 else "")
    code = exit_code(outcome.status)
    if outcome.status == "ok":
        return stored[0].upper() + stored[1:] + "."
    if outcome.status == "interrupted":
        return (f"Interrupted (exit {code}): run {outcome.run_id} stopped; {stored} before the "
                f"stop, {_owed(rows)} owed to the next crawl.")
    if outcome.status == "partial":
        return (f"Crawl partly failed (exit {code}): {len(failed)} of {len(rows)} sources "
                f"failed ({names}); {stored}.")
    if failed and len(failed) == len(rows):
        nothing = "" if sum(row.pages_fetched + row.not_modified for row in rows) else \
            ", no page could be fetched"
        return (f"Crawl failed (exit {code}): every source failed{nothing} ({len(rows)} of "
                f"{len(rows)}: {names}); {stored}.")
    how = f"the crawler stopped with status {outcome.returncode}" if outcome.returncode \
        else "the crawl stopped on an error"
    return f"Crawl failed (exit {code}): {how}; {stored}; see {outcome.log_path}."


def _owed(rows: Sequence[CrawlRunSource]) -> int:
    """Articles of a run left for the next crawl: owed after a failure, or deferred by the cap."""
    return sum((row.stats or {}).get("owed", 0) + (row.stats or {}).get("deferred", 0)
               for row in rows)


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
        owed_articles = list(list_owed(session, source))
    if as_json:
        for owed in owed_articles:
            echo_json_line(owed_record(owed))
        return
    table = fitted_table(("source", "state", "attempts", "next attempt", "last error", "url"),
                         shrink=("last error",), fold=("url",), right=("attempts",))
    for owed in owed_articles:
        table.add_row(plain(owed.source_name), owed.state, str(owed.attempts),
                      local_text(owed.next_attempt_at) if owed.state == "owed" else "",
                      plain(owed.last_error or ""), plain(owed.url, one_line=False))
    console.print(table)
    print_plain(TABLE_TIME_NOTE, style="dim")
    gave_up = sum(owed.state == "gave_up" for owed in owed_articles)
    console.print(f"{len(owed_articles) - gave_up} article(s) owed, {gave_up} given up",
                  style="dim")


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

