"""The simulated exchange: a matching core that fills ORDER_SEND against recorded or live ticks.

Input: MARKET_DATA records (:meth:`SimExchange.on_tick`), ORDER_SEND (:meth:`submit`) and
CANCEL_REQ (:meth:`cancel`) records, and the data's clock (:meth:`on_time`, for TIMERs).
Output: RTN_ORDER and RTN_TRADE records, handed to ``on_return`` in the order they happen.
A returned record is a view of a buffer reused for the next one: copy it to keep it.

The rules (docs/ARCHITECTURE.md, "Simulated exchange", says why):

- Counter checks at submit: known account (13) and instrument (16), volume > 0 (15), no
  market order on SHFE/INE (80),
  duplicate (account, order_ref) (22), price on the tick grid (165) and inside the latest
  tick's limit prices (163), funds (31) and closable lots (30, 50, 51) through the
  :class:`~hft.daemons.trade.simaccount.Accounts` view. A refused order gets one REJECTED
  return with the CTP ErrorID and prompt; an accepted one a SUBMITTING return.
- Latency on the data clock: an order (and a cancel) reaches the exchange at the data time it
  was submitted plus ``order_latency_ms``; a tick stamped ``ts_ns`` shows the exchange as it
  was at ``ts_ns - feed_latency_ms``. An order is matched against the book in force when it
  arrived, before the tick that reports what happened after.
- On arrival an order first takes the displayed opposite levels it crosses, at their prices
  and up to their volumes (what an earlier order took in the same tick interval is gone); a
  limit order rests with the rest, FAK and market orders are cancelled with it, a FOK that
  cannot fill entirely is cancelled whole.
- A resting order queues behind the volume displayed at its price (``queuemodel``). Between
  two ticks, the volume traded (cumulative Volume delta) and its VWAP (Turnover delta) tell
  where trades happened: a trade beyond the order's price (LastPrice, or a VWAP past it)
  means its whole queue went, so the order fills entirely; at its price (LastPrice equal to
  it) at least ``dv x (1 - |VWAP - price| / tick)`` lots traded there (the fewest that fit
  the VWAP when the other trades were a tick or more away), at least one; that volume takes
  the lots ahead first and fills the order with the rest. Resting orders fill at their own
  price; quotes alone (an ask shown at a resting buy's price, no trade) fill nothing.
  Simulated orders never trade with each other: each meets the real market only.
- An order for an instrument without a tick yet waits for its first one, aside.
- Orders are good for the day: a new trading day cancels every working order.
- Cancels of a filled or cancelled order are refused (26), of an unknown order too (25): the
  answer is an RTN_ORDER flagged :data:`FLAG_CANCEL_REFUSED`, carrying the order's current
  state (REJECTED and no volume for an unknown order) and the error.
- Exchange order ids and trade ids are sequence numbers of this exchange, kept across
  :meth:`snapshot` / :meth:`restore`.
"""

from __future__ import annotations

import bisect
import math
from collections import deque
from collections.abc import Callable
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator

from hft.daemons.refdata.instruments import ProductTable, product_code
from hft.daemons.runtime.events import (
    CANCEL_DTYPE,
    DEPTH,
    ORDER_DTYPE,
    TICK_DTYPE,
    Direction,
    EventType,
    Offset,
    OrderStatus,
    PriceType,
    TickFlag,
    empty,
    fields_struct,
    record_struct,
)
from hft.daemons.trade import queuemodel
from hft.daemons.trade.ctperrors import PROMPTS, CtpError
from hft.daemons.trade.fees import Fees
from hft.daemons.trade.simaccount import Accounts, Contract, SimpleAccounts

_ERROR_BYTES = {int(error): text.encode() for error, text in PROMPTS.items()}

FLAG_CANCEL_REFUSED = 1
"""RTN_ORDER ``flags`` bit: this return answers a refused cancel (error_id says why)."""

_STATUS_TEXT: dict[int, bytes] = {
    OrderStatus.SUBMITTING: "报单已提交".encode(),
    OrderStatus.NOT_TRADED: "未成交".encode(),
    OrderStatus.PART_TRADED: "部分成交".encode(),
    OrderStatus.ALL_TRADED: "全部成交".encode(),
    OrderStatus.CANCELLED: "已撤单".encode(),
}
_EXPIRED_TEXT = "已撤单: 交易日结束".encode()
_TERMINAL = frozenset({OrderStatus.ALL_TRADED, OrderStatus.CANCELLED, OrderStatus.REJECTED})
ENDED_KEPT = 256
"""Ended orders a snapshot keeps, the latest: a late cancel after a restart is answered as
before it. All of a day's would make every write grow with the day (15 ms at 5,000 orders)."""

