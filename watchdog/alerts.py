"""Alerts: what the watchdog tells people, and the background sender that delivers them.

The supervisor calls :meth:`AlertSender.send` and never waits: alerts go on a bounded queue
that one thread drains to every configured webhook, so a slow or dead webhook cannot delay
supervision.
"""

from __future__ import annotations

import json
import logging
import queue
import threading
import time
import urllib.request
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

from hft.daemons.runtime.config import WebhookConfig
from hft.daemons.runtime.events import AlertLevel

QUEUE_SIZE = 1000

log = logging.getLogger("hft.watchdog.alerts")


@dataclass(frozen=True)
class Alert:
    """One alarm. ``kind`` is machine-readable (crash, restart, fatal, hang, heartbeat_lost,
    memory, cpu, or a journal ALERT's code such as order_lost)."""

    kind: str
    level: AlertLevel
    daemon: str
    summary: str
    details: Mapping[str, str] = field(default_factory=dict)
    time_ns: int = field(default_factory=time.time_ns)


class AlertSender:
    """Delivers alerts to webhooks from a background thread; ``send`` never blocks."""

    def __init__(self, webhooks: Sequence[WebhookConfig]) -> None:
        self._webhooks = tuple(webhooks)
        self._queue: queue.Queue[Alert | None] = queue.Queue(QUEUE_SIZE)
        self._thread = threading.Thread(target=self._deliver_all, name="alerts", daemon=True)
        self._thread.start()

    def send(self, alert: Alert) -> None:
        log.warning("alert", extra={"kind": alert.kind, "level": alert.level.name.lower(),
                                    "daemon": alert.daemon, "summary": alert.summary})
        try:
            self._queue.put_nowait(alert)
        except queue.Full:
            log.error("alert queue full: alert dropped", extra={"kind": alert.kind})

    def close(self, timeout_s: float = 5.0) -> None:
        """Deliver what is queued (for up to ``timeout_s``), then stop the thread."""
        self._queue.put(None)
        self._thread.join(timeout_s)

    def _deliver_all(self) -> None:
        while (alert := self._queue.get()) is not None:
            for webhook in self._webhooks:
                if alert.level >= AlertLevel[webhook.min_level.upper()]:
                    self._deliver(webhook, alert)

    def _deliver(self, webhook: WebhookConfig, alert: Alert) -> None:
        body = json.dumps({"kind": alert.kind, "level": alert.level.name.lower(),
                           "daemon": alert.daemon, "summary": alert.summary,
                           "details": dict(alert.details), "time_ns": alert.time_ns}).encode()
        # the url is http(s) only: WebhookConfig validates it
        request = urllib.request.Request(webhook.url, data=body, method="POST",  # noqa: S310
                                         headers={"Content-Type": "application/json"})
        try:
            with urllib.request.urlopen(request,  # noqa: S310
                                        timeout=webhook.timeout_s) as response:
                response.read()
        except OSError as exc:
            log.error("webhook failed", extra={"kind": webhook.kind, "error": str(exc)})
