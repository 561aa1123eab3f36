"""The position book: per account, instrument and direction, CTP's InvestorPosition figures.

One set of rules, shared by the live book beside the gateway and ``hftctl pnl`` (issue 10):

- an open adds today's lots at the trade price; lots close first-opened-first (先开先平);
- SHFE/INE: ``close`` and ``close_yesterday`` close yesterday's lots, ``close_today``
  today's; other exchanges: any close takes yesterday's lots first, then today's;
- close profit by trade: (close price - the lot's open price) x lots x multiplier; by date:
  yesterday's lots against the previous settlement, today's against their open price;
  both negated for a short position;
- at the end of a trading day (:meth:`PositionEntry.roll`, after marking at the settlement):
  every lot becomes yesterday's, valued at that settlement from then on.

Exact money. A price is an int of price ticks (every exchange price and settlement lies on
the product's tick grid) and every amount is an int of micro-yuan (``MONEY_SCALE`` per CNY;
one tick of one lot of every shipped product is a whole number of yuan). Integer sums never
drift, however many trades, and cost a few tens of ns where Decimal arithmetic costs
hundreds; floats appear only at the edges (POS_UPDATE records, display), converted once by
a correctly rounded integer division. Commission arrives as CTP's double and is kept to the
micro-yuan (a ten-thousandth of a fen): below anything a counter reports.

Margin is ``margin rate of the product x position_cost`` (today's lots at their open price,
yesterday's at the previous settlement: what CTP counters charge for a plain speculative
position), the rate in parts per million, rounded half up to the micro-yuan.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Iterator, Mapping, Sequence
from decimal import Decimal
from typing import Any, NamedTuple

from hft.daemons.refdata.instruments import SPLIT_CLOSE_EXCHANGES, ProductTable, product_code
from hft.daemons.runtime.events import (
    Direction,
    EventType,
    Offset,
    PosDirection,
    record_struct,
)

MONEY_SCALE = 1_000_000
"""Book money units per CNY: every amount in the book is an int of micro-yuan."""

RATE_SCALE = 1_000_000
"""Margin rates are kept in parts per million."""
_HALF_RATE = RATE_SCALE // 2


OVER_CLOSE = (30, "平仓量超过持仓量")
OVER_CLOSE_TODAY = (50, "平今仓位不足")
OVER_CLOSE_YESTERDAY = (51, "平昨仓位不足")
"""CTP's ErrorID and text for a close beyond the position (error.xml)."""

_CLOSE_TODAY = int(Offset.CLOSE_TODAY)
_OPEN = int(Offset.OPEN)
_BUY = int(Direction.BUY)
_LONG, _SHORT = int(PosDirection.LONG), int(PosDirection.SHORT)
_POS_UPDATE = int(EventType.POS_UPDATE)


class Mismatch(NamedTuple):
    """A side where the book and the counter disagree: (position, today_position) each."""

    account: str
    instrument: str
    direction: PosDirection
    ours: tuple[int, int]
    counter: tuple[int, int]


Sides = Mapping[tuple[str, str, int], tuple[int, int]]
"""(account, instrument, direction) -> (position, today_position)."""


def mismatches(ours: Sides, counter: Sides) -> list[Mismatch]:
    """Every side where ``ours`` and the counter's InvestorPosition figures differ, a side
    only one of them holds included (a flat side counts as absent), in key order."""
    held = {key: lots for key, lots in ours.items() if lots[0]}
    theirs = {key: lots for key, lots in counter.items() if lots[0]}
    return [Mismatch(key[0], key[1], PosDirection(key[2]), held.get(key, (0, 0)),
                     theirs.get(key, (0, 0)))
            for key in sorted(held.keys() | theirs.keys()) if held.get(key) != theirs.get(key)]


class BookError(ValueError):
    """A trade, freeze or mark the book refuses; nothing was changed."""


class PositionError(BookError):
    """A close or freeze beyond the unfrozen position, with CTP's ErrorID and text."""

    def __init__(self, message: str, error: tuple[int, str]) -> None:
        self.error_id, self.ctp_text = error
        super().__init__(f"{message} (CTP {self.error_id}: {self.ctp_text})")


