"""`dtmon dedup` commands."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Annotated

import typer

from monitor.similarity import compare

app = typer.Typer(help="Exact and near-duplicate detection.", no_args_is_help=True)


@app.command("pairs")
def pairs(
    file: Annotated[
        Path | None,
        typer.Argument(exists=True, dir_okay=False,
                       help="JSON lines with a_text, b_text (default: standard input)."),
    ] = None,
) -> None:
    """Score text pairs: one JSON line {"similarity", "containment", "block", "tail",
    "alignment", "duplicate"} per input line (the figures the verdict was decided on)."""
    with file.open(encoding="utf-8") if file else sys.stdin as lines:
        for number, line in enumerate(lines, start=1):
            if not line.strip():
                continue
            try:
                pair = json.loads(line)
                figures = compare(pair["a_text"], pair["b_text"])
            except (json.JSONDecodeError, KeyError, TypeError) as exc:
                raise typer.BadParameter(
                    f"line {number}: expected a JSON object with a_text and b_text ({exc})"
                ) from exc
            typer.echo(json.dumps(figures.as_dict()))
