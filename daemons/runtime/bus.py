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

A handler that raises is isolated: the exception is logged (rate-limited per handler), counted
in ``handler_errors``, and the remaining handlers still run.
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


class EventBus:
    """Synchronous publish/subscribe over event types (see the module docstring)."""

    def __init__(self) -> None:
        self._handlers: list[tuple[Handler, ...]] = [() for _ in range(MAX_EVENT_TYPE)]
        self.published: list[int] = [0] * MAX_EVENT_TYPE
        """Events published per type, read by the metrics collector."""
        self.handler_errors: Counter[tuple[int, str]] = Counter()
        """Exceptions raised by handlers, keyed by (event type, handler name)."""
        self._last_error_log: dict[str, float] = {}

    def subscribe(self, event_type: int, handler: Handler) -> None:
        """Call ``handler(record)`` for every ``event_type`` published from now on."""
        self._handlers[_checked(event_type)] += (handler,)

    def unsubscribe(self, event_type: int, handler: Handler) -> None:
        """Stop calling ``handler`` for ``event_type``; unknown handlers raise ValueError."""
        handlers = list(self._handlers[_checked(event_type)])
        handlers.remove(handler)
        self._handlers[event_type] = tuple(handlers)

    def handlers(self, event_type: int) -> tuple[Handler, ...]:
        return self._handlers[_checked(event_type)]

    def publish(self, event_type: int, record: Any) -> None:
        """Dispatch ``record`` to the handlers of ``event_type``, synchronously."""
        self.published[event_type] += 1
        for handler in self._handlers[event_type]:
            try:
                handler(record)
            except Exception:  # isolation is the contract: one bad handler must not stop the rest
                self._handler_failed(event_type, handler)

    def _handler_failed(self, event_type: int, handler: Handler) -> None:
        name = handler_name(handler)
        self.handler_errors[(event_type, name)] += 1
        now = time.monotonic()
        if now - self._last_error_log.get(name, -_ERROR_LOG_INTERVAL_S) >= _ERROR_LOG_INTERVAL_S:
            self._last_error_log[name] = now
            log.exception(
                "handler raised; the other handlers still run",
                extra={"handler": name, "event": _type_name(event_type),
                       "errors": self.handler_errors[(event_type, name)]},
            )


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
