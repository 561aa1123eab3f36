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
handler), counted in ``handler_errors``, and the remaining handlers still run.

A handler is *failing* (its plugin shows DEGRADED) when it raised on each of the last
``failing_after`` events of a type, the latest included; the next event it handles without
raising ends that. Every handler of a type sees every event of it, so "consecutive" is read
from the type's publish count at each failure: the success path costs nothing at all. Read
from another thread (a /metrics scrape), a failing handler shows as not failing while an
event of its type is being dispatched (the count is one ahead until the handler raises);
the main thread (status) always sees it settled.
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


class EventBus:
    """Synchronous publish/subscribe over event types (see the module docstring)."""

    def __init__(self, failing_after: int = DEFAULT_FAILING_AFTER) -> None:
        if failing_after < 1:
            raise ValueError(f"failing_after must be >= 1, got {failing_after}")
        self.failing_after = failing_after
        self._handlers: list[tuple[Handler, ...]] = [() for _ in range(MAX_EVENT_TYPE)]
        self.published: list[int] = [0] * MAX_EVENT_TYPE
        """Events published per type, read by the metrics collector."""
        self.handler_errors: Counter[tuple[int, str]] = Counter()
        """Exceptions raised by handlers, keyed by (event type, handler name)."""
        self._last_error_log: dict[str, float] = {}
        self._failure_runs: dict[tuple[int, Handler], list[int]] = {}
        """(event type, handler) -> [consecutive failures, publish count at the last one]."""

    def subscribe(self, event_type: int, handler: Handler) -> None:
        """Call ``handler(record)`` for every ``event_type`` published from now on."""
        self._handlers[_checked(event_type)] += (handler,)

    def unsubscribe(self, event_type: int, handler: Handler) -> None:
        """Stop calling ``handler`` for ``event_type``; unknown handlers raise ValueError."""
        handlers = list(self._handlers[_checked(event_type)])
        handlers.remove(handler)
        self._handlers[event_type] = tuple(handlers)
        self._failure_runs.pop((event_type, handler), None)

    def handlers(self, event_type: int) -> tuple[Handler, ...]:
        return self._handlers[_checked(event_type)]

    def failing(self, event_type: int, handler: Handler) -> bool:
        """Whether ``handler`` raised on each of the last ``failing_after`` events of
        ``event_type``, the latest included."""
        run = self._failure_runs.get((event_type, handler))
        return (run is not None and run[0] >= self.failing_after
                and run[1] == self.published[_checked(event_type)])

    def publish(self, event_type: int, record: Any) -> None:
        """Dispatch ``record`` to the handlers of ``event_type``, synchronously."""
        self.published[event_type] += 1
        for handler in self._handlers[event_type]:
            try:
                handler(record)
            except BaseException:  # isolation is the contract: see the module docstring
                self._handler_failed(event_type, handler)

    def _handler_failed(self, event_type: int, handler: Handler) -> None:
        name = handler_name(handler)
        self.handler_errors[(event_type, name)] += 1
        self._count_run(event_type, handler, name)
        now = time.monotonic()
        if now - self._last_error_log.get(name, -_ERROR_LOG_INTERVAL_S) >= _ERROR_LOG_INTERVAL_S:
            self._last_error_log[name] = now
            log.exception(
                "handler raised; the other handlers still run",
                extra={"handler": name, "event": _type_name(event_type),
                       "errors": self.handler_errors[(event_type, name)]},
            )

    def _count_run(self, event_type: int, handler: Handler, name: str) -> None:
        """Extend or restart ``handler``'s run of failures: it continues when the previous
        failure was on the previous event of the type (or on this one: an event of the same
        type published from inside a handler advances the count mid-dispatch)."""
        seq = self.published[event_type]
        run = self._failure_runs.setdefault((event_type, handler), [0, 0])
        run[0] = run[0] + 1 if run[1] >= seq - 1 and run[0] else 1
        run[1] = seq
        if run[0] == self.failing_after:
            log.error("handler failing: it raised on each of its last calls",
                      extra={"handler": name, "event": _type_name(event_type),
                             "consecutive_failures": run[0]})


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
