"""`dtmon serve`: the HTTP API, Atom feed and web page (monitor.api) under uvicorn."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated
from urllib.parse import urlsplit

import typer

from monitor.auth import AccessError, check_bind, consumers_path, load_access
from monitor.cli.common import err_console, fail, open_database
from storage.db import StorageError

PUBLIC_URL_ENV = "DTMON_PUBLIC_URL"
# Longer than a client's pause between requests under load: a connection the server closes
# while the client reuses it fails that request (uvicorn's default is 5 s).
KEEP_ALIVE_SECONDS = 60


def serve(
    host: Annotated[str, typer.Option(help="Address to listen on.")] = "127.0.0.1",
    port: Annotated[int, typer.Option(min=1, max=65535, help="Port to listen on.")] = 8000,
    public_url: Annotated[str | None, typer.Option(
        envvar=PUBLIC_URL_ENV,
        help="The URL clients reach this server at (e.g. https://news.example.vn/dtmon): links "
        "in answers start with it. Default: links relative to this server.")] = None,
    consumers: Annotated[Path | None, typer.Option(
        envvar="DTMON_CONSUMERS", dir_okay=False,
        help="Consumers and their tokens (YAML, see config/consumers.yaml, the default).")]
    = None,
) -> None:
    """Serve the web page (/), the JSON API (/docs), the Atom feed (/feed.atom) and the queue.

    Claim, ack and release need a consumer's bearer token. Listening on an address other than
    loopback needs consumers configured (the server refuses to start without).
    """
    # Imported here: the web stack is not needed by the other commands.
    import uvicorn

    from monitor.api import ServiceSettings, create_app

    try:
        access = load_access(consumers_path(consumers), host)
        check_bind(host, access)
    except AccessError as exc:
        fail(str(exc))
    if public_url is not None:
        _check_public_url(public_url)
    url, _ = open_database()  # a clear message now rather than at the first request
    try:
        app = create_app(url, ServiceSettings(access=access, public_url=public_url))
    except StorageError as exc:
        fail(str(exc))
    names = ", ".join(sorted(access.digests)) or "none: claim, ack and release answer 401"
    reads = "need a token" if access.reads_need_token else "are open"
    err_console.print(f"consumers: {names}; reads {reads}", highlight=False, markup=False)
    uvicorn.run(app, host=host, port=port, log_level="info", proxy_headers=False,
                timeout_keep_alive=KEEP_ALIVE_SECONDS)


def _check_public_url(public_url: str) -> None:
    parts = urlsplit(public_url)
    if parts.scheme not in ("http", "https") or not parts.netloc or parts.query or parts.fragment:
        fail(f"--public-url must be an http(s) URL without query or fragment, not {public_url!r}")
