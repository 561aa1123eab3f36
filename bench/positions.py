"""``bench positions``: what one trade costs the position book, against a plain Decimal book.

The stream: two accounts trading IF (CFFEX, plain closes) and rb (SHFE, close-today and
close-yesterday) with prices and commissions as floats, as CTP's OnRtnTrade gives them;
opens and closes mixed so positions stay small and FIFO walks a few lots, a settlement and
roll every ``TRADES_PER_DAY`` trades (so yesterday's lots and by-date profit are exercised).

- ``update_ns``: ours per trade: the price to ticks, the commission to micro-yuan, and
  ``PositionBook.trade`` (rolls included);
- ``record_ns``: the same plus :func:`pack_pos_update` of the changed side, the POS_UPDATE
  the live book publishes on every change.

The peer, in the same run, is the same rules written plainly with Decimal (what a careful
Python book does for exact money): prices and money as ``Decimal``, lots as lists.
``ratio`` is its cost per trade over ours (``update_ns``). Each run ends by comparing both
books' figures, so the two sides provably did the same work.
"""

from __future__ import annotations

import random
import time
from dataclasses import dataclass, field
from decimal import Decimal

import numpy as np

from hft.bench.common import BenchError, Result, result
from hft.daemons.refdata.instruments import SPLIT_CLOSE_EXCHANGES, ProductTable
from hft.daemons.runtime.events import Direction, EventType, Offset, PosDirection, empty
from hft.daemons.trade.book import (
    PositionBook,
    float_to_money,
    money_to_decimal,
    pack_pos_update,
)

PEER = "the same rules with Decimal prices and money, lots as lists (a plain exact book)"
TRADES_PER_DAY = 5_000
INSTRUMENTS = {"IF2101": 5000.0, "rb2105": 3500.0}
ACCOUNTS = ("sim-a", "sim-b")
Trade = tuple[str, str, int, int, float, int, float]
"""account, instrument, Direction, Offset, price, volume, commission: as a gateway sees it."""


def run(quick: bool) -> list[Result]:
    n = 20_000 if quick else 200_000
    repeats = 3 if quick else 7
    products = ProductTable.load()
    days = _stream(products, n)
    runs = []
    for _ in range(repeats):  # alternating, so a load change on the machine hits both alike
        ours, book = _ours(products, days, record=False)
        theirs, peer = _peer(products, days)
        _check_same(book, peer)
        runs.append((ours, _ours(products, days, record=True)[0], theirs))
    ours_ns, record_ns, peer_ns = (float(np.median([r[i] for r in runs])) / n for i in range(3))
    return [result(
        "positions",
        {"update_ns": ours_ns, "record_ns": record_ns, "trades_per_s": 1e9 / ours_ns},
        params={"n": n, "repeats": repeats, "trades_per_day": TRADES_PER_DAY,
                "instruments": list(INSTRUMENTS), "accounts": len(ACCOUNTS)},
        quick=quick, baseline=(PEER, {"update_ns": peer_ns}), ratio=peer_ns / ours_ns)]


def _stream(products: ProductTable, n: int) -> list[list[Trade]]:
    """``n`` valid trades in days: closes never exceed what is held, by either rule."""
    rng = random.Random(20210104)  # noqa: S311 (a reproducible stream, not a secret)
    held: dict[tuple[str, str, int], list[int]] = {}  # side -> [yesterday's, today's] lots
    days: list[list[Trade]] = []
    for count in range(n):
        if count % TRADES_PER_DAY == 0:
            days.append([])
            for lots in held.values():
                lots[0], lots[1] = lots[0] + lots[1], 0
        account, instrument = rng.choice(ACCOUNTS), rng.choice(list(INSTRUMENTS))
        product = products.product_of(instrument)
        side = rng.choice((PosDirection.LONG, PosDirection.SHORT))
        lots = held.setdefault((account, instrument, side), [0, 0])
        price = INSTRUMENTS[instrument] + rng.randint(-50, 50) * product.price_tick
        volume = rng.randint(1, 3)
        offset, total = Offset.OPEN, lots[0] + lots[1]
        if total >= 6 or (total > 0 and rng.random() < 0.5):
            if product.exchange not in SPLIT_CLOSE_EXCHANGES:
                offset, volume = Offset.CLOSE, min(volume, total)
                from_yd = min(volume, lots[0])
                lots[0], lots[1] = lots[0] - from_yd, lots[1] - (volume - from_yd)
            else:
                bucket = 0 if lots[0] else 1
                offset = Offset.CLOSE_YESTERDAY if bucket == 0 else Offset.CLOSE_TODAY
                volume = min(volume, lots[bucket])
                lots[bucket] -= volume
        else:
            lots[1] += volume
        opens = offset == Offset.OPEN
        direction = Direction.BUY if (side == PosDirection.LONG) == opens else Direction.SELL
        days[-1].append((account, instrument, int(direction), int(offset), price, volume,
                         round(price * product.multiplier * volume * 2.3e-5, 2)))
    return days


