"""The position book: hand-worked PnL examples, refusals, frozen lots, the POS_UPDATE record,
exactness over a million trades, and property tests against an independent Decimal model."""

from __future__ import annotations

from dataclasses import dataclass, field
from decimal import Decimal

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from hft.daemons.refdata.instruments import ProductTable
from hft.daemons.runtime.events import (
    Direction,
    EventType,
    Offset,
    PosDirection,
    empty,
)
from hft.daemons.trade.book import (
    MONEY_SCALE,
    BookError,
    PositionBook,
    PositionEntry,
    PositionError,
    mismatches,
    money_to_decimal,
    pack_pos_update,
)

BUY, SELL = Direction.BUY, Direction.SELL
OPEN, CLOSE = Offset.OPEN, Offset.CLOSE
CLOSE_TODAY, CLOSE_YESTERDAY = Offset.CLOSE_TODAY, Offset.CLOSE_YESTERDAY
LONG, SHORT = PosDirection.LONG, PosDirection.SHORT
PRODUCTS = ProductTable.load()


def cny(money: int) -> Decimal:
    return money_to_decimal(money)


def yuan(text: str) -> int:
    return int(Decimal(text) * MONEY_SCALE)


class Trader:
    """Books trades for one account with prices and commissions written as in a statement."""

    def __init__(self, book: PositionBook, account: str = "a") -> None:
        self.book, self.account = book, account

    def __call__(self, instrument: str, direction: Direction, offset: Offset, price: str,
                 volume: int, commission: str = "0") -> PositionEntry:
        ticks = self.book.contract(instrument).exact_ticks(Decimal(price))
        return self.book.trade(self.account, instrument, direction, offset, ticks, volume,
                               yuan(commission))

    def settle(self, instrument: str, price: str) -> None:
        self.book.mark(instrument, self.book.contract(instrument).exact_ticks(Decimal(price)))


def figures(entry: PositionEntry) -> dict[str, object]:
    return {"position": entry.position, "today": entry.today_position, "yd": entry.yd_position,
            "open_cost": cny(entry.open_cost), "position_cost": cny(entry.position_cost),
            "by_date": cny(entry.close_profit_by_date),
            "by_trade": cny(entry.close_profit_by_trade),
            "position_profit": cny(entry.position_profit),
            "position_profit_by_trade": cny(entry.position_profit_by_trade),
            "commission": cny(entry.commission)}


def test_shfe_open_add_partial_close_today_then_yesterday_across_a_settlement() -> None:
    """rb (SHFE): multiplier 10, tick 1."""
    book = PositionBook(PRODUCTS)
    trade = Trader(book)
    # day 1: open 2 @ 3500, add 1 @ 3520, close today 1 @ 3530
    trade("rb2105", BUY, OPEN, "3500", 2, "1.50")
    trade("rb2105", BUY, OPEN, "3520", 1, "0.75")
    long = trade("rb2105", SELL, CLOSE_TODAY, "3530", 1, "0.80")
    # first opened first: the close takes one 3500 lot: (3530 - 3500) x 1 x 10 = 300,
    # the same by date (a lot opened today is measured from its open price)
    trade.settle("rb2105", "3510")
    # held 1 @ 3500 + 1 @ 3520: open_cost = (3500 + 3520) x 10 = 70200 = position_cost
    # position_profit = 2 x 3510 x 10 - 70200 = 0; commission 1.50 + 0.75 + 0.80 = 3.05
    assert figures(long) == {
        "position": 2, "today": 2, "yd": 0, "open_cost": Decimal(70200),
        "position_cost": Decimal(70200), "by_date": Decimal(300), "by_trade": Decimal(300),
        "position_profit": Decimal(0), "position_profit_by_trade": Decimal(0),
        "commission": Decimal("3.05")}
    book.roll()
    # day 2: both lots are yesterday's, valued at the 3510 settlement
    assert (long.yd_position, long.today_position, cny(long.position_cost)) == (2, 0, 35100 * 2)
    trade("rb2105", SELL, CLOSE, "3540", 1)  # SHFE close = close yesterday: the 3500 lot
    # by trade (3540 - 3500) x 10 = 400; by date (3540 - 3510) x 10 = 300
    trade("rb2105", BUY, OPEN, "3550", 1)
    trade("rb2105", SELL, CLOSE_TODAY, "3545", 1)  # today's 3550 lot: -50 both ways
    with pytest.raises(PositionError, match=r"account a rb2105 long: closing 1 lots exceeds the "
                                             r"0 unfrozen today's lots held \(CTP 50: 平今仓位不足\)"):
        trade("rb2105", SELL, CLOSE_TODAY, "3545", 1)
    trade.settle("rb2105", "3560")
    # held: 1 yesterday's lot opened at 3520: open_cost 35200, position_cost 3510 x 10 = 35100
    # position_profit 35600 - 35100 = 500; by trade 35600 - 35200 = 400
    assert figures(long) == {
        "position": 1, "today": 0, "yd": 1, "open_cost": Decimal(35200),
        "position_cost": Decimal(35100), "by_date": Decimal(250), "by_trade": Decimal(350),
        "position_profit": Decimal(500), "position_profit_by_trade": Decimal(400),
        "commission": Decimal(0)}


