"""`dtmon sources` commands: list, validate and check the source registry."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated, Any

import typer
import yaml
from rich.console import Console
from rich.table import Table

from crawler.sources import Registry, Source, SourceConfigError, load_registry
from monitor.cli.common import open_database, plain
from monitor.health import RunOutcome, source_history

app = typer.Typer(help="List, validate and check the source registry (config/sources.yaml).",
                  no_args_is_help=True)


def _load_or_exit(path: Path | None, extra: list[Path]) -> Registry:
    try:
        return load_registry(path, extra=extra)
    except SourceConfigError as err:
        typer.echo(f"error: {err}", err=True)
        raise typer.Exit(1) from None


def _discovery(source: Source) -> str:
    parts = [f"{len(urls)} {label}" for label, urls in
             (("feed(s)", source.feeds), ("sitemap(s)", source.sitemaps)) if urls]
    for listing in source.listings:
        paging = listing.next_page
        how = f"{paging.method} from {paging.first}" if paging else "rel=next"
        parts.append(f"listing ({how}, ≤{listing.max_pages} pages)")
    return "; ".join(parts)


def _has_provinces(path: Path) -> bool:
    """Whether ``path`` is a full registry (has ``provinces:``); unreadable files count as full
    so that loading them reports the problem."""
    try:
        data = yaml.safe_load(path.read_text("utf-8"))
    except (OSError, UnicodeDecodeError, yaml.YAMLError):
        return True
    return not isinstance(data, dict) or "provinces" in data


@app.command("list")
def list_sources(
    as_json: Annotated[bool, typer.Option("--json", help="One JSON object per source and line.")]
    = False,
    sources: Annotated[list[Path] | None, typer.Option(
        "--sources", help="Extra YAML file holding only `sources:`, merged after the registry "
                          "(repeatable).")] = None,
) -> None:
    """Show every source: name, kind, province, domains and how its articles are found
    (`--json` adds how it is configured: `configured` = evidence, family or generic)."""
    registry = _load_or_exit(None, sources or [])
    if as_json:
        for source in registry.sources:
            record = {**source.model_dump(mode="json"), "configured": source.configured}
            typer.echo(json.dumps(record, ensure_ascii=False))
        return
    table = Table(title=f"{len(registry.sources)} sources, {len(registry.provinces)} provinces")
    for column in ("name", "kind", "province", "domains", "discovery"):
        table.add_column(column)
    for source in registry.sources:
        table.add_row(*(plain(cell, one_line=False) for cell in (
            source.name, source.kind, source.province or "—", ", ".join(source.all_hosts),
            _discovery(source))))
    Console().print(table)


@app.command()
def validate(
    files: Annotated[list[Path] | None, typer.Argument(
        help="Registry files. One holding `provinces:` replaces the default registry; files "
             "holding only `sources:` are merged onto it. Default: the default registry.")] = None,
) -> None:
    """Check the registry; print `OK: N sources, M provinces` or the first problem (exit 1)."""
    files = files or []
    full = [f for f in files if _has_provinces(f)]
    if len(full) > 1:
        typer.echo(f"error: more than one full registry given: {', '.join(map(str, full))}",
                   err=True)
        raise typer.Exit(1)
    registry = _load_or_exit(full[0] if full else None, [f for f in files if f not in full])
    typer.echo(f"OK: {len(registry.sources)} sources, {len(registry.provinces)} provinces")


@app.command()
def check(
    as_json: Annotated[bool, typer.Option("--json", help="One JSON object per source and line.")]
    = False,
    sources: Annotated[list[Path] | None, typer.Option(
        "--sources", help="Extra YAML file holding only `sources:` (repeatable).")] = None,
) -> None:
    """Per source: how it is configured (family, evidence count) and whether its last crawl
    found article links and articles (from the run records of the database)."""
    registry = _load_or_exit(None, sources or [])
    _, sessions = open_database()
    with sessions() as session:
        rows = [_check_row(source, next(iter(source_history(session, source.name, limit=1)), None))
                for source in registry.sources]
    if as_json:
        for row in rows:
            typer.echo(json.dumps(row, ensure_ascii=False))
        return
    table = Table(title="How each source is configured, and what its last crawl found")
    for column in ("name", "configured", "family", "evidence", "last crawl"):
        table.add_column(column)
    for row in rows:
        table.add_row(row["name"], row["configured"], row["family"] or "—",
                      str(row["evidence"]), _last_crawl(row))
    Console().print(table)


def _check_row(source: Source, last: RunOutcome | None) -> dict[str, Any]:
    return {"name": source.name, "configured": source.configured, "family": source.family,
            "evidence": len(source.evidence), "generic_reason": source.generic_reason,
            "last_run_at": last.started_at.isoformat() if last else None,
            "article_links": last.count("links_found") if last else None,
            "articles_found": last.count("articles_found") if last else None}


def _last_crawl(row: dict[str, Any]) -> str:
    if row["last_run_at"] is None:
        return "never crawled"
    if not row["article_links"]:
        return "NO ARTICLE LINK"
    return f"{row['article_links']} article link(s), {row['articles_found']} new article(s)"