_TICK = fields_struct(TICK_DTYPE, ("ts_ns", "flags", "trading_day", "instrument", "last_price",
                                   "upper_limit_price", "lower_limit_price", "volume", "turnover",
                                   "bid_price", "ask_price", "bid_volume", "ask_volume")).unpack_from
_ORDER = fields_struct(ORDER_DTYPE, ("trading_day", "instrument_index", "source", "instrument",
                                     "order_ref", "price", "volume", "direction", "offset",
                                     "price_type", "account")).unpack_from
_CANCEL = fields_struct(CANCEL_DTYPE, ("order_ref", "order_sys_id", "account")).unpack_from
_SKIPPED_TICK = int(TickFlag.OUT_OF_SESSION | TickFlag.VOLUME_BACKWARDS)
_RTN_ORDER, _RTN_TRADE = int(EventType.RTN_ORDER), int(EventType.RTN_TRADE)
_FAR = 1 << 62
_ABSENT = -_FAR
"""A signed level price for an empty level: worse than every price."""
(_TS, _FLAGS, _DAY, _INSTRUMENT, _LAST, _UPPER, _LOWER, _VOLUME, _TURNOVER) = range(9)
_BIDS, _ASKS, _BID_VOLUMES, _ASK_VOLUMES = (9 + DEPTH * side for side in range(4))
"""Where the fields are in a ``_TICK`` tuple."""
_NO_MARKET_ORDERS = frozenset({"SHFE", "INE"})
"""Exchanges that refuse market orders."""
_STALE_LEFT, _STALE_BIDS, _STALE_ASKS = 1, 2, 4
_STALE_ALL = _STALE_LEFT | _STALE_BIDS | _STALE_ASKS
_EPSILON = 1e-6
"""Tolerance, in ticks, for prices read from floats."""
_MS = 1_000_000

Returns = Callable[[Any], None]


class SimExchangeConfig(BaseModel):
    """The simulated exchange's settings (a table of the gateway plugin's config)."""

    model_config = ConfigDict(extra="forbid")

    queue_model: Literal["risk_averse", "probabilistic"] = "risk_averse"
    queue_power: float = Field(default=1.0, gt=0.0, le=10.0)
    """The probabilistic model's f(x) = x ** power."""
    seed: int = 0
    """Seed of the probabilistic model: the same seed, ticks and orders give the same returns."""
    order_latency_ms: float = Field(default=0.0, ge=0.0, le=60_000.0)
    feed_latency_ms: float = Field(default=0.0, ge=0.0, le=60_000.0)
    accounts: dict[str, float] = Field(default_factory=lambda: {"sim": 1_000_000.0})
    """Account id -> its funds at start (CNY)."""
    fees: dict[str, Fees] = Field(default_factory=dict)
    """Product code (``IF``, ``rb``) -> its commission and margin."""
    default_fees: Fees = Field(default_factory=Fees)
    """For products ``fees`` does not name."""

    @field_validator("accounts")
    @classmethod
    def _accounts(cls, accounts: dict[str, float]) -> dict[str, float]:
        for name, funds in accounts.items():
            if not (0 < len(name) <= 16 and name.isascii() and name.isprintable()):
                raise ValueError(f"account id {name!r} must be 1 to 16 printable ASCII characters")
            if not (funds >= 0 and math.isfinite(funds)):
                raise ValueError(f"account {name!r}: funds must be a finite amount >= 0, not {funds}")
        return accounts


