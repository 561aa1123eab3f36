"""What the check chain remembers, in plain slotted objects built once per account, instrument
and order, so a decision only reads attributes (no dict building per order).

- :class:`InstrumentState`: the product's tick and multiplier, the latest limit and last prices.
- :class:`Book`: one account in one instrument: its live order lots, resting orders per side
  (for self-trade) and the day's cancels.
- :class:`AccountState`: one account's limits as bound check functions, rate windows, the
  day's inserts and cancels, its live orders.
- :class:`LiveOrder`: an accepted order until its terminal return.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import TYPE_CHECKING

from hft.daemons.refdata.instruments import Product

if TYPE_CHECKING:
    from hft.daemons.risk.checks import CancelCheck, InsertCheck
    from hft.daemons.risk.limits import AccountLimits

NS_PER_S = 1_000_000_000
NEVER = -(1 << 62)
"""A time before any real one: an empty slot of a rate window."""


class InstrumentState:
    """One instrument: reference data plus the market prices the price checks need."""

    __slots__ = ("exchange", "exchange_id", "id", "last", "lower", "multiplier", "product",
                 "tick", "upper")

    def __init__(self, instrument_id: str, product: Product) -> None:
        self.id = instrument_id
        self.product = product
        self.exchange = product.exchange
        self.exchange_id = product.exchange.encode().ljust(8, b"\0")
        """As an order record's ``exchange`` field holds it (NUL padded)."""
        self.tick = product.price_tick
        self.multiplier = product.multiplier
        self.last = math.nan
        self.upper = math.nan
        self.lower = math.nan


class LiveOrder:
    """An accepted order until its terminal return: what cancels and exposure need."""

    __slots__ = ("account", "book", "cancel_requested", "direction", "instrument", "offset",
                 "order_ref", "order_sys_id", "price", "remaining", "resting", "traded", "volume")

    def __init__(self, account: str, order_ref: int, book: Book, direction: int, offset: int,
                 price: float, volume: int, resting: bool) -> None:
        self.account = account
        self.order_ref = order_ref
        self.book = book
        self.instrument = book.instrument
        self.direction = direction
        self.offset = offset
        self.price = price
        self.volume = volume
        self.remaining = volume
        self.traded = 0
        self.resting = resting
        """A limit order: it works until cancelled or filled (FAK/FOK/market never rest)."""
        self.cancel_requested = False
        self.order_sys_id = b""

    def __repr__(self) -> str:
        return (f"LiveOrder({self.account}#{self.order_ref} {self.instrument.id} "
                f"{'buy' if self.direction == 0 else 'sell'} {self.remaining}/{self.volume} "
                f"@ {self.price})")


class Book:
    """One account in one instrument."""

    __slots__ = ("best_buy", "best_sell", "buy_lots", "cancels", "cancels_warned", "day",
                 "instrument", "key", "open_lots", "resting_buys", "resting_sells", "sell_lots")

    def __init__(self, instrument: InstrumentState, key: bytes) -> None:
        self.instrument = instrument
        self.key = key
        """The instrument as records hold it (NUL padded)."""
        self.buy_lots = 0
        """Unfilled lots of live buy orders (resting or in flight): exposure if all fill."""
        self.sell_lots = 0
        self.open_lots = 0
        """Unfilled lots of live opening orders, both sides: gross exposure if all fill."""
        self.resting_buys: dict[int, LiveOrder] = {}
        self.resting_sells: dict[int, LiveOrder] = {}
        self.best_buy = -math.inf
        """The highest resting buy's price (-inf: none), so self-trade is one comparison."""
        self.best_sell = math.inf
        """The lowest resting sell's price (inf: none)."""
        self.day = 0
        self.cancels = 0
        """Cancels accepted on trading day ``day``."""
        self.cancels_warned = False

    def rest(self, order: LiveOrder) -> None:
        """A limit order starts working."""
        if order.direction == 0:
            self.resting_buys[order.order_ref] = order
            self.best_buy = max(self.best_buy, order.price)
        else:
            self.resting_sells[order.order_ref] = order
            self.best_sell = min(self.best_sell, order.price)

    def unrest(self, order: LiveOrder) -> None:
        """A working limit order is done; the best price is searched again only if it was it."""
        if order.direction == 0:
            del self.resting_buys[order.order_ref]
            if order.price >= self.best_buy:
                self.best_buy = max((o.price for o in self.resting_buys.values()), default=-math.inf)
        else:
            del self.resting_sells[order.order_ref]
            if order.price <= self.best_sell:
                self.best_sell = min((o.price for o in self.resting_sells.values()), default=math.inf)

    def roll(self, day: int) -> None:
        """Start trading day ``day``'s cancel count."""
        self.day = day
        self.cancels = 0
        self.cancels_warned = False


