"""The simulated exchange: each matching rule at its boundary, on synthetic ticks, then a
scenario on the real IF day; restore after a snapshot continues exactly as the original."""

from __future__ import annotations

import json
import math
from collections.abc import Iterator
from typing import Any

import numpy as np
import pytest
from support.sample_data import IF_DAY

from hft.daemons.md.csvfile import read_ticks
from hft.daemons.refdata.instruments import InstrumentTable, ProductTable
from hft.daemons.runtime.events import (
    DEPTH,
    DTYPES,
    Direction,
    EventType,
    Offset,
    OrderStatus,
    PriceType,
    empty,
)
from hft.daemons.trade.ctperrors import PROMPTS, CtpError
from hft.daemons.trade.fees import Fees
from hft.daemons.trade.simaccount import Contract, SimpleAccounts
from hft.daemons.trade.simexchange import (
    ENDED_KEPT,
    FLAG_CANCEL_REFUSED,
    SimExchange,
    SimExchangeConfig,
)

DAY = 20210104
T0 = 1_609_723_800_000_000_000  # 2021-01-04 09:30 +08:00, ns
MS = 1_000_000
IF_MULTIPLIER, RB_MULTIPLIER = 300, 10


class Market:
    """Builds ticks with cumulative volume and turnover from the trades of each interval, and
    orders and cancels, and keeps every return (copied: the exchange reuses its buffers)."""

    def __init__(self, instrument: bytes = b"IF2101", multiplier: int = IF_MULTIPLIER,
                 exchange: SimExchange | None = None, **config: Any) -> None:
        self.instrument, self.multiplier = instrument, multiplier
        self.returns: list[np.void] = []
        self.sim = exchange or SimExchange(SimExchangeConfig(**config), self.keep)
        self.volume, self.turnover, self.ts = 0, 0.0, T0
        self.next_ref = 1

    def keep(self, record: Any) -> None:
        kind = EventType(int(record["type"]))
        self.returns.append(np.frombuffer(record.tobytes(), dtype=DTYPES[kind])[0])

    def tick(self, bids: list[tuple[float, int]], asks: list[tuple[float, int]], *,
             trades: tuple[tuple[float, int], ...] = (), last: float | None = None,
             after_ms: int = 500, day: int = DAY, upper: float = 5500.0,
             lower: float = 4500.0) -> None:
        self.ts += after_ms * MS
        self.volume += sum(lots for _, lots in trades)
        self.turnover += sum(price * lots * self.multiplier for price, lots in trades)
        record = empty(EventType.MARKET_DATA)
        record["ts_ns"], record["trading_day"], record["instrument"] = self.ts, day, self.instrument
        record["last_price"] = last if last is not None else (trades[-1][0] if trades else 5000.0)
        record["volume"], record["turnover"] = self.volume, self.turnover
        record["upper_limit_price"], record["lower_limit_price"] = upper, lower
        for side, levels in (("bid", bids), ("ask", asks)):
            for level, (price, lots) in enumerate(levels):
                record[f"{side}_price"][0, level] = price
                record[f"{side}_volume"][0, level] = lots
        self.sim.on_tick(record[0])

    def order(self, direction: Direction, price: float, volume: int, *,
              price_type: PriceType = PriceType.LIMIT, offset: Offset = Offset.OPEN,
              account: bytes = b"sim", instrument: bytes | None = None) -> int:
        ref = self.next_ref
        self.next_ref += 1
        record = empty(EventType.ORDER_SEND)
        record["ts_ns"], record["trading_day"] = self.ts, DAY
        record["instrument"] = instrument or self.instrument
        record["order_ref"], record["price"], record["volume"] = ref, price, volume
        record["direction"], record["offset"], record["price_type"] = direction, offset, price_type
        record["account"] = account
        self.sim.submit(record[0])
        return ref

    def cancel(self, ref: int, account: bytes = b"sim") -> None:
        record = empty(EventType.CANCEL_REQ)
        record["order_ref"], record["account"] = ref, account
        self.sim.cancel(record[0])

    def take(self) -> list[tuple[Any, ...]]:
        """The returns since the last call, summarised: (kind, ref, status or price, volume
        traded or lots, error id)."""
        out = []
        for record in self.returns:
            if record["type"] == EventType.RTN_ORDER:
                out.append(("order", int(record["order_ref"]), OrderStatus(int(record["status"])).name,
                            int(record["volume_traded"]), int(record["error_id"])))
            else:
                out.append(("trade", int(record["order_ref"]), round(float(record["price"]), 4),
                            int(record["volume"])))
        self.returns.clear()
        return out


BOOK = ([(5000.0, 10), (4999.8, 20)], [(5000.2, 2), (5000.4, 2), (5000.6, 9)])


@pytest.fixture
def market() -> Iterator[Market]:
    market = Market(accounts={"sim": 1e9})
    market.tick(*BOOK)
    yield market


