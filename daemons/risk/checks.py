"""The configurable checks: reason codes, their precedence, and each check as a function
bound to one account's limits.

An account's limits become two tuples of (code, check) in precedence order holding only the
checks its keys turn on (:func:`insert_checks`, :func:`cancel_checks`), so a check that is off
costs nothing and the chain stops at the first refusal, which is then the reason. A check
returns None to pass or the text of its refusal (built only when it refuses).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterator
from typing import Protocol

from hft.daemons.risk.limits import AccountLimits
from hft.daemons.risk.state import AccountState, Book, LiveOrder

MALFORMED = "malformed"
UNKNOWN_INSTRUMENT = "unknown_instrument"
KILL_SWITCH = "kill_switch"
UNKNOWN_ORDER = "unknown_order"
MAX_VOLUME = "max_volume"
MAX_NOTIONAL = "max_notional"
PRICE_TICK = "price_tick"
PRICE_BAND = "price_band"
ORDER_RATE = "order_rate"
CANCEL_RATE = "cancel_rate"
DUPLICATE = "duplicate"
SELF_TRADE = "self_trade"
POSITION_LIMIT = "position_limit"
WORKING_ORDERS = "working_orders"
CANCEL_RATIO = "cancel_ratio"
DAILY_CANCELS = "daily_cancels"
LOSS_LIMIT = "loss_limit"

PRECEDENCE: tuple[str, ...] = (
    MALFORMED, UNKNOWN_INSTRUMENT, KILL_SWITCH, UNKNOWN_ORDER, MAX_VOLUME, MAX_NOTIONAL,
    PRICE_TICK, PRICE_BAND, ORDER_RATE, CANCEL_RATE, DUPLICATE, SELF_TRADE, POSITION_LIMIT,
    WORKING_ORDERS, CANCEL_RATIO, DAILY_CANCELS, LOSS_LIMIT)
"""When several checks fail, the reason is the first of these (issue 11's order)."""

BUY, SELL = 0, 1
OPEN = 0
TICK_TOLERANCE = 1e-6
"""A price is on the grid when price / tick is within this of an integer (float noise)."""


class PositionView(Protocol):
    """What loss_limit and position_limit read from the position book."""

    def lots(self, account: str, instrument: str) -> tuple[int, int]:
        """(long, short) lots the account holds in the instrument."""

    def pnl(self, account: str) -> float:
        """The account's realized + floating PnL of the trading day, CNY."""


class FlatBook:
    """No positions and no PnL: the view before the position book is connected, and the
    offline check's (offline nothing fills)."""

    def lots(self, account: str, instrument: str) -> tuple[int, int]:
        return 0, 0

    def pnl(self, account: str) -> float:
        return 0.0


class Positions:
    """The chain's current position view, shared by the checks bound to it."""

    __slots__ = ("view",)

    def __init__(self) -> None:
        self.view: PositionView = FlatBook()


class OrderFacts:
    """The insert being decided, decoded once; reused for every order (no allocation)."""

    __slots__ = ("direction", "offset", "order_ref", "price", "resting", "volume")

    def __init__(self) -> None:
        self.order_ref = 0
        self.price = math.nan
        self.volume = 0
        self.direction = BUY
        self.offset = OPEN
        self.resting = True
        """A limit order (it may rest); FAK/FOK/market orders never rest."""


InsertCheck = tuple[str, Callable[[OrderFacts, AccountState, Book, int], str | None]]
CancelCheck = tuple[str, Callable[[AccountState, Book, int, int], str | None]]
"""A cancel check takes how many cancels are asked at once (self-trade may cancel several)."""


def _order_price(order: OrderFacts, book: Book) -> float:
    """The price an order may trade at: its limit, or for a market order the worst the
    exchange allows (limit-up for a buy, limit-down for a sell), else the last price."""
    if order.price == order.price:
        return order.price
    instrument = book.instrument
    worst = instrument.upper if order.direction == BUY else instrument.lower
    return worst if worst == worst else instrument.last


def _max_volume(limit: int) -> InsertCheck:
    def check(order: OrderFacts, account: AccountState, book: Book, now_ns: int) -> str | None:
        if order.volume > limit:
            return f"volume {order.volume} > max_order_volume {limit}"
        return None
    return MAX_VOLUME, check


def _max_notional(limit: float) -> InsertCheck:
    def check(order: OrderFacts, account: AccountState, book: Book, now_ns: int) -> str | None:
        notional = _order_price(order, book) * order.volume * book.instrument.multiplier
        if notional > limit:
            return f"notional {notional:.2f} > max_order_notional {limit:g}"
        if notional != notional:
            return f"no price of {book.instrument.id} known yet to value a market order"
        return None
    return MAX_NOTIONAL, check


def _price_tick(order: OrderFacts, account: AccountState, book: Book, now_ns: int) -> str | None:
    tick = book.instrument.tick
    ticks = order.price / tick
    if ticks == ticks and abs(ticks - round(ticks)) > TICK_TOLERANCE:  # NaN: a market order
        return f"price {order.price:g} is not a multiple of {book.instrument.id}'s tick {tick:g}"
    return None


def _price_band(max_ticks: int | None) -> InsertCheck:
    def check(order: OrderFacts, account: AccountState, book: Book, now_ns: int) -> str | None:
        price, instrument = order.price, book.instrument
        if price > instrument.upper or price < instrument.lower:
            return (f"price {price:g} outside {instrument.id}'s limits "
                    f"[{instrument.lower:g}, {instrument.upper:g}]")
        if max_ticks is not None and abs(price - instrument.last) > (max_ticks + 0.5) * instrument.tick:
            return (f"price {price:g} is more than max_ticks_from_last {max_ticks} ticks from "
                    f"the last price {instrument.last:g}")
        return None
    return PRICE_BAND, check


def _order_rate(limit: int) -> InsertCheck:
    def check(order: OrderFacts, account: AccountState, book: Book, now_ns: int) -> str | None:
        window = account.insert_window
        if not window.fits(now_ns, limit):
            return f"{window.in_window(now_ns)} orders in the last second, max_orders_per_s {limit}"
        return None
    return ORDER_RATE, check


def _duplicate(window_ms: int) -> InsertCheck:
    window_ns = window_ms * 1_000_000

    def check(order: OrderFacts, account: AccountState, book: Book, now_ns: int) -> str | None:
        last = account.recent.get(duplicate_key(order, book))
        if last is not None and last > now_ns - window_ns:
            return (f"the same order was accepted {(now_ns - last) / 1e6:.3f} ms ago, "
                    f"duplicate_window_ms {window_ms}")
        return None
    return DUPLICATE, check


def _crossing(order: OrderFacts, book: Book) -> Iterator[LiveOrder]:
    """The account's resting opposite orders the order could match, lazily (most orders
    cross nothing): a buy at or above a resting sell, a sell at or below a resting buy; a
    market order (NaN price) any."""
    price = order.price
    if order.direction == BUY:
        return (o for o in book.resting_sells.values() if not o.price > price)
    return (o for o in book.resting_buys.values() if not o.price < price)


def duplicate_key(order: OrderFacts, book: Book) -> tuple[Book, int, float, int]:
    """What makes two orders the same for the duplicate check (a market order's NaN price
    would never equal itself, so it is keyed as -1)."""
    return book, order.direction, order.price if order.price == order.price else -1.0, order.volume


def _self_trade(mode: str, cancels: tuple[CancelCheck, ...]) -> InsertCheck:
    def check(order: OrderFacts, account: AccountState, book: Book, now_ns: int) -> str | None:
        price = order.price  # NaN (a market order) crosses any resting order
        if order.direction == BUY:
            if not book.resting_sells or price < book.best_sell:
                return None
        elif not book.resting_buys or price > book.best_buy:
            return None
        if mode == "reject":
            other = next(_crossing(order, book))
            return f"would match the account's resting order {other.order_ref} at {other.price:g}"
        crossing = [o for o in _crossing(order, book) if not o.cancel_requested]
        if not crossing:
            return None
        for code, cancel_check in cancels:
            refusal = cancel_check(account, book, now_ns, len(crossing))
            if refusal is not None:
                return (f"cancelling the {len(crossing)} crossing resting order(s) first is "
                        f"refused by {code}: {refusal}")
        account.cancel_first.extend(crossing)
        return None
    return SELF_TRADE, check


def _position_limit(positions: Positions, max_net: int | None,
                    max_gross: int | None) -> InsertCheck:
    def check(order: OrderFacts, account: AccountState, book: Book, now_ns: int) -> str | None:
        long, short = positions.view.lots(account.name, book.instrument.id)
        if max_net is not None:
            if order.direction == BUY:
                net = long - short + book.buy_lots + order.volume
            else:
                net = long - short - book.sell_lots - order.volume
            if abs(net) > max_net and abs(net) > abs(long - short):
                return (f"net position could reach {net} lots (held {long - short}, working "
                        f"+{book.buy_lots}/-{book.sell_lots}), max_net_position {max_net}")
        if max_gross is not None and order.offset == OPEN:
            gross = long + short + book.open_lots + order.volume
            if gross > max_gross:
                return (f"gross position could reach {gross} lots (held {long + short}, working "
                        f"opens {book.open_lots}), max_gross_position {max_gross}")
        return None
    return POSITION_LIMIT, check


def _working_orders(limit: int) -> InsertCheck:
    def check(order: OrderFacts, account: AccountState, book: Book, now_ns: int) -> str | None:
        if order.resting and account.working >= limit:
            return f"{account.working} orders working, max_working_orders {limit}"
        return None
    return WORKING_ORDERS, check


def _loss_limit(positions: Positions, limit: float) -> InsertCheck:
    def check(order: OrderFacts, account: AccountState, book: Book, now_ns: int) -> str | None:
        pnl = positions.view.pnl(account.name)
        if pnl >= -limit:
            return None
        if order.offset != OPEN:
            long, short = positions.view.lots(account.name, book.instrument.id)
            if order.volume <= (long if order.direction == SELL else short):
                return None  # it only reduces a position
        return f"PnL {pnl:.2f} is past max_daily_loss {limit:g}: only reducing orders pass"
    return LOSS_LIMIT, check


def _cancel_rate(limit: int) -> CancelCheck:
    def check(account: AccountState, book: Book, now_ns: int, count: int) -> str | None:
        window = account.cancel_window
        if not window.fits(now_ns, limit, count):
            return (f"{window.in_window(now_ns)} cancels in the last second, "
                    f"max_cancels_per_s {limit}")
        return None
    return CANCEL_RATE, check


def _cancel_ratio(limit: float, min_orders: int) -> CancelCheck:
    def check(account: AccountState, book: Book, now_ns: int, count: int) -> str | None:
        inserts = account.inserts_today
        if inserts < min_orders:
            return None
        ratio = (account.cancels_today + count) / max(inserts, 1)
        if ratio > limit:
            return (f"{account.cancels_today + count} cancels / {inserts} orders today = "
                    f"{ratio:.3f} > cancel_ratio_limit {limit:g}")
        return None
    return CANCEL_RATIO, check


def _daily_cancels(limit: int) -> CancelCheck:
    def check(account: AccountState, book: Book, now_ns: int, count: int) -> str | None:
        if book.cancels + count > limit:
            return (f"{book.cancels} cancels of {book.instrument.id} today, "
                    f"max_daily_cancels {limit}")
        return None
    return DAILY_CANCELS, check


def cancel_checks(limits: AccountLimits) -> tuple[CancelCheck, ...]:
    """The cancel checks ``limits`` turn on, in precedence order."""
    checks = []
    if limits.max_cancels_per_s is not None:
        checks.append(_cancel_rate(limits.max_cancels_per_s))
    if limits.cancel_ratio_limit is not None:
        checks.append(_cancel_ratio(limits.cancel_ratio_limit, limits.cancel_ratio_min_orders or 0))
    if limits.max_daily_cancels is not None:
        checks.append(_daily_cancels(limits.max_daily_cancels))
    return tuple(checks)


def insert_checks(limits: AccountLimits, positions: Positions) -> tuple[InsertCheck, ...]:
    """The insert checks ``limits`` turn on, in precedence order. price_tick and the limit
    prices of price_band are always on: the exchange refuses such orders anyway, and
    refusing them here costs the counter connection nothing."""
    checks: list[InsertCheck] = []
    if limits.max_order_volume is not None:
        checks.append(_max_volume(limits.max_order_volume))
    if limits.max_order_notional is not None:
        checks.append(_max_notional(limits.max_order_notional))
    checks.append((PRICE_TICK, _price_tick))
    checks.append(_price_band(limits.max_ticks_from_last))
    if limits.max_orders_per_s is not None:
        checks.append(_order_rate(limits.max_orders_per_s))
    if limits.duplicate_window_ms is not None:
        checks.append(_duplicate(limits.duplicate_window_ms))
    if limits.self_trade not in (None, "off"):
        assert limits.self_trade is not None
        checks.append(_self_trade(limits.self_trade, cancel_checks(limits)))
    if limits.max_net_position is not None or limits.max_gross_position is not None:
        checks.append(_position_limit(positions, limits.max_net_position,
                                      limits.max_gross_position))
    if limits.max_working_orders is not None:
        checks.append(_working_orders(limits.max_working_orders))
    if limits.max_daily_loss is not None:
        checks.append(_loss_limit(positions, limits.max_daily_loss))
    return tuple(checks)
