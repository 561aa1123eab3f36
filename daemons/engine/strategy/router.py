"""The container's side of trading: instruments it trades, ORDER_REQ out, returns booked back.

For each instrument: reference data (exchange, multiplier, price tick), the latest prices,
the CTP position (four buckets) and the orders in flight. An instrument with an order in
flight gets no new order until every one of them is settled, so a change of the net position
is never sent twice; an order is settled once its fills add up to its volume, or to the
volume traded its terminal RTN_ORDER reports (CTP may report ALL_TRADED before the trades).
A RISK_REJECT or a REJECTED order holds the instrument back for ``retry_after_s``. An order
still working ``cancel_after_s`` after it was sent (a resting limit order, or one whose
returns never came) gets a CANCEL_REQ, and another every ``cancel_after_s`` until it ends:
its terminal RTN_ORDER settles it and the instrument trades again. Both run on the data's
clock (the latest ``ts_ns`` of a tick or TIMER), so a backtest waits and cancels where live
trading would.

The container's own fills move its position at once; a POS_UPDATE for its account is taken
as the truth whenever nothing is in flight (start-up positions, manual trades), and a change
it brings goes to the house party, priced at the latest price. The container assumes it is
the only trader of its account in the instruments it trades.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from hft.daemons.engine.factors.base import field_reader
from hft.daemons.engine.products import product_of
from hft.daemons.engine.strategy.ledger import Party, Share, allocate, instrument_id
from hft.daemons.engine.strategy.position import Position
from hft.daemons.refdata.instruments import Product
from hft.daemons.runtime.bus import EventBus
from hft.daemons.runtime.events import (
    BAR_DTYPE,
    FINAL_STATUSES,
    ORDER_DTYPE,
    POS_DTYPE,
    REJECT_DTYPE,
    RTN_ORDER_DTYPE,
    RTN_TRADE_DTYPE,
    TICK_DTYPE,
    TIMER_DTYPE,
    UNCOUNTED,
    Direction,
    EventType,
    OrderFlag,
    OrderStatus,
    PosDirection,
    PriceType,
    empty,
    record_struct,
)

_ORDER_REQ = int(EventType.ORDER_REQ)
_TICK = field_reader(TICK_DTYPE, "ts_ns", "flags", "trading_day", "instrument_index", "instrument",
                     "last_price", "bid_price", "ask_price")
_BID1, _ASK1 = 6, 11  # positions of bid_price[0] and ask_price[0] in a _TICK tuple
_BAR = field_reader(BAR_DTYPE, "trading_day", "instrument_index", "instrument", "close")
_TRADE = field_reader(RTN_TRADE_DTYPE, "order_ref", "price", "volume", "direction", "offset")
_ORDER = field_reader(RTN_ORDER_DTYPE, "order_ref", "volume_traded", "status")
_REJECT = field_reader(REJECT_DTYPE, "order_ref")
_ADOPT = field_reader(ORDER_DTYPE, "flags", "source", "instrument", "order_ref", "volume",
                      "direction")
_CLOCK = field_reader(TIMER_DTYPE, "ts_ns")
_CANCEL_REQ = int(EventType.CANCEL_REQ)
_RECOVERED = int(OrderFlag.RECOVERED)
"""A plain int: ``int & IntFlag`` runs enum's Python ``__and__`` (0.7 µs) on every ORDER_REQ."""
_POSITION = field_reader(POS_DTYPE, "instrument", "account", "direction", "position",
                         "today_position", "yd_position", "open_cost")


class Instrument:
    """One instrument the container trades."""

    __slots__ = ("ask", "bid", "blocked_until_ns", "exchange", "id", "index", "involved", "key",
                 "last", "multiplier", "open_orders", "position", "precision", "stale", "tick",
                 "trading_day")

    def __init__(self, key: bytes, product: Product) -> None:
        self.key = key
        self.id = instrument_id(key)
        self.involved = False
        """A child targeted it or the account holds it (it is shown; others are only quoted)."""
        self.exchange = product.exchange
        self.multiplier = float(product.multiplier)
        self.tick = product.price_tick
        self.precision = product.precision
        self.index = -1
        self.trading_day = 0
        self.last = self.bid = self.ask = math.nan
        self.position = Position()
        self.open_orders = 0
        self.blocked_until_ns = 0
        self.stale = False
        """Its net target may differ from its position: rebalance when it can trade."""

    def order_price(self, buy: bool, slippage_ticks: int) -> float:
        """The marketable limit: the opposite best quote (the last price without one),
        ``slippage_ticks`` further; NaN with no price at all."""
        quote = self.ask if buy else self.bid
        price = quote if quote == quote else self.last
        price += (slippage_ticks if buy else -slippage_ticks) * self.tick
        return round(price, self.precision)