def test_returns_carry_the_orders_identity(market: Market) -> None:
    record = empty(EventType.ORDER_SEND)
    record["trading_day"], record["instrument"], record["instrument_index"] = DAY, b"IF2101", 7
    record["source"], record["account"], record["order_ref"] = 42, b"sim", 5
    record["price"], record["volume"], record["price_type"] = 5000.2, 1, PriceType.LIMIT
    market.sim.submit(record[0])
    submitted, filled, trade = market.returns
    for each in (submitted, filled, trade):
        assert (int(each["source"]), int(each["instrument_index"]), int(each["trading_day"])) == (42, 7, DAY)
        assert (each["instrument"], each["exchange"], each["account"]) == (b"IF2101", b"CFFEX", b"sim")
        assert int(each["order_ref"]) == 5 and int(each["ts_ns"]) == market.ts
    assert submitted["order_sys_id"] == b"" and filled["order_sys_id"] == trade["order_sys_id"] != b""
    assert trade["trade_id"] != b"" and float(trade["price"]) == 5000.2


@pytest.mark.parametrize(("config", "named"), [
    ({"queue_model": "fifo"}, "queue_model"), ({"order_latency_ms": -1}, "order_latency_ms"),
    ({"accounts": {"a-very-long-account-id": 1.0}}, "account id"),
    ({"accounts": {"sim": math.inf}}, "finite"), ({"fees": {"IF": {"open_rate": 2}}}, "open_rate"),
    ({"seeds": 1}, "seeds")])
def test_a_bad_config_is_refused_naming_the_key(config: dict[str, Any], named: str) -> None:
    with pytest.raises(ValueError, match=named):
        SimExchangeConfig(**config)


# --- queue position -------------------------------------------------------------------------

def test_a_passive_order_queues_behind_the_displayed_volume_and_fills_after_it(market: Market) -> None:
    ref = market.order(Direction.BUY, 5000.0, 2)
    assert market.take() == [("order", ref, "SUBMITTING", 0, 0), ("order", ref, "NOT_TRADED", 0, 0)]
    assert market.sim.queue_ahead("sim", ref) == 10
    market.tick(*BOOK, trades=((5000.0, 9),))  # 9 of the 10 ahead traded
    assert market.take() == []
    assert market.sim.queue_ahead("sim", ref) == 1
    market.tick(*BOOK, trades=((5000.0, 2),))  # the last one ahead, then one of ours
    assert market.take() == [("order", ref, "PART_TRADED", 1, 0), ("trade", ref, 5000.0, 1)]
    market.tick(*BOOK, trades=((5000.0, 1),))
    assert market.take() == [("order", ref, "ALL_TRADED", 2, 0), ("trade", ref, 5000.0, 1)]
    assert market.sim.working() == 0


def test_our_orders_at_one_price_share_its_trades_in_time_priority(market: Market) -> None:
    first = market.order(Direction.BUY, 5000.0, 1)
    second = market.order(Direction.BUY, 5000.0, 3)
    market.take()
    market.tick(*BOOK, trades=((5000.0, 12),))  # 10 ahead of both, then 2 for ours
    assert market.take() == [("order", first, "ALL_TRADED", 1, 0), ("trade", first, 5000.0, 1),
                             ("order", second, "PART_TRADED", 1, 0), ("trade", second, 5000.0, 1)]


def test_risk_averse_cancels_never_advance_but_the_queue_cannot_exceed_the_display(market: Market) -> None:
    ref = market.order(Direction.BUY, 5000.0, 1)
    market.tick([(5000.0, 20), (4999.8, 20)], BOOK[1])  # 10 joined behind
    assert market.sim.queue_ahead("sim", ref) == 10
    market.tick([(5000.0, 12), (4999.8, 20)], BOOK[1])  # 8 cancelled: assumed behind
    assert market.sim.queue_ahead("sim", ref) == 10
    market.tick([(5000.0, 7), (4999.8, 20)], BOOK[1])  # only 7 left: at most 7 ahead
    assert market.sim.queue_ahead("sim", ref) == 7


def test_probabilistic_shares_cancels_between_front_and_back() -> None:
    market = Market(queue_model="probabilistic", queue_power=1.0)
    market.tick(*BOOK)
    ref = market.order(Direction.BUY, 5000.0, 1)
    market.tick([(5000.0, 20), (4999.8, 20)], BOOK[1])  # 10 ahead, 10 behind
    market.tick([(5000.0, 12), (4999.8, 20)], BOOK[1])  # 8 cancels, half of them ahead
    assert market.sim.queue_ahead("sim", ref) == 6
    market.tick([(5000.0, 12), (4999.8, 20)], BOOK[1], trades=((5000.0, 2),))  # 2 traded, 0 cancelled
    assert market.sim.queue_ahead("sim", ref) == 4


def test_probabilistic_rounding_keeps_the_expectation_and_the_seed_decides() -> None:
    def cancels_ahead(seed: int, power: float) -> int:
        market = Market(queue_model="probabilistic", queue_power=power, seed=seed)
        market.tick([(5000.0, 10)], [(5000.2, 1)])
        ref = market.order(Direction.BUY, 5000.0, 1)
        market.tick([(5000.0, 40)], [(5000.2, 1)])  # 10 ahead, 30 behind
        market.tick([(5000.0, 36)], [(5000.2, 1)])  # 4 cancels
        return 10 - market.sim.queue_ahead("sim", ref)

    # power 2: a cancel is ahead with probability 100 / (100 + 900): 0.4 of 4 expected
    draws = [cancels_ahead(seed, 2.0) for seed in range(400)]
    assert set(draws) == {0, 1}
    assert abs(np.mean(draws) - 0.4) < 0.08
    assert draws == [cancels_ahead(seed, 2.0) for seed in range(400)]
    assert np.mean([cancels_ahead(seed, 1.0) for seed in range(50)]) == 1.0  # 4 x 10/40 exactly


