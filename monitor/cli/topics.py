"""`dtmon topics` commands."""

import typer

app = typer.Typer(help="topics commands.", no_args_is_help=True)