def test_cffex_short_rollover_then_any_close_takes_yesterday_first() -> None:
    """IF (CFFEX): multiplier 300, tick 0.2; a short position, so every profit is negated."""
    book = PositionBook(PRODUCTS)
    trade = Trader(book)
    trade("IF2101", SELL, OPEN, "5000.0", 2)
    short = trade("IF2101", SELL, OPEN, "5010.2", 1)
    trade.settle("IF2101", "5005.0")
    # open_cost = (2 x 5000 + 5010.2) x 300 = 4,503,060
    # position_profit = -(3 x 5005 x 300 - 4,503,060) = -(4,504,500 - 4,503,060) = -1440
    assert figures(short)["open_cost"] == Decimal(4503060)
    assert figures(short)["position_profit"] == Decimal(-1440)
    book.roll()
    trade("IF2101", SELL, OPEN, "4980.0", 1)  # a today's lot
    trade("IF2101", BUY, CLOSE_TODAY, "4990.0", 1)
    # CFFEX: even close_today takes yesterday's lots first, the oldest: a 5000.0 lot
    # by trade -(4990 - 5000) x 300 = 3000; by date -(4990 - 5005) x 300 = 4500
    assert (short.yd_position, short.today_position) == (2, 1)
    assert (cny(short.close_profit_by_trade), cny(short.close_profit_by_date)) == (3000, 4500)
    trade("IF2101", BUY, CLOSE, "4995.0", 3)
    # yesterday's 5000.0 and 5010.2 lots, then today's 4980.0 lot:
    # by trade -((4995 - 5000) + (4995 - 5010.2) + (4995 - 4980)) x 300 = 5.2 x 300 = 1560
    # by date  -((4995 - 5005) x 2 + (4995 - 4980)) x 300 = 5 x 300 = 1500
    assert figures(short) == {
        "position": 0, "today": 0, "yd": 0, "open_cost": Decimal(0),
        "position_cost": Decimal(0), "by_date": Decimal(6000), "by_trade": Decimal(4560),
        "position_profit": Decimal(0), "position_profit_by_trade": Decimal(0),
        "commission": Decimal(0)}
    # flat: day 1's position profit + day 2's close profit by date (-1440 + 6000) equals the
    # close profit by trade over the position's life (4560)