def decimal_to_money(value: Decimal) -> int:
    """CNY as an exact Decimal -> micro-yuan; BookError if it has more than 6 decimals."""
    scaled = value.scaleb(6)
    if scaled != scaled.to_integral_value():
        raise BookError(f"{value} CNY has more than 6 decimal places")
    return int(scaled)


def float_to_money(value: float) -> int:
    """CNY as CTP's double (e.g. a trade's commission) -> micro-yuan, rounded."""
    return round(value * MONEY_SCALE)


def money_to_decimal(money: int) -> Decimal:
    """Micro-yuan -> exact CNY, with at least two decimals (fen)."""
    value = Decimal(money).scaleb(-6)
    cents = value.quantize(Decimal("0.01"))
    return cents if cents == value else value.normalize()


class Contract:
    """What the book needs of one instrument: exchange, tick grid and value, margin rate."""

    __slots__ = ("exchange", "instrument", "margin_ppm",
                 "multiplier", "split_close", "tick", "tick_den", "tick_num", "tick_value")

    def __init__(self, instrument: str, exchange: str, tick: Decimal, multiplier: int,
                 margin_rate: Decimal) -> None:
        tick_value = tick * multiplier * MONEY_SCALE
        if tick <= 0 or tick_value != tick_value.to_integral_value():
            raise BookError(f"{instrument}: price tick {tick} x multiplier {multiplier} is not a "
                            "whole number of micro-yuan")
        margin_ppm = margin_rate * RATE_SCALE
        if not 0 <= margin_rate <= 1 or margin_ppm != margin_ppm.to_integral_value():
            raise BookError(f"{instrument}: margin rate {margin_rate} must be in [0, 1] with at "
                            "most 6 decimal places")
        self.instrument = instrument
        self.exchange = exchange
        self.tick = tick
        self.multiplier = multiplier
        self.tick_value = int(tick_value)
        """Micro-yuan per tick per lot."""
        self.margin_ppm = int(margin_ppm)
        self.split_close = exchange in SPLIT_CLOSE_EXCHANGES
        self.tick_num, self.tick_den = tick.as_integer_ratio()
        """The tick as an exact fraction: a price is ticks x tick_num / tick_den."""

    def ticks(self, price: float) -> int:
        """A price from the wire (CTP's double, on the tick grid) -> ticks."""
        return round(price * self.tick_den / self.tick_num)

    def exact_ticks(self, price: Decimal, what: str = "price") -> int:
        """An exact price -> ticks; BookError (naming it ``what``) if it is off the tick grid."""
        ticks = price / self.tick
        if ticks != ticks.to_integral_value():
            raise BookError(f"{what} {price} is not a multiple of {self.instrument}'s price tick "
                            f"{self.tick}")
        return int(ticks)

    def exact_price(self, ticks: int) -> Decimal:
        return ticks * self.tick


