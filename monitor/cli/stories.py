"""`dtmon stories` commands."""

import typer

app = typer.Typer(help="stories commands.", no_args_is_help=True)
