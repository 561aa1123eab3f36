"""``bench bus``: our synchronous EventBus against vn.py's queue-and-thread EventEngine.

Both dispatch one tick to one subscribed handler. Ours runs the handler inside
``publish``; vn.py's ``put`` queues the event for its engine thread, so its figures include
the queue, a thread wake-up and the GIL hand-over, which is exactly the cost of its design.

Throughput: N events end to end (first publish/put to the handler's N-th call). Latency:
publish/put call to handler entry, time.perf_counter_ns on both ends, one sample per event.
vn.py's latency is taken paced (one event in flight: put, wait until handled, put the next),
the way ticks arrive; a burst would measure its queue depth instead.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np
from vnpy.event import Event, EventEngine

from hft.bench.common import (
    BenchError,
    Result,
    median_rate,
    percentiles,
    result,
    sample_tick,
    vnpy_burst,
)
from hft.daemons.runtime.bus import EventBus
from hft.daemons.runtime.events import EventType

PEER = "vnpy.event.EventEngine (queue.Queue + engine thread), Event carrying a tick object"
_VNPY_TICK = "eTick."
_TICK = int(EventType.MARKET_DATA)
_DRAIN_TIMEOUT_S = 60.0


@dataclass(slots=True)
class _TickObject:
    """What vn.py's gateways put in an Event: a Python object per tick (a few of its fields)."""

    symbol: str
    exchange: str
    last_price: float
    volume: float
    bid_price_1: float
    ask_price_1: float


class _Counter:
    """The handler both sides run: count, and note the time of the last expected event.

    The same handler on both sides, so the difference measured is the dispatch alone.
    """

    def __init__(self, expected: int) -> None:
        self.expected = expected
        self.count = 0
        self.last_ns = 0
        self.done = threading.Event()

    def handle(self, _event: object) -> None:
        self.count += 1
        if self.count == self.expected:
            self.last_ns = time.perf_counter_ns()
            self.done.set()


def run(quick: bool) -> list[Result]:
    """Throughput and latency of both, in one run."""
    n_ours = 20_000 if quick else 1_000_000
    n_theirs = 50_000 if quick else 200_000
    n_latency_ours = 20_000 if quick else 1_000_000
    n_latency_theirs = 2_000 if quick else 20_000
    repeats = 3 if quick else 5
    tick = sample_tick()[0]

    bus = EventBus()
    ours_rate = median_rate(lambda: _bus_burst(bus, tick, n_ours), n_ours, repeats)
    ours_latency = percentiles(_bus_latency(bus, tick, n_latency_ours))

    event = Event(_VNPY_TICK, _TickObject("IF2101", "CFFEX", 5298.0, 1234.0, 5297.8, 5298.2))
    engine = EventEngine()
    engine.start()
    try:
        theirs_rate = median_rate(lambda: _engine_burst(engine, event, n_theirs), n_theirs,
                                  repeats)
        theirs_latency = percentiles(_engine_latency(engine, event, n_latency_theirs))
    finally:
        engine.stop()  # joins its timer thread: up to its 1 s interval, outside every timing

    ours = {"events_per_s": ours_rate, **ours_latency}
    theirs = {"events_per_s": theirs_rate, **theirs_latency}
    return [result(
        "bus", ours, quick=quick,
        params={"n": n_ours, "n_latency": n_latency_ours, "repeats": repeats,
                "mode": "synchronous, same thread", "record": "MARKET_DATA numpy record",
                "peer_n": n_theirs, "peer_n_latency": n_latency_theirs,
                "peer_mode": "queue + engine thread; latency paced, one event in flight"},
        baseline=(PEER, theirs),
        ratio=ours_rate / theirs_rate,
        target={"ratio_min": 20.0, "p99_us_max": 5.0},
    )]


def _bus_burst(bus: EventBus, record: np.void, n: int) -> int:
    counter = _Counter(n)
    bus.subscribe(_TICK, counter.handle)
    try:
        publish = bus.publish
        start = time.perf_counter_ns()
        for _ in range(n):
            publish(_TICK, record)
    finally:
        bus.unsubscribe(_TICK, counter.handle)
    return counter.last_ns - start


def _bus_latency(bus: EventBus, record: np.void, n: int) -> np.ndarray:
    starts: list[int] = []
    ends: list[int] = []
    stamp = ends.append
    clock = time.perf_counter_ns

    def handler(_record: object) -> None:
        stamp(clock())

    bus.subscribe(_TICK, handler)
    try:
        publish, note = bus.publish, starts.append
        for _ in range(n):
            started = clock()
            publish(_TICK, record)
            note(started)
    finally:
        bus.unsubscribe(_TICK, handler)
    return np.subtract(ends, starts)


def _engine_burst(engine: EventEngine, event: Event, n: int) -> int:
    counter = _Counter(n)
    return vnpy_burst(engine, _VNPY_TICK, event, counter.handle, counter, n, _DRAIN_TIMEOUT_S)


def _engine_latency(engine: EventEngine, event: Event, n: int) -> np.ndarray:
    starts: list[int] = []
    ends: list[int] = []
    handled = threading.Event()
    stamp, clock, signal = ends.append, time.perf_counter_ns, handled.set

    def handler(_event: Any) -> None:
        stamp(clock())
        signal()

    engine.register(_VNPY_TICK, handler)
    try:
        _paced(engine.put, event, starts.append, handled, n)
    finally:
        engine.unregister(_VNPY_TICK, handler)
    return np.subtract(ends, starts)


def _paced(put: Callable[[Event], None], event: Event, note: Callable[[int], None],
           handled: threading.Event, n: int) -> None:
    clock = time.perf_counter_ns
    for i in range(n):
        started = clock()
        put(event)
        note(started)
        if not handled.wait(_DRAIN_TIMEOUT_S):
            raise BenchError(f"vn.py EventEngine did not handle event {i} within "
                             f"{_DRAIN_TIMEOUT_S:.0f} s")
        handled.clear()
