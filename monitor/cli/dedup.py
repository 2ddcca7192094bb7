"""`dtmon dedup` commands."""

import typer

app = typer.Typer(help="dedup commands.", no_args_is_help=True)
