"""One writer storing a crawl's articles in group transactions, in a process of its own.

Storing an article one transaction at a time costs a commit each, and on the crawl's event loop
its CPU (the ORM, topic bookkeeping, the dedup index) is taken from fetching. Here the event
loop only groups the articles: a group is sent to the writer process when ``batch`` articles
wait or ``wait`` seconds after the first arrived, and while one group is being stored the next
one gathers (one group in flight: articles are stored in the order they came, each seeing the
ones before it). The writer stores a group in one transaction, each article inside its own
SAVEPOINT (:func:`store_group`): one article that fails (a constraint, a trigger, a bug) is
rolled back and reported alone, the others are committed.

An article's outcome is known only once its group has committed, so nothing is counted,
logged or alerted before it is durable; a crash loses at most the uncommitted group, whose
articles were never counted as stored. Stories and duplicates come out as with one transaction
per article (tests/test_batch_storing.py).
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable
from concurrent.futures import Executor
from dataclasses import dataclass
from typing import Any

from sqlalchemy.orm import Session, sessionmaker

from storage.db import StorageError, session_scope, storage_errors

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class Stored:
    """What storing one article returned, and the seconds the writer spent on it (its share of
    its group's commit included)."""

    result: Any
    seconds: float


@dataclass(frozen=True)
class NotStored:
    """Why an article was not stored: ``"Type: message"``; ``storage`` when the database
    itself failed (full disk, read-only…), not the article."""

    description: str
    storage: bool = False


class StoreFailed(Exception):
    """This article could not be stored (the others of its group may have been)."""


def store_group(sessions: sessionmaker[Session], store: Callable[[Session, Any], Any],
                jobs: list[Any]) -> list[Stored | NotStored]:
    """Store ``jobs`` in one transaction, each with ``store(session, job)`` inside its own
    SAVEPOINT; one outcome per job. When the commit fails, no job is stored."""
    outcomes: list[Stored | NotStored] = []
    try:
        with session_scope(sessions) as session:
            outcomes = [_store_one(session, store, job) for job in jobs]
            committing = time.perf_counter()
        share = (time.perf_counter() - committing) / len(jobs)
    except Exception as exc:  # noqa: BLE001 - the commit failed: nothing of the group is stored
        logger.error("a group of %d article(s) was not stored: %s", len(jobs), exc)
        return [NotStored(_describe(exc), isinstance(exc, StorageError))] * len(jobs)
    return [Stored(o.result, o.seconds + share) if isinstance(o, Stored) else o
            for o in outcomes]


def _store_one(session: Session, store: Callable[[Session, Any], Any],
               job: Any) -> Stored | NotStored:
    started = time.perf_counter()
    try:
        with storage_errors(session.get_bind().url), session.begin_nested():
            result = store(session, job)
    except Exception as exc:  # noqa: BLE001 - this article fails alone
        return NotStored(_describe(exc), isinstance(exc, StorageError))
    return Stored(result, time.perf_counter() - started)


def _describe(exc: BaseException) -> str:
    text = str(exc).strip()
    return f"{type(exc).__name__}: {text.splitlines()[0] if text else repr(exc)}"


class GroupWriter:
    """Groups the articles of the event loop and has ``executor`` (the writer process) run
    ``store_jobs(jobs) -> outcomes`` on one group at a time."""

    def __init__(self, executor: Executor, store_jobs: Callable[[list[Any]], list],
                 batch: int = 50, wait: float = 0.25) -> None:
        self.executor = executor
        self.store_jobs = store_jobs
        self.batch = max(1, batch)
        self.wait = wait
        self._waiting: list[tuple[Any, asyncio.Future]] = []
        self._in_flight = False
        self._timer: asyncio.TimerHandle | None = None

    async def store(self, job: Any) -> Stored:
        """Store ``job`` with its group: its outcome once the group committed. Raises
        :class:`StoreFailed` (this article) or :class:`StorageError` (the database or the
        writer failed)."""
        loop = asyncio.get_running_loop()
        future: asyncio.Future = loop.create_future()
        self._waiting.append((job, future))
        if len(self._waiting) >= self.batch:
            self._send()
        elif self._timer is None and not self._in_flight:
            self._timer = loop.call_later(self.wait, self._send)
        outcome = await future
        if isinstance(outcome, NotStored):
            raise (StorageError if outcome.storage else StoreFailed)(outcome.description)
        return outcome

    def close(self) -> None:
        """Stop the writer process (every article was answered: Scrapy waits for them)."""
        if self._timer is not None:
            self._timer.cancel()
        self.executor.shutdown(wait=True, cancel_futures=True)

    def _send(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        if self._in_flight or not self._waiting:
            return
        group, self._waiting = self._waiting[:self.batch], self._waiting[self.batch:]
        self._in_flight = True
        sent = asyncio.wrap_future(self.executor.submit(self.store_jobs,
                                                        [job for job, _ in group]))
        sent.add_done_callback(lambda done: self._answer(group, done))

    def _answer(self, group: list[tuple[Any, asyncio.Future]], done: asyncio.Future) -> None:
        self._in_flight = False
        failed = done.cancelled() or done.exception() is not None
        if failed:  # the writer process died, could not start, or was shut down
            reason = "cancelled" if done.cancelled() else repr(done.exception())
            outcomes = [NotStored(f"the writer process failed: {reason}", True)]
            outcomes *= len(group)
        else:
            outcomes = done.result()
        for (_, future), outcome in zip(group, outcomes, strict=True):
            if not future.done():
                future.set_result(outcome)
        self._send()  # what gathered meanwhile has waited long enough
