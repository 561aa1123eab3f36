"""The pre-trade check chain: decides each ORDER_REQ and CANCEL_REQ and tracks the orders it
let through, so that the live risk daemon and ``hftctl risk check`` share one piece of code.

The chain is driven by records (events.ORDER_DTYPE and friends) and a clock the caller
passes (``now_ns``: the live desk passes the request's own ``ts_ns``, so a replay decides
the same way). Structural checks come first and are always on: ``malformed`` (bad fields, an
``order_ref`` already live, or an account the limits do not list), ``unknown_instrument``
(not in the product table, or another exchange's), then the kill switch, ``unknown_order``
(cancels) and the account's configured checks in precedence order (see checks.py).

Only an accepted request moves a counter: rate windows, the day's inserts and cancels, the
duplicate memory and the order's exposure are updated after the last check passed.
Main thread only; nothing here locks.
"""

from __future__ import annotations

import datetime as dt
import time
from typing import Any, NamedTuple, Protocol

from hft.daemons.refdata.calendar import to_day, trading_day_of
from hft.daemons.refdata.instruments import Product
from hft.daemons.risk.checks import (
    KILL_SWITCH,
    LOSS_LIMIT,
    MALFORMED,
    OPEN,
    UNKNOWN_INSTRUMENT,
    UNKNOWN_ORDER,
    OrderFacts,
    Positions,
    PositionView,
    cancel_checks,
    duplicate_key,
    insert_checks,
)
from hft.daemons.risk.limits import RiskLimits
from hft.daemons.risk.state import AccountState, Alert, Book, InstrumentState, LiveOrder
from hft.daemons.runtime.events import (
    CANCEL_DTYPE,
    ORDER_DTYPE,
    RTN_ORDER_DTYPE,
    RTN_TRADE_DTYPE,
    TICK_DTYPE,
    OrderStatus,
    PriceType,
    fields_struct,
)

_INSERT = fields_struct(ORDER_DTYPE, ("instrument", "exchange", "order_ref", "price", "volume",
                                      "direction", "offset", "price_type", "account")).unpack_from
_CANCEL = fields_struct(CANCEL_DTYPE, ("instrument", "order_ref", "account")).unpack_from
_RTN_ORDER = fields_struct(RTN_ORDER_DTYPE, ("order_ref", "order_sys_id", "volume_traded",
                                             "status", "account")).unpack_from
_RTN_TRADE = fields_struct(RTN_TRADE_DTYPE, ("order_ref", "volume", "account")).unpack_from
_TICK = fields_struct(TICK_DTYPE, ("instrument", "last_price", "upper_limit_price",
                                   "lower_limit_price")).unpack_from

_MARKET = int(PriceType.MARKET)
_TERMINAL = int(OrderStatus.ALL_TRADED)
"""Statuses from ALL_TRADED up are terminal."""
_FINISHED = {int(OrderStatus.ALL_TRADED): "filled", int(OrderStatus.CANCELLED): "cancelled",
             int(OrderStatus.REJECTED): "rejected by the exchange",
             int(OrderStatus.LOST): "lost"}
_INF = float("inf")
_NAN = float("nan")
_NO_EXCHANGE = bytes(8)
_EPOCH = dt.date(1970, 1, 1)
_CHINA_UTC_OFFSET_NS = 8 * 3600 * 1_000_000_000
_DAY_NS = 86_400 * 1_000_000_000
_MS_NS = 1_000_000
_SESSION_EDGES_NS = (6 * 3600 * 1_000_000_000, 18 * 3600 * 1_000_000_000, _DAY_NS)
"""Local clock times where the trading day of a timestamp may change (calendar.py's rule)."""


class ProductLookup(Protocol):
    """Where the chain finds an instrument's product (tick, multiplier, exchange):
    ``refdata.instruments.ProductTable`` (the shipped table), or any lookup over the
    counter's instrument list; unknown ids raise KeyError or ValueError."""

    def product_of(self, instrument_id: str) -> Product: ...


class Rejection(NamedTuple):
    """Why a request was refused: the check's code (checks.PRECEDENCE) and a text with the
    figures that broke the limit."""

    code: str
    text: str


def _ignore_alert(code: str, text: str) -> None:
    """The default alert sink (the live desk journals ALERTs instead)."""


