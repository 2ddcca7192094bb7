"""One writer thread storing a crawl's articles in group transactions.

Storing an article one transaction at a time costs a commit each and runs on the crawl's event
loop. Here a thread takes the articles as they come, and stores up to ``batch`` of them (or
what arrived within ``wait`` seconds of the first) in one transaction, each inside its own
SAVEPOINT: one article that fails (a constraint, a trigger, a bug) is rolled back alone and
reported alone, the others are committed. An article's future is resolved only once its
transaction has committed, so nothing is counted, logged or alerted before it is durable; a
crash loses at most the uncommitted group, whose articles were never counted as stored.

Articles are stored in the order they were submitted, each seeing the ones before it (in the
same transaction or committed): stories and duplicates come out as with one transaction each
(tests/test_batch_storing.py).
"""

from __future__ import annotations

import logging
import queue
import threading
import time
from collections.abc import Callable
from concurrent.futures import Future
from dataclasses import dataclass
from typing import Generic, TypeVar

from sqlalchemy.orm import Session, sessionmaker

from storage.db import session_scope, storage_errors

logger = logging.getLogger(__name__)

Job = TypeVar("Job")
Result = TypeVar("Result")


@dataclass(frozen=True)
class Stored(Generic[Result]):
    """What storing one article returned, and the seconds its writer spent on it (its share
    of its transaction's commit included)."""

    result: Result
    seconds: float


_STOP = object()


class BatchWriter(Generic[Job, Result]):
    """Runs ``store(session, job)`` for each submitted job on one thread, ``batch`` jobs per
    transaction at most, each in a SAVEPOINT."""

    def __init__(self, sessions: sessionmaker[Session],
                 store: Callable[[Session, Job], Result], batch: int = 50,
                 wait: float = 0.25) -> None:
        self.sessions = sessions
        self.store = store
        self.batch = max(1, batch)
        self.wait = wait
        self._jobs: queue.Queue = queue.Queue()
        self._thread = threading.Thread(target=self._run, name="dtmon-writer", daemon=True)
        self._thread.start()

    def submit(self, job: Job) -> Future[Stored[Result]]:
        """Queue ``job``; its future is resolved once its transaction committed, or fails
        with what failed it (its own store, or the commit of its group)."""
        future: Future[Stored[Result]] = Future()
        self._jobs.put((job, future))
        return future

    def close(self) -> None:
        """Store what was submitted, then stop the thread."""
        self._jobs.put(_STOP)
        self._thread.join()

    def _run(self) -> None:
        while True:
            group, stop = self._next_group()
            if group:
                self._store_group(group)
            if stop:
                return

    def _next_group(self) -> tuple[list[tuple[Job, Future]], bool]:
        """The next jobs to store together (waiting for the first), and whether to stop."""
        first = self._jobs.get()
        if first is _STOP:
            return [], True
        group = [first]
        deadline = time.monotonic() + self.wait
        while len(group) < self.batch:
            try:
                entry = self._jobs.get(timeout=max(0.0, deadline - time.monotonic()))
            except queue.Empty:
                break
            if entry is _STOP:
                return group, True
            group.append(entry)
        return group, False

    def _store_group(self, group: list[tuple[Job, Future]]) -> None:
        outcomes: list[tuple[Future, Result | None, BaseException | None, float]] = []
        started = time.perf_counter()
        try:
            with session_scope(self.sessions) as session:
                for job, future in group:
                    outcomes.append((future, *self._store_one(session, job)))
                committing = time.perf_counter()
            commit_share = (time.perf_counter() - committing) / len(group)
        except BaseException as exc:  # noqa: BLE001 - the commit failed: nothing is stored
            logger.error("a group of %d article(s) was not stored: %s", len(group), exc)
            for _job, future in group:
                future.set_exception(exc)
            return
        for future, result, error, seconds in outcomes:
            if error is not None:
                future.set_exception(error)
            else:
                future.set_result(Stored(result, seconds + commit_share))
        logger.debug("stored a group of %d in %.3f s", len(group), time.perf_counter() - started)

    def _store_one(self, session: Session, job: Job
                   ) -> tuple[Result | None, BaseException | None, float]:
        """Store ``job`` in a SAVEPOINT: ``(result, None, seconds)``, or ``(None, error,
        seconds)`` with the savepoint rolled back."""
        started = time.perf_counter()
        try:
            with storage_errors(session.get_bind().url), session.begin_nested():
                result = self.store(session, job)
        except Exception as exc:  # noqa: BLE001 - this article fails alone
            return None, exc, time.perf_counter() - started
        return result, None, time.perf_counter() - started
