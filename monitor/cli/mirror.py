"""`dtmon mirror` commands: replay the offline copy of the monitored sites."""

from __future__ import annotations

import signal
import threading
from pathlib import Path
from types import FrameType
from typing import Annotated

import typer

from monitor.faults import FaultSpecError, load_fault_plan
from monitor.mirror import DEFAULT_MIRROR_PATH, MirrorError, MirrorServer, RequestRecord

app = typer.Typer(
    help="Replay the offline mirror of the monitored sites (for demos and tests).",
    no_args_is_help=True,
)


def _print_request(record: RequestRecord) -> None:
    conditional = " (conditional)" if record.conditional else ""
    typer.echo(f"{record.method} {record.status} {record.url}{conditional}")


def _wait_for_stop_signal() -> None:
    """Block until Ctrl-C (SIGINT) or SIGTERM."""
    stop = threading.Event()

    def request_stop(signum: int, frame: FrameType | None) -> None:
        stop.set()

    for signum in (signal.SIGINT, signal.SIGTERM):
        signal.signal(signum, request_stop)
    stop.wait()


@app.command()
def serve(
    path: Annotated[Path, typer.Argument(
        help="Mirror folder holding manifest.json (default: ../shared/sites beside the repo, "
             "or $DTMON_MIRROR).")] = DEFAULT_MIRROR_PATH,
    snapshot: Annotated[str, typer.Option(
        help="Moment to replay: t1 = first crawl, t2 = a few hours later.")] = "t1",
    host: Annotated[str, typer.Option(help="Address to listen on.")] = "127.0.0.1",
    port: Annotated[int, typer.Option(help="Port to listen on (0 = any free port).")] = 8765,
    faults: Annotated[list[str] | None, typer.Option(
        "--faults", help="Make URLs hostile (repeatable): a YAML/JSON file mapping URL globs to "
                         "faults, or one inline rule PATTERN=FAULT[,FAULT...], e.g. "
                         "'https://vov.vn/*.vov=5xx:2,slow:1'. Faults: see monitor/faults.py.")]
    = None,
) -> None:
    """Serve the mirror until Ctrl-C, logging one line per request.

    Crawl it with `dtmon crawl --via http://HOST:PORT` (or `scrapy crawl ... -s
    DTMON_VIA=http://HOST:PORT`): requests carry the real scheme and host in the
    X-Original-Scheme / X-Original-Host headers.
    """
    try:
        plan = load_fault_plan(faults or [])
        server = MirrorServer(path, snapshot=snapshot, host=host, port=port,
                              on_request=_print_request, faults=plan)
        server.start()
    except (MirrorError, OSError, FaultSpecError) as exc:
        typer.echo(f"cannot serve the mirror: {exc}", err=True)
        raise typer.Exit(1) from exc
    typer.echo(f"serving {path} (snapshot {snapshot}) at {server.url}; Ctrl-C to stop")
    for rule in plan.rules:
        typer.echo(f"faults on {rule.pattern}: {', '.join(map(str, rule.faults))}")
    try:
        _wait_for_stop_signal()
    finally:
        server.stop()
    typer.echo("mirror stopped")