def test_closes_beyond_the_position_are_refused_and_change_nothing() -> None:
    book = PositionBook(PRODUCTS)
    trade = Trader(book)
    long = trade("IF2101", BUY, OPEN, "5000.0", 2)
    before = figures(long)
    with pytest.raises(PositionError, match=r"IF2101 long: closing 3 lots exceeds the 2 "
                                             r"unfrozen lots held \(CTP 30: 平仓量超过持仓量\)") as refused:
        trade("IF2101", SELL, CLOSE, "5001.0", 3)
    assert refused.value.error_id == 30
    with pytest.raises(PositionError, match="CTP 30"):
        trade("IF2101", BUY, CLOSE, "5001.0", 1)  # closes a short: there is none
    assert figures(long) == before
    trade("rb2105", BUY, OPEN, "3500", 1)  # today's lot: SHFE close means yesterday's
    with pytest.raises(PositionError, match="CTP 51: 平昨仓位不足"):
        trade("rb2105", SELL, CLOSE, "3501", 1)
    with pytest.raises(PositionError, match="CTP 51"):
        trade("rb2105", SELL, CLOSE_YESTERDAY, "3501", 1)
    with pytest.raises(BookError, match="unknown instrument 'zz2101'"):
        book.contract("zz2101")
    with pytest.raises(BookError, match=r"not a multiple of IF2101's price tick 0\.2"):
        book.contract("IF2101").exact_ticks(Decimal("5000.1"))


def test_frozen_lots_cannot_be_closed_again_until_released_or_filled() -> None:
    book = PositionBook(PRODUCTS)
    trade = Trader(book)
    long = trade("rb2105", BUY, OPEN, "3500", 3)
    book.mark("rb2105", 3500)
    book.roll()
    trade("rb2105", BUY, OPEN, "3510", 2)  # 3 yesterday's, 2 today's
    assert book.freeze("a", "rb2105", SELL, CLOSE_YESTERDAY, 2) is long  # a sell closes long
    long.freeze(CLOSE_TODAY, 2)
    assert (long.frozen, long.frozen_today) == (4, 2)
    with pytest.raises(PositionError, match="long: closing 1 lots exceeds the 0 unfrozen today's lots"):
        long.freeze(CLOSE_TODAY, 1)
    with pytest.raises(PositionError, match="closing 2 lots exceeds the 1 unfrozen yesterday's"):
        trade("rb2105", SELL, CLOSE, "3520", 2)
    book.trade("a", "rb2105", SELL, CLOSE_YESTERDAY, 3520, 2, from_frozen=True)  # its fill
    assert (long.yd_position, long.frozen, long.frozen_today) == (1, 2, 2)
    book.unfreeze("a", "rb2105", SELL, CLOSE_TODAY, 2)  # the other order was cancelled
    trade("rb2105", SELL, CLOSE_TODAY, "3520", 2)
    assert (long.position, long.frozen) == (1, 0)
    with pytest.raises(BookError, match="cannot unfreeze 1 lots, 0 are frozen"):
        long.unfreeze(CLOSE, 1)
    # CFFEX: frozen lots count against any close
    short = trade("IF2101", SELL, OPEN, "5000.0", 2)
    short.freeze(CLOSE_TODAY, 2)
    with pytest.raises(PositionError, match="short: closing 1 lots exceeds the 0 unfrozen lots"):
        trade("IF2101", BUY, CLOSE, "4990.0", 1)


def test_mismatches_name_every_side_that_differs_from_the_counter() -> None:
    book = PositionBook(PRODUCTS)
    trade = Trader(book)
    trade("rb2105", BUY, OPEN, "3500", 2)
    trade("IF2101", SELL, OPEN, "5000.0", 1)
    trade("IF2101", BUY, CLOSE, "4990.0", 1)  # flat short: matches a counter without it
    ours = {(e.account, e.contract.instrument, int(e.direction)): (e.position, e.today_position)
            for e in book.entries()}
    assert mismatches(ours, {("a", "rb2105", LONG): (2, 2), ("a", "IF2101", SHORT): (0, 0)}) == []
    assert mismatches(ours, {("a", "rb2105", LONG): (2, 1), ("b", "IF2101", SHORT): (1, 1)}) == [
        ("a", "rb2105", LONG, (2, 2), (2, 1)), ("b", "IF2101", SHORT, (0, 0), (1, 1))]