class _Book:
    """One instrument: its latest tick and the working orders at each price."""

    __slots__ = ("ask_keys", "ask_left", "ask_levels", "asks", "bid_keys", "bid_left",
                 "bid_levels", "bids", "contract", "exchange", "stale", "values", "waiting")

    def __init__(self, contract: Contract) -> None:
        self.contract = contract
        self.exchange = contract.exchange.encode()
        self.values: tuple[Any, ...] = ()
        """The latest tick as ``_TICK`` reads it (empty before the first)."""
        self.stale = 0
        """_STALE_* bits: what was derived from an earlier tick and must be derived again."""
        self.bid_levels: tuple[int, ...] = ()
        """The tick's bid level prices, signed (see :func:`_signed_levels`)."""
        self.ask_levels: tuple[int, ...] = ()
        self.bid_left = [0] * DEPTH
        """Displayed volume per level not yet taken by simulated orders since the tick."""
        self.ask_left = [0] * DEPTH
        self.bids: dict[int, list[_Order]] = {}
        """Working buy orders by price (in ticks), each list in time priority."""
        self.asks: dict[int, list[_Order]] = {}
        self.bid_keys: list[int] = []
        """The prices of ``bids``, ascending."""
        self.ask_keys: list[int] = []
        self.waiting: list[_Order] = []
        """Orders that reached the exchange before the instrument's first tick."""

    @property
    def has_tick(self) -> bool:
        return bool(self.values)

    def limits(self) -> tuple[float, float]:
        """(upper, lower) limit prices of the latest tick; NaN before the first."""
        if not self.values:
            return math.nan, math.nan
        upper: float = self.values[_UPPER]
        lower: float = self.values[_LOWER]
        return upper, lower

    def left(self) -> tuple[list[int], list[int]]:
        """(bid, ask) volumes per level still there for simulated orders to take."""
        if self.stale & _STALE_LEFT:
            values = self.values
            self.bid_left[:] = values[_BID_VOLUMES:_BID_VOLUMES + DEPTH]
            self.ask_left[:] = values[_ASK_VOLUMES:_ASK_VOLUMES + DEPTH]
            self.stale &= ~_STALE_LEFT
        return self.bid_left, self.ask_left

    def levels(self, buy: bool) -> tuple[int, ...]:
        """One side's level prices of the latest tick, signed; derived once per tick."""
        if buy:
            if self.stale & _STALE_BIDS:
                self.bid_levels = _signed_levels(self.values, _BIDS, self.contract.price_tick, 1)
                self.stale &= ~_STALE_BIDS
            return self.bid_levels
        if self.stale & _STALE_ASKS:
            self.ask_levels = _signed_levels(self.values, _ASKS, self.contract.price_tick, -1)
            self.stale &= ~_STALE_ASKS
        return self.ask_levels

    def ticks(self, price: float) -> int:
        return round(price / self.contract.price_tick)


class _Order:
    """One order from its submit to its end."""

    __slots__ = (
        "account",
        "ahead",
        "arrival_ns",
        "book",
        "buy",
        "direction",
        "index",
        "offset",
        "price",
        "price_type",
        "ref",
        "reserved_price",
        "source",
        "status",
        "sys_id",
        "ticks",
        "traded",
        "trading_day",
        "volume",
    )

    def __init__(self, book: _Book, account: bytes, ref: int, source: int, index: int,
                 trading_day: int, price: float, volume: int, direction: int, offset: int,
                 price_type: int) -> None:
        self.book, self.account, self.ref, self.source, self.index = book, account, ref, source, index
        self.trading_day, self.price, self.volume = trading_day, price, volume
        self.direction, self.offset, self.price_type = direction, offset, price_type
        self.buy = direction == Direction.BUY
        self.ticks = book.ticks(price) if price == price else 0
        self.reserved_price = price
        self.traded = 0
        self.status = int(OrderStatus.SUBMITTING)
        self.sys_id = b""
        self.ahead = -1
        """Lots queued ahead of it at its price; -1 while its price is not displayed."""
        self.arrival_ns = 0

    def plain(self) -> list[Any]:
        return [self.book.contract.id, self.account.rstrip(b"\0").decode(), self.ref, self.source, self.index,
                self.trading_day, self.price, self.volume, self.direction, self.offset,
                self.price_type, self.reserved_price, self.traded, self.status,
                self.sys_id.decode(), self.ahead, self.arrival_ns]


