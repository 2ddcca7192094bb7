"""`dtmon sources` commands."""

import typer

app = typer.Typer(help="sources commands.", no_args_is_help=True)