def test_margin_is_the_rate_times_position_cost() -> None:
    book = PositionBook(PRODUCTS, {"rb": Decimal("0.13")}, default_margin_rate=Decimal("0.1"))
    trade = Trader(book)
    long = trade("rb2105", BUY, OPEN, "3500", 2)
    short = trade("IF2101", SELL, OPEN, "5000.2", 1)
    assert cny(long.margin) == Decimal("0.13") * 3500 * 2 * 10  # 9100
    assert cny(short.margin) == Decimal("0.1") * Decimal("5000.2") * 300  # 150006
    with pytest.raises(BookError, match=r"margin rate 1\.5 must be in"):
        PositionBook(PRODUCTS, {"rb": Decimal("1.5")}).contract("rb2105")


def test_pos_update_record_carries_the_entry() -> None:
    book = PositionBook(PRODUCTS, default_margin_rate=Decimal("0.12"))
    trade = Trader(book, account="sim-a")
    trade("IF2101", SELL, OPEN, "5000.2", 3, "2.30")
    short = trade("IF2101", BUY, CLOSE, "4990.4", 1, "2.30")
    short.freeze(CLOSE, 1)
    book.mark("IF2101", book.contract("IF2101").exact_ticks(Decimal("4995.0")))
    record = empty(EventType.POS_UPDATE)
    pack_pos_update(record.view(np.uint8).data, 0, short, ts_ns=123, trading_day=20210104,
                    instrument_index=7, source=2)
    got = record[0]
    assert (int(got["type"]), int(got["ts_ns"]), int(got["trading_day"]),
            int(got["instrument_index"]), int(got["source"])) == (7, 123, 20210104, 7, 2)
    assert (got["instrument"], got["exchange"], got["account"]) == (b"IF2101", b"CFFEX", b"sim-a")
    assert int(got["direction"]) == SHORT
    assert [int(got[name]) for name in ("position", "today_position", "yd_position", "frozen")] \
        == [2, 2, 0, 1]
    # by trade/date: -(4990.4 - 5000.2) x 300 = 2940; held 2 @ 5000.2 = 3,000,120
    # position profit -(2 x 4995 x 300 - 3,000,120) = 3120; margin 0.12 x 3,000,120 = 360,014.4
    expected = {"open_cost": 3000120.0, "position_cost": 3000120.0,
                "close_profit_by_date": 2940.0, "close_profit_by_trade": 2940.0,
                "position_profit": 3120.0, "position_profit_by_trade": 3120.0,
                "commission": 4.6, "margin": 360014.4, "mark_price": 4995.0}
    assert {name: float(got[name]) for name in expected} == expected
    assert np.isnan(got["pre_settlement_price"])
    book.roll()
    pack_pos_update(record.view(np.uint8).data, 0, short, ts_ns=1, trading_day=20210105,
                    instrument_index=7, source=2)
    assert float(got["pre_settlement_price"]) == 4995.0
    assert [int(got[name]) for name in ("today_position", "yd_position")] == [0, 2]


def test_a_million_trades_do_not_drift() -> None:
    """Alternate open and close one IF lot with a 0.10 CNY commission each: float sums of
    0.1 and of 0.2-tick prices drift; the book's integers must not."""
    book = PositionBook(PRODUCTS)
    contract = book.contract("IF2101")
    buy, sell = contract.ticks(5000.2), contract.ticks(5000.4)
    commission = yuan("0.10")
    trade = book.trade
    for _ in range(500_000):
        trade("a", "IF2101", BUY, OPEN, buy, 1, commission)
        long = trade("a", "IF2101", SELL, CLOSE, sell, 1, commission)
    assert cny(long.commission) == Decimal("100000.00")
    assert cny(long.close_profit_by_trade) == Decimal("0.2") * 300 * 500_000  # 30,000,000
    assert sum([0.1] * 1_000_000) != 100000.0  # what float would have said


# --- property tests against an independent Decimal model ------------------------------------

@dataclass
class ModelLot:
    price: Decimal
    lots: int
    today: bool


