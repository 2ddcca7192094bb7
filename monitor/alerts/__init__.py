"""New-story alerts through a transactional outbox, delivered by Apprise.

Flow
  1. :func:`monitor.ingest.ingest_article` stores an article and links it to its story; in the
     same transaction :func:`enqueue_story_alerts` writes one ``alert_outbox`` row per matching
     rule. The unique constraint (rule, story) means a story alerts each rule at most once: a
     repost joining a story that rule was already told about adds nothing.
  2. A :class:`Dispatcher` claims due rows under a lease, renders them (one message per story,
     or one per digest window), sends each to the rule's Apprise URLs, and marks them sent.
     A failed send is retried with exponential backoff; a claim whose dispatcher died expires
     and is taken again, so work resumes after a restart.

Delivery guarantee (the honest version)
  No sender can make "exactly once" true alone: if the process dies after the channel took the
  message but before the database recorded it, either the alert is sent again (at-least-once)
  or it may be lost (at-most-once). dtmon chooses **at-least-once + idempotency key**: every
  message carries ``X-Dtmon-Alert-Key: dtmon:<rule>:story:<id>`` (webhooks and e-mail headers;
  stable across attempts and dispatchers), so a receiver that keeps the keys it saw delivers
  each (rule, story) exactly once. Outside that one crash window there is no repeat at all:
  two dispatchers never hold the same row (PostgreSQL: ``FOR UPDATE SKIP LOCKED``; every
  backend: a conditional UPDATE claim), a 5xx is not a delivery, and a rule's channels that
  already accepted a message are recorded one by one, so a retry only goes to the others.
  Chat channels without headers (Telegram, Slack) may, after such a crash, show one repeat.

API (used by ``dtmon crawl --alerts``, ``dtmon alerts`` and the daemon)
  rules = load_rules(path)                      # validated; ${ENV} secrets resolved
  ingest_article(session, data, topics, alerts=rules)  # enqueues in the same transaction
  raise_operator_alert(session, kind, source, message, rules)  # to ``operator: true`` rules
  dispatcher = Dispatcher(sessions, rules)      # sessions: storage.db.session_factory(engine)
  dispatcher.run_once()                         # -> DispatchReport(sent, failed, errors)
  dispatcher.drain(timeout_seconds)             # until nothing due is unsent (CLI)
  dispatcher.run_forever(stop_event, poll_seconds=0.5)   # daemon loop, never raises
  running = dispatcher.start_in_thread(poll_seconds=0.5); running.stop()
  A crawl child process learns the rules file from the Scrapy setting ``DTMON_ALERTS``
  (``CrawlOptions(extra_settings=alerts_settings(path))``).
"""

from __future__ import annotations

from pathlib import Path

from monitor.alerts.dispatcher import IDEMPOTENCY_HEADER, Dispatcher, DispatchReport, send
from monitor.alerts.messages import Message, render
from monitor.alerts.outbox import enqueue_story_alerts, pending_rows, raise_operator_alert
from monitor.alerts.rules import (
    DEFAULT_ALERTS_PATH,
    AlertRules,
    AlertsConfigError,
    Rule,
    load_rules,
    mask_url,
)

ALERTS_SETTING = "DTMON_ALERTS"


def alerts_settings(path: Path | str | None) -> dict[str, str]:
    """Scrapy settings that make a crawl's storage pipeline enqueue for this rules file."""
    return {ALERTS_SETTING: str(Path(path).resolve())} if path else {}


__all__ = [
    "ALERTS_SETTING",
    "DEFAULT_ALERTS_PATH",
    "IDEMPOTENCY_HEADER",
    "AlertRules",
    "AlertsConfigError",
    "DispatchReport",
    "Dispatcher",
    "Message",
    "Rule",
    "alerts_settings",
    "enqueue_story_alerts",
    "load_rules",
    "mask_url",
    "pending_rows",
    "raise_operator_alert",
    "render",
    "send",
]
