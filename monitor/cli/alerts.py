"""`dtmon alerts list|test RULE|pending|dispatch`: the alert rules and their outbox.

URLs are always shown masked: secrets from the environment never reach the terminal.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
from rich.table import Table
from sqlalchemy import select

from monitor.alerts import (
    AlertRules,
    AlertsConfigError,
    Dispatcher,
    Message,
    Rule,
    load_rules,
    pending_rows,
    send,
)
from monitor.alerts.messages import story_message
from monitor.cli.common import (
    console,
    database_missing,
    database_session,
    echo_json_line,
    fail,
    fitted_table,
    open_database,
    plain,
)
from monitor.clock import TABLE_TIME_NOTE, local_text
from storage.db import StorageError
from storage.models import Article

app = typer.Typer(help="Alert rules and the outbox of alerts to deliver.", no_args_is_help=True)

AlertsOption = Annotated[Path | None, typer.Option(
    "--alerts", help="Alert rules file (default: config/alerts.yaml).")]


def rules_or_exit(path: Path | None) -> AlertRules:
    """The validated rules of ``path`` (default file when None); exits with the error."""
    try:
        return load_rules(path)
    except AlertsConfigError as exc:
        fail(str(exc))


JsonOption = Annotated[bool, typer.Option("--json", help="One JSON object per line.")]


@app.command("list")
def list_rules(alerts: AlertsOption = None, as_json: JsonOption = False) -> None:
    """Show the rules: mode, filters and (masked) channel URLs."""
    rules = rules_or_exit(alerts)
    if as_json:
        for rule in rules.rules.values():
            echo_json_line({**rule.model_dump(exclude={"urls"}),
                            "urls": [rules.masked_url(url) for url in rule.urls]})
        return
    if not rules:
        console.print(f"No alert rules in {rules.path}.")
        return
    table = Table(title=f"Alert rules ({rules.path})", title_justify="left")
    for column in ("rule", "mode", "filters", "channels"):
        table.add_column(column, overflow="fold")
    for rule in rules.rules.values():
        mode = f"digest every {rule.every_hours:g} h" if rule.mode == "digest" else "immediate"
        table.add_row(plain(rule.name, one_line=False), mode, plain(_filters(rule), one_line=False),
                      plain("\n".join(rules.masked_url(url) for url in rule.urls),
                            one_line=False))
    console.print(table, highlight=False)


@app.command("test")
def test_rule(
    rule: Annotated[str, typer.Argument(help="Name of the rule to test.")],
    alerts: AlertsOption = None,
) -> None:
    """Send one sample alert (the latest relevant article, if any) to every URL of RULE.

    Nothing is written to the outbox.
    """
    rules = rules_or_exit(alerts)
    if rule not in rules.rules:
        fail(f"no rule {rule!r} in {rules.path} (rules: {', '.join(rules.rules) or 'none'})")
    message = _sample_message()
    failures = 0
    for url in rules.rules[rule].urls:
        error = send(url, message, key=f"dtmon:{rule}:test")
        shown = rules.masked_url(url)
        if error is None:
            console.print(f"[green]sent[/] {shown}", highlight=False)
        else:
            failures += 1
            console.print(f"[red]failed[/] {shown}: {rules.redact(error)}", highlight=False)
    if failures:
        raise typer.Exit(1)


@app.command("pending")
def pending(as_json: JsonOption = False) -> None:
    """Alerts not delivered yet: rule, story, attempts, next attempt and last error."""
    with database_session() as session:
        rows = pending_rows(session)
    records = [
        {"id": row.id, "rule": row.rule, "kind": row.kind, "story_id": row.story_id,
         "due_at": row.due_at, "attempts": row.attempts, "next_attempt_at": row.next_attempt_at,
         "last_error": row.last_error}
        for row in rows
    ]
    if as_json:
        for record in records:
            echo_json_line(record)
        return
    if not records:
        console.print("No pending alerts.")
        return
    table = fitted_table(("id", "rule", "story", "due", "attempts", "next attempt",
                          "last error"), fold=("last error",), right=("id", "attempts"),
                         title=f"{len(records)} pending alert(s), {TABLE_TIME_NOTE}",
                         title_justify="left")
    for r in records:
        table.add_row(str(r["id"]), plain(r["rule"]), str(r["story_id"] or r["kind"]),
                      local_text(r["due_at"], seconds=True), str(r["attempts"]),
                      local_text(r["next_attempt_at"], seconds=True),
                      plain(r["last_error"], one_line=False))
    console.print(table, highlight=False)


@app.command("dispatch")
def dispatch(
    alerts: AlertsOption = None,
    timeout: Annotated[float, typer.Option(
        help="Stop after this many seconds even if alerts are still failing.")] = 60.0,
    lease_seconds: Annotated[float, typer.Option(
        help="How long a claim lasts before another dispatcher may retake it.")] = 120.0,
    retry_seconds: Annotated[float, typer.Option(
        help="First retry delay after a failure (doubles each attempt).")] = 5.0,
) -> None:
    """Deliver the due alerts now, retrying failures until TIMEOUT; exit 1 if some are left."""
    rules = rules_or_exit(alerts)
    _, sessions = open_database()
    dispatcher = Dispatcher(sessions, rules, lease_seconds=lease_seconds,
                            retry_seconds=retry_seconds)
    try:
        left = drain_and_report(dispatcher, timeout)
    except StorageError as exc:
        fail(str(exc))
    if left:
        raise typer.Exit(1)


def drain_and_report(dispatcher: Dispatcher, timeout: float) -> int:
    """Run ``dispatcher`` until drained or ``timeout``; print the outcome; return what is left."""
    result = dispatcher.drain(timeout)
    message = f"Alerts: {result.sent} delivered"
    if result.left:
        message += f", {result.left} still failing (see `dtmon alerts pending`)"
    console.print(message + ".", highlight=False)
    return result.left


def _sample_message() -> Message:
    """A sample alert: the latest relevant article, or a fixed text while none is stored."""
    if not database_missing():
        with database_session() as session:
            article = session.scalar(select(Article).where(Article.relevant.is_(True))
                                     .order_by(Article.id.desc()).limit(1))
            if article is not None:
                sample = story_message(article)
                return Message(f"[dtmon test] {sample.title.removeprefix('[dtmon] ')}",
                               sample.body)
    return Message("[dtmon test] Thử nghiệm cảnh báo chuyển đổi số",
                   "This is a test alert from dtmon: no article is stored yet.")


def _filters(rule: Rule) -> str:
    parts = []
    if rule.operator:
        parts.append("operator alerts")
    else:
        parts.append("relevant only" if rule.relevant_only else "all articles")
    if rule.min_score is not None:
        parts.append(f"score ≥ {rule.min_score:g}")
    for label, values in (("provinces", rule.provinces), ("sources", rule.sources),
                          ("keywords", rule.keywords)):
        if values:
            parts.append(f"{label}: {', '.join(values)}")
    return "\n".join(parts)
