"""The two plugins ``bench engine`` loads into a real engine daemon next to the shipped ones.

- :class:`FlipStrategy`, a child strategy that wants 1 lot, then 0, then 1 ... on alternate
  ticks, so that (its previous order filled) every tick makes one ORDER_REQ: the strategy's
  own decision costs nothing and the figure is the framework's.
- :class:`OrderProbe`, loaded first so it sees each tick before the others: it stamps each
  tick's arrival on the bus with ``time.monotonic_ns()`` and each ORDER_REQ with the seq and
  stamp of the tick that caused it and its own, and fills the order from its poller (the
  next loop iteration, as an exchange's return arrives later), so the container's
  instrument is free for the next tick. When the engine has fallen behind and reads
  several ticks in one poll, the fill is published before the next tick reaches the
  container instead, so every tick still makes its order (the fill then counts in that
  tick's figure, as a return that arrived first would). At stop it writes the (seq, tick ns, order ns) rows
  to ``samples_path`` as a .npy file.

Kept apart from ``engine.py`` so the daemon does not import vn.py (the peer) to load them.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import numpy as np
from pydantic import BaseModel, ConfigDict

from hft.daemons.engine.factors.base import field_reader
from hft.daemons.engine.strategy.child import Strategy
from hft.daemons.runtime.events import (
    ORDER_DTYPE,
    TICK_DTYPE,
    EventType,
    empty,
)
from hft.daemons.runtime.plugins import Plugin, PluginContext

_TICK = field_reader(TICK_DTYPE, "seq", "instrument")
_ORDER = field_reader(ORDER_DTYPE, "source", "instrument", "exchange", "order_ref", "price",
                      "volume", "direction", "offset")  # in record order, as they come back
_RTN_TRADE = int(EventType.RTN_TRADE)


class FlipStrategy(Strategy):
    """Child strategy: 1 lot on one tick, flat on the next, per instrument."""

    def init(self, ctx: PluginContext) -> None:
        super().init(ctx)
        self._long: dict[bytes, bool] = {}
        ctx.subscribe(EventType.MARKET_DATA, self.on_tick)

    def on_tick(self, record: Any) -> None:
        (_, key) = _TICK(record)
        long = not self._long.get(key, False)
        self._long[key] = long
        self.set_target(key, 1 if long else 0)


class ProbeConfig(BaseModel):
    model_config = ConfigDict(extra="forbid")

    samples_path: Path
    capacity: int = 1_000_000


class OrderProbe(Plugin):
    """Plugin: stamps ORDER_REQs against the tick that caused them, and fills them."""

    Config = ProbeConfig

    def init(self, ctx: PluginContext) -> None:
        super().init(ctx)
        self.config: ProbeConfig = ctx.config
        self._samples = np.zeros((self.config.capacity, 3), dtype=np.int64)
        self._count = 0
        self._tick = (-1, 0)  # (seq, monotonic ns on arrival) of the tick being handled
        self._fills: list[tuple[Any, ...]] = []
        self._trade = empty(EventType.RTN_TRADE)[0]
        ctx.subscribe(EventType.MARKET_DATA, self.on_tick)
        ctx.subscribe(EventType.ORDER_REQ, self.on_order)
        ctx.add_poller(self.fill)

    def on_tick(self, record: Any) -> None:
        self._tick = (_TICK(record)[0], time.monotonic_ns())
        if self._fills:  # read in one poll with the tick before: its fill came in between
            self.fill()

    def on_order(self, record: Any) -> None:
        now = time.monotonic_ns()
        if self._count < len(self._samples):
            self._samples[self._count] = *self._tick, now
            self._count += 1
        self._fills.append(_ORDER(record))

    def fill(self) -> int:
        """Fill every order taken since the last call, at its price, in full."""
        fills, self._fills = self._fills, []
        trade = self._trade
        for source, instrument, exchange, ref, price, volume, direction, offset in fills:
            trade["instrument"], trade["exchange"], trade["order_ref"] = instrument, exchange, ref
            trade["price"], trade["volume"], trade["source"] = price, volume, source
            trade["direction"], trade["offset"] = direction, offset
            trade["ts_ns"] = time.time_ns()
            self.ctx.bus.publish(_RTN_TRADE, trade)
        return len(fills)

    def stop(self) -> None:
        np.save(self.config.samples_path, self._samples[:self._count])
