"""`dtmon mirror` commands."""

import typer

app = typer.Typer(help="mirror commands.", no_args_is_help=True)
