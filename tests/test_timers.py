"""The main loop's timers, driven with explicit clock values."""

from __future__ import annotations

from collections.abc import Callable

import pytest

from hft.daemons.runtime.timers import NEVER, TimerQueue

MS = 1_000_000


def make_queue() -> tuple[TimerQueue, list[Callable[[], object]]]:
    failures: list[Callable[[], object]] = []
    return TimerQueue(on_error=failures.append), failures


def test_timers_fire_in_deadline_order_every_interval() -> None:
    queue, _ = make_queue()
    fired: list[str] = []
    queue.add(0.010, lambda: fired.append("10ms"), now_ns=0)
    queue.add(0.004, lambda: fired.append("4ms"), now_ns=0)
    assert queue.next_due_ns == 4 * MS
    assert queue.run_due(3 * MS) == 0
    assert queue.run_due(4 * MS) == 1
    assert queue.run_due(10 * MS) == 2
    assert fired == ["4ms", "4ms", "10ms"]
    assert queue.next_due_ns == 12 * MS


def test_a_late_timer_skips_missed_firings() -> None:
    queue, _ = make_queue()
    fired: list[int] = []
    queue.add(0.001, lambda: fired.append(1), now_ns=0)
    assert queue.run_due(50 * MS) == 1
    assert queue.next_due_ns == 51 * MS


def test_cancel() -> None:
    queue, _ = make_queue()
    fired: list[int] = []
    timer_id = queue.add(0.001, lambda: fired.append(1), now_ns=0)
    queue.cancel(timer_id)
    queue.cancel(timer_id)  # twice is harmless: a plugin and its context may both cancel
    assert queue.run_due(5 * MS) == 0
    assert (fired, len(queue), queue.next_due_ns) == ([], 0, NEVER)


def test_a_raising_callback_is_reported_and_the_others_still_run() -> None:
    queue, failures = make_queue()
    fired: list[int] = []

    def broken() -> None:
        raise RuntimeError("boom")

    queue.add(0.001, broken, now_ns=0)
    queue.add(0.001, lambda: fired.append(1), now_ns=0)
    assert queue.run_due(MS) == 2
    assert (failures, fired) == ([broken], [1])


def test_interval_must_be_positive() -> None:
    queue, _ = make_queue()
    with pytest.raises(ValueError, match="> 0"):
        queue.add(0, lambda: None, now_ns=0)
