"""Periodic timers for the main loop: a heap of deadlines on the monotonic clock.

The loop asks ``next_due_ns`` once per iteration (one attribute read), so timers cost
nothing until one is due. A timer that falls more than a period behind (a long plugin
call) skips the missed firings instead of bursting to catch up.
"""

from __future__ import annotations

import heapq
import itertools
from collections.abc import Callable
from dataclasses import dataclass

NEVER = 2**63 - 1
"""``next_due_ns`` when no timer is set."""


@dataclass
class _Timer:
    interval_ns: int
    callback: Callable[[], object]


class TimerQueue:
    """Timers by id; callbacks run from ``run_due`` on the caller's (main) thread."""

    def __init__(self, on_error: Callable[[Callable[[], object]], None]) -> None:
        self._on_error = on_error
        self._timers: dict[int, _Timer] = {}
        self._heap: list[tuple[int, int]] = []
        self._ids = itertools.count(1)
        self.next_due_ns = NEVER

    def __len__(self) -> int:
        return len(self._timers)

    def add(self, interval_s: float, callback: Callable[[], object], now_ns: int) -> int:
        """Call ``callback`` every ``interval_s`` from ``now_ns`` on; returns the timer id."""
        if not interval_s > 0:
            raise ValueError(f"timer interval must be > 0 s, got {interval_s!r}")
        timer_id = next(self._ids)
        interval_ns = max(1, round(interval_s * 1e9))
        self._timers[timer_id] = _Timer(interval_ns, callback)
        self._push(now_ns + interval_ns, timer_id)
        return timer_id

    def cancel(self, timer_id: int) -> None:
        """Forget a timer; its heap entry is dropped when it comes up. Unknown ids are ignored
        so a plugin may cancel a timer its context also releases."""
        self._timers.pop(timer_id, None)

    def run_due(self, now_ns: int) -> int:
        """Fire every timer due at ``now_ns``; returns how many fired."""
        fired = 0
        while self._heap and self._heap[0][0] <= now_ns:
            due_ns, timer_id = heapq.heappop(self._heap)
            timer = self._timers.get(timer_id)
            if timer is None:
                continue
            next_ns = due_ns + timer.interval_ns
            self._push(next_ns if next_ns > now_ns else now_ns + timer.interval_ns, timer_id)
            fired += 1
            try:
                timer.callback()
            except BaseException:  # a failing (or exiting) callback must not stop the loop
                self._on_error(timer.callback)
        self.next_due_ns = self._heap[0][0] if self._heap else NEVER
        return fired

    def _push(self, due_ns: int, timer_id: int) -> None:
        heapq.heappush(self._heap, (due_ns, timer_id))
        self.next_due_ns = min(self.next_due_ns, due_ns)