class PositionEntry:
    """One account's position in one instrument on one side: its lots (oldest first) and
    the trading day's figures. Amounts are micro-yuan, prices ticks (module docstring)."""

    __slots__ = ("_td_lots", "_yd_lots", "account", "close_profit_by_date",
                 "close_profit_by_trade", "commission", "contract", "direction", "frozen",
                 "frozen_today", "key", "mark_ticks", "open_cost", "pre_settlement_ticks",
                 "sign", "today_cost", "today_position", "traded", "yd_position")

    def __init__(self, account: str, contract: Contract, direction: PosDirection) -> None:
        self.account = account
        self.contract = contract
        self.direction = direction
        self.key = (contract.instrument.encode(), contract.exchange.encode(), account.encode(),
                    int(direction))
        """The record's identity fields as bytes, encoded once."""
        self.sign = 1 if direction == PosDirection.LONG else -1
        """+1 long, -1 short: what every profit is multiplied by."""
        self._yd_lots: deque[list[int]] = deque()  # [open ticks, lots], oldest first
        self._td_lots: deque[list[int]] = deque()
        self.yd_position = 0
        self.today_position = 0
        self.frozen = 0
        """Lots reserved by working close orders."""
        self.frozen_today = 0
        """The part of ``frozen`` reserved by close-today orders (SHFE/INE only)."""
        self.open_cost = 0
        self.today_cost = 0  # today's lots at their open prices
        self.pre_settlement_ticks: int | None = None
        self.mark_ticks: int | None = None
        self.close_profit_by_date = 0
        self.close_profit_by_trade = 0
        self.commission = 0
        self.traded = False
        """Whether this side traded since the last roll."""

    @property
    def position(self) -> int:
        return self.yd_position + self.today_position

    @property
    def position_cost(self) -> int:
        """Today's lots at their open price plus yesterday's at the previous settlement."""
        if not self.yd_position:
            return self.today_cost
        assert self.pre_settlement_ticks is not None  # yesterday's lots were rolled at a mark
        return (self.today_cost
                + self.yd_position * self.pre_settlement_ticks * self.contract.tick_value)

    def _marked_value(self) -> int:
        if self.mark_ticks is None:
            return 0  # nothing held has been traded or marked yet
        return (self.yd_position + self.today_position) * self.mark_ticks * self.contract.tick_value

    @property
    def position_profit(self) -> int:
        """Held lots at the mark minus ``position_cost`` (negated for short)."""
        return self.sign * (self._marked_value() - self.position_cost)

    @property
    def position_profit_by_trade(self) -> int:
        """Held lots at the mark minus ``open_cost`` (negated for short)."""
        return self.sign * (self._marked_value() - self.open_cost)

    @property
    def margin(self) -> int:
        return (self.position_cost * self.contract.margin_ppm + _HALF_RATE) // RATE_SCALE

    def open(self, ticks: int, volume: int, commission: int) -> None:
        """Today's new lots at ``ticks``; the first trade also marks an unmarked entry."""
        if volume <= 0:
            raise BookError(f"volume must be > 0, got {volume}")
        self._td_lots.append([ticks, volume])
        self.today_position += volume
        cost = ticks * volume * self.contract.tick_value
        self.open_cost += cost
        self.today_cost += cost
        self.commission += commission
        self.traded = True
        if self.mark_ticks is None:
            self.mark_ticks = ticks

    def close(self, offset: int, ticks: int, volume: int, commission: int,
              from_frozen: bool = False) -> None:
        """Close ``volume`` lots at ``ticks`` as ``offset`` says (module docstring); with
        ``from_frozen`` the lots are those a working close order froze (its fill).
        PositionError, changing nothing, if the position cannot give them."""
        if volume <= 0:
            raise BookError(f"volume must be > 0, got {volume}")
        if from_frozen:  # frozen lots are always held (closes only take unfrozen ones), so
            self.unfreeze(offset, volume)  # once released, _split finds them
        from_yd = self._split(offset, volume)
        tick_value = self.contract.tick_value
        by_date = by_trade = 0
        if from_yd:
            opened = _take(self._yd_lots, from_yd)
            self.yd_position -= from_yd
            self.open_cost -= opened * tick_value
            assert self.pre_settlement_ticks is not None
            by_trade = ticks * from_yd - opened
            by_date = (ticks - self.pre_settlement_ticks) * from_yd
        from_td = volume - from_yd
        if from_td:
            opened = _take(self._td_lots, from_td)
            self.today_position -= from_td
            self.open_cost -= opened * tick_value
            self.today_cost -= opened * tick_value
            by_trade += ticks * from_td - opened
            by_date += ticks * from_td - opened
        self.close_profit_by_trade += self.sign * by_trade * tick_value
        self.close_profit_by_date += self.sign * by_date * tick_value
        self.commission += commission
        self.traded = True

    def _split(self, offset: int, volume: int) -> int:
        """How many of ``volume`` closing lots come from yesterday's; PositionError if the
        unfrozen lots the offset may take are too few."""
        if self.contract.split_close:
            if offset == _CLOSE_TODAY:
                self._check(volume, self.today_position - self.frozen_today, "today's",
                            OVER_CLOSE_TODAY)
                return 0
            self._check(volume, self.yd_position - (self.frozen - self.frozen_today),
                        "yesterday's", OVER_CLOSE_YESTERDAY)
            return volume
        self._check(volume, self.yd_position + self.today_position - self.frozen, "",
                    OVER_CLOSE)
        return min(volume, self.yd_position)

    def _check(self, volume: int, available: int, which: str, error: tuple[int, str]) -> None:
        if volume > available:
            side = "long" if self.sign > 0 else "short"
            which = f"{which} " if which else ""
            raise PositionError(
                f"account {self.account} {self.contract.instrument} {side}: closing {volume} "
                f"lots exceeds the {available} unfrozen {which}lots held", error)

    def freeze(self, offset: int, volume: int) -> None:
        """Reserve lots for a working close order (PositionError if they are not there)."""
        if volume <= 0:
            raise BookError(f"volume must be > 0, got {volume}")
        self._split(offset, volume)
        self.frozen += volume
        if self.contract.split_close and offset == _CLOSE_TODAY:
            self.frozen_today += volume

    def unfreeze(self, offset: int, volume: int) -> None:
        """Release lots a close order froze (cancelled, or about to be booked as its fill)."""
        today = self.contract.split_close and offset == _CLOSE_TODAY
        frozen = self.frozen_today if today else self.frozen - self.frozen_today
        if not 0 < volume <= frozen:
            raise BookError(f"{self.account} {self.contract.instrument}: cannot unfreeze "
                            f"{volume} lots, {frozen} are frozen for that offset")
        self.frozen -= volume
        if today:
            self.frozen_today -= volume

    def roll(self) -> None:
        """End of the trading day, after marking at the settlement: every lot becomes
        yesterday's, valued at that settlement; the day's close profits and commission
        start again from zero."""
        if self.today_position or self.yd_position:
            self._yd_lots.extend(self._td_lots)
            self._td_lots.clear()
            self.yd_position += self.today_position
            self.today_position = 0
        self.pre_settlement_ticks = self.mark_ticks
        self.frozen_today = 0
        self.today_cost = 0
        self.close_profit_by_date = self.close_profit_by_trade = self.commission = 0
        self.traded = False


