"""`dtmon articles` commands."""

import typer

app = typer.Typer(help="articles commands.", no_args_is_help=True)
