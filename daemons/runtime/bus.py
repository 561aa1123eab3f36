"""The in-process EventBus: synchronous, zero-copy dispatch by event type.

``publish(type, record)`` calls every handler subscribed to ``type`` with the record object
itself, in subscription order, before it returns. Nothing is queued, copied or allocated per
event: the handler table is a list indexed by type holding immutable tuples, replaced (not
mutated) on subscribe/unsubscribe, so a handler may (un)subscribe during dispatch and the
dispatch in progress still sees the table it started with.

Ordering: a publish from inside a handler is dispatched at once and completely (depth
first, like a function call) before the outer dispatch moves on to its next handler. So a
strategy that publishes ORDER_REQ while handling a tick has risk see the order before the
remaining tick handlers run, and every handler sees the events a single producer publishes
in the order it published them.

Records are only valid for the duration of the call: the publisher may reuse its buffer
(a journal slot view, a preallocated record) for the next event. A handler that keeps data
copies the fields it needs.

A handler that raises is isolated: the exception (any BaseException, SystemExit and
KeyboardInterrupt included: a handler's exit is its own failure, never the daemon's; the host
turns real signals into a stop request, so none is raised by them) is logged (rate-limited per
handler), counted in ``handler_errors``, and the remaining handlers still run. Each
subscription also counts its consecutive failures: once ``failing_after`` calls in a row
raised it is *failing* (its plugin shows DEGRADED) until a call returns normally again. The
success path pays one attribute test for that, nothing more.
"""

from __future__ import annotations

import logging
import time
from collections import Counter
from collections.abc import Callable
from typing import Any

from hft.daemons.runtime.events import MAX_EVENT_TYPE, EventType

Handler = Callable[[Any], object]

log = logging.getLogger(__name__)

_ERROR_LOG_INTERVAL_S = 1.0
DEFAULT_FAILING_AFTER = 10
"""Consecutive failures after which a handler counts as failing (daemons.NAME.failing_after)."""


class _Subscription:
    """One handler in the dispatch table with its run of consecutive failures."""

    __slots__ = ("failures", "handler")

    def __init__(self, handler: Handler) -> None:
        self.handler = handler
        self.failures = 0


class EventBus:
    """Synchronous publish/subscribe over event types (see the module docstring)."""

    def __init__(self, failing_after: int = DEFAULT_FAILING_AFTER) -> None:
        if failing_after < 1:
            raise ValueError(f"failing_after must be >= 1, got {failing_after}")
        self.failing_after = failing_after
        self._handlers: list[tuple[_Subscription, ...]] = [() for _ in range(MAX_EVENT_TYPE)]
        self.published: list[int] = [0] * MAX_EVENT_TYPE
        """Events published per type, read by the metrics collector."""
        self.handler_errors: Counter[tuple[int, str]] = Counter()
        """Exceptions raised by handlers, keyed by (event type, handler name)."""
        self._last_error_log: dict[str, float] = {}

    def subscribe(self, event_type: int, handler: Handler) -> None:
        """Call ``handler(record)`` for every ``event_type`` published from now on."""
        self._handlers[_checked(event_type)] += (_Subscription(handler),)

    def unsubscribe(self, event_type: int, handler: Handler) -> None:
        """Stop calling ``handler`` for ``event_type``; unknown handlers raise ValueError."""
        subscriptions = list(self._handlers[_checked(event_type)])
        subscriptions.remove(self._find(event_type, handler))
        self._handlers[event_type] = tuple(subscriptions)

    def handlers(self, event_type: int) -> tuple[Handler, ...]:
        return tuple(s.handler for s in self._handlers[_checked(event_type)])

    def failing(self, event_type: int, handler: Handler) -> bool:
        """Whether ``handler``'s last ``failing_after`` calls for ``event_type`` all raised
        (False once it is unsubscribed)."""
        return any(s.handler == handler and s.failures >= self.failing_after
                   for s in self._handlers[_checked(event_type)])

    def publish(self, event_type: int, record: Any) -> None:
        """Dispatch ``record`` to the handlers of ``event_type``, synchronously."""
        self.published[event_type] += 1
        for subscription in self._handlers[event_type]:
            try:
                subscription.handler(record)
            except BaseException:  # isolation is the contract: see the module docstring
                self._handler_failed(event_type, subscription)
            else:
                if subscription.failures:
                    self._handler_recovered(event_type, subscription)

    def _find(self, event_type: int, handler: Handler) -> _Subscription:
        for subscription in self._handlers[_checked(event_type)]:
            if subscription.handler == handler:
                return subscription
        raise ValueError(f"{handler_name(handler)} is not subscribed to {_type_name(event_type)}")

    def _handler_failed(self, event_type: int, subscription: _Subscription) -> None:
        subscription.failures += 1
        name = handler_name(subscription.handler)
        self.handler_errors[(event_type, name)] += 1
        if subscription.failures == self.failing_after:
            log.error("handler failing: it raised on every one of its last calls",
                      extra={"handler": name, "event": _type_name(event_type),
                             "consecutive_failures": subscription.failures})
        now = time.monotonic()
        if now - self._last_error_log.get(name, -_ERROR_LOG_INTERVAL_S) >= _ERROR_LOG_INTERVAL_S:
            self._last_error_log[name] = now
            log.exception(
                "handler raised; the other handlers still run",
                extra={"handler": name, "event": _type_name(event_type),
                       "errors": self.handler_errors[(event_type, name)]},
            )

    def _handler_recovered(self, event_type: int, subscription: _Subscription) -> None:
        if subscription.failures >= self.failing_after:
            log.info("handler recovered: a call returned normally",
                     extra={"handler": handler_name(subscription.handler),
                            "event": _type_name(event_type),
                            "consecutive_failures": subscription.failures})
        subscription.failures = 0


def handler_name(handler: Callable[..., object]) -> str:
    """A stable, readable name for metrics and logs: ``module.Class.method``."""
    target = getattr(handler, "__func__", handler)
    module = getattr(target, "__module__", "?")
    return f"{module}.{getattr(target, '__qualname__', repr(target))}"


def _type_name(event_type: int) -> str:
    try:
        return EventType(event_type).name
    except ValueError:
        return str(event_type)


def _checked(event_type: int) -> int:
    if not 0 < event_type < MAX_EVENT_TYPE:
        raise ValueError(f"unknown event type {event_type}; expected one of {[int(t) for t in EventType]}")
    return event_type