class SimExchange:
    """The matching core (module docstring). Not thread-safe: one caller, the gateway's loop."""

    def __init__(self, config: SimExchangeConfig, on_return: Returns, *,
                 accounts: Accounts | None = None, products: ProductTable | None = None) -> None:
        self.config = config
        self.accounts: Accounts = accounts or SimpleAccounts(config.accounts)
        self._products = products or ProductTable.load()
        self._on_return = on_return
        self._queue = queuemodel.make(config.queue_model, config.queue_power, config.seed)
        self._order_latency_ns = round(config.order_latency_ms * _MS)
        self._feed_latency_ns = round(config.feed_latency_ms * _MS)
        self._books: dict[bytes, _Book | None] = {}
        self._orders: dict[tuple[bytes, int], _Order] = {}
        self._by_sys_id: dict[bytes, _Order] = {}
        self._in_flight: deque[tuple[int, _Order, bool]] = deque()
        """(arrival at the exchange, order, is a cancel), in arrival order."""
        self.clock_ns = 0
        """The data clock: the latest tick or TIMER time."""
        self.trading_day = 0
        self._next_sys_id = 1
        self._next_trade_id = 1
        order = empty(EventType.RTN_ORDER)
        self._order_view, self._order_out = order.view("u1").data, order[0]
        self._pack_order = record_struct(EventType.RTN_ORDER).pack_into
        trade = empty(EventType.RTN_TRADE)
        self._trade_view, self._trade_out = trade.view("u1").data, trade[0]
        self._pack_trade = record_struct(EventType.RTN_TRADE).pack_into

    # --- input -----------------------------------------------------------------------------

    def submit(self, record: Any) -> None:
        """An ORDER_SEND: checked by the counter now, matched when it reaches the exchange."""
        (trading_day, index, source, key, ref, price, volume, direction, offset, price_type,
         account) = _ORDER(record)
        trading_day = trading_day or self.trading_day
        book = self._book(key)
        if (account, ref) in self._orders:
            self._refuse(key, b"", source, index, trading_day, ref, price, volume, direction,
                         offset, account, CtpError.DUPLICATE_ORDER_REF)
            return
        error = self._order_error(book, price, volume, direction, offset, price_type)
        if book is None or error:  # (no book: the error is INSTRUMENT_NOT_FOUND)
            self._refuse(key, book.exchange if book else b"", source, index, trading_day, ref,
                         price, volume, direction, offset, account, error)
            return
        order = _Order(book, account, ref, source, index, trading_day, price, volume, direction,
                       offset, price_type)
        if price_type == PriceType.MARKET:
            order.reserved_price = book.limits()[0 if order.buy else 1]
        error = self.accounts.reserve(account, book.contract, direction, offset,
                                      order.reserved_price, volume)
        if error:
            self._refuse(key, book.exchange, source, index, trading_day, ref, price, volume,
                         direction, offset, account, error)
            return
        self._orders[(account, ref)] = order
        self._emit_order(order, 0)
        self._send(order, cancel=False)

    def cancel(self, record: Any) -> None:
        """A CANCEL_REQ for (account, order_ref), or for order_sys_id when order_ref is 0."""
        ref, sys_id, account = _CANCEL(record)
        order = (self._orders.get((account, ref)) if ref else
                 self._by_sys_id.get(sys_id.rstrip(b"\0")))
        if order is None or order.account != account:  # nobody cancels another's order
            self._refuse(b"", b"", 0, -1, self.trading_day, ref, math.nan, 0, 0, 0, account,
                         CtpError.ORDER_NOT_FOUND, FLAG_CANCEL_REFUSED, sys_id)
        elif order.status in _TERMINAL:
            self._emit_order(order, FLAG_CANCEL_REFUSED, CtpError.INSUITABLE_ORDER_STATUS)
        else:
            self._send(order, cancel=True)

    def on_time(self, ts_ns: int) -> None:
        """The data clock moved (a TIMER): orders and cancels due by then reach the exchange."""
        if ts_ns > self.clock_ns:
            self.clock_ns = ts_ns
        self._arrive(self.clock_ns - self._feed_latency_ns)

    def on_tick(self, record: Any) -> None:
        """A MARKET_DATA record: what arrived before it is matched, then its trades and book
        changes move the resting orders."""
        values = _TICK(record)
        ts_ns, flags, trading_day = values[0], values[1], values[2]
        if ts_ns > self.clock_ns:
            self.clock_ns = ts_ns
        try:
            book = self._books[values[3]]
        except KeyError:
            book = self._book(values[3])
        if trading_day > self.trading_day:
            self._new_day(trading_day)
        if book is None or flags & _SKIPPED_TICK:
            self._arrive(self.clock_ns - self._feed_latency_ns)
            return
        previous = book.values
        if not previous:
            book.values, book.stale = values, _STALE_ALL
            self._arrive(ts_ns - self._feed_latency_ns)
            waiting, book.waiting = book.waiting, []
            for order in waiting:
                self._match(order)
            return
        if self._in_flight:
            self._arrive(ts_ns - self._feed_latency_ns)
        book.values, book.stale = values, _STALE_ALL
        if not (book.bid_keys or book.ask_keys):
            return
        tick = book.contract.price_tick
        last = values[_LAST]
        traded = values[_VOLUME] - previous[_VOLUME] if previous[_DAY] == trading_day else 0
        if traded > 0 and last == last:
            last_ticks = round(last / tick)
            spent = values[_TURNOVER] - previous[_TURNOVER]
            vwap = spent / (traded * book.contract.multiplier * tick) if spent > 0 else last / tick
            gap = abs(vwap - last_ticks)
            at_last = int(traded * (1.0 - gap) + _EPSILON) if gap < 1.0 else 0
            at_last = 1 if at_last < 1 else traded if at_last > traded else at_last
            buy_through = min(last_ticks, math.floor(vwap + _EPSILON))
            sell_through = max(last_ticks, math.ceil(vwap - _EPSILON))
        else:
            last_ticks = at_last = 0
            buy_through, sell_through = _FAR, -_FAR
        if book.bid_keys:
            self._move(book, 1, values, previous, _BIDS, _BID_VOLUMES, buy_through, last_ticks,
                       at_last)
        if book.ask_keys:
            self._move(book, -1, values, previous, _ASKS, _ASK_VOLUMES, sell_through, last_ticks,
                       at_last)

    # --- resting orders ----------------------------------------------------------------------

    def _move(self, book: _Book, sign: int, values: tuple[Any, ...], previous: tuple[Any, ...],
              prices_at: int, volumes_at: int, through: int, last_ticks: int, at_last: int) -> None:
        """One side's resting orders after a tick: through fills, trades at the last price,
        queue changes. Prices are compared signed (a sell's negated, so that on both sides a
        larger number is a better price) and only the prices from the deepest displayed level,
        the last price or the through price up to the best are visited."""
        buy = sign > 0
        keys, levels = (book.bid_keys, book.bids) if buy else (book.ask_keys, book.asks)
        tick = book.contract.price_tick
        deepest = _FAR
        for level in range(prices_at + DEPTH - 1, prices_at - 1, -1):
            shown_price = values[level]
            if shown_price == shown_price:
                deepest = sign * round(shown_price / tick)
                break
        lowest = deepest
        if at_last:
            lowest = min(lowest, last_ticks * sign, through * sign + 1)
        if buy:
            first, stop = bisect.bisect_left(keys, lowest), len(keys)
        else:
            first, stop = 0, bisect.bisect_right(keys, -lowest)
        if first >= stop:
            return
        prices = book.levels(buy)
        volumes = values[volumes_at:volumes_at + DEPTH]
        before_prices = _signed_levels(previous, prices_at, tick, sign)
        before_volumes = previous[volumes_at:volumes_at + DEPTH]
        before_deepest = _deepest(before_prices)
        queue = self._queue
        for price in keys[first:stop]:
            orders = levels[price]
            if price * sign > through * sign:
                for order in orders:
                    self._fill(order, order.price, order.volume - order.traded)
                self._drop_level(book, buy, price)
                continue
            shown = _shown(price * sign, prices, volumes, deepest)
            before = _shown(price * sign, before_prices, before_volumes, before_deepest)
            trades = at_last if price == last_ticks else 0
            used = 0
            for order in orders:
                ahead = order.ahead
                if trades and ahead >= 0:
                    room = trades - ahead - used
                    ahead = queue.traded(ahead, trades)
                    if room > 0:
                        fill = min(room, order.volume - order.traded)
                        used += fill
                        self._fill(order, order.price, fill)
                if shown >= 0:
                    if ahead < 0:
                        ahead = shown
                    elif before >= 0 and before - trades > shown:
                        ahead = queue.shrunk(ahead, before - trades, before - trades - shown, shown)
                    elif ahead > shown:
                        ahead = shown
                order.ahead = ahead
            if used:
                remaining = [order for order in orders if order.status not in _TERMINAL]
                if remaining:
                    orders[:] = remaining
                else:
                    self._drop_level(book, buy, price)

    def _drop_level(self, book: _Book, buy: bool, price: int) -> None:
        keys, levels = (book.bid_keys, book.bids) if buy else (book.ask_keys, book.asks)
        del levels[price]
        del keys[bisect.bisect_left(keys, price)]

    def _rest(self, order: _Order) -> None:
        """The order joins its price's queue, behind the volume displayed there."""
        book = order.book
        keys, levels = (book.bid_keys, book.bids) if order.buy else (book.ask_keys, book.asks)
        queue = levels.get(order.ticks)
        if queue is None:
            levels[order.ticks] = [order]
            bisect.insort(keys, order.ticks)
        else:
            queue.append(order)
        sign = 1 if order.buy else -1
        volumes_at = _BID_VOLUMES if order.buy else _ASK_VOLUMES
        prices = book.levels(order.buy)
        order.ahead = _shown(order.ticks * sign, prices,
                             book.values[volumes_at:volumes_at + DEPTH], _deepest(prices))

    def _unrest(self, order: _Order) -> None:
        """Out of its price's queue (or of the orders waiting for a first tick)."""
        book = order.book
        if order in book.waiting:
            book.waiting.remove(order)
        levels = book.bids if order.buy else book.asks
        queue = levels.get(order.ticks)
        if queue is not None and order in queue:
            queue.remove(order)
            if not queue:
                self._drop_level(book, order.buy, order.ticks)

    # --- orders reaching the exchange --------------------------------------------------------

    def _send(self, order: _Order, *, cancel: bool) -> None:
        arrival = self.clock_ns + self._order_latency_ns
        if self._in_flight and arrival < self._in_flight[-1][0]:
            arrival = self._in_flight[-1][0]  # one link: nothing overtakes
        if not cancel:
            order.arrival_ns = arrival
        self._in_flight.append((arrival, order, cancel))
        self._arrive(self.clock_ns - self._feed_latency_ns)

    def _arrive(self, exchange_ns: int) -> None:
        """Everything in flight that reached the exchange by ``exchange_ns``, in order; an order
        for an instrument without a tick yet waits for the first one (without holding up the
        others)."""
        in_flight = self._in_flight
        while in_flight and in_flight[0][0] <= exchange_ns:
            _, order, cancel = in_flight.popleft()
            if cancel:
                if order.status in _TERMINAL:
                    self._emit_order(order, FLAG_CANCEL_REFUSED, CtpError.INSUITABLE_ORDER_STATUS)
                else:
                    self._unrest(order)
                    self._end(order, OrderStatus.CANCELLED)
            elif order.status in _TERMINAL:
                continue
            elif order.book.values:
                self._match(order)
            else:
                order.book.waiting.append(order)

    def _match(self, order: _Order) -> None:
        """An order at the exchange: limit check, then the opposite levels it crosses."""
        book = order.book
        error = _limit_error(book, order.price) if order.price_type != PriceType.MARKET else 0
        if error:
            self.accounts.release(order.account, book.contract, order.direction, order.offset,
                                  order.reserved_price, order.volume)
            order.status = int(OrderStatus.REJECTED)
            self._emit_order(order, 0, error)
            return
        order.sys_id = b"%d" % self._next_sys_id
        self._next_sys_id += 1
        self._by_sys_id[order.sys_id] = order
        bid_left, ask_left = book.left()
        prices_at, left = (_ASKS, ask_left) if order.buy else (_BIDS, bid_left)
        values = book.values
        tick = book.contract.price_tick
        market = order.price_type == PriceType.MARKET
        limit = order.ticks
        crossing = []
        available = 0
        for level in range(DEPTH):
            price = values[prices_at + level]
            if price != price:
                break
            ticks = round(price / tick)
            if not market and (ticks > limit if order.buy else ticks < limit):
                break
            if left[level] > 0:
                crossing.append(level)
                available += left[level]
        wanted = order.volume
        if order.price_type == PriceType.FOK and available < wanted:
            crossing.clear()
        for level in crossing:
            fill = min(left[level], wanted - order.traded)
            left[level] -= fill
            self._fill(order, values[prices_at + level], fill)
            if order.traded == wanted:
                return
        if order.price_type == PriceType.LIMIT:
            if not order.traded:
                order.status = int(OrderStatus.NOT_TRADED)
                self._emit_order(order, 0)
            self._rest(order)
        else:
            self._end(order, OrderStatus.CANCELLED)

    # --- fills and ends ----------------------------------------------------------------------

    def _fill(self, order: _Order, price: float, volume: int) -> None:
        book = order.book
        self.accounts.fill(order.account, book.contract, order.direction, order.offset,
                           order.reserved_price, price, volume)
        order.traded += volume
        if order.traded == order.volume:
            order.status = int(OrderStatus.ALL_TRADED)
        else:
            order.status = int(OrderStatus.PART_TRADED)
        self._emit_order(order, 0)
        trade_id = b"%d" % self._next_trade_id
        self._next_trade_id += 1
        self._pack_trade(self._trade_view, 0, 0, self.clock_ns, _RTN_TRADE, 0, order.trading_day,
                         order.index, order.source, book.contract.key, book.exchange, order.ref,
                         order.sys_id, trade_id, price, volume, order.direction, order.offset,
                         self.clock_ns - self._feed_latency_ns, order.account)
        self._on_return(self._trade_out)

    def _end(self, order: _Order, status: OrderStatus, message: bytes | None = None) -> None:
        """Cancelled: what did not fill is released."""
        book = order.book
        self.accounts.release(order.account, book.contract, order.direction, order.offset,
                              order.reserved_price, order.volume - order.traded)
        order.status = int(status)
        self._emit_order(order, 0, 0, message)

    def _new_day(self, trading_day: int) -> None:
        """Orders are good for the day: the old day's working orders are cancelled."""
        if self.trading_day:
            for order in list(self._orders.values()):
                if order.status not in _TERMINAL:
                    self._unrest(order)
                    self._end(order, OrderStatus.CANCELLED, _EXPIRED_TEXT)
            self._in_flight.clear()
            self._orders.clear()
            self._by_sys_id.clear()
            self.accounts.new_day()
        self.trading_day = trading_day

    # --- returns -----------------------------------------------------------------------------

    def _emit_order(self, order: _Order, flags: int, error: int = 0, message: bytes | None = None) -> None:
        book = order.book
        text = message or (_ERROR_BYTES[error] if error else _STATUS_TEXT.get(order.status, b""))
        self._pack_order(self._order_view, 0, 0, self.clock_ns, _RTN_ORDER, flags, order.trading_day,
                         order.index, order.source, book.contract.key, book.exchange, order.ref,
                         order.sys_id, order.price, order.volume, order.traded, order.direction,
                         order.offset, order.status, error, self.clock_ns - self._feed_latency_ns,
                         text, order.account)
        self._on_return(self._order_out)

    def _refuse(self, key: bytes, exchange: bytes, source: int, index: int, trading_day: int,
                ref: int, price: float, volume: int, direction: int, offset: int, account: bytes,
                error: int, flags: int = 0, sys_id: bytes = b"") -> None:
        self._pack_order(self._order_view, 0, 0, self.clock_ns, _RTN_ORDER, flags, trading_day,
                         index, source, key, exchange, ref, sys_id, price, volume, 0, direction,
                         offset, int(OrderStatus.REJECTED), error, 0, _ERROR_BYTES[error], account)
        self._on_return(self._order_out)

    # --- checks and look-ups -----------------------------------------------------------------

    def _book(self, key: bytes) -> _Book | None:
        """The instrument's book, made on first sight; None if its product is unknown."""
        try:
            return self._books[key]
        except KeyError:
            pass
        instrument_id = key.rstrip(b"\0").decode("ascii", "replace")
        book = None
        try:
            code = product_code(instrument_id)
        except ValueError:
            code = ""
        if code in self._products:
            product = self._products[code]
            fees = self.config.fees.get(code, self.config.default_fees)
            book = _Book(Contract(key, instrument_id, product.exchange, product.multiplier,
                                  product.price_tick, fees))
        self._books[key] = book
        return book

    def _order_error(self, book: _Book | None, price: float, volume: int, direction: int,
                     offset: int, price_type: int) -> int:
        if book is None:
            return CtpError.INSTRUMENT_NOT_FOUND
        if (volume <= 0 or direction > Direction.SELL or offset > Offset.CLOSE_YESTERDAY
                or price_type > PriceType.FOK):
            return CtpError.BAD_FIELD
        if price_type == PriceType.MARKET:
            if book.contract.exchange in _NO_MARKET_ORDERS:
                return CtpError.PRICETYPE_NOTSUPPORT_BYEXCHANGE
            upper, lower = book.limits()
            return 0 if upper == upper and lower == lower else CtpError.INSTRUMENT_NOT_TRADING
        if not (price > 0 and math.isfinite(price)):
            return CtpError.BAD_FIELD
        steps = price / book.contract.price_tick
        if abs(steps - round(steps)) > _EPSILON:
            return CtpError.PRICE_WRONG_TICK
        return _limit_error(book, price)

    # --- views, and state for restarts --------------------------------------------------------

    def queue_ahead(self, account: str, order_ref: int) -> int:
        """Lots the queue model puts ahead of a working order (-1: its price is not displayed;
        KeyError for an order this exchange does not know)."""
        return self._orders[(account.encode().ljust(16, b"\0"), order_ref)].ahead

    def report(self, account: str, order_ref: int) -> bool:
        """Return the order's current status once more (an RTN_ORDER, as it stands); False
        if this exchange never received it."""
        order = self._orders.get((account.encode().ljust(16, b"\0"), order_ref))
        if order is None:
            return False
        self._emit_order(order, 0)
        return True

    def working(self) -> int:
        """Orders accepted and not yet ended."""
        return sum(1 for order in self._orders.values() if order.status not in _TERMINAL)

    def snapshot(self) -> dict[str, Any]:
        """The whole state as plain data (JSON-able; empty prices are NaN, which Python's
        json writes and reads): the books' latest ticks, the trading day's orders (the working
        ones with their queue positions, the latest ``ENDED_KEPT`` ended ones to answer a late
        cancel alike), what is in flight or waits for a first tick, the id counters, the
        queue model's random state and the accounts. :meth:`restore` continues from it
        exactly, but for a cancel or a duplicate ref of an older ended order."""
        books = {}
        for book in self._books.values():
            if book is None or not book.has_tick:
                continue
            bid_left, ask_left = book.left()
            books[book.contract.id] = [[value for i, value in enumerate(book.values)
                                        if i != _INSTRUMENT], bid_left, ask_left]
        resting = {id(order): position for book in self._books.values() if book
                   for levels in (book.bids, book.asks) for queue in levels.values()
                   for position, order in enumerate(queue)}
        return {
            "version": 1, "clock_ns": self.clock_ns, "trading_day": self.trading_day,
            "next_sys_id": self._next_sys_id, "next_trade_id": self._next_trade_id,
            "queue_model": self._queue.state(), "books": books,
            "orders": [[*order.plain(), resting.get(id(order), -1)] for order in self._kept()],
            "in_flight": [[arrival, order.account.rstrip(b"\0").decode(), order.ref, cancel]
                          for arrival, order, cancel in self._in_flight],
            "waiting": [[order.account.rstrip(b"\0").decode(), order.ref]
                        for book in self._books.values() if book for order in book.waiting],
            "accounts": self.accounts.snapshot(),
        }

    def _kept(self) -> list[_Order]:
        """The orders a snapshot keeps, oldest first: every working one and the latest
        ``ENDED_KEPT`` ended ones."""
        kept, ended = [], 0
        for order in reversed(self._orders.values()):
            if order.status in _TERMINAL:
                if ended == ENDED_KEPT:
                    continue
                ended += 1
            kept.append(order)
        kept.reverse()
        return kept

    @classmethod
    def restore(cls, config: SimExchangeConfig, state: dict[str, Any], on_return: Returns, *,
                accounts: Accounts | None = None, products: ProductTable | None = None) -> SimExchange:
        """A simulated exchange continuing from :meth:`snapshot` (the accounts from the
        snapshot unless a view is given, e.g. the exact book)."""
        if state.get("version") != 1:
            raise ValueError(f"simulated exchange snapshot version {state.get('version')!r} "
                             "is not 1")
        exchange = cls(config, on_return, products=products,
                       accounts=accounts or SimpleAccounts.restore(state["accounts"]))
        exchange.clock_ns, exchange.trading_day = state["clock_ns"], state["trading_day"]
        exchange._next_sys_id, exchange._next_trade_id = state["next_sys_id"], state["next_trade_id"]
        exchange._queue.restore(state["queue_model"])
        for instrument_id, values in state["books"].items():
            book = exchange._book(instrument_id.encode().ljust(32, b"\0"))
            if book is None:
                raise ValueError(f"snapshot names {instrument_id!r}, whose product is unknown")
            tick_values, bid_left, ask_left = values
            tick_values.insert(_INSTRUMENT, book.contract.key)
            book.values, book.stale = tuple(tick_values), _STALE_BIDS | _STALE_ASKS
            book.bid_left[:], book.ask_left[:] = bid_left, ask_left
        resting = []
        for (instrument_id, account, ref, source, index, trading_day, price, volume, direction,
             offset, price_type, reserved_price, traded, status, sys_id, ahead, arrival_ns,
             position) in state["orders"]:
            book = exchange._book(instrument_id.encode().ljust(32, b"\0"))
            if book is None:
                raise ValueError(f"snapshot names {instrument_id!r}, whose product is unknown")
            order = _Order(book, account.encode().ljust(16, b"\0"), ref, source, index,
                           trading_day, price, volume, direction, offset, price_type)
            order.reserved_price, order.traded, order.status = reserved_price, traded, status
            order.sys_id, order.arrival_ns, order.ahead = sys_id.encode(), arrival_ns, ahead
            exchange._orders[(order.account, ref)] = order
            if order.sys_id:
                exchange._by_sys_id[order.sys_id] = order
            if position >= 0:
                resting.append((position, order))
        for _, order in sorted(resting, key=lambda entry: entry[0]):  # time priority kept
            ahead = order.ahead
            exchange._rest(order)
            order.ahead = ahead
        for arrival, account, ref, cancel in state["in_flight"]:
            order = exchange._orders[(account.encode().ljust(16, b"\0"), ref)]
            exchange._in_flight.append((arrival, order, cancel))
        for account, ref in state["waiting"]:
            order = exchange._orders[(account.encode().ljust(16, b"\0"), ref)]
            order.book.waiting.append(order)
        return exchange