@dataclass
class ModelSide:
    """One side of one instrument, in plain Decimal, straight from the issue's rules."""

    sign: int
    multiplier: int
    lots: list[ModelLot] = field(default_factory=list)
    settlement: Decimal | None = None
    by_date: Decimal = Decimal(0)
    by_trade: Decimal = Decimal(0)

    def held(self, today: bool | None = None) -> int:
        return sum(lot.lots for lot in self.lots if today is None or lot.today == today)

    def close(self, price: Decimal, volume: int, which: bool | None) -> None:
        """Close first-opened-first among the lots ``which`` names (None: any, yesterday's
        being older come first)."""
        for lot in self.lots:
            if volume == 0:
                break
            if which is not None and lot.today != which:
                continue
            take = min(volume, lot.lots)
            basis = lot.price if lot.today else self.settlement
            assert basis is not None
            self.by_trade += self.sign * (price - lot.price) * take * self.multiplier
            self.by_date += self.sign * (price - basis) * take * self.multiplier
            lot.lots -= take
            volume -= take
        self.lots = [lot for lot in self.lots if lot.lots]

    def costs(self) -> tuple[Decimal, Decimal]:
        open_cost = sum((lot.price * lot.lots for lot in self.lots), Decimal(0))
        position_cost = sum(((lot.price if lot.today else self.settlement or 0) * lot.lots
                             for lot in self.lots), Decimal(0))
        return open_cost * self.multiplier, position_cost * self.multiplier


TRADE = st.tuples(st.sampled_from([BUY, SELL]), st.sampled_from(list(Offset)),
                  st.integers(-50, 50), st.integers(1, 4))
OPS = st.lists(st.one_of(TRADE, st.integers(-50, 50)), min_size=1, max_size=60)
"""A trade (direction, offset, price steps from the base, lots) or an end of day settled at
a number of steps from the base."""


@settings(max_examples=150, deadline=None)
@given(instrument=st.sampled_from(["rb2105", "IF2101", "sc2103", "T2103"]), ops=OPS)
def test_book_matches_a_decimal_model(instrument: str, ops: list[object]) -> None:
    book = PositionBook(PRODUCTS, default_margin_rate=Decimal("0.123457"))
    contract = book.contract(instrument)
    base, tick, multiplier = 1000, contract.tick, contract.multiplier
    split = contract.split_close
    model = {LONG: ModelSide(1, multiplier), SHORT: ModelSide(-1, multiplier)}
    cash = {LONG: Decimal(0), SHORT: Decimal(0)}  # money received minus paid, per side
    realized = {LONG: Decimal(0), SHORT: Decimal(0)}  # the book's close profits by trade and
    settled = {LONG: Decimal(0), SHORT: Decimal(0)}  # by date of the days rolled, and by date
    daily = {LONG: Decimal(0), SHORT: Decimal(0)}  # close + position profit of each day rolled
    last = Decimal(0)
    for op in ops:
        if isinstance(op, int):  # end of day at a settlement
            settlement = (base + op) * tick
            book.mark(instrument, base + op)
            for side, state in model.items():
                entry = book.entry("a", instrument, side)
                realized[side] += cny(entry.close_profit_by_trade)
                settled[side] += cny(entry.close_profit_by_date)
                daily[side] += cny(entry.close_profit_by_date + entry.position_profit)
                state.settlement = settlement
                for lot in state.lots:
                    lot.today = False
            book.roll()
            last = settlement
            continue
        direction, offset, steps, volume = op  # type: ignore[misc]
        price = (base + steps) * tick
        side = LONG if (direction == BUY) == (offset == OPEN) else SHORT
        state = model[side]
        if offset == OPEN:
            expect_ok = True
        elif split:
            expect_ok = volume <= state.held(today=offset == CLOSE_TODAY)
        else:
            expect_ok = volume <= state.held()
        try:
            book.trade("a", instrument, direction, offset, base + steps, volume)
        except PositionError:
            assert not expect_ok
            continue
        assert expect_ok
        last = price
        book.mark(instrument, base + steps)
        signed = price * volume * multiplier * (1 if direction == SELL else -1)
        cash[side] += signed
        if offset == OPEN:
            state.lots.append(ModelLot(price, volume, today=True))
        else:
            state.close(price, volume, (offset == CLOSE_TODAY) if split else None)
    for side, state in model.items():
        entry = book.entry("a", instrument, side)
        open_cost, position_cost = state.costs()
        held = state.held()
        assert entry.today_position >= 0 and entry.yd_position >= 0
        assert (entry.today_position, entry.yd_position) == (state.held(True), state.held(False))
        assert (cny(entry.open_cost), cny(entry.position_cost)) == (open_cost, position_cost)
        by_trade = realized[side] + cny(entry.close_profit_by_trade)
        by_date = settled[side] + cny(entry.close_profit_by_date)
        assert (by_trade, by_date) == (state.by_trade, state.by_date)
        floating = state.sign * (held * last * multiplier - open_cost)
        assert cny(entry.position_profit_by_trade) == floating
        assert cny(entry.position_profit) == state.sign * (held * last * multiplier
                                                           - position_cost)
        # realized + floating = the cash flows, the position marked at the last price
        marked_cash = cash[side] + state.sign * held * last * multiplier
        assert by_trade + cny(entry.position_profit_by_trade) == marked_cash
        assert daily[side] + cny(entry.close_profit_by_date + entry.position_profit) \
            == marked_cash
        assert_record_matches(entry)