def test_quotes_reaching_a_resting_price_without_trades_fill_nothing(market: Market) -> None:
    ref = market.order(Direction.BUY, 5000.0, 1)
    market.tick([(4999.8, 20)], [(5000.0, 3), (5000.2, 2)])  # an ask at our bid, nothing traded
    assert market.take() == [("order", ref, "SUBMITTING", 0, 0), ("order", ref, "NOT_TRADED", 0, 0)]
    assert market.sim.queue_ahead("sim", ref) == 0  # no bid shown at 5000.0 any more


def test_trades_beyond_the_price_fill_the_whole_order(market: Market) -> None:
    ref = market.order(Direction.BUY, 4999.8, 3)  # 20 ahead
    market.tick([(4999.6, 5)], [(4999.8, 4)], trades=((4999.6, 1),))
    assert market.take()[-2:] == [("order", ref, "ALL_TRADED", 3, 0), ("trade", ref, 4999.8, 3)]


def test_a_vwap_below_the_price_means_the_queue_traded_through(market: Market) -> None:
    ref = market.order(Direction.BUY, 5000.0, 3)  # 10 ahead
    market.tick(*BOOK, trades=((4999.8, 1), (5000.0, 1)))  # last 5000.0, but 4999.8 traded
    assert market.take()[-2:] == [("order", ref, "ALL_TRADED", 3, 0), ("trade", ref, 5000.0, 3)]


def test_volume_at_the_last_price_is_the_least_the_vwap_allows(market: Market) -> None:
    market.tick([(4999.8, 20)], [(5000.0, 4), (5000.2, 4)])
    ref = market.order(Direction.SELL, 5000.2, 5)  # 4 ahead
    # 8 lots traded, VWAP halfway between 5000.0 and 5000.2, last 5000.2: at least 4 there
    market.tick([(4999.8, 20)], [(5000.2, 4)], trades=((5000.0, 4), (5000.2, 4)))
    assert market.take() == [("order", ref, "SUBMITTING", 0, 0), ("order", ref, "NOT_TRADED", 0, 0)]
    assert market.sim.queue_ahead("sim", ref) == 0
    market.tick([(4999.8, 20)], [(5000.2, 4)], trades=((5000.0, 2), (5000.2, 6)))
    # VWAP 5000.15: at least int(8 x 0.75) = 6 at 5000.2, all of them ours
    assert market.take() == [("order", ref, "ALL_TRADED", 5, 0), ("trade", ref, 5000.2, 5)]


def test_an_order_below_the_displayed_depth_joins_when_its_price_is_shown(market: Market) -> None:
    ref = market.order(Direction.BUY, 4999.4, 1)  # deeper than the two levels shown
    assert market.sim.queue_ahead("sim", ref) == -1
    market.tick(*BOOK, trades=((5000.0, 3),))  # trades elsewhere: still unknown, no fill
    assert market.sim.queue_ahead("sim", ref) == -1
    market.tick([(5000.0, 10), (4999.8, 20), (4999.6, 5), (4999.4, 7)], BOOK[1])
    assert market.sim.queue_ahead("sim", ref) == 7
    market.tick([(5000.0, 10), (4999.8, 20), (4999.6, 5)], BOOK[1])  # out of sight: kept
    assert market.sim.queue_ahead("sim", ref) == 7
    market.tick([(5000.0, 10), (4999.8, 20), (4999.6, 5), (4999.2, 1)], BOOK[1])
    assert market.sim.queue_ahead("sim", ref) == 0  # shown empty between two levels


# --- crossing orders ------------------------------------------------------------------------

def test_a_crossing_limit_order_takes_the_levels_then_rests(market: Market) -> None:
    ref = market.order(Direction.BUY, 5000.4, 5)
    assert market.take() == [
        ("order", ref, "SUBMITTING", 0, 0),
        ("order", ref, "PART_TRADED", 2, 0), ("trade", ref, 5000.2, 2),
        ("order", ref, "PART_TRADED", 4, 0), ("trade", ref, 5000.4, 2)]
    assert market.sim.queue_ahead("sim", ref) == 0  # the best bid now
    second = market.order(Direction.BUY, 5000.4, 1)  # the same tick: that liquidity is gone
    assert market.take() == [("order", second, "SUBMITTING", 0, 0),
                             ("order", second, "NOT_TRADED", 0, 0)]


def test_simulated_orders_never_trade_with_each_other(market: Market) -> None:
    sell = market.order(Direction.SELL, 5001.0, 1)
    buy = market.order(Direction.BUY, 5001.0, 1)  # meets the real asks, not our sell
    assert market.take()[-2:] == [("order", buy, "ALL_TRADED", 1, 0), ("trade", buy, 5000.2, 1)]
    assert market.sim.working() == 1 and market.sim.queue_ahead("sim", sell) == -1  # unseen depth


