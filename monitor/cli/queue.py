"""`dtmon queue claim|ack|release|status`: hand relevant stories to downstream programs."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import asdict
from typing import Annotated, TypeVar

import typer
from sqlalchemy.orm import Session

from monitor import queue
from monitor.cli.common import echo_json_line, fail, open_database, print_plain
from storage.db import StorageError, session_scope

app = typer.Typer(
    help="Work queue of relevant stories for downstream consumers (claim, ack, release).",
    no_args_is_help=True,
)

T = TypeVar("T")

ConsumerOption = Annotated[str, typer.Option(
    "--consumer", help="Name of the downstream program; its workers share the work.")]
StoryIds = Annotated[list[int], typer.Argument(help="Story ids, as claimed.")]


@contextmanager
def _transaction() -> Iterator[Session]:
    """One committed transaction; queue and storage errors end the command with a message."""
    _, sessions = open_database(create=False)  # the queue needs a crawled database
    try:
        with session_scope(sessions) as session:
            yield session
    except (queue.QueueError, StorageError) as exc:
        fail(str(exc))
    finally:
        sessions.kw["bind"].dispose()


def _run(operation: Callable[[Session], T]) -> T:
    with _transaction() as session:
        return operation(session)


@app.command("claim")
def claim(
    consumer: ConsumerOption,
    limit: Annotated[int, typer.Option(min=1, help="At most this many stories.")] = 10,
    lease: Annotated[int, typer.Option(
        min=1, help="Seconds the stories stay leased; unacked ones are handed out again after.")]
    = queue.DEFAULT_LEASE_SECONDS,
) -> None:
    """Lease stories not yet done by CONSUMER; print each as one JSON line.

    Each line holds the representative's clean text and metadata, every copy's URL, source
    and date, and `raw_html` paths on the `dtmon serve` API.
    """
    for item in _run(lambda session: queue.claim(session, consumer, limit, lease)):
        echo_json_line(item.record())


@app.command("ack")
def ack(consumer: ConsumerOption, story_ids: StoryIds) -> None:
    """Mark claimed stories done for CONSUMER: they are never handed to it again.

    Exits 1, naming them, when some ids were never claimed by CONSUMER.
    """

    def acknowledge(session: Session) -> tuple[list[int], list[int]]:
        return (queue.ack(session, consumer, story_ids),
                queue.never_claimed(session, consumer, story_ids))

    done, unknown = _run(acknowledge)
    echo_json_line({"consumer": consumer, "acked": done})
    if unknown:
        fail(f"{consumer!r} never claimed stor{'y' if len(unknown) == 1 else 'ies'} "
             f"{', '.join(map(str, unknown))}: nothing to acknowledge")


@app.command("release")
def release(consumer: ConsumerOption, story_ids: StoryIds) -> None:
    """Give leased stories back now, for another worker of CONSUMER to claim."""
    released = _run(lambda session: queue.release(session, consumer, story_ids))
    echo_json_line({"consumer": consumer, "released": released})


@app.command("status")
def status(
    consumer: Annotated[str | None, typer.Option(
        "--consumer", help="Only this consumer (default: every consumer seen).")] = None,
    as_json: Annotated[bool, typer.Option("--json", help="One JSON object per line.")] = False,
) -> None:
    """Stories done, leased now and still available, per consumer."""

    def read(session: Session) -> list[queue.ConsumerStatus]:
        names = [consumer] if consumer else queue.consumers(session)
        return [queue.status(session, name) for name in names]

    for entry in _run(read):
        if as_json:
            echo_json_line(asdict(entry))
        else:
            print_plain(f"{entry.consumer}: {entry.done} done, {entry.leased} leased, "
                        f"{entry.available} available")
