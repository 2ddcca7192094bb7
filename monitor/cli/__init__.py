"""The ``dtmon`` command line: one module per command group, composed here."""

from __future__ import annotations

import typer

from monitor.cli import alerts, articles, crawl, daemon, dedup, mirror, sources, stories, topics
from monitor.cli import queue as queue_cli
from monitor.cli import worker as worker_cli
from monitor.cli.export import export_command
from monitor.cli.serve import serve

app = typer.Typer(
    name="dtmon",
    help="Monitor Vietnamese provincial portals, newspapers and VOV for digital-transformation "
    "news.",
    no_args_is_help=True,
    add_completion=False,
    rich_markup_mode="rich",
    pretty_exceptions_show_locals=False,
)
app.command("crawl")(crawl.crawl)
app.command("demo")(crawl.demo)
app.command("pending")(crawl.pending)
app.command("worker")(worker_cli.worker)
app.command("daemon")(daemon.daemon)
app.command("status")(daemon.status)
app.add_typer(daemon.runs_app, name="runs")
app.add_typer(articles.app, name="articles")
app.add_typer(sources.app, name="sources")
app.add_typer(mirror.app, name="mirror")
app.add_typer(topics.app, name="topics")
app.add_typer(dedup.app, name="dedup")
app.add_typer(stories.app, name="stories")
app.add_typer(queue_cli.app, name="queue")
app.command("export")(export_command)
app.command("serve")(serve)
app.add_typer(alerts.app, name="alerts")


def main() -> None:
    """Entry point of the ``dtmon`` console script."""
    app()