def test_fak_remainder_is_cancelled(market: Market) -> None:
    ref = market.order(Direction.BUY, 5000.4, 5, price_type=PriceType.FAK)
    assert market.take()[-1] == ("order", ref, "CANCELLED", 4, 0)
    assert market.sim.working() == 0
    nothing = market.order(Direction.SELL, 5000.2, 1, price_type=PriceType.FAK)  # crosses nothing
    assert market.take()[-1] == ("order", nothing, "CANCELLED", 0, 0)


def test_fok_is_all_or_nothing(market: Market) -> None:
    refused = market.order(Direction.BUY, 5000.4, 5, price_type=PriceType.FOK)
    assert market.take() == [("order", refused, "SUBMITTING", 0, 0),
                             ("order", refused, "CANCELLED", 0, 0)]
    filled = market.order(Direction.BUY, 5000.4, 4, price_type=PriceType.FOK)
    assert market.take()[-2:] == [("order", filled, "ALL_TRADED", 4, 0), ("trade", filled, 5000.4, 2)]


def test_a_market_order_sweeps_the_book_and_cancels_the_rest(market: Market) -> None:
    ref = market.order(Direction.SELL, math.nan, 40, price_type=PriceType.MARKET)
    assert market.take() == [
        ("order", ref, "SUBMITTING", 0, 0),
        ("order", ref, "PART_TRADED", 10, 0), ("trade", ref, 5000.0, 10),
        ("order", ref, "PART_TRADED", 30, 0), ("trade", ref, 4999.8, 20),
        ("order", ref, "CANCELLED", 30, 0)]


# --- refusals -------------------------------------------------------------------------------

@pytest.mark.parametrize(("price", "error"), [(5000.1, 165), (5500.2, 163), (4499.8, 163),
                                              (-1.0, 15)])
def test_bad_prices_are_rejected_with_ctp_error_ids(market: Market, price: float, error: int) -> None:
    ref = market.order(Direction.BUY, price, 1)
    [record] = market.returns
    assert (int(record["order_ref"]), int(record["status"]), int(record["error_id"])) == (
        ref, OrderStatus.REJECTED, error)
    assert record["message"].decode() == PROMPTS[CtpError(error)]
    assert market.sim.working() == 0


def test_shfe_refuses_market_orders() -> None:
    market = Market(b"rb2105", RB_MULTIPLIER, accounts={"sim": 1e9})
    market.tick([(4000.0, 5)], [(4001.0, 5)], upper=4400.0, lower=3600.0)
    ref = market.order(Direction.BUY, math.nan, 1, price_type=PriceType.MARKET)
    assert market.take() == [("order", ref, "REJECTED", 0, 80)]


def test_limit_prices_on_the_boundary_are_accepted(market: Market) -> None:
    market.order(Direction.BUY, 4500.0, 1)
    market.order(Direction.SELL, 5500.0, 1)
    assert [entry[2] for entry in market.take()] == ["SUBMITTING", "NOT_TRADED"] * 2


def test_unknown_instrument_account_and_duplicate_refs_are_rejected(market: Market) -> None:
    market.order(Direction.BUY, 5000.0, 1, instrument=b"XX2101")
    market.order(Direction.BUY, 5000.0, 1, account=b"nobody")
    market.next_ref = 1  # refs of rejected orders are not taken
    market.order(Direction.BUY, 5000.0, 1)
    market.next_ref = 1
    market.order(Direction.BUY, 5000.0, 1)
    assert [entry[4] for entry in market.take()] == [16, 13, 0, 0, 22]


# --- cancels --------------------------------------------------------------------------------

def test_cancels_and_refused_cancels(market: Market) -> None:
    resting = market.order(Direction.BUY, 4999.8, 1)
    filled = market.order(Direction.BUY, 5000.2, 1)
    market.take()
    market.cancel(resting)
    assert market.take() == [("order", resting, "CANCELLED", 0, 0)]
    for ref in (resting, filled):
        market.cancel(ref)
        [record] = market.returns
        assert record["flags"] == FLAG_CANCEL_REFUSED and record["error_id"] == 26
        assert record["message"].decode() == "CTP:报单已全成交或已撤销，不能再撤"
        market.take()
    market.cancel(99)
    assert market.take() == [("order", 99, "REJECTED", 0, 25)]
    assert market.sim.working() == 0


def test_a_cancel_by_exchange_order_id() -> None:
    market = Market(accounts={"sim": 1e9})
    market.tick(*BOOK)
    ref = market.order(Direction.SELL, 5001.0, 1)
    [_, working] = market.returns
    record = empty(EventType.CANCEL_REQ)
    record["order_sys_id"], record["account"] = working["order_sys_id"], b"sim"
    market.take()
    record["account"] = b"other"
    market.sim.cancel(record[0])  # not the order's account: as if unknown
    assert market.take() == [("order", 0, "REJECTED", 0, 25)]
    record["account"] = b"sim"
    market.sim.cancel(record[0])
    assert market.take() == [("order", ref, "CANCELLED", 0, 0)]


# --- latency --------------------------------------------------------------------------------

