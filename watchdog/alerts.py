"""Alerts: what the watchdog tells people, and the background sender that delivers them.

The supervisor calls :meth:`AlertSender.send` and never waits. Every webhook has its own
bounded queue and thread, so a slow or dead webhook delays neither the caller nor the other
webhooks. Per webhook, ``send`` applies ``min_level`` and the rate limit (``max_per_minute``
alerts in any RATE_WINDOW_S) on the caller's clock, so what is dropped depends on what was
sent, not on how fast delivery goes. An alert over the limit is dropped and counted; once
the limit has room again, one summary alert (kind ``alerts_dropped``) says how many were
dropped and of which kinds, ahead of the next alert or, when none comes, from the idle
worker within IDLE_CHECK_S. Failed attempts (no connection, timeout, HTTP error, a robot's
error code) are retried ``retries`` times with exponential backoff, except HTTP 4xx refusals
that a retry cannot change. ``close`` lets the queues drain until its deadline, logs how many
alerts each webhook was left with, and removes the metrics from the registry.

Webhooks are named ``<index>-<kind>`` in logs and metrics: their urls carry access tokens,
and the url, its tokens and the signing secret are registered with the secrets registry so
no log line shows them.

Metrics (families built at scrape time from plain counters by :meth:`AlertSender.collect`,
on the registry given, or served by the caller with ``registry=None``):
``hft_watchdog_alerts_sent_total{webhook}``,
``hft_watchdog_alerts_dropped_total{webhook,reason}`` (queue_full, rate_limit, failed: every
attempt failed) and ``hft_watchdog_webhook_errors_total{webhook}`` (failed attempts, retries
included).
"""

from __future__ import annotations

import contextlib
import http.client
import logging
import queue
import socket
import threading
import time
import urllib.error
import urllib.request
from collections import Counter, deque
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field

from prometheus_client import REGISTRY, CollectorRegistry
from prometheus_client.core import CounterMetricFamily, Metric

from hft.daemons.runtime import secrets
from hft.daemons.runtime.config import WATCHDOG, WebhookConfig
from hft.daemons.runtime.events import AlertLevel
from hft.watchdog.webhooks import (
    WebhookError,
    WebhookRequest,
    build_request,
    check_reply,
    credentials,
    webhook_name,
)

QUEUE_SIZE = 256
"""Alerts waiting per webhook; beyond it they are dropped (reason queue_full)."""
RATE_WINDOW_S = 60.0
BACKOFF_INITIAL_S = 1.0
"""Wait before the first retry; it doubles per failed attempt up to BACKOFF_MAX_S."""
BACKOFF_MAX_S = 60.0
IDLE_CHECK_S = 1.0
"""How often an idle worker looks whether a rate-limit summary is due."""
MAX_REPLY_BYTES = 64 * 1024
DROP_REASONS = ("queue_full", "rate_limit", "failed")
DROPPED_KIND = "alerts_dropped"

