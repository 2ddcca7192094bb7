"""The ``dtmon`` command line: one module per command group, composed here.

Each command's module (and so Scrapy, FastAPI, Apprise, pyarrow…) is imported only when that
command runs: ``dtmon --help`` lists the commands from the table below, and ``dtmon articles
list`` imports only what reading articles needs (see ``bench/cli.py``).
"""

from __future__ import annotations

import importlib
from dataclasses import dataclass
from typing import Any

import typer
from typer.core import TyperCommand, TyperGroup


@dataclass(frozen=True)
class LazyCommand:
    """Where a command lives (``module:attribute``, a Typer sub-app or a command function)
    and its one-line help for the listing of ``dtmon --help``."""

    target: str
    summary: str

    def load(self, name: str) -> Any:
        """The real click command, importing its module now."""
        module_name, attribute = self.target.split(":")
        obj = getattr(importlib.import_module(module_name), attribute)
        if isinstance(obj, typer.Typer):
            command = typer.main.get_group(obj)
        else:
            single = typer.Typer(add_completion=False, rich_markup_mode="rich")
            single.command(name)(obj)
            command = typer.main.get_command(single)
        command.name = name
        return command


COMMANDS: dict[str, LazyCommand] = {
    "crawl": LazyCommand("monitor.cli.crawl:crawl",
                         "Crawl the registry's sources now and store every new article once."),
    "demo": LazyCommand("monitor.cli.crawl:demo",
                        "Crawl the offline mirror at t1, then at t2, into the default database."),
    "pending": LazyCommand("monitor.cli.crawl:pending",
                           "Articles owed: discovered, not stored yet, fetched again next run."),
    "worker": LazyCommand("monitor.cli.worker:worker",
                          "Crawl the requests of a distributed deployment from its Redis queue."),
    "daemon": LazyCommand("monitor.cli.daemon:daemon",
                          "Crawl every source on its schedule until stopped."),
    "status": LazyCommand("monitor.cli.daemon:status",
                          "The database in use, and the health of every source."),
    "runs": LazyCommand("monitor.cli.daemon:runs_app", "Read the crawl run records."),
    "articles": LazyCommand("monitor.cli.articles:app", "Read the stored articles."),
    "sources": LazyCommand("monitor.cli.sources:app",
                           "List and validate the source registry (config/sources.yaml)."),
    "mirror": LazyCommand("monitor.cli.mirror:app",
                          "Replay the offline mirror of the monitored sites."),
    "topics": LazyCommand("monitor.cli.topics:app",
                          "Select digital-transformation articles: score, evaluate, explain."),
    "dedup": LazyCommand("monitor.cli.dedup:app", "Exact and near-duplicate detection."),
    "stories": LazyCommand("monitor.cli.stories:app",
                           "Stories: an article and its copies on other sites."),
    "queue": LazyCommand("monitor.cli.queue:app",
                         "Work queue of relevant stories for downstream consumers."),
    "export": LazyCommand("monitor.cli.export:export_command",
                          "Export stored articles as JSON lines, CSV or Parquet."),
    "serve": LazyCommand("monitor.cli.serve:serve",
                         "Serve the web page, the JSON API, the Atom feed and the queue."),
    "alerts": LazyCommand("monitor.cli.alerts:app",
                          "Alert rules and the outbox of alerts to deliver."),
}


class _Listed(TyperCommand):
    """A command as listed by ``--help``; running it loads the real one."""

    def __init__(self, name: str, lazy: LazyCommand) -> None:
        super().__init__(name, help=lazy.summary, short_help=lazy.summary)
        self.lazy = lazy

    def make_context(self, info_name: str | None, args: list[str], parent: Any = None,
                     **extra: Any) -> Any:
        real = self.lazy.load(self.name or "")
        return real.make_context(info_name, args, parent=parent, **extra)


class LazyGroup(TyperGroup):
    """The ``dtmon`` group: commands of :data:`COMMANDS`, imported when run."""

    def list_commands(self, ctx: Any) -> list[str]:
        return list(COMMANDS)

    def get_command(self, ctx: Any, cmd_name: str) -> Any:
        lazy = COMMANDS.get(cmd_name)
        return _Listed(cmd_name, lazy) if lazy else None


app = typer.Typer(
    name="dtmon",
    cls=LazyGroup,
    no_args_is_help=True,
    add_completion=False,
    rich_markup_mode="rich",
    pretty_exceptions_show_locals=False,
)


@app.callback()
def _root() -> None:
    """Monitor Vietnamese provincial portals, newspapers and VOV for digital-transformation
    news."""


def main() -> None:
    """Entry point of the ``dtmon`` console script."""
    app()
