"""The alert outbox table: writing alerts in the caller's transaction, claiming due ones.

Writers (:func:`enqueue_story_alerts`, :func:`raise_operator_alert`) run inside the caller's
transaction, so an alert exists exactly when the story that caused it was committed. The
unique constraints (rule, story) and (rule, dedup_key) make "once per rule and story" a
property of the schema: a second insert is skipped.

Claims (:func:`claim`) take due rows under a lease: a claim token and ``lease_until``. On
PostgreSQL candidates are selected ``FOR UPDATE SKIP LOCKED``; on every backend the claim is
a conditional UPDATE that only succeeds on rows still unclaimed (or whose lease expired), so
two dispatchers never hold the same row. A digest window (rule, due_at) is claimed as a whole.
"""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import ColumnElement, and_, func, or_, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from monitor.alerts.rules import AlertRules, Rule, load_rules
from storage.models import AlertOutbox, Article
from storage.repository import utcnow


def enqueue_story_alerts(session: Session, rules: AlertRules, article: Article) -> list[str]:
    """Write one outbox row per story rule that matches ``article`` (stored, with its story).

    A rule that already has a row for this story gets none: a copy joining a story alerts
    only rules that were not told yet. Returns the names of the rules enqueued.
    """
    if article.story_id is None:
        return []
    source_name = article.source.name
    matching = [
        rule for rule in rules.story_rules()
        if rule.matches(relevant=article.relevant, score=article.topic_score,
                        province=article.province, source=source_name,
                        title=article.title, text=article.text)
    ]
    now = utcnow()
    return [
        rule.name for rule in matching
        if _insert_once(session, rule, now, kind="story", story_id=article.story_id,
                        article_id=article.id, dedup_key=f"story:{article.story_id}")
    ]


def raise_operator_alert(session: Session, kind: str, source: str, message: str,
                         rules: AlertRules | None = None) -> list[str]:
    """Enqueue an operator alert (e.g. ``source_failing``, ``layout_drift``) for ``source``
    to every rule marked ``operator: true`` (default rules: ``config/alerts.yaml``).

    At most one alert per rule, kind and source per UTC day. Runs in the caller's
    transaction; returns the names of the rules enqueued.
    """
    rules = rules if rules is not None else load_rules()
    now = utcnow()
    key = f"operator:{kind}:{source}:{now.date().isoformat()}"
    payload = {"kind": kind, "source": source, "message": message}
    return [
        rule.name for rule in rules.operator_rules()
        if _insert_once(session, rule, now, kind="operator", dedup_key=key, payload=payload)
    ]


def _insert_once(session: Session, rule: Rule, now: datetime, **values: object) -> bool:
    exists = select(AlertOutbox.id).where(AlertOutbox.rule == rule.name,
                                          AlertOutbox.dedup_key == values["dedup_key"])
    if session.scalar(exists) is not None:
        return False
    due = rule.due_at(now)
    try:
        with session.begin_nested():
            session.add(AlertOutbox(rule=rule.name, created_at=now, due_at=due,
                                    next_attempt_at=due, attempts=0, delivered=[], **values))
    except IntegrityError:  # another process enqueued it first
        return False
    return True


# --- claiming -------------------------------------------------------------------------------


@dataclass(frozen=True)
class Delivery:
    """What one message carries: one row, or every row of a digest window."""

    rule: str
    token: str
    digest: bool
    rows: list[AlertOutbox]

    @property
    def ids(self) -> list[int]:
        """The outbox ids in this delivery."""
        return [row.id for row in self.rows]

    @property
    def key(self) -> str:
        """Idempotency key of the message, the same on every attempt and every dispatcher."""
        if self.digest:
            return f"dtmon:{self.rule}:digest:{self.rows[0].due_at.isoformat()}"
        return f"dtmon:{self.rule}:{self.rows[0].dedup_key}"


def claimable(now: datetime) -> ColumnElement[bool]:
    """Rows that are unsent, due, and not held by a live lease."""
    return and_(
        AlertOutbox.sent_at.is_(None),
        AlertOutbox.next_attempt_at <= now,
        or_(AlertOutbox.lease_until.is_(None), AlertOutbox.lease_until < now),
    )