log = logging.getLogger("hft.watchdog.alerts")
_LOG_LEVELS = {AlertLevel.INFO: logging.INFO, AlertLevel.WARNING: logging.WARNING,
               AlertLevel.CRITICAL: logging.ERROR}


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
    """Delivers alerts to webhooks from background threads; ``send`` never blocks.

    It is a Prometheus collector: ``registry`` gets it (one open sender per registry;
    ``close`` unregisters it), or with ``registry=None`` the caller serves :meth:`collect` in
    its own (a daemon host merges it into its /metrics). ``clock`` (monotonic seconds) drives
    the rate limit.
    """

    def __init__(self, webhooks: Sequence[WebhookConfig], *,
                 registry: CollectorRegistry | None = REGISTRY,
                 clock: Callable[[], float] = time.monotonic,
                 backoff_initial_s: float = BACKOFF_INITIAL_S) -> None:
        for webhook in webhooks:
            for credential in credentials(webhook):
                secrets.register(credential)
        host = socket.gethostname()
        self._channels = tuple(_Channel(webhook_name(index, webhook), webhook, host=host,
                                        clock=clock, backoff_initial_s=backoff_initial_s)
                               for index, webhook in enumerate(webhooks))
        self._registry = registry
        if registry is not None:
            registry.register(self)
        for channel in self._channels:
            channel.start()

    def send(self, alert: Alert) -> None:
        # alert_*: the JSON log lines already carry this process's "daemon" and "level"
        log.log(_LOG_LEVELS[alert.level], "alert",
                extra={"alert_kind": alert.kind, "alert_level": alert.level.name.lower(),
                       "alert_daemon": alert.daemon, "summary": alert.summary})
        for channel in self._channels:
            channel.offer(alert)

    def close(self, timeout_s: float = 5.0) -> None:
        """Deliver what is queued for up to ``timeout_s``, then stop (what is left is logged)
        and remove the metrics. Idempotent."""
        deadline = time.monotonic() + timeout_s
        for channel in self._channels:
            channel.finish()
        for channel in self._channels:
            channel.join(max(0.0, deadline - time.monotonic()))
        for channel in self._channels:
            channel.abandon()
        if self._registry is not None:
            self._registry.unregister(self)
            self._registry = None

    def collect(self) -> Iterator[Metric]:
        """The alert metrics, per webhook, from the counters as they are now."""
        sent = CounterMetricFamily("hft_watchdog_alerts_sent", "Alerts a webhook accepted",
                                   labels=["webhook"])
        dropped = CounterMetricFamily(
            "hft_watchdog_alerts_dropped", "Alerts not delivered to a webhook, by reason "
            "(queue_full, rate_limit, failed: every attempt failed)",
            labels=["webhook", "reason"])
        errors = CounterMetricFamily("hft_watchdog_webhook_errors",
                                     "Failed delivery attempts (each retry counts)",
                                     labels=["webhook"])
        for channel in self._channels:
            sent.add_metric([channel.name], channel.sent)
            errors.add_metric([channel.name], channel.errors)
            for reason, count in list(channel.dropped.items()):
                dropped.add_metric([channel.name, reason], count)
        yield sent
        yield dropped
        yield errors


class _RateLimit:
    """At most ``limit`` admissions in any ``window_s`` (a sliding window of admission times)."""

    def __init__(self, limit: int, window_s: float) -> None:
        self._times: deque[float] = deque(maxlen=limit)
        self._window_s = window_s

    def admit(self, now: float) -> bool:
        if len(self._times) == self._times.maxlen and now - self._times[0] < self._window_s:
            return False
        self._times.append(now)
        return True


