"""The plugins ``bench engine`` and ``bench tick-to-order`` load into real daemons next to the
shipped ones.

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
  tick's figure, as a return that arrived first would). At stop it writes the (seq, tick ns,
  order ns, order_ref) rows to ``samples_path`` as a .npy file. With ``fill = false`` the
  returns come from the risk daemon instead (``bench tick-to-order``).
- :class:`GatewayProbe`, the gateway of ``bench tick-to-order``'s risk daemon: it stamps each
  ORDER_SEND's arrival and fills it at once, from inside the ORDER_SEND's dispatch as the
  simulated exchange would; at stop it writes (order_ref, ns) rows to ``samples_path``.

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
    OrderStatus,
    empty,
)
from hft.daemons.runtime.plugins import Plugin, PluginContext

_TICK = field_reader(TICK_DTYPE, "seq", "instrument")
_ORDER = field_reader(ORDER_DTYPE, "source", "instrument", "exchange", "order_ref", "price",
                      "volume", "direction", "offset", "account")  # in record order
_RTN_TRADE = int(EventType.RTN_TRADE)
_RTN_ORDER = int(EventType.RTN_ORDER)


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
    fill: bool = True


class OrderProbe(Plugin):
    """Plugin: stamps ORDER_REQs against the tick that caused them, and fills them."""

    Config = ProbeConfig

    def init(self, ctx: PluginContext) -> None:
        super().init(ctx)
        self.config: ProbeConfig = ctx.config
        self._samples = np.zeros((self.config.capacity, 4), dtype=np.int64)
        self._count = 0
        self._tick = (-1, 0)  # (seq, monotonic ns on arrival) of the tick being handled
        self._fills: list[tuple[Any, ...]] = []
        self._trade = empty(EventType.RTN_TRADE)[0]
        ctx.subscribe(EventType.MARKET_DATA, self.on_tick)
        ctx.subscribe(EventType.ORDER_REQ, self.on_order)
        if self.config.fill:
            ctx.add_poller(self.fill)

    def on_tick(self, record: Any) -> None:
        self._tick = (_TICK(record)[0], time.monotonic_ns())
        if self._fills:  # read in one poll with the tick before: its fill came in between
            self.fill()

    def on_order(self, record: Any) -> None:
        now = time.monotonic_ns()
        order = _ORDER(record)
        if self._count < len(self._samples):
            self._samples[self._count] = *self._tick, now, order[3]
            self._count += 1
        if self.config.fill:
            self._fills.append(order)

    def fill(self) -> int:
        """Fill every order taken since the last call, at its price, in full."""
        fills, self._fills = self._fills, []
        trade = self._trade
        for source, instrument, exchange, ref, price, volume, direction, offset, account in fills:
            trade["instrument"], trade["exchange"], trade["order_ref"] = instrument, exchange, ref
            trade["price"], trade["volume"], trade["source"] = price, volume, source
            trade["direction"], trade["offset"], trade["account"] = direction, offset, account
            trade["ts_ns"] = time.time_ns()
            self.ctx.bus.publish(_RTN_TRADE, trade)
        return len(fills)

    def stop(self) -> None:
        np.save(self.config.samples_path, self._samples[:self._count])


class GatewayProbe(Plugin):
    """Risk daemon plugin: stamps each ORDER_SEND's arrival and fills it in full at once."""

    Config = ProbeConfig

    def init(self, ctx: PluginContext) -> None:
        super().init(ctx)
        self.config: ProbeConfig = ctx.config
        self._samples = np.zeros((self.config.capacity, 2), dtype=np.int64)
        self._count = 0
        self._trade = empty(EventType.RTN_TRADE)[0]
        self._status = empty(EventType.RTN_ORDER)[0]
        self._status["status"] = OrderStatus.ALL_TRADED
        ctx.subscribe(EventType.ORDER_SEND, self.on_order)

    def on_order(self, record: Any) -> None:
        now = time.monotonic_ns()
        source, instrument, exchange, ref, price, volume, direction, offset, account = _ORDER(
            record)
        if self._count < len(self._samples):
            self._samples[self._count] = ref, now
            self._count += 1
        trade, status = self._trade, self._status
        for out in (trade, status):
            out["source"], out["instrument"], out["exchange"] = source, instrument, exchange
            out["order_ref"], out["direction"], out["offset"] = ref, direction, offset
            out["account"] = account  # the desk finds its working order by it, as from a gateway
            out["ts_ns"] = time.time_ns()
        trade["price"], trade["volume"] = price, volume
        status["price"], status["volume"], status["volume_traded"] = price, volume, volume
        self.ctx.bus.publish(_RTN_TRADE, trade)
        self.ctx.bus.publish(_RTN_ORDER, status)

    def stop(self) -> None:
        np.save(self.config.samples_path, self._samples[:self._count])