@dataclass(slots=True, eq=False)
class Order:
    """One ORDER_REQ in flight."""

    instrument: Instrument
    sign: int
    """+1 buy, -1 sell."""
    volume: int
    shares: tuple[Share, ...]
    cancel_due_ns: int
    """Data-clock time at which it gets a CANCEL_REQ if it still works (when cancels are on)."""
    filled: int = 0
    final: int | None = None
    """Volume traded as its terminal RTN_ORDER reported it; None while it works."""

    @property
    def settled(self) -> bool:
        return self.filled >= (self.volume if self.final is None else self.final)


class OrderRouter:
    """ORDER_REQ out, RTN_TRADE/RTN_ORDER/RISK_REJECT/POS_UPDATE in (module docstring).

    ``on_change(instrument)`` is called when an instrument may need a rebalance: an order
    settled, a POS_UPDATE moved its position, or a tick came while it was stale.
    """

    def __init__(self, bus: EventBus, *, source: int, account: str, price_type: PriceType,
                 slippage_ticks: int, retry_after_s: float, cancel_after_s: float,
                 house: Party, on_change: Callable[[Instrument], None]) -> None:
        self.instruments: dict[bytes, Instrument | None] = {}
        """Every instrument seen, quoted from its first tick; None: not tradable."""
        self.orders: dict[int, Order] = {}
        self.sent = self.fills = self.rejects = self.cancels = 0
        self.clock_ns = 0
        """The data's clock: the latest ``ts_ns`` of a tick or TIMER."""
        self.tick_ns = 0
        """The ``ts_ns`` of the last tick (when its producer made it: hft_md's receive time)."""
        self._bus = bus
        self.source = source
        """The ``source`` of its ORDER_REQs; returns carry it back."""
        self._account = account.encode()
        self._price_type = int(price_type)
        self._slippage_ticks = slippage_ticks
        self._retry_after_ns = int(retry_after_s * 1e9)
        self._cancel_after_ns = int(cancel_after_s * 1e9)  # 0: never
        self._house = house
        self._on_change = on_change
        self._next_ref = time.time_ns() // 1000  # above any ref of an earlier run today
        record = empty(EventType.ORDER_REQ)
        self._view = record.view("u1").data
        self._out = record[0]
        self._pack = record_struct(EventType.ORDER_REQ).pack_into
        cancel = empty(EventType.CANCEL_REQ)
        self._cancel_view = cancel.view("u1").data
        self._cancel_out = cancel[0]
        self._pack_cancel = record_struct(EventType.CANCEL_REQ).pack_into

    def instrument(self, key: bytes) -> Instrument:
        """The instrument to trade (ValueError if it cannot be traded)."""
        instrument = self._lookup(key)
        if instrument is None:
            raise ValueError(f"cannot trade {instrument_id(key)!r}: its product is not in the "
                             "product table")
        instrument.involved = True
        return instrument

    def involved(self) -> list[Instrument]:
        """The instruments traded or held (a copy: safe from the metrics thread)."""
        return [i for i in list(self.instruments.values()) if i is not None and i.involved]

    def _lookup(self, key: bytes) -> Instrument | None:
        try:
            return self.instruments[key]
        except KeyError:  # its first record: a table lookup once
            product = product_of(instrument_id(key))
            instrument = self.instruments[key] = Instrument(key, product) if product else None
            return instrument

    def can_trade(self, instrument: Instrument) -> bool:
        if instrument.open_orders:
            return False
        return self.clock_ns >= instrument.blocked_until_ns

    def send(self, instrument: Instrument, delta: int, order_shares: tuple[Share, ...]) -> bool:
        """Send the legs that move the net position by ``delta``; False if there is no price
        to send them at yet."""
        buy = delta > 0
        price = (math.nan if self._price_type == PriceType.MARKET
                 else instrument.order_price(buy, self._slippage_ticks))
        if self._price_type != PriceType.MARKET and price != price:
            return False
        for direction, offset, volume in instrument.position.legs(delta, instrument.exchange):
            ref = self._next_ref
            self._next_ref += 1
            self.orders[ref] = Order(instrument, 1 if buy else -1, volume, order_shares,
                                     self.clock_ns + self._cancel_after_ns)
            instrument.open_orders += 1
            self.sent += 1
            self._pack(self._view, 0, 0, time.time_ns(), _ORDER_REQ, 0, instrument.trading_day,
                       instrument.index, self.source, instrument.key,
                       instrument.exchange.encode(), ref, price, volume, direction, offset,
                       self._price_type, 0, self._account, 0)
            self._bus.publish(_ORDER_REQ, self._out)
        return True

    def adopt(self, record: Any) -> None:
        """An ORDER_REQ of this container's ``source`` sent before the engine restarted and
        not settled since (``OrderFlag.RECOVERED``, from the order link): in flight again, so
        its instrument waits for its returns instead of sending the same change twice. Its
        fills go to the house party (which child wanted it is not known any more)."""
        flags, source, key, ref, volume, direction = _ADOPT(record)
        if not flags & _RECOVERED or source != self.source or ref in self.orders:
            return
        instrument = self._lookup(key)
        if instrument is None:
            return
        self.orders[ref] = Order(instrument, 1 if direction == Direction.BUY else -1, volume,
                                 ((self._house.holding(key), 1.0),),
                                 self.clock_ns + self._cancel_after_ns)
        instrument.open_orders += 1
        self._next_ref = max(self._next_ref, ref + 1)

    def on_tick(self, record: Any) -> None:
        values = _TICK(record)
        self.tick_ns = values[0]
        if values[0] > self.clock_ns:
            self.clock_ns = values[0]
        if values[1] & UNCOUNTED:  # not a price to trade on (a settlement print, a stale replay)
            return
        instrument = self._lookup(values[4])
        if instrument is not None:
            self._quote(instrument, values[2], values[3], values[5])
            instrument.bid, instrument.ask = values[_BID1], values[_ASK1]

    def on_bar(self, record: Any) -> None:
        day, index, key, close = _BAR(record)
        instrument = self._lookup(key)
        if instrument is not None:
            self._quote(instrument, day, index, close)

    def _quote(self, instrument: Instrument, day: int, index: int, price: float) -> None:
        if day > instrument.trading_day:
            if instrument.trading_day:
                instrument.position.roll()
            instrument.trading_day = day
        instrument.index = index
        instrument.last = price
        if instrument.stale:
            self._on_change(instrument)

    def on_timer(self, record: Any) -> None:
        """Advance the data clock; cancel what has worked too long."""
        self.clock_ns = now = max(self.clock_ns, _CLOCK(record)[0])
        if not self._cancel_after_ns:
            return
        for ref, order in list(self.orders.items()):
            if order.final is None and now >= order.cancel_due_ns:
                order.cancel_due_ns = now + self._cancel_after_ns
                self._cancel(ref, order.instrument)

    def _cancel(self, ref: int, instrument: Instrument) -> None:
        self.cancels += 1
        self._pack_cancel(self._cancel_view, 0, 0, time.time_ns(), _CANCEL_REQ, 0,
                          instrument.trading_day, instrument.index, self.source, instrument.key,
                          instrument.exchange.encode(), ref, b"", self._account, 0)
        self._bus.publish(_CANCEL_REQ, self._cancel_out)

    def on_trade(self, record: Any) -> None:
        ref, price, volume, direction, offset = _TRADE(record)
        order = self.orders.get(ref)
        if order is None:
            return
        instrument = order.instrument
        instrument.position.fill(direction, offset, volume)
        allocate(order.shares, volume * (1 if direction == Direction.BUY else -1), price,
                 instrument.multiplier)
        if instrument.last != instrument.last:
            instrument.last = price
        order.filled += volume
        self.fills += 1
        if order.settled:
            self._settle(ref, order)

    def on_order(self, record: Any) -> None:
        ref, traded, status = _ORDER(record)
        order = self.orders.get(ref)
        if order is not None and status in FINAL_STATUSES:
            order.final = traded
            if status == OrderStatus.REJECTED:
                self._hold_back(order.instrument)
            if order.settled:
                self._settle(ref, order)

    def on_reject(self, record: Any) -> None:
        (ref,) = _REJECT(record)
        order = self.orders.get(ref)
        if order is not None:
            self.rejects += 1
            order.final = 0
            self._hold_back(order.instrument)
            self._settle(ref, order)

    def on_position(self, record: Any) -> None:
        key, account, direction, held, today, yesterday, open_cost = _POSITION(record)
        if self._account and account.rstrip(b"\0") != self._account:
            return
        try:
            instrument = self.instrument(key)
        except ValueError:
            return  # not an instrument the container can trade
        if instrument.open_orders:
            return  # its fills are on their way; they move the position
        position = instrument.position
        before = position.net
        if direction == PosDirection.LONG:
            position.long_today, position.long_yesterday = today, yesterday
        else:
            position.short_today, position.short_yesterday = today, yesterday
        change = position.net - before
        if change:
            price = instrument.last if instrument.last == instrument.last else (
                open_cost / (held * instrument.multiplier) if held else math.nan)
            allocate(((self._house.holding(key), 1.0),), change, price, instrument.multiplier)
            self._on_change(instrument)

    def _settle(self, ref: int, order: Order) -> None:
        del self.orders[ref]
        order.instrument.open_orders -= 1
        self._on_change(order.instrument)

    def _hold_back(self, instrument: Instrument) -> None:
        instrument.blocked_until_ns = self.clock_ns + self._retry_after_ns