def test_an_order_meets_the_book_in_force_when_it_arrives() -> None:
    market = Market(order_latency_ms=100)
    market.tick(*BOOK)
    ref = market.order(Direction.BUY, 5000.6, 1)
    market.tick(*BOOK, after_ms=99)  # the order is still on its way
    assert market.take() == [("order", ref, "SUBMITTING", 0, 0)]
    # it reached the exchange at 100 ms and met the book of the 99 ms tick
    market.tick([(5000.0, 1)], [(5000.6, 3)], after_ms=1)
    assert market.take() == [("order", ref, "ALL_TRADED", 1, 0), ("trade", ref, 5000.2, 1)]


def test_feed_latency_delays_what_the_exchange_has_seen() -> None:
    market = Market(feed_latency_ms=100)
    market.tick(*BOOK)
    ref = market.order(Direction.BUY, 5000.6, 1)
    market.tick([(5000.0, 1)], [(5000.6, 3)], after_ms=50)  # happened before the order was sent
    assert market.take() == [("order", ref, "SUBMITTING", 0, 0)]
    market.tick([(5000.0, 1)], [(5000.4, 3)], after_ms=51)  # happened after it arrived
    assert market.take() == [("order", ref, "ALL_TRADED", 1, 0), ("trade", ref, 5000.6, 1)]


def test_a_cancel_also_takes_the_order_latency() -> None:
    market = Market(order_latency_ms=100)
    market.tick(*BOOK)
    ref = market.order(Direction.BUY, 5000.0, 1)
    market.tick(*BOOK, after_ms=100)
    market.cancel(ref)
    market.tick(*BOOK, after_ms=99, trades=((4999.8, 1),))  # traded through before the cancel arrived
    market.tick(*BOOK, after_ms=1)
    assert [entry[:3] for entry in market.take()] == [
        ("order", ref, "SUBMITTING"), ("order", ref, "NOT_TRADED"), ("order", ref, "ALL_TRADED"),
        ("trade", ref, 5000.0), ("order", ref, "ALL_TRADED")]
    assert market.returns == []


def test_the_data_clock_alone_brings_an_order_to_the_exchange() -> None:
    market = Market(order_latency_ms=100)
    market.tick(*BOOK)
    ref = market.order(Direction.BUY, 5000.2, 1)
    market.sim.on_time(market.ts + 99 * MS)
    assert market.take() == [("order", ref, "SUBMITTING", 0, 0)]
    market.sim.on_time(market.ts + 100 * MS)  # a TIMER: the book in force is the last tick's
    assert market.take() == [("order", ref, "ALL_TRADED", 1, 0), ("trade", ref, 5000.2, 1)]


def test_an_order_waits_for_its_instruments_first_tick() -> None:
    market = Market(accounts={"sim": 1e9})
    market.tick(*BOOK)
    rb = market.order(Direction.BUY, 4001.0, 1, instrument=b"rb2105")  # no rb tick: no limits yet
    assert market.take() == [("order", rb, "SUBMITTING", 0, 0)]
    other = Market(b"rb2105", RB_MULTIPLIER, exchange=market.sim)
    other.ts = market.ts
    other.tick([(4000.0, 5)], [(4001.0, 5)], upper=4400.0, lower=3600.0)
    assert [entry[:3] for entry in market.take()] == [("order", rb, "ALL_TRADED"),
                                                      ("trade", rb, 4001.0)]


def test_an_order_waiting_for_a_first_tick_holds_up_no_other_order() -> None:
    market = Market(accounts={"sim": 1e9})
    market.tick(*BOOK)
    rb = market.order(Direction.BUY, 4001.0, 1, instrument=b"rb2105")
    cancelled = market.order(Direction.BUY, 4001.0, 1, instrument=b"rb2105")
    market.cancel(cancelled)
    ref = market.order(Direction.BUY, 5000.2, 1)
    assert market.take() == [
        ("order", rb, "SUBMITTING", 0, 0), ("order", cancelled, "SUBMITTING", 0, 0),
        ("order", cancelled, "CANCELLED", 0, 0), ("order", ref, "SUBMITTING", 0, 0),
        ("order", ref, "ALL_TRADED", 1, 0), ("trade", ref, 5000.2, 1)]
    state = json.loads(json.dumps(market.sim.snapshot()))
    restored = Market(b"rb2105", RB_MULTIPLIER,
                      exchange=SimExchange.restore(SimExchangeConfig(), state, lambda record: None))
    restored.sim._on_return = restored.keep
    restored.ts = market.ts
    restored.tick([(4000.0, 5)], [(4001.0, 5)], upper=4400.0, lower=3600.0)
    assert restored.take() == [("order", rb, "ALL_TRADED", 1, 0), ("trade", rb, 4001.0, 1)]


def test_ticks_of_unknown_products_are_ignored(market: Market) -> None:
    Market(b"XX2101", 1, exchange=market.sim).tick(*BOOK)
    ref = market.order(Direction.BUY, 5000.2, 1)
    assert market.take()[-2:] == [("order", ref, "ALL_TRADED", 1, 0), ("trade", ref, 5000.2, 1)]


# --- commissions, margins, funds, positions ------------------------------------------------

IF_FEES = {"open_rate": 0.000023, "close_rate": 0.000023, "close_today_rate": 0.000345,
           "margin_rate": 0.12}
RB_FEES = {"open_per_lot": 3.0, "close_per_lot": 3.0, "close_today_per_lot": 0.0,
           "margin_rate": 0.1}