class _Channel:
    """One webhook: its filter, rate limit, queue, worker thread and counters (the counters
    change under ``_lock``; the metrics collector only reads them)."""

    def __init__(self, name: str, webhook: WebhookConfig, *, host: str,
                 clock: Callable[[], float], backoff_initial_s: float) -> None:
        self.name = name
        self.sent = 0
        self.errors = 0
        self.dropped = dict.fromkeys(DROP_REASONS, 0)
        self._webhook = webhook
        self._min_level = AlertLevel[webhook.min_level.upper()]
        self._host = host
        self._clock = clock
        self._backoff_initial_s = backoff_initial_s
        self._limit = _RateLimit(webhook.max_per_minute, RATE_WINDOW_S)
        self._held_back: Counter[str] = Counter()
        """Kinds dropped by the rate limit since the last summary."""
        self._held_back_level = AlertLevel.INFO
        self._queue: queue.Queue[Alert | None] = queue.Queue(QUEUE_SIZE)
        self._lock = threading.Lock()
        self._finishing = threading.Event()
        self._abandoned = threading.Event()
        self._thread = threading.Thread(target=self._run, name=f"alerts-{name}", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def offer(self, alert: Alert) -> None:
        """From the caller's thread: filter, rate-limit and queue ``alert`` without blocking."""
        if alert.level < self._min_level:
            return
        with self._lock:
            if self._finishing.is_set():
                log.warning("alert after close: not sent", extra={"webhook": self.name,
                                                                  "alert_kind": alert.kind})
                return
            now = self._clock()
            self._summarize_if_due(now)
            if self._limit.admit(now):
                self._enqueue(alert)
            else:
                self.dropped["rate_limit"] += 1
                self._held_back[alert.kind] += 1
                self._held_back_level = max(self._held_back_level, alert.level)

    def finish(self) -> None:
        """Accept nothing more; the worker stops once its queue is empty."""
        with self._lock:
            self._finishing.set()
            # wakes an idle worker now; a busy one finds the queue empty within IDLE_CHECK_S
            with contextlib.suppress(queue.Full):
                self._queue.put_nowait(None)

    def join(self, timeout_s: float) -> None:
        self._thread.join(timeout_s)

    def abandon(self) -> None:
        """Stop retrying and log what is still queued (the thread is a daemon: an attempt in
        flight ends within ``timeout_s`` or with the process)."""
        self._abandoned.set()
        left = 0
        while True:
            try:
                left += self._queue.get_nowait() is not None
            except queue.Empty:
                break
        if left or self._thread.is_alive():
            log.warning("alerts not delivered before close", extra={
                "webhook": self.name, "queued": left, "in_flight": int(self._thread.is_alive())})

    def _summarize_if_due(self, now: float) -> None:
        """Queue the summary of rate-limited alerts once the limit has room (under _lock)."""
        if not self._held_back or not self._limit.admit(now):
            return
        count = self._held_back.total()
        kinds = ", ".join(f"{kind} x{n}" for kind, n in self._held_back.most_common())
        self._enqueue(Alert(
            DROPPED_KIND, self._held_back_level, WATCHDOG,
            f"{count} alerts were not sent to this webhook: over its limit of "
            f"{self._webhook.max_per_minute} a minute",
            {"dropped": str(count), "kinds": kinds}))
        self._held_back.clear()
        self._held_back_level = AlertLevel.INFO

    def _enqueue(self, alert: Alert) -> None:
        try:
            self._queue.put_nowait(alert)
        except queue.Full:
            self.dropped["queue_full"] += 1
            log.warning("alert queue full: alert dropped",
                        extra={"webhook": self.name, "alert_kind": alert.kind})

    def _run(self) -> None:
        while not self._abandoned.is_set():
            try:
                alert = self._queue.get(timeout=IDLE_CHECK_S)
            except queue.Empty:
                alert = None
            if alert is not None:
                self._deliver(alert)
            elif self._finishing.is_set() and self._queue.empty():
                return
            else:
                with self._lock:
                    self._summarize_if_due(self._clock())

    def _deliver(self, alert: Alert) -> None:
        for attempt in range(1, self._webhook.retries + 2):
            try:
                self._post(build_request(alert, self._webhook, now_ns=time.time_ns(),
                                         host=self._host))
            except WebhookError as exc:
                with self._lock:
                    self.errors += 1
                log.warning("webhook attempt failed", extra={
                    "webhook": self.name, "alert_kind": alert.kind, "attempt": attempt,
                    "error": str(exc)})
                if exc.permanent or attempt > self._webhook.retries or self._abandoned.wait(
                        self._backoff_s(attempt)):
                    break
            else:
                with self._lock:
                    self.sent += 1
                return
        with self._lock:
            self.dropped["failed"] += 1
        log.error("alert not delivered", extra={"webhook": self.name, "alert_kind": alert.kind})

    def _post(self, request: WebhookRequest) -> None:
        """One attempt; raises WebhookError (whose text never holds the url)."""
        # the url is http(s) only: WebhookConfig validates it
        http_request = urllib.request.Request(request.url, data=request.body,  # noqa: S310
                                              headers=dict(request.headers), method="POST")
        try:
            with urllib.request.urlopen(http_request,  # noqa: S310
                                        timeout=self._webhook.timeout_s) as response:
                body = response.read(MAX_REPLY_BYTES)
        except urllib.error.HTTPError as exc:
            exc.close()
            raise WebhookError(f"HTTP {exc.code}", permanent=400 <= exc.code < 500
                               and exc.code not in (408, 429)) from None
        except (OSError, http.client.HTTPException, ValueError) as exc:
            reason = exc.reason if isinstance(exc, urllib.error.URLError) else exc
            raise WebhookError(f"{type(exc).__name__}: {reason}") from None
        check_reply(self._webhook.kind, body)

    def _backoff_s(self, attempt: int) -> float:
        return float(min(self._backoff_initial_s * 2 ** (attempt - 1), BACKOFF_MAX_S))

