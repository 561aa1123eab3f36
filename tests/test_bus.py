"""EventBus: synchronous in-order dispatch, isolation of failing handlers, depth-first nesting."""

from __future__ import annotations

import logging

import pytest

from hft.daemons.runtime.bus import EventBus, handler_name
from hft.daemons.runtime.events import EventType, empty

TICK, ORDER = EventType.MARKET_DATA, EventType.ORDER_REQ


def test_handlers_get_the_record_itself_in_subscription_order() -> None:
    bus = EventBus()
    record = empty(TICK)[0]
    seen: list[tuple[str, object]] = []
    bus.subscribe(TICK, lambda r: seen.append(("a", r)))
    bus.subscribe(TICK, lambda r: seen.append(("b", r)))
    bus.publish(TICK, record)
    assert [name for name, _ in seen] == ["a", "b"]
    assert all(r is record for _, r in seen)
    assert bus.published[TICK] == 1 and bus.published[ORDER] == 0


class Broken:
    def on_tick(self, record: object) -> None:
        raise RuntimeError("bad handler")


def test_a_raising_handler_is_counted_and_the_others_still_run(
        caplog: pytest.LogCaptureFixture) -> None:
    bus = EventBus()
    seen: list[int] = []
    broken = Broken()
    bus.subscribe(TICK, broken.on_tick)
    bus.subscribe(TICK, lambda r: seen.append(1))
    with caplog.at_level(logging.ERROR):
        bus.publish(TICK, None)
        bus.publish(TICK, None)
    assert seen == [1, 1]
    name = f"{__name__}.Broken.on_tick"
    assert handler_name(broken.on_tick) == name
    assert bus.handler_errors == {(int(TICK), name): 2}
    logged = [r for r in caplog.records if getattr(r, "handler", None) == name]
    assert len(logged) == 1  # rate-limited: one line per handler per second


def test_nested_publish_is_dispatched_depth_first() -> None:
    bus = EventBus()
    order: list[str] = []

    def strategy(record: object) -> None:
        order.append("strategy:tick")
        bus.publish(ORDER, "order")
        order.append("strategy:after-publish")

    bus.subscribe(TICK, strategy)
    bus.subscribe(TICK, lambda r: order.append("kline:tick"))
    bus.subscribe(ORDER, lambda r: order.append("risk:order"))
    bus.publish(TICK, "tick")
    assert order == ["strategy:tick", "risk:order", "strategy:after-publish", "kline:tick"]


def test_subscription_changes_during_dispatch_apply_to_the_next_publish() -> None:
    bus = EventBus()
    seen: list[str] = []

    def late(record: object) -> None:
        seen.append("late")

    def first(record: object) -> None:
        seen.append("first")
        bus.subscribe(TICK, late)
        bus.unsubscribe(TICK, second)

    def second(record: object) -> None:
        seen.append("second")

    bus.subscribe(TICK, first)
    bus.subscribe(TICK, second)
    bus.publish(TICK, None)
    assert seen == ["first", "second"]
    bus.unsubscribe(TICK, first)
    bus.publish(TICK, None)
    assert seen == ["first", "second", "late"]


def test_bad_subscriptions_are_refused() -> None:
    bus = EventBus()
    with pytest.raises(ValueError, match="unknown event type 0"):
        bus.subscribe(0, print)
    with pytest.raises(ValueError):
        bus.unsubscribe(TICK, print)


class Switchable:
    """Raises while ``failing`` is set; an exit, as a plugin's sys.exit() would."""

    def __init__(self) -> None:
        self.failing = True

    def on_tick(self, record: object) -> None:
        if self.failing:
            raise SystemExit("handler exit")


def test_a_handler_failing_on_every_event_is_failing_until_one_succeeds() -> None:
    bus = EventBus(failing_after=3)
    handler = Switchable()
    bus.subscribe(TICK, handler.on_tick)
    for expected in (False, False, True, True):
        bus.publish(TICK, None)  # the exit is isolated like any exception
        assert bus.failing(TICK, handler.on_tick) is expected
    handler.failing = False
    bus.publish(TICK, None)
    assert not bus.failing(TICK, handler.on_tick)
    handler.failing = True
    bus.publish(TICK, None)
    bus.publish(TICK, None)
    assert not bus.failing(TICK, handler.on_tick)  # a new run: 2 of 3
    bus.publish(TICK, None)
    assert bus.failing(TICK, handler.on_tick)
    bus.unsubscribe(TICK, handler.on_tick)
    assert not bus.failing(TICK, handler.on_tick)


def test_failures_between_successes_are_not_a_run() -> None:
    bus = EventBus(failing_after=2)
    handler = Switchable()
    bus.subscribe(TICK, handler.on_tick)
    for _ in range(6):
        bus.publish(TICK, None)
        handler.failing = not handler.failing
    assert not bus.failing(TICK, handler.on_tick)
    with pytest.raises(ValueError, match="failing_after must be >= 1"):
        EventBus(failing_after=0)


def test_a_run_goes_on_through_a_nested_publish_of_the_same_type() -> None:
    bus = EventBus(failing_after=4)
    handler = Switchable()
    nested = [True]

    def republish(record: object) -> None:
        if nested[0]:
            nested[0] = False
            bus.publish(TICK, record)  # this handler's own call fails, then the outer one

    bus.subscribe(TICK, republish)
    bus.subscribe(TICK, handler.on_tick)
    bus.publish(TICK, None)
    bus.publish(TICK, None)
    bus.publish(TICK, None)
    assert bus.failing(TICK, handler.on_tick)  # 4 failed calls in a row: 2 + 1 + 1