def _take(lots: deque[list[int]], volume: int) -> int:
    """Remove ``volume`` lots, oldest first; returns the sum of their open ticks x lots."""
    opened = 0
    while volume:
        lot = lots[0]
        if lot[1] <= volume:
            volume -= lot[1]
            opened += lot[0] * lot[1]
            lots.popleft()
        else:
            lot[1] -= volume
            opened += lot[0] * volume
            volume = 0
    return opened


class PositionBook:
    """Every account's entries, created on first use; contracts from the product table."""

    def __init__(self, products: ProductTable, margin_rates: Mapping[str, Decimal] | None = None,
                 default_margin_rate: Decimal = Decimal(0)) -> None:
        """``margin_rates``: product code -> rate (0.12 = 12%); others take the default."""
        self._products = products
        self._margin_rates = dict(margin_rates or {})
        self._default_margin_rate = default_margin_rate
        self._contracts: dict[str, Contract] = {}
        self._entries: dict[tuple[str, str, int], PositionEntry] = {}
        self._by_instrument: dict[str, list[PositionEntry]] = {}

    def contract(self, instrument: str) -> Contract:
        """The instrument's contract; BookError if its product is not in the table."""
        known = self._contracts.get(instrument)
        if known is not None:
            return known
        try:
            product = self._products.product_of(instrument)
        except (KeyError, ValueError) as exc:
            raise BookError(f"unknown instrument {instrument!r}: {exc.args[0]}") from None
        rate = self._margin_rates.get(product_code(instrument), self._default_margin_rate)
        contract = Contract(instrument, product.exchange, Decimal(str(product.price_tick)),
                            product.multiplier, rate)
        self._contracts[instrument] = contract
        return contract

    def entry(self, account: str, instrument: str, direction: PosDirection) -> PositionEntry:
        """The entry of one side, created empty on first use."""
        key = (account, instrument, direction)
        entry = self._entries.get(key)
        if entry is None:
            entry = PositionEntry(account, self.contract(instrument), direction)
            self._entries[key] = entry
            self._by_instrument.setdefault(instrument, []).append(entry)
        return entry

    def order_side(self, account: str, instrument: str, direction: int,
                   offset: int) -> PositionEntry:
        """The side an order or fill (CTP's Direction and Offset) opens or closes: a buy opens
        long and closes short."""
        opens = offset == _OPEN
        side = _LONG if (direction == _BUY) == opens else _SHORT
        entry = self._entries.get((account, instrument, side))
        return entry if entry is not None else self.entry(account, instrument,
                                                          PosDirection(side))

    def trade(self, account: str, instrument: str, direction: int, offset: int, ticks: int,
              volume: int, commission: int = 0, from_frozen: bool = False) -> PositionEntry:
        """Book one fill on the side it opens or closes and return that side; a close with
        ``from_frozen`` is the fill of a close order whose lots :meth:`freeze` reserved."""
        entry = self.order_side(account, instrument, direction, offset)
        if offset == _OPEN:
            entry.open(ticks, volume, commission)
        else:
            entry.close(offset, ticks, volume, commission, from_frozen)
        return entry

    def freeze(self, account: str, instrument: str, direction: int, offset: int,
               volume: int) -> PositionEntry:
        """Reserve the lots a close order will take while it works (PositionError, CTP's
        "平仓量超过持仓量", if they are not there); :meth:`unfreeze` when it is cancelled."""
        entry = self.order_side(account, instrument, direction, offset)
        entry.freeze(offset, volume)
        return entry

    def unfreeze(self, account: str, instrument: str, direction: int, offset: int,
                 volume: int) -> PositionEntry:
        entry = self.order_side(account, instrument, direction, offset)
        entry.unfreeze(offset, volume)
        return entry

    def mark(self, instrument: str, ticks: int) -> None:
        """Mark every account's entries in ``instrument`` at ``ticks``."""
        for entry in self._by_instrument.get(instrument, ()):
            entry.mark_ticks = ticks

    def entries(self) -> Iterator[PositionEntry]:
        """Every entry, in creation order."""
        return iter(self._entries.values())

    def instruments(self) -> Iterator[str]:
        return iter(self._by_instrument)

    def entries_of(self, instrument: str) -> Sequence[PositionEntry]:
        """Every account's entries in ``instrument``."""
        return self._by_instrument.get(instrument, ())

    def roll(self) -> None:
        """End of the trading day for every entry (mark them at the settlement first)."""
        for entry in self._entries.values():
            entry.roll()