def _signed_levels(values: tuple[Any, ...], start: int, tick: float, sign: int) -> tuple[int, ...]:
    """The DEPTH level prices from ``values[start]`` in ticks, times ``sign`` (so that a larger
    number is a better price on both sides), ``_ABSENT`` for an empty level."""
    return tuple(sign * round(price / tick) if price == price else _ABSENT
                 for price in values[start:start + DEPTH])


def _deepest(prices: tuple[int, ...]) -> int:
    """The worst displayed (signed) price; above every price when no level is shown."""
    deepest = _FAR
    for price in prices:
        if _ABSENT < price < deepest:
            deepest = price
    return deepest


def _shown(price: int, prices: tuple[int, ...], volumes: tuple[int, ...], deepest: int) -> int:
    """Lots displayed at (signed) ``price``: a level's volume, 0 for a price inside the
    displayed range (or better than the best) that is no level, -1 (unknown) for a price worse
    than the deepest level shown or when no level is shown."""
    if price < deepest:
        return -1
    for level in range(DEPTH):
        if prices[level] == price:
            return int(volumes[level])
    return 0


def _limit_error(book: _Book, price: float) -> int:
    """PRICE_OVER_LIMIT outside the latest tick's limit prices (none known: no check)."""
    upper, lower = book.limits()
    slack = _EPSILON * book.contract.price_tick
    return CtpError.PRICE_OVER_LIMIT if price > upper + slack or price < lower - slack else 0