def claim(session: Session, rules: AlertRules, now: datetime, lease: timedelta,
          limit: int = 50) -> list[Delivery]:
    """Claim up to ``limit`` due rows of known rules (whole digest windows) and commit.

    Rows of rules absent from ``rules`` are left alone (they show in ``dtmon alerts pending``).
    """
    token = str(uuid.uuid4())
    candidates = session.execute(
        select(AlertOutbox.id, AlertOutbox.rule, AlertOutbox.due_at)
        .where(claimable(now), AlertOutbox.rule.in_(list(rules.rules)))
        .order_by(AlertOutbox.next_attempt_at, AlertOutbox.id)
        .limit(limit)
        .with_for_update(skip_locked=True)
    ).all()
    take = update(AlertOutbox).values(
        claim_token=token, lease_until=now + lease, attempts=AlertOutbox.attempts + 1
    )
    single = [c.id for c in candidates if rules.rules[c.rule].mode == "immediate"]
    if single:
        session.execute(take.where(AlertOutbox.id.in_(single), claimable(now)))
    windows = {(c.rule, c.due_at) for c in candidates if rules.rules[c.rule].mode == "digest"}
    for rule, due_at in sorted(windows):
        session.execute(take.where(AlertOutbox.rule == rule, AlertOutbox.due_at == due_at,
                                   claimable(now)))
    session.commit()
    claimed = session.scalars(
        select(AlertOutbox).where(AlertOutbox.claim_token == token).order_by(AlertOutbox.id)
    ).all()
    return _group(claimed, rules, token)


def _group(rows: Sequence[AlertOutbox], rules: AlertRules, token: str) -> list[Delivery]:
    deliveries: dict[tuple[str, bool, object], list[AlertOutbox]] = {}
    for row in rows:
        digest = rules.rules[row.rule].mode == "digest"
        key = (row.rule, digest, row.due_at if digest else row.id)
        deliveries.setdefault(key, []).append(row)
    return [Delivery(rule, token, digest, group)
            for (rule, digest, _), group in deliveries.items()]


def record_channel(session: Session, delivery: Delivery, channel: str) -> None:
    """Remember that ``channel`` accepted ``delivery`` (a retry will skip it); commits."""
    for row in session.scalars(select(AlertOutbox).where(AlertOutbox.id.in_(delivery.ids))):
        row.delivered = [*(row.delivered or []), channel]
    session.commit()


def mark_sent(session: Session, delivery: Delivery, now: datetime) -> None:
    """Record ``delivery`` as sent and release its lease; commits."""
    session.execute(
        update(AlertOutbox)
        .where(AlertOutbox.id.in_(delivery.ids), AlertOutbox.sent_at.is_(None))
        .values(sent_at=now, lease_until=None, claim_token=None, last_error=None)
    )
    session.commit()


def mark_failed(session: Session, delivery: Delivery, now: datetime, retry_in: timedelta,
                error: str) -> None:
    """Release ``delivery`` for another attempt after ``retry_in``; commits."""
    session.execute(
        update(AlertOutbox)
        .where(AlertOutbox.id.in_(delivery.ids), AlertOutbox.claim_token == delivery.token)
        .values(next_attempt_at=now + retry_in, lease_until=None, claim_token=None,
                last_error=error[:2000])
    )
    session.commit()


def pending_rows(session: Session) -> list[AlertOutbox]:
    """Every unsent outbox row, oldest first."""
    return list(session.scalars(
        select(AlertOutbox).where(AlertOutbox.sent_at.is_(None)).order_by(AlertOutbox.id)
    ))


def outstanding(session: Session, now: datetime) -> int:
    """Unsent rows that are due by ``now`` (waiting for a retry or a lease included)."""
    return session.scalar(
        select(func.count()).select_from(AlertOutbox)
        .where(AlertOutbox.sent_at.is_(None), AlertOutbox.due_at <= now)
    ) or 0