def assert_record_matches(entry: PositionEntry) -> None:
    """The POS_UPDATE record says what the entry's properties say (pack computes inline)."""
    record = empty(EventType.POS_UPDATE)
    pack_pos_update(record.view(np.uint8).data, 0, entry, ts_ns=0, trading_day=0,
                    instrument_index=0, source=0)
    money = ("open_cost", "position_cost", "close_profit_by_date", "close_profit_by_trade",
             "position_profit", "position_profit_by_trade", "commission", "margin")
    assert {name: float(record[0][name]) for name in money} == \
        {name: getattr(entry, name) / MONEY_SCALE for name in money}
    assert [int(record[0][name]) for name in ("position", "today_position", "yd_position")] \
        == [entry.position, entry.today_position, entry.yd_position]


def state(entry: PositionEntry) -> tuple[int, ...]:
    return (entry.today_position, entry.yd_position, entry.frozen, entry.frozen_today,
            entry.open_cost, entry.close_profit_by_date, entry.close_profit_by_trade)


ORDER_OPS = st.lists(st.tuples(st.sampled_from(["open", "close", "fill", "freeze", "unfreeze",
                                                "roll"]),
                               st.sampled_from([CLOSE, CLOSE_TODAY, CLOSE_YESTERDAY]),
                               st.integers(1, 4)), max_size=80)


@settings(max_examples=150, deadline=None)
@given(instrument=st.sampled_from(["rb2105", "IF2101"]), ops=ORDER_OPS)
def test_frozen_lots_stay_held_and_refusals_change_nothing(instrument: str,
                                                           ops: list[tuple[str, Offset, int]]
                                                           ) -> None:
    """Working close orders freeze, fill (from_frozen), get cancelled; other closes and days
    pass: frozen lots never exceed what the offset may take, and whatever is refused leaves
    the side exactly as it was."""
    book = PositionBook(PRODUCTS)
    entry = book.entry("a", instrument, LONG)
    split = entry.contract.split_close
    for action, offset, volume in ops:
        before = state(entry)
        try:
            if action == "open":
                book.trade("a", instrument, BUY, OPEN, 1000 + volume, volume)
            elif action in ("close", "fill"):
                book.trade("a", instrument, SELL, offset, 1000, volume,
                           from_frozen=action == "fill")
            elif action == "freeze":
                book.freeze("a", instrument, SELL, offset, volume)
            elif action == "unfreeze":
                book.unfreeze("a", instrument, SELL, offset, volume)
            else:
                book.mark(instrument, 1000)
                book.roll()
        except BookError:
            assert state(entry) == before, action
        assert entry.today_position >= 0 and entry.yd_position >= 0
        assert 0 <= entry.frozen <= entry.position
        if split:
            assert 0 <= entry.frozen_today <= entry.today_position
            assert entry.frozen - entry.frozen_today <= entry.yd_position
        else:
            assert entry.frozen_today == 0
