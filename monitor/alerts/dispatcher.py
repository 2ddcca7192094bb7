"""The dispatcher: claims due outbox rows, sends them through Apprise, records the outcome.

See the package docstring (:mod:`monitor.alerts`) for the delivery guarantee.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from sqlalchemy.orm import Session, sessionmaker

from monitor.alerts.messages import Message, render
from monitor.alerts.outbox import (
    Delivery,
    claim,
    mark_failed,
    mark_sent,
    outstanding,
    record_channel,
)
from monitor.alerts.rules import AlertRules, url_digest
from storage.repository import utcnow

logger = logging.getLogger(__name__)

# Sent with every message on channels that take headers (webhooks, e-mail): equal on every
# attempt of one alert, so that a receiver can drop the rare repeat (see monitor.alerts).
IDEMPOTENCY_HEADER = "X-Dtmon-Alert-Key"


@dataclass
class DispatchReport:
    """What one :meth:`Dispatcher.run_once` did."""

    sent: int = 0
    failed: int = 0
    errors: list[str] = field(default_factory=list)

    @property
    def claimed(self) -> int:
        """Deliveries attempted."""
        return self.sent + self.failed


@dataclass(frozen=True)
class DrainResult:
    """What :meth:`Dispatcher.drain` did: deliveries sent, due alerts still unsent."""

    sent: int
    left: int


class Dispatcher:
    """Delivers the outbox of one database to the channels of ``rules``.

    ``lease_seconds`` must exceed the longest send (Apprise's connect and read timeouts per
    URL); a dispatcher killed mid-send loses its claim when the lease ends. Failed deliveries
    wait ``retry_seconds * 2**(attempts-1)`` (at most ``max_retry_seconds``) before the next
    attempt. ``clock`` gives naive-UTC now (tests move it to close a digest window).
    """

    def __init__(self, sessions: sessionmaker[Session], rules: AlertRules, *,
                 lease_seconds: float = 120.0, retry_seconds: float = 5.0,
                 max_retry_seconds: float = 3600.0, batch: int = 50,
                 clock: Callable[[], datetime] = utcnow) -> None:
        self.sessions = sessions
        self.rules = rules
        self.lease = timedelta(seconds=lease_seconds)
        self.retry_seconds = retry_seconds
        self.max_retry_seconds = max_retry_seconds
        self.batch = batch
        self.clock = clock

    def run_once(self) -> DispatchReport:
        """Claim the deliveries due now and attempt each once."""
        report = DispatchReport()
        if not self.rules:
            return report
        with self.sessions() as session:
            for delivery in claim(session, self.rules, self.clock(), self.lease, self.batch):
                error = self._deliver(session, delivery)
                if error is None:
                    report.sent += 1
                else:
                    report.failed += 1
                    report.errors.append(error)
        return report

    def drain(self, timeout_seconds: float, poll_seconds: float = 0.2) -> DrainResult:
        """Dispatch until nothing due is left unsent, or ``timeout_seconds`` pass.

        Digests whose window is still open are not waited for.
        """
        deadline = time.monotonic() + timeout_seconds
        sent = 0
        while True:
            sent += self.run_once().sent
            with self.sessions() as session:
                left = outstanding(session, self.clock())
            if left == 0 or time.monotonic() >= deadline:
                return DrainResult(sent, left)
            time.sleep(poll_seconds)

    def run_forever(self, stop: threading.Event, poll_seconds: float = 0.5) -> None:
        """Dispatch until ``stop`` is set, polling every ``poll_seconds`` when idle.

        A failing database is logged and retried at the next poll; it never ends the loop.
        """
        while not stop.is_set():
            try:
                busy = self.run_once().claimed > 0
            except Exception as exc:  # keep the daemon alive; the outbox keeps the work
                logger.error("alert dispatch failed: %s", self.rules.redact(str(exc)))
                busy = False
            if not busy:
                stop.wait(poll_seconds)

    def start_in_thread(self, poll_seconds: float = 0.5) -> RunningDispatcher:
        """Run :meth:`run_forever` in a daemon thread; ``.stop()`` ends it."""
        stop = threading.Event()
        thread = threading.Thread(target=self.run_forever, args=(stop, poll_seconds),
                                  name="dtmon-alerts", daemon=True)
        thread.start()
        return RunningDispatcher(thread, stop)

    def _deliver(self, session: Session, delivery: Delivery) -> str | None:
        """Send one delivery to each of its rule's channels not yet done; None when all took it."""
        rule = self.rules.rules[delivery.rule]
        try:
            message = render(session, rule.name, delivery.digest, delivery.rows)
        except Exception as exc:  # a broken row must not block the others
            return self._fail(session, delivery, f"cannot render: {exc}")
        done = set(delivery.rows[0].delivered or [])
        errors = []
        for url in rule.urls:
            channel = url_digest(url)
            if channel in done:
                continue
            error = send(url, message, delivery.key)
            if error is None:
                record_channel(session, delivery, channel)
            else:
                errors.append(f"{self.rules.masked_url(url)}: {error}")
        if errors:
            return self._fail(session, delivery, "; ".join(errors))
        mark_sent(session, delivery, self.clock())
        logger.info("alert %s sent (%d row(s))", delivery.key, len(delivery.rows))
        return None

    def _fail(self, session: Session, delivery: Delivery, error: str) -> str:
        error = self.rules.redact(error)
        attempts = max(row.attempts for row in delivery.rows)
        delay = min(self.retry_seconds * 2 ** max(attempts - 1, 0), self.max_retry_seconds)
        mark_failed(session, delivery, self.clock(), timedelta(seconds=delay), error)
        logger.warning("alert %s failed (attempt %d, next in %.1f s): %s", delivery.key,
                       attempts, delay, error)
        return error


@dataclass
class RunningDispatcher:
    """A dispatcher running in a background thread."""

    thread: threading.Thread
    stop_event: threading.Event

    def stop(self, timeout: float = 30.0) -> None:
        """Ask the loop to end and wait for the current delivery to finish."""
        self.stop_event.set()
        self.thread.join(timeout)


def send(url: str, message: Message, key: str) -> str | None:
    """Send ``message`` to one Apprise URL; None on success, else why it failed."""
    import apprise  # on first use: the crawl writer and most commands never send (0.2 s)

    plugin = apprise.Apprise.instantiate(url)
    if plugin is None:
        return "not a valid Apprise URL"
    if isinstance(getattr(plugin, "headers", None), dict):
        plugin.headers[IDEMPOTENCY_HEADER] = key
    notifier = apprise.Apprise()
    notifier.add(plugin)
    with apprise.LogCapture(level=logging.WARNING, fmt="%(message)s") as log:
        ok = notifier.notify(title=message.title, body=message.body,
                             body_format=apprise.NotifyFormat.TEXT)
    if ok:
        return None
    lines = [line.strip() for line in log.getvalue().splitlines() if line.strip()]
    return " / ".join(lines[-2:]) or "the channel did not accept the message"