_POS_PACKER = record_struct(EventType.POS_UPDATE)
_NAN = float("nan")


def pack_pos_update(buffer: Any, offset: int, entry: PositionEntry, *, ts_ns: int,
                    trading_day: int, instrument_index: int, source: int) -> None:
    """Write the POS_UPDATE record of ``entry`` at ``buffer[offset:]`` (a journal slot from
    ``next_slot()``, or a record's bytes) in one ``pack_into``; money in CNY as floats. The
    live book calls it on every change, so the entry's properties are computed inline here,
    each once."""
    contract = entry.contract
    instrument, exchange, account, direction = entry.key
    held = entry.yd_position + entry.today_position
    pre, mark = entry.pre_settlement_ticks, entry.mark_ticks
    position_cost = entry.today_cost
    if entry.yd_position:
        assert pre is not None
        position_cost += entry.yd_position * pre * contract.tick_value
    marked = 0 if mark is None else held * mark * contract.tick_value
    sign, scale, num, den = entry.sign, MONEY_SCALE, contract.tick_num, contract.tick_den
    _POS_PACKER.pack_into(
        buffer, offset, 0, ts_ns, _POS_UPDATE, 0, trading_day, instrument_index, source,
        instrument, exchange, account, direction, held, entry.today_position,
        entry.yd_position, entry.frozen, entry.open_cost / scale, position_cost / scale,
        entry.close_profit_by_date / scale, entry.close_profit_by_trade / scale,
        sign * (marked - position_cost) / scale, sign * (marked - entry.open_cost) / scale,
        entry.commission / scale,
        (position_cost * contract.margin_ppm + _HALF_RATE) // RATE_SCALE / scale,
        _NAN if pre is None else pre * num / den, _NAN if mark is None else mark * num / den)
