"""`dtmon dedup` commands."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

import typer

from monitor.dedup import DUPLICATE_THRESHOLD, similarity

app = typer.Typer(help="Exact and near-duplicate detection.", no_args_is_help=True)


@app.command("pairs")
def pairs(
    file: Annotated[
        Path, typer.Argument(exists=True, dir_okay=False, help="JSON lines with a_text, b_text.")
    ],
) -> None:
    """Score text pairs: one JSON line {"similarity", "duplicate"} per input line."""
    with file.open(encoding="utf-8") as lines:
        for number, line in enumerate(lines, start=1):
            if not line.strip():
                continue
            try:
                pair = json.loads(line)
                score = similarity(pair["a_text"], pair["b_text"])
            except (json.JSONDecodeError, KeyError, TypeError) as exc:
                raise typer.BadParameter(
                    f"line {number}: expected a JSON object with a_text and b_text ({exc})"
                ) from exc
            duplicate = score >= DUPLICATE_THRESHOLD
            typer.echo(json.dumps({"similarity": round(score, 4), "duplicate": duplicate}))
