"""`dtmon export`: stored articles as JSON lines, CSV or Parquet, streamed to a file or stdout."""

from __future__ import annotations

import sys
from datetime import date
from pathlib import Path
from typing import Annotated, BinaryIO

import typer

from monitor.cli.common import database_session, err_console, fail, province_filter
from monitor.export import ExportFormat, export


def export_command(
    since: Annotated[str, typer.Option(
        help="Only articles dated on or after this day (YYYY-MM-DD, Vietnam time).")],
    export_format: Annotated[ExportFormat, typer.Option(
        "--format", help="jsonl, csv or parquet.")] = ExportFormat.jsonl,
    province: Annotated[str | None, typer.Option(
        help="Only this province, e.g. 'Huế' or 'hue' (case and diacritics do not matter).")]
    = None,
    relevant: Annotated[bool, typer.Option(
        "--relevant", help="Only on-topic articles.")] = False,
    output: Annotated[Path | None, typer.Option(
        help="Write to this file (default: standard output; parquet needs a file).")] = None,
    bom: Annotated[bool, typer.Option(
        "--bom", help="CSV: start with a UTF-8 byte order mark, for Excel.")] = False,
) -> None:
    """Export stored articles, oldest first, in constant memory (one row per article).

    Text is UTF-8; instants carry their offset (+07:00). CSV has no byte order mark unless
    --bom (Excel wants one to read Vietnamese).
    """
    try:
        since_day = date.fromisoformat(since)
    except ValueError:
        fail(f"--since wants a day as YYYY-MM-DD, not {since!r}")
    if output is None and export_format is ExportFormat.parquet:
        fail("parquet is a binary file format: give --output FILE")
    with database_session() as session:
        wanted = province_filter(session, province)
        with _open_output(output) as stream:
            count = export(session, stream, export_format, since=since_day, province=wanted,
                           relevant=True if relevant else None, bom=bom)
    err_console.print(f"{count} article(s) exported", style="dim")


def _open_output(output: Path | None) -> BinaryIO:
    if output is None:
        return open(sys.stdout.fileno(), "wb", closefd=False)  # noqa: SIM115 - a context manager
    try:
        return output.open("wb")
    except OSError as exc:
        fail(f"cannot write {output}: {exc.strerror}")