def test_commission_and_margin_per_product() -> None:
    market = Market(accounts={"sim": 1_000_000.0}, fees={"IF": IF_FEES})
    market.tick(*BOOK)
    accounts = market.sim.accounts
    assert isinstance(accounts, SimpleAccounts)
    market.order(Direction.BUY, 5000.2, 1)
    assert accounts.commission("sim") == pytest.approx(5000.2 * 300 * 0.000023)
    assert accounts.margin("sim") == pytest.approx(5000.2 * 300 * 0.12)
    assert accounts.available("sim") == pytest.approx(
        1_000_000 - 5000.2 * 300 * (0.12 + 0.000023))
    market.order(Direction.SELL, 5000.0, 1, offset=Offset.CLOSE)  # CFFEX: closes today's lot
    assert accounts.commission("sim") == pytest.approx(5000.2 * 300 * 0.000023
                                                        + 5000.0 * 300 * 0.000345)
    assert accounts.margin("sim") == pytest.approx(0.0)
    assert accounts.available("sim") == pytest.approx(
        1_000_000 - 0.2 * 300 - accounts.commission("sim"))


def test_per_lot_commission_and_shfe_today_yesterday() -> None:
    market = Market(b"rb2105", RB_MULTIPLIER, accounts={"sim": 100_000.0}, fees={"rb": RB_FEES})
    book = ([(4000.0, 50)], [(4001.0, 50)])
    market.tick(*book, upper=4400.0, lower=3600.0)
    accounts = market.sim.accounts
    assert isinstance(accounts, SimpleAccounts)
    market.order(Direction.BUY, 4001.0, 2)
    assert accounts.commission("sim") == pytest.approx(6.0)
    market.order(Direction.SELL, 4000.0, 1, offset=Offset.CLOSE)  # SHFE close = yesterday's
    market.order(Direction.SELL, 4000.0, 1, offset=Offset.CLOSE_YESTERDAY)
    market.order(Direction.SELL, 4000.0, 3, offset=Offset.CLOSE_TODAY)
    market.order(Direction.SELL, 4000.0, 2, offset=Offset.CLOSE_TODAY)
    assert [entry[4] for entry in market.take() if entry[2] == "REJECTED"] == [30, 51, 50]
    assert accounts.commission("sim") == pytest.approx(6.0)  # close today: 0 per lot
    assert accounts.position("sim", "rb2105", Direction.BUY) == (0, 0)
    contract = Contract(b"rb2105".ljust(32, b"\0"), "rb2105", "SHFE", RB_MULTIPLIER, 1.0,
                        Fees(**RB_FEES))
    accounts.set_position("sim", contract, Direction.BUY, yesterday=1, price=3990.0)
    before = accounts.available("sim")
    refused = market.order(Direction.SELL, 4000.0, 1, offset=Offset.CLOSE_TODAY)  # none today
    closed = market.order(Direction.SELL, 4000.0, 1, offset=Offset.CLOSE)
    entries = market.take()
    assert ("order", refused, "REJECTED", 0, 50) in entries
    assert ("order", closed, "ALL_TRADED", 1, 0) in entries
    assert accounts.position("sim", "rb2105", Direction.BUY) == (0, 0)
    assert accounts.commission("sim") == pytest.approx(9.0)  # close yesterday: 3 per lot
    # margin released (3990 x 10 x 0.1), profit (4000 - 3990) x 10, commission 3
    assert accounts.available("sim") - before == pytest.approx(3990.0 + 100.0 - 3.0)


def test_insufficient_funds() -> None:
    market = Market(accounts={"sim": 200_000.0}, fees={"IF": IF_FEES})
    market.tick(*BOOK)
    market.order(Direction.BUY, 5000.0, 1)  # 180,002 with its commission: accepted
    refused = market.order(Direction.BUY, 5000.0, 1)
    assert market.take()[-1] == ("order", refused, "REJECTED", 0, 31)
    assert market.returns == []


def test_close_beyond_the_position(market: Market) -> None:
    market.order(Direction.BUY, 5000.2, 2)
    refused = market.order(Direction.SELL, 5000.0, 3, offset=Offset.CLOSE)
    accepted = market.order(Direction.SELL, 5000.0, 2, offset=Offset.CLOSE)
    entries = market.take()
    assert ("order", refused, "REJECTED", 0, 30) in entries
    assert ("order", accepted, "ALL_TRADED", 2, 0) in entries
    closing_again = market.order(Direction.SELL, 5000.0, 1, offset=Offset.CLOSE)
    assert market.take() == [("order", closing_again, "REJECTED", 0, 30)]


def test_a_working_close_freezes_its_lots_and_a_cancel_frees_them(market: Market) -> None:
    market.order(Direction.BUY, 5000.2, 1)
    working = market.order(Direction.SELL, 5001.0, 1, offset=Offset.CLOSE)
    second = market.order(Direction.SELL, 5001.0, 1, offset=Offset.CLOSE)
    market.cancel(working)
    third = market.order(Direction.SELL, 5001.0, 1, offset=Offset.CLOSE)
    entries = market.take()
    assert ("order", second, "REJECTED", 0, 30) in entries
    assert ("order", third, "NOT_TRADED", 0, 0) in entries