class RiskChain:
    """The check chain over one set of limits and the product table."""

    def __init__(self, limits: RiskLimits, products: ProductLookup, *,
                 alert: Alert = _ignore_alert) -> None:
        self._limits = limits
        self._products = products
        self._alert = alert
        self._positions = Positions()
        self._facts = OrderFacts()
        self._accounts: dict[bytes, AccountState] = {}
        self._instruments: dict[bytes, InstrumentState | None] = {}
        self._killed = False
        self._day = 0
        self._day_from = 0
        self._day_until = 0
        self.cancel_first: list[LiveOrder] = []
        """After an accepted insert: the account's resting orders to cancel before sending it
        (self_trade = "cancel_resting"); already counted as cancels and marked requested."""
        self.rejected: dict[str, int] = {}
        """Refusals per reason code since start (metrics)."""
        self.accepted_inserts = 0
        self.accepted_cancels = 0
        self.alerts = 0

    # --- decisions ----------------------------------------------------------------------

    def decide_insert(self, order: Any, now_ns: int) -> Rejection | None:
        """None to send the ORDER_REQ ``order``, else why not. Accepting counts it."""
        return self._insert(order, now_ns, True)

    def restore_insert(self, order: Any, now_ns: int) -> Rejection | None:
        """Count an insert accepted before a restart (the desk replays its journal's
        ORDER_SENDs), without checking it again: the limits may have changed since, and the
        decision stands. Only what makes the order untrackable refuses it (malformed,
        unknown instrument); no metric moves."""
        return self._insert(order, now_ns, False)

    def decide_cancel(self, cancel: Any, now_ns: int) -> Rejection | None:
        """None to send the CANCEL_REQ ``cancel``, else why not. Accepting counts it."""
        return self._cancel(cancel, now_ns, True)

    def restore_cancel(self, cancel: Any, now_ns: int) -> Rejection | None:
        """Count a cancel accepted before a restart, without checking it again (as
        :meth:`restore_insert`); refused only if its order is not live."""
        return self._cancel(cancel, now_ns, False)

    def _insert(self, order: Any, now_ns: int, checked: bool) -> Rejection | None:
        (instrument_id, exchange, ref, price, volume, direction, offset, price_type,
         account_id) = _INSERT(order)
        cancel_first = self.cancel_first
        if cancel_first:
            cancel_first.clear()
        account = self._accounts.get(account_id) or self._account(account_id)
        if account is None:
            return self._refuse(MALFORMED, self._unknown_account_text(account_id), checked)
        if (volume <= 0 or direction > 1 or offset > 3 or price_type > 3 or ref <= 0
                or (price_type != _MARKET and not 0 < price < _INF)):
            return self._refuse(MALFORMED, _malformed_text(ref, price, volume, direction,
                                                           offset, price_type), checked)
        if ref in account.orders:
            return self._refuse(MALFORMED, f"order_ref {ref} of {account.name} is already live",
                                checked)
        instrument = self._known(instrument_id)
        if instrument is None or (exchange != _NO_EXCHANGE and exchange != instrument.exchange_id):
            return self._refuse_order(account, ref, UNKNOWN_INSTRUMENT,
                                      _unknown_instrument_text(instrument_id, exchange, instrument),
                                      checked)
        self._roll_day(account, now_ns)
        if self._killed and checked:
            return self._refuse_order(account, ref, KILL_SWITCH, "the kill switch is on")
        book = account.books.get(instrument_id) or self._book(account, instrument_id, instrument)
        if book.day != self._day:
            book.roll(self._day)
        facts = self._facts
        facts.order_ref = ref
        facts.price = _NAN if price_type == _MARKET else price
        facts.volume = volume
        facts.direction = direction
        facts.offset = offset
        facts.resting = price_type == 0
        for code, check in account.insert_checks if checked else ():
            text = check(facts, account, book, now_ns)
            if text is not None:
                if cancel_first:
                    cancel_first.clear()
                if code == LOSS_LIMIT and not account.loss_alerted:
                    account.loss_alerted = True  # once a day: every later order says it too
                    self._raise_alert(LOSS_LIMIT, f"{account.name}: {text}")
                return self._refuse_order(account, ref, code, text)
        if checked:
            self.accepted_inserts += 1
        self._accept_insert(account, book, facts, now_ns)
        return None

    def _cancel(self, cancel: Any, now_ns: int, checked: bool) -> Rejection | None:
        instrument_id, ref, account_id = _CANCEL(cancel)
        account = self._accounts.get(account_id) or self._account(account_id)
        if account is None:
            return self._refuse(MALFORMED, self._unknown_account_text(account_id), checked)
        if ref <= 0:
            return self._refuse(MALFORMED, f"order_ref {ref} is not a live order's", checked)
        order = account.orders.get(ref)
        if order is not None and instrument_id != order.book.key:
            return self._refuse(MALFORMED, f"order {ref} of {account.name} is in "
                                f"{order.instrument.id}, not {_text(instrument_id)}", checked)
        if order is None and self._known(instrument_id) is None:
            return self._refuse(UNKNOWN_INSTRUMENT,
                                _unknown_instrument_text(instrument_id, _NO_EXCHANGE, None),
                                checked)
        self._roll_day(account, now_ns)
        if self._killed and checked:
            return self._refuse(KILL_SWITCH, "the kill switch is on")
        if order is None or not order.resting or order.cancel_requested:
            return self._refuse(UNKNOWN_ORDER, _not_working_text(account, ref, order), checked)
        book = order.book
        if book.day != self._day:
            book.roll(self._day)
        for code, check in account.cancel_checks if checked else ():
            text = check(account, book, now_ns, 1)
            if text is not None:
                return self._refuse(code, text)
        order.cancel_requested = True
        self._count_cancel(account, book, now_ns)
        if checked:
            self.accepted_cancels += 1
        return None

    # --- what happened to the orders ----------------------------------------------------

    def on_order(self, rtn: Any) -> None:
        """An RTN_ORDER: fills and terminal statuses release the order's exposure."""
        ref, order_sys_id, traded, status, account_id = _RTN_ORDER(rtn)
        account = self._accounts.get(account_id)
        order = None if account is None else account.orders.get(ref)
        if account is None or order is None:
            return
        if order_sys_id[0]:
            order.order_sys_id = order_sys_id
        if traded > order.traded:
            _fill(order, traded - order.traded)
        if status >= _TERMINAL:
            self._finish(account, order, _FINISHED.get(status, "finished"))

    def on_trade(self, trade: Any) -> None:
        """An RTN_TRADE: the filled lots leave the order's exposure (the position view has them)."""
        ref, volume, account_id = _RTN_TRADE(trade)
        account = self._accounts.get(account_id)
        order = None if account is None else account.orders.get(ref)
        if account is None or order is None:
            return
        _fill(order, volume)
        if order.remaining == 0:
            self._finish(account, order, "filled")

    def on_tick(self, tick: Any) -> None:
        """A MARKET_DATA record: last and limit prices for price_band and market orders."""
        instrument_id, last, upper, lower = _TICK(tick)
        instrument = self._known(instrument_id)
        if instrument is not None:
            if last == last:
                instrument.last = last
            if upper == upper:
                instrument.upper = upper
            if lower == lower:
                instrument.lower = lower

    def set_position_view(self, view: PositionView) -> None:
        """Where position_limit and loss_limit read positions and PnL from."""
        self._positions.view = view

    # --- kill switch and runtime limits -------------------------------------------------

    @property
    def killed(self) -> bool:
        return self._killed

    def kill(self, cancel_all: bool, now_ns: int | None = None) -> list[LiveOrder]:
        """Refuse every new insert and cancel from now on; with ``cancel_all``, the working
        orders to cancel (marked requested and counted as cancels, never refused by a limit:
        an emergency cancel must go out)."""
        self._killed = True
        if not cancel_all:
            return []
        now_ns = time.time_ns() if now_ns is None else now_ns
        working = [order for account in self._accounts.values()
                   for order in account.orders.values()
                   if order.resting and not order.cancel_requested]
        for order in working:
            order.cancel_requested = True
            self._count_cancel(self._account_of(order), order.book, now_ns)
        return working

    def resume(self) -> None:
        self._killed = False

    @property
    def limits(self) -> RiskLimits:
        return self._limits

    def show(self) -> dict[str, dict[str, Any]]:
        """Every limits table with the keys it sets (``default`` first)."""
        return self._limits.show()

    def set(self, account: str, key: str, value: object) -> dict[str, Any]:
        """Change one limit now (None unsets it); LimitError names the key and the reason and
        leaves the limits as they were. Returns the changed table."""
        self._limits = self._limits.with_value(account, key, value)
        for state in self._accounts.values():
            self._configure(state)
        return self._limits.show()[account]

    def counts(self) -> dict[str, int]:
        """Decisions since start, for metrics: accepted per kind, refused per reason."""
        return {"accepted_insert": self.accepted_inserts,
                "accepted_cancel": self.accepted_cancels, "alerts": self.alerts,
                **{f"rejected_{code}": n for code, n in self.rejected.items()}}

    # --- internals ----------------------------------------------------------------------

    def _refuse(self, code: str, text: str, counted: bool = True) -> Rejection:
        if counted:
            self.rejected[code] = self.rejected.get(code, 0) + 1
        return Rejection(code, text)

    def _refuse_order(self, account: AccountState, ref: int, code: str, text: str,
                      counted: bool = True) -> Rejection:
        account.finished[ref] = f"refused by risk ({code})"
        return self._refuse(code, text, counted)

    def _accept_insert(self, account: AccountState, book: Book, facts: OrderFacts,
                       now_ns: int) -> None:
        account.inserts_today += 1
        account.insert_window.add(now_ns)
        limits = account.limits
        if limits is not None and limits.duplicate_window_ms is not None:
            recent = account.recent
            recent[duplicate_key(facts, book)] = now_ns
            if len(recent) > 4096:
                _forget_before(recent, now_ns - limits.duplicate_window_ms * _MS_NS)
        order = LiveOrder(account.name, facts.order_ref, book, facts.direction, facts.offset,
                          facts.price, facts.volume, facts.resting)
        account.orders[facts.order_ref] = order
        if facts.direction == 0:
            book.buy_lots += facts.volume
        else:
            book.sell_lots += facts.volume
        if facts.offset == OPEN:
            book.open_lots += facts.volume
        if facts.resting:
            book.rest(order)
            account.working += 1
        for resting in self.cancel_first:
            resting.cancel_requested = True
            self._count_cancel(account, resting.book, now_ns)

    def _count_cancel(self, account: AccountState, book: Book, now_ns: int) -> None:
        """An accepted cancel: rate window, the day's counts, and the warnings they cross."""
        account.cancels_today += 1
        book.cancels += 1
        account.cancel_window.add(now_ns)
        limits = account.limits
        if limits is None:
            return
        if (limits.daily_cancels_warn is not None and not book.cancels_warned
                and book.cancels >= limits.daily_cancels_warn):
            book.cancels_warned = True
            self._raise_alert("daily_cancels", f"{account.name}: {book.cancels} cancels of "
                              f"{book.instrument.id} today, daily_cancels_warn "
                              f"{limits.daily_cancels_warn}")
        if limits.cancel_ratio_warn is not None and not account.ratio_warned:
            inserts = account.inserts_today
            ratio = account.cancels_today / max(inserts, 1)
            if inserts >= (limits.cancel_ratio_min_orders or 0) and ratio > limits.cancel_ratio_warn:
                account.ratio_warned = True
                self._raise_alert("cancel_ratio", f"{account.name}: {account.cancels_today} "
                                  f"cancels / {inserts} orders today = {ratio:.3f} > "
                                  f"cancel_ratio_warn {limits.cancel_ratio_warn:g}")

    def _raise_alert(self, code: str, text: str) -> None:
        self.alerts += 1
        self._alert(code, text)

    def _finish(self, account: AccountState, order: LiveOrder, why: str) -> None:
        """The order is terminal: release what is left of its exposure and forget it."""
        _fill(order, order.remaining)
        del account.orders[order.order_ref]
        if order.resting:
            order.book.unrest(order)
            account.working -= 1
        account.finished[order.order_ref] = why

    def _account(self, account_id: bytes) -> AccountState | None:
        """The state of a listed account, made on its first request; None if not listed."""
        name = account_id.rstrip(b"\0").decode("ascii", "replace")
        if not name or not self._limits.knows(name):
            return None
        state = AccountState(name, self.cancel_first)
        self._configure(state)
        self._accounts[account_id] = state
        return state

    def _account_of(self, order: LiveOrder) -> AccountState:
        return self._accounts[order.account.encode().ljust(16, b"\0")]

    def _configure(self, state: AccountState) -> None:
        """Bind the account's current limits: its checks and rate windows."""
        limits = self._limits.limits_of(state.name)
        state.limits = limits
        state.insert_checks = insert_checks(limits, self._positions)
        state.cancel_checks = cancel_checks(limits)
        state.insert_window.hold(limits.max_orders_per_s or 0)
        state.cancel_window.hold(limits.max_cancels_per_s or 0)

    def _known(self, instrument_id: bytes) -> InstrumentState | None:
        try:
            return self._instruments[instrument_id]
        except KeyError:
            return self._instrument(instrument_id)

    def _instrument(self, instrument_id: bytes) -> InstrumentState | None:
        """A product-table instrument's state, made once; None (remembered) if unknown."""
        name = instrument_id.rstrip(b"\0").decode("ascii", "replace")
        try:
            state: InstrumentState | None = InstrumentState(name, self._products.product_of(name))
        except (KeyError, ValueError):
            state = None
        self._instruments[instrument_id] = state
        return state

    def _book(self, account: AccountState, key: bytes, instrument: InstrumentState) -> Book:
        book = Book(instrument, key)
        account.books[key] = book
        return book

    def _roll_day(self, account: AccountState, now_ns: int) -> None:
        """Move the chain, and this account's day counters, to the trading day of ``now_ns``."""
        if not self._day_from <= now_ns < self._day_until:
            self._set_day(now_ns)
        if account.day != self._day:
            account.roll(self._day)

    def _set_day(self, now_ns: int) -> None:
        """The trading day of ``now_ns`` (CTP's: a night session after 18:00 belongs to the
        next trading day), and the span of times that share it, so most calls skip this."""
        local = now_ns + _CHINA_UTC_OFFSET_NS
        midnight = local - local % _DAY_NS
        since_midnight = local - midnight
        action = to_day(_EPOCH + dt.timedelta(days=midnight // _DAY_NS))
        self._day = trading_day_of(action, since_midnight // _MS_NS)
        start = 0
        for edge in _SESSION_EDGES_NS:
            if since_midnight < edge:
                self._day_from = midnight + start - _CHINA_UTC_OFFSET_NS
                self._day_until = midnight + edge - _CHINA_UTC_OFFSET_NS
                return
            start = edge

    def _unknown_account_text(self, account_id: bytes) -> str:
        name = _text(account_id)
        if not name:
            return "the order has no account"
        return (f"account {name!r} has no [accounts.{name}] table "
                f"(accounts: {', '.join(self._limits.accounts)})")


def _fill(order: LiveOrder, lots: int) -> None:
    """``lots`` of the order filled (or were released): they leave its book's exposure."""
    order.traded += lots
    lots = min(lots, order.remaining)
    order.remaining -= lots
    book = order.book
    if order.direction == 0:
        book.buy_lots -= lots
    else:
        book.sell_lots -= lots
    if order.offset == OPEN:
        book.open_lots -= lots


def _forget_before(recent: dict[Any, int], cutoff_ns: int) -> None:
    for key in [key for key, when in recent.items() if when <= cutoff_ns]:
        del recent[key]


def _text(raw: bytes) -> str:
    return raw.rstrip(b"\0").decode("utf-8", "replace")


def _malformed_text(ref: int, price: float, volume: int, direction: int, offset: int,
                    price_type: int) -> str:
    if volume <= 0:
        return f"volume {volume} is not positive"
    if direction > 1:
        return f"direction {direction} is not 0 (buy) or 1 (sell)"
    if offset > 3:
        return f"offset {offset} is not 0..3"
    if price_type > 3:
        return f"price_type {price_type} is not 0..3"
    if ref <= 0:
        return f"order_ref {ref} is not positive"
    return f"price {price} of a {PriceType(price_type).name.lower()} order is not a positive number"


def _unknown_instrument_text(instrument_id: bytes, exchange: bytes,
                             instrument: InstrumentState | None) -> str:
    if instrument is not None:
        return f"{instrument.id} trades on {instrument.exchange}, not {_text(exchange)}"
    return f"instrument {_text(instrument_id)!r} is not in the product table"


def _not_working_text(account: AccountState, ref: int, order: LiveOrder | None) -> str:
    if order is None:
        return (f"order {ref} of {account.name} is not working "
                f"({account.finished.get(ref, 'unknown')})")
    if not order.resting:
        return f"order {ref} of {account.name} is FAK/FOK/market: it never rests"
    return f"order {ref} of {account.name} already has a cancel pending"