class RateWindow:
    """The times of the last accepted events, kept whether a rate limit is on or not (so a
    limit set at runtime sees the last second at once): a ring, so "may ``count`` more go
    at t under ``limit`` per second" is one comparison, with the event ``limit - count + 1``
    back from the newest, which must lie outside (t - 1 s, t]."""

    __slots__ = ("position", "times")

    def __init__(self, capacity: int = 64) -> None:
        self.times = [NEVER] * capacity
        self.position = 0  # the next slot to write: the oldest

    def fits(self, now_ns: int, limit: int, count: int = 1) -> bool:
        if count > limit:
            return False
        times = self.times
        return times[(self.position - limit + count - 1) % len(times)] <= now_ns - NS_PER_S

    def add(self, now_ns: int) -> None:
        self.times[self.position] = now_ns
        self.position = (self.position + 1) % len(self.times)

    def in_window(self, now_ns: int) -> int:
        """How many of the remembered events lie in (now - 1 s, now] (for texts)."""
        return sum(1 for t in self.times if t > now_ns - NS_PER_S)

    def hold(self, limit: int) -> None:
        """Make room for at least ``limit`` events, keeping the ones remembered."""
        if limit > len(self.times):
            ordered = self.times[self.position:] + self.times[:self.position]
            self.times = [NEVER] * (limit - len(ordered)) + ordered
            self.position = 0


class AccountState:
    """One account: its limits (as the enabled checks, in precedence order), counters and
    live orders."""

    __slots__ = (
        "books",
        "cancel_checks",
        "cancel_first",
        "cancel_window",
        "cancels_today",
        "day",
        "finished",
        "insert_checks",
        "insert_window",
        "inserts_today",
        "limits",
        "loss_alerted",
        "name",
        "orders",
        "ratio_warned",
        "recent",
        "working",
    )

    def __init__(self, name: str, cancel_first: list[LiveOrder]) -> None:
        self.name = name
        self.limits: AccountLimits | None = None
        self.insert_checks: tuple[InsertCheck, ...] = ()
        self.cancel_checks: tuple[CancelCheck, ...] = ()
        self.insert_window = RateWindow()
        self.cancel_window = RateWindow()
        self.books: dict[bytes, Book] = {}
        self.orders: dict[int, LiveOrder] = {}
        self.finished: dict[int, str] = {}
        """order_ref -> why it no longer works, for the unknown_order text (per trading day)."""
        self.working = 0
        """Resting (limit) orders not yet terminal."""
        self.recent: dict[tuple[Book, int, float, int], int] = {}
        """(book, direction, price, volume) -> when last accepted (duplicate check)."""
        self.cancel_first = cancel_first
        """Resting orders self_trade = "cancel_resting" found crossing the order decided
        (the chain's one list, shared by every account)."""
        self.day = 0
        self.inserts_today = 0
        self.cancels_today = 0
        self.ratio_warned = False
        self.loss_alerted = False
        """The loss limit has refused an order today (and said so in an alert)."""

    def roll(self, day: int) -> None:
        """Start trading day ``day``'s counts."""
        self.day = day
        self.inserts_today = 0
        self.cancels_today = 0
        self.ratio_warned = False
        self.loss_alerted = False
        self.finished.clear()


Alert = Callable[[str, str], None]
"""Where an alarm goes: (code, text), e.g. ("cancel_ratio", "..."), ("loss_limit", "...")."""