def test_a_new_trading_day_expires_working_orders(market: Market) -> None:
    ref = market.order(Direction.BUY, 4999.8, 1)
    market.take()
    market.tick(*BOOK, day=DAY + 1)
    assert market.take() == [("order", ref, "CANCELLED", 0, 0)]


# --- restarts and determinism ---------------------------------------------------------------

def scripted(market: Market, steps: range, salt: int = 0) -> None:
    """A random but seeded mix of ticks, orders and cancels (``salt``: another mix)."""
    for step in steps:
        rng = np.random.default_rng((salt, step))
        mid = 5000.0 + float(rng.integers(-5, 6)) * 0.2
        bids = [(round(mid - 0.2 * (k + 1), 1), int(rng.integers(1, 30))) for k in range(DEPTH)]
        asks = [(round(mid + 0.2 * k, 1), int(rng.integers(1, 30))) for k in range(DEPTH)]
        trades = tuple((round(mid + 0.2 * int(rng.integers(-2, 2)), 1), int(rng.integers(1, 6)))
                       for _ in range(int(rng.integers(0, 3))))
        market.tick(bids, asks, trades=trades, after_ms=int(rng.integers(100, 600)))
        if step % 3 == 0:
            side = Direction(int(rng.integers(0, 2)))
            kind = PriceType(int(rng.choice([0, 0, 0, 2, 3])))
            market.order(side, round(mid + 0.2 * int(rng.integers(-4, 5)), 1),
                         int(rng.integers(1, 6)), price_type=kind)
        if step % 7 == 0 and market.next_ref > 3:
            market.cancel(int(rng.integers(1, market.next_ref)))


@pytest.mark.parametrize("model", ["risk_averse", "probabilistic"])
@pytest.mark.parametrize("salt", range(3))
def test_returns_tell_a_consistent_story_on_random_streams(model: str, salt: int) -> None:
    """Whatever the stream: an order's returns never go back or follow its end, each trade
    follows the RTN_ORDER that counts it, trades add up to what the order reports, trade ids
    are unique, and what did not end is still working."""
    market = Market(queue_model=model, seed=salt, order_latency_ms=150 * salt,
                    accounts={"sim": 1e9})
    scripted(market, range(600), salt)
    states: dict[int, tuple[int, int]] = {}  # ref -> (status, volume traded) as last returned
    filled: dict[int, int] = {}
    trade_ids = set()
    ended = {OrderStatus.ALL_TRADED, OrderStatus.CANCELLED, OrderStatus.REJECTED}
    for record in market.returns:
        ref = int(record["order_ref"])
        if record["type"] == EventType.RTN_TRADE:
            filled[ref] = filled.get(ref, 0) + int(record["volume"])
            assert states[ref] in ((OrderStatus.PART_TRADED, filled[ref]),
                                   (OrderStatus.ALL_TRADED, filled[ref]))
            assert record["trade_id"] not in trade_ids
            trade_ids.add(record["trade_id"])
            continue
        if record["flags"] & FLAG_CANCEL_REFUSED:
            assert int(record["error_id"]) in (25, 26)
            continue
        status, traded = OrderStatus(int(record["status"])), int(record["volume_traded"])
        before = states.get(ref)
        if before is not None:
            assert before[0] not in ended and traded >= before[1]
        assert traded <= int(record["volume"])
        states[ref] = (status, traded)
    assert len(trade_ids) > 10
    assert all(filled.get(ref, 0) == traded for ref, (_, traded) in states.items())
    assert sum(status not in ended for status, _ in states.values()) == market.sim.working()


@pytest.mark.parametrize("model", ["risk_averse", "probabilistic"])
def test_restore_continues_with_the_same_working_orders(model: str) -> None:
    config = {"queue_model": model, "seed": 5, "order_latency_ms": 300, "feed_latency_ms": 50,
              "accounts": {"sim": 1e9}}
    original = Market(**config)
    scripted(original, range(0, 200))
    state = json.loads(json.dumps(original.sim.snapshot()))
    assert original.sim.working() >= 2 and state["orders"]
    original.take()
    restored = Market(exchange=SimExchange.restore(SimExchangeConfig(**config), state,
                                                   lambda record: None))
    restored.sim._on_return = restored.keep
    restored.volume, restored.turnover, restored.ts = original.volume, original.turnover, original.ts
    restored.next_ref = original.next_ref
    for market in (original, restored):
        scripted(market, range(200, 500))
    continued = original.take()
    assert restored.take() == continued
    assert any(entry[0] == "trade" for entry in continued)
    assert json.dumps(restored.sim.snapshot()) == json.dumps(original.sim.snapshot())


def test_a_snapshot_keeps_the_working_orders_and_the_latest_ended_ones(market: Market) -> None:
    resting = market.order(Direction.BUY, 4999.8, 1)  # the oldest order, still working
    ended = [market.order(Direction.BUY, 5000.2, 1, price_type=PriceType.FAK)
             for _ in range(ENDED_KEPT + 10)]  # two fill the 2 lots offered, the rest cancel
    state = json.loads(json.dumps(market.sim.snapshot()))
    assert [order[2] for order in state["orders"]] == [resting, *ended[-ENDED_KEPT:]]
    restored = Market(exchange=SimExchange.restore(SimExchangeConfig(accounts={"sim": 1e9}),
                                                   state, lambda record: None))
    restored.sim._on_return = restored.keep
    restored.cancel(ended[-1])  # ended, kept: refused as before the restart
    restored.cancel(ended[0])  # ended long ago, forgotten: not found
    restored.cancel(resting)
    assert [entry[1:] for entry in restored.take()] == [
        (ended[-1], "CANCELLED", 0, 26), (ended[0], "REJECTED", 0, 25),
        (resting, "CANCELLED", 0, 0)]


