"""Work queue handing relevant stories to downstream consumers (e.g. an NLP extraction pipeline).

A *consumer* is a downstream program named by the caller; any number of its workers may claim
at once. :func:`claim` leases stories the consumer has not finished (relevant stories: one copy
at least is on-topic), oldest first; :func:`ack` marks them done; :func:`release` hands them
back; a lease that expires makes its story available again, so a worker that dies loses
nothing. Delivery is at least once: a worker whose lease expired may still ack.

Two workers never hold the same story at the same time. On PostgreSQL the candidate stories are
locked ``FOR NO KEY UPDATE SKIP LOCKED`` (workers take disjoint rows without waiting; the weaker
lock does not block articles being linked to stories); on SQLite the claim runs under the
database's write lock (``BEGIN IMMEDIATE``, see storage.db). On both, the lease row is written
by an upsert that only takes over a row whose lease expired and was never acked, so a claim
racing another can never steal a live lease; a claim that lost such a race looks again
(``CLAIM_ROUNDS``), so it comes back short only when the stories run out.

Each call runs in the caller's transaction: commit right after, which also ends the lock.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import ColumnElement, Select, and_, exists, func, or_, select, update
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.orm import Session

from monitor.clock import iso
from monitor.records import story_record
from monitor.search import load_stories
from storage.models import Article, Story, StoryDelivery
from storage.repository import utcnow

DEFAULT_LEASE_SECONDS = 300
MAX_CLAIM = 1000
# A PostgreSQL claim whose snapshot predates a concurrent claim's commit sees that claim's
# stories as free; its upsert then leaves them (live leases) and it looks again, with a fresh
# snapshot, for the rest. Each further round needs yet another claim to commit in between.
CLAIM_ROUNDS = 5


class QueueError(ValueError):
    """A claim, ack or release that cannot be done as asked; ``str()`` says why."""


@dataclass(frozen=True)
class ClaimedStory:
    """A story leased to a consumer until ``lease_expires_at`` (naive UTC; JSON: with offset)."""

    story_id: int
    lease_expires_at: datetime
    attempts: int  # 1 on the first claim, more when earlier leases expired or were released
    story: dict[str, Any]  # monitor.records.story_record: clean text, metadata, every copy

    def record(self) -> dict[str, Any]:
        """The JSON shape handed to consumers: the story plus its lease."""
        return {
            **self.story,
            "lease_expires_at": iso(self.lease_expires_at),
            "attempts": self.attempts,
        }


@dataclass(frozen=True)
class ConsumerStatus:
    """Where a consumer stands: stories done, leased now, and still to claim."""

    consumer: str
    done: int
    leased: int
    available: int


def claim(
    session: Session,
    consumer: str,
    limit: int = 10,
    lease_seconds: float = DEFAULT_LEASE_SECONDS,
) -> list[ClaimedStory]:
    """Lease up to ``limit`` relevant stories ``consumer`` has neither done nor leased now."""
    _check_consumer(consumer)
    if not 1 <= limit <= MAX_CLAIM:
        raise QueueError(f"limit must be between 1 and {MAX_CLAIM}, not {limit}")
    if lease_seconds <= 0:
        raise QueueError(f"the lease must last a positive number of seconds, not {lease_seconds}")
    now = utcnow()
    expires = now + timedelta(seconds=lease_seconds)
    leased: dict[int, int] = {}
    # On SQLite the savepoint first takes the write lock (storage.db): claims run one at a time.
    with session.begin_nested():
        for _ in range(CLAIM_ROUNDS):
            story_ids = _lock_candidates(session, consumer, now, limit - len(leased), leased)
            if not story_ids:
                break
            taken = _lease(session, consumer, story_ids, now, expires)
            leased.update(taken)
            if len(taken) == len(story_ids):
                break  # no race lost: these are all the stories there are, or enough
    views = load_stories(session, sorted(leased))
    return [
        ClaimedStory(view.id, expires, leased[view.id], story_record(
            view.id, view.representative, view.copies))
        for view in views
    ]


def ack(session: Session, consumer: str, story_ids: Sequence[int]) -> list[int]:
    """Mark ``story_ids`` done for ``consumer``; returns those newly acked (claimed, not acked)."""
    _check_consumer(consumer)
    return _finish(session, consumer, story_ids, {StoryDelivery.acked_at: utcnow()})


def never_claimed(session: Session, consumer: str, story_ids: Sequence[int]) -> list[int]:
    """Those of ``story_ids`` that ``consumer`` never claimed (so cannot ack or release)."""
    claimed = set(session.scalars(select(StoryDelivery.story_id).where(
        StoryDelivery.consumer == consumer, StoryDelivery.story_id.in_(list(story_ids)))))
    return [story_id for story_id in story_ids if story_id not in claimed]


def release(session: Session, consumer: str, story_ids: Sequence[int]) -> list[int]:
    """Hand leased, unacked ``story_ids`` back at once; returns those released."""
    _check_consumer(consumer)
    now = utcnow()
    return _finish(
        session, consumer, story_ids, {StoryDelivery.lease_expires_at: now},
        StoryDelivery.lease_expires_at > now,
    )


def status(session: Session, consumer: str) -> ConsumerStatus:
    """How many stories ``consumer`` has done, holds leased, and may still claim."""
    _check_consumer(consumer)
    now = utcnow()
    mine = StoryDelivery.consumer == consumer
    done = session.scalar(select(func.count()).where(mine, StoryDelivery.acked_at.is_not(None)))
    leased = session.scalar(
        select(func.count()).where(
            mine, StoryDelivery.acked_at.is_(None), StoryDelivery.lease_expires_at > now
        )
    )
    available = session.scalar(
        select(func.count()).select_from(_claimable(consumer, now).subquery())
    )
    return ConsumerStatus(consumer, done or 0, leased or 0, available or 0)


def consumers(session: Session) -> list[str]:
    """Every consumer that ever claimed a story, by name."""
    return list(
        session.scalars(select(StoryDelivery.consumer).distinct().order_by(StoryDelivery.consumer))
    )


def _check_consumer(consumer: str) -> None:
    if not consumer.strip() or len(consumer) > 100:
        raise QueueError("the consumer name must be 1 to 100 characters")


def _lock_candidates(
    session: Session, consumer: str, now: datetime, count: int, excluded: Iterable[int]
) -> list[int]:
    """Up to ``count`` claimable stories not in ``excluded``, locked on PostgreSQL (rows
    another claim holds are skipped)."""
    candidates = _claimable(consumer, now).where(Story.id.not_in(list(excluded))).limit(count)
    if session.get_bind().dialect.name == "postgresql":
        candidates = candidates.with_for_update(skip_locked=True, key_share=True, of=Story)
    return list(session.scalars(candidates))


def _claimable(consumer: str, now: datetime) -> Select[tuple[int]]:
    """Relevant stories ``consumer`` has neither acked nor leased at ``now``, oldest first."""
    relevant = exists().where(Article.story_id == Story.id, Article.relevant.is_(True))
    taken = exists().where(
        StoryDelivery.story_id == Story.id,
        StoryDelivery.consumer == consumer,
        or_(StoryDelivery.acked_at.is_not(None), StoryDelivery.lease_expires_at > now),
    )
    return (
        select(Story.id)
        .where(Story.representative_id.is_not(None), relevant, ~taken)
        .order_by(Story.id)
    )


def _lease(
    session: Session, consumer: str, story_ids: list[int], now: datetime, expires: datetime
) -> dict[int, int]:
    """Write the leases; returns ``{story_id: attempts}`` of those actually taken.

    A row left by an earlier lease is taken over only if that lease expired unacked.
    """
    dialect = postgresql if session.get_bind().dialect.name == "postgresql" else sqlite
    statement = dialect.insert(StoryDelivery).values(
        [
            {"consumer": consumer, "story_id": story_id, "claimed_at": now,
             "lease_expires_at": expires, "attempts": 1}
            for story_id in story_ids
        ]
    )
    statement = statement.on_conflict_do_update(
        index_elements=[StoryDelivery.consumer, StoryDelivery.story_id],
        set_={
            "claimed_at": statement.excluded.claimed_at,
            "lease_expires_at": statement.excluded.lease_expires_at,
            "attempts": StoryDelivery.attempts + 1,
        },
        where=and_(StoryDelivery.acked_at.is_(None), StoryDelivery.lease_expires_at <= now),
    ).returning(StoryDelivery.story_id, StoryDelivery.attempts)
    return dict(session.execute(statement).all())


def _finish(
    session: Session,
    consumer: str,
    story_ids: Sequence[int],
    values: dict,
    *conditions: ColumnElement[bool],
) -> list[int]:
    if not story_ids:
        return []
    statement = (
        update(StoryDelivery)
        .where(
            StoryDelivery.consumer == consumer,
            StoryDelivery.story_id.in_(list(story_ids)),
            StoryDelivery.acked_at.is_(None),
            *conditions,
        )
        .values(values)
        .returning(StoryDelivery.story_id)
        .execution_options(synchronize_session=False)
    )
    return sorted(session.scalars(statement))