def _ours(products: ProductTable, days: list[list[Trade]], record: bool) -> tuple[int, PositionBook]:
    """ns for our book to take every trade (and pack its POS_UPDATE if ``record``)."""
    book = PositionBook(products)
    contracts = {instrument: book.contract(instrument) for instrument in INSTRUMENTS}
    out = empty(EventType.POS_UPDATE)
    buffer = out.view(np.uint8).data
    trade, roll, mark = book.trade, book.roll, book.mark
    last: dict[str, int] = {}
    start = time.perf_counter_ns()
    for day in days:
        for account, instrument, direction, offset, price, volume, commission in day:
            ticks = contracts[instrument].ticks(price)
            entry = trade(account, instrument, direction, offset, ticks, volume,
                          float_to_money(commission))
            if record:
                pack_pos_update(buffer, 0, entry, ts_ns=0, trading_day=20210104,
                                instrument_index=0, source=0)
            last[instrument] = ticks
        for instrument, ticks in last.items():
            mark(instrument, ticks)  # the day's settlement
        roll()
    return time.perf_counter_ns() - start, book


@dataclass(slots=True)
class _DecimalLot:
    price: Decimal
    lots: int
    today: bool


@dataclass(slots=True)
class _DecimalSide:
    multiplier: Decimal
    split_close: bool
    sign: int
    lots: list[_DecimalLot] = field(default_factory=list)
    settlement: Decimal = Decimal(0)
    open_cost: Decimal = Decimal(0)
    by_date: Decimal = Decimal(0)
    by_trade: Decimal = Decimal(0)
    commission: Decimal = Decimal(0)


class _DecimalBook:
    """The peer: a plain exact book, every figure a Decimal (module docstring)."""

    def __init__(self, products: ProductTable) -> None:
        self._products = products
        self.sides: dict[tuple[str, str, int], _DecimalSide] = {}

    def trade(self, account: str, instrument: str, direction: int, offset: int, price: float,
              volume: int, commission: float) -> None:
        opens = offset == Offset.OPEN
        long_side = (direction == Direction.BUY) == opens
        key = (account, instrument, PosDirection.LONG if long_side else PosDirection.SHORT)
        side = self.sides.get(key)
        if side is None:
            product = self._products.product_of(instrument)
            side = _DecimalSide(Decimal(product.multiplier),
                                product.exchange in SPLIT_CLOSE_EXCHANGES, 1 if long_side else -1)
            self.sides[key] = side
        exact = Decimal(repr(price))
        side.commission += Decimal(repr(commission))
        if opens:
            side.lots.append(_DecimalLot(exact, volume, True))
            side.open_cost += exact * volume * side.multiplier
            return
        today_only = side.split_close and offset == Offset.CLOSE_TODAY
        yesterday_only = side.split_close and not today_only
        for lot in side.lots:
            if not volume:
                break
            if (today_only and not lot.today) or (yesterday_only and lot.today):
                continue
            take = min(volume, lot.lots)
            basis = lot.price if lot.today else side.settlement
            side.by_trade += side.sign * (exact - lot.price) * take * side.multiplier
            side.by_date += side.sign * (exact - basis) * take * side.multiplier
            side.open_cost -= lot.price * take * side.multiplier
            lot.lots -= take
            volume -= take
        side.lots = [lot for lot in side.lots if lot.lots]

    def roll(self, settlements: dict[str, Decimal]) -> None:
        for (_, instrument, _), side in self.sides.items():
            side.settlement = settlements.get(instrument, side.settlement)
            for lot in side.lots:
                lot.today = False
            side.by_date = side.by_trade = side.commission = Decimal(0)


def _peer(products: ProductTable, days: list[list[Trade]]) -> tuple[int, _DecimalBook]:
    book = _DecimalBook(products)
    trade = book.trade
    start = time.perf_counter_ns()
    for day in days:
        last: dict[str, Decimal] = {}
        for account, instrument, direction, offset, price, volume, commission in day:
            trade(account, instrument, direction, offset, price, volume, commission)
            last[instrument] = Decimal(repr(price))
        book.roll(last)
    return time.perf_counter_ns() - start, book


def _check_same(ours: PositionBook, peer: _DecimalBook) -> None:
    """Both books hold the same lots at the same cost (the last day's figures were rolled)."""
    for (account, instrument, direction), side in peer.sides.items():
        entry = ours.entry(account, instrument, PosDirection(direction))
        held = sum(lot.lots for lot in side.lots)
        if (entry.position, money_to_decimal(entry.open_cost)) != (held, side.open_cost):
            raise BenchError(f"the books disagree on {account} {instrument} {direction}: "
                             f"ours {entry.position} lots costing {entry.open_cost}, the peer's "
                             f"{held} costing {side.open_cost}")