def test_an_order_right_after_a_restore_meets_the_restored_book(market: Market) -> None:
    market.order(Direction.BUY, 5000.2, 1)  # takes one of the two lots at 5000.2
    state = json.loads(json.dumps(market.sim.snapshot()))
    restored = Market(exchange=SimExchange.restore(SimExchangeConfig(), state, lambda record: None))
    restored.sim._on_return = restored.keep
    for each in (market, restored):
        each.next_ref = 2
        each.take()
        each.order(Direction.BUY, 5000.2, 2)
        each.order(Direction.BUY, 4999.8, 1)
    assert restored.take() == market.take() == [
        ("order", 2, "SUBMITTING", 0, 0), ("order", 2, "PART_TRADED", 1, 0),
        ("trade", 2, 5000.2, 1), ("order", 3, "SUBMITTING", 0, 0), ("order", 3, "NOT_TRADED", 0, 0)]
    assert restored.sim.queue_ahead("sim", 3) == market.sim.queue_ahead("sim", 3) == 20


def test_same_inputs_and_seed_give_the_same_returns() -> None:
    runs = []
    for seed in (1, 1, 2):
        market = Market(queue_model="probabilistic", seed=seed, accounts={"sim": 1e9})
        scripted(market, range(400))
        runs.append(market.take())
    assert runs[0] == runs[1]
    assert len(runs[0]) > 100


# --- the real IF day ------------------------------------------------------------------------

@pytest.fixture(scope="module")
def if_day() -> np.ndarray:
    return read_ticks(IF_DAY, InstrumentTable(ProductTable.load()))


@pytest.mark.parametrize("model", ["risk_averse", "probabilistic"])
def test_passive_quotes_on_the_real_if_day(if_day: np.ndarray, model: str) -> None:
    """Every 200 ticks, join the best bid and the best ask with one lot each (200 ms order
    latency); cancel what still works 400 ticks later. Each fill is at the order's price, and
    only once the market traded at or through it after the order arrived."""
    returns: list[np.void] = []
    sim = SimExchange(SimExchangeConfig(queue_model=model, order_latency_ms=200,
                                        accounts={"sim": 1e9}),
                      lambda record: returns.append(
                          np.frombuffer(record.tobytes(), DTYPES[EventType(int(record["type"]))])[0]))
    orders: dict[int, tuple[int, float, int]] = {}  # ref -> (direction, price, tick index sent)
    record = empty(EventType.ORDER_SEND)
    cancel = empty(EventType.CANCEL_REQ)
    record["account"] = cancel["account"] = b"sim"
    record["instrument"] = b"IF2101"
    record["volume"] = 1
    fills_at: dict[int, int] = {}
    for index, tick in enumerate(if_day):
        before = len(returns)
        sim.on_tick(tick)
        for new in returns[before:]:
            if new["type"] == EventType.RTN_TRADE:
                fills_at[int(new["order_ref"])] = index
        if index % 200 == 100 and tick["bid_volume"][0] > 0 and tick["ask_volume"][0] > 0:
            for direction, price in ((Direction.BUY, tick["bid_price"][0]),
                                     (Direction.SELL, tick["ask_price"][0])):
                ref = len(orders) + 1
                record["order_ref"], record["price"], record["direction"] = ref, price, direction
                sim.submit(record[0])
                orders[ref] = (direction, float(price), index)
        if index % 200 == 100 and index >= 500:
            for ref, (_, _, sent) in orders.items():
                if sent == index - 400:
                    cancel["order_ref"] = ref
                    sim.cancel(cancel[0])
    trades = [r for r in returns if r["type"] == EventType.RTN_TRADE]
    assert len(trades) > 20 and len({int(t["trade_id"]) for t in trades}) == len(trades)
    last = if_day["last_price"]
    traded = np.diff(if_day["volume"], prepend=0)
    vwap = np.diff(if_day["turnover"], prepend=0.0) / np.maximum(traded, 1) / 300
    for trade in trades:
        ref = int(trade["order_ref"])
        direction, price, sent = orders[ref]
        assert float(trade["price"]) == price
        filled = fills_at[ref]
        assert filled > sent  # never on the tick it was sent at: 200 ms latency
        interval = slice(sent + 1, filled + 1)
        if direction == Direction.BUY:  # traded at the price, or through it
            assert (last[interval] <= price + 1e-9).any() or (vwap[interval] < price).any()
        else:
            assert (last[interval] >= price - 1e-9).any() or (vwap[interval] > price).any()
    cancelled = [r for r in returns if r["type"] == EventType.RTN_ORDER
                 and r["status"] == OrderStatus.CANCELLED]
    assert cancelled and sim.working() <= 4
