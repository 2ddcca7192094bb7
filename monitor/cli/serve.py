"""`dtmon serve`: the HTTP API, Atom feed and web page (monitor.api) under uvicorn."""

from __future__ import annotations

from typing import Annotated

import typer

from monitor.cli.common import fail, open_database
from storage.db import StorageError


def serve(
    host: Annotated[str, typer.Option(help="Address to listen on.")] = "127.0.0.1",
    port: Annotated[int, typer.Option(min=1, max=65535, help="Port to listen on.")] = 8000,
) -> None:
    """Serve the web page (/), the JSON API (/docs), the Atom feed (/feed.atom) and the queue."""
    # Imported here: the web stack is not needed by the other commands.
    import uvicorn

    from monitor.api import create_app

    url, _ = open_database()  # a clear message now rather than at the first request
    try:
        app = create_app(url)
    except StorageError as exc:
        fail(str(exc))
    uvicorn.run(app, host=host, port=port, log_level="info", proxy_headers=False)
