"""The strategy tree in a (not running) DaemonHost: netting of children's targets into one
set of ORDER_REQs, CTP offsets, weights and enable/disable, orders in flight, rejects,
POS_UPDATE fan-out, PnL attribution on scripted fills, and the two sample strategies."""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from prometheus_client.core import Metric
from support.sample_data import IF_DAY

from hft.daemons.engine.strategy.child import Strategy
from hft.daemons.engine.strategy.container import LIVE_TICK_NS, StrategyContainer
from hft.daemons.engine.strategy.position import Position
from hft.daemons.md.csvfile import read_ticks
from hft.daemons.refdata.instruments import InstrumentTable, ProductTable
from hft.daemons.runtime.config import SuiteConfig
from hft.daemons.runtime.events import (
    Direction,
    EventType,
    Offset,
    OrderStatus,
    PosDirection,
    PriceType,
    TickFlag,
    empty,
)
from hft.daemons.runtime.host import DaemonHost
from hft.daemons.runtime.plugins import PluginState

IF_MULTIPLIER = 300

SCRIPTED = '''
from hft.daemons.engine.strategy.child import Strategy
from hft.daemons.runtime.events import EventType


class Scripted(Strategy):
    """Targets from config["targets"] at start; notes the type of every event it sees."""

    def init(self, ctx):
        super().init(ctx)
        self.seen = []
        for event_type in (EventType.MARKET_DATA, EventType.POS_UPDATE, EventType.RTN_TRADE):
            ctx.subscribe(event_type, lambda record, kind=event_type: self.seen.append(kind))

    def start(self):
        for instrument, lots in self.ctx.config.get("targets", {}).items():
            self.set_target(instrument, lots)
'''


class Market:
    """Drives a host's bus: ticks, bars, order returns, positions; keeps the ORDER_REQs."""

    def __init__(self, host: DaemonHost, *, fill_at_once: bool = False) -> None:
        self.bus = host.bus
        self.orders: list[np.void] = []
        self.bus.subscribe(EventType.ORDER_REQ, self._on_order)
        self.cancels: list[np.void] = []
        self.bus.subscribe(EventType.CANCEL_REQ, self._on_cancel)
        self.fill_at_once = fill_at_once

    def _on_cancel(self, record: np.void) -> None:
        self.cancels.append(record.copy())

    def _on_order(self, record: np.void) -> None:
        self.orders.append(record.copy())
        if self.fill_at_once:  # a synchronous simulator: the returns are published nested
            order = self.orders[-1]
            self.trade(order, price=float(order["price"]))
            self.status(order, OrderStatus.ALL_TRADED)

    def tick(self, instrument: str = "IF2101", last: float = 5000.0, spread: float = 0.2,
             day: int = 20210104, **fields: Any) -> None:
        record = empty(EventType.MARKET_DATA)[0]
        record["instrument"], record["trading_day"], record["instrument_index"] = (
            instrument.encode(), day, 3)
        record["last_price"] = last
        record["bid_price"] = [last - spread, *[np.nan] * 4]
        record["ask_price"] = [last + spread, *[np.nan] * 4]
        for name, value in fields.items():
            record[name] = value
        self.bus.publish(EventType.MARKET_DATA, record)

    def bar(self, close: float, instrument: str = "IF2101", period_s: int = 60) -> None:
        record = empty(EventType.BAR)[0]
        record["instrument"], record["close"], record["period_s"] = (
            instrument.encode(), close, period_s)
        record["trading_day"] = 20210104
        self.bus.publish(EventType.BAR, record)

    def trade(self, order: np.void, volume: int | None = None, price: float = 5000.0) -> None:
        record = empty(EventType.RTN_TRADE)[0]
        for name in ("source", "instrument", "exchange", "order_ref", "direction", "offset",
                     "account"):
            record[name] = order[name]
        record["volume"] = order["volume"] if volume is None else volume
        record["price"] = price
        self.bus.publish(EventType.RTN_TRADE, record)

    def status(self, order: np.void, status: OrderStatus, traded: int | None = None) -> None:
        record = empty(EventType.RTN_ORDER)[0]
        record["instrument"], record["order_ref"] = order["instrument"], order["order_ref"]
        record["source"] = order["source"]
        record["volume"] = order["volume"]
        record["volume_traded"] = order["volume"] if traded is None else traded
        record["status"] = status
        self.bus.publish(EventType.RTN_ORDER, record)

    def fill(self, order: np.void, price: float = 5000.0) -> None:
        self.trade(order, price=price)
        self.status(order, OrderStatus.ALL_TRADED)

    def timer(self, ts_ns: int) -> None:
        record = empty(EventType.TIMER)[0]
        record["ts_ns"] = ts_ns
        self.bus.publish(EventType.TIMER, record)

    def reject(self, order: np.void) -> None:
        record = empty(EventType.RISK_REJECT)[0]
        record["instrument"], record["order_ref"] = order["instrument"], order["order_ref"]
        record["source"] = order["source"]
        self.bus.publish(EventType.RISK_REJECT, record)

    def position(self, instrument: str, account: str = "acc1", **lots: float) -> None:
        record = empty(EventType.POS_UPDATE)[0]
        record["instrument"], record["account"] = instrument.encode(), account.encode()
        for name, value in lots.items():
            record[name] = value
        self.bus.publish(EventType.POS_UPDATE, record)


def legs(orders: list[np.void]) -> list[tuple[str, str, int]]:
    return [(Direction(int(o["direction"])).name, Offset(int(o["offset"])).name,
             int(o["volume"])) for o in orders]


@pytest.fixture
def host() -> Iterator[DaemonHost]:
    host = DaemonHost("engine", SuiteConfig())
    yield host
    host.plugins.stop_all()


@pytest.fixture
def scripted(tmp_path: Path) -> str:
    path = tmp_path / "scripted.py"
    path.write_text(SCRIPTED)
    return str(path)


def container(host: DaemonHost, children: dict[str, dict[str, Any]],
              **config: Any) -> StrategyContainer:
    entry = host.plugins.load("strat", "strategy_container",
                              {"account": "acc1", "source_id": 42, "children": children,
                               **config})
    assert (entry.state, entry.error) == (PluginState.RUNNING, "")
    assert isinstance(entry.instance, StrategyContainer)
    return entry.instance


def child(strat: StrategyContainer, name: str) -> Any:
    instance = strat.children.get(name).instance
    assert isinstance(instance, Strategy)
    return instance


def two_children(spec: str, a: float = 3, b: float = -1) -> dict[str, dict[str, Any]]:
    return {"a": {"spec": spec, "config": {"targets": {"IF2101": a}}},
            "b": {"spec": spec, "config": {"targets": {"IF2101": b}}}}


def test_opposite_targets_net_to_one_order(host: DaemonHost, scripted: str) -> None:
    market = Market(host)
    container(host, two_children(scripted))
    assert market.orders == []  # no price yet
    market.tick(last=5000.0)
    [order] = market.orders
    assert legs([order]) == [("BUY", "OPEN", 2)]
    assert bytes(order["instrument"]) == b"IF2101" and bytes(order["exchange"]) == b"CFFEX"
    assert (order["source"], bytes(order["account"])) == (42, b"acc1")
    assert (order["price"], order["price_type"]) == (5000.2, PriceType.FAK)
    assert (order["trading_day"], order["instrument_index"]) == (20210104, 3)
    market.tick()
    assert len(market.orders) == 1  # nothing new while the order is in flight
    market.fill(order)
    market.tick()
    assert len(market.orders) == 1  # the net position is reached


def test_returns_of_another_containers_orders_are_ignored(host: DaemonHost,
                                                         scripted: str) -> None:
    market = Market(host)
    strat = container(host, two_children(scripted))
    market.tick()
    [order] = market.orders
    stranger = order.copy()
    stranger["source"] = 7  # another container, whose order refs may collide with ours
    market.fill(stranger)
    assert strat.router.orders and strat.command("list", {})["instruments"]["IF2101"][
        "position"] == 0
    market.fill(order)
    assert not strat.router.orders
    assert strat.command("list", {})["instruments"]["IF2101"]["position"] == 2


def test_disabling_and_weighting_children_change_the_net(host: DaemonHost, scripted: str) -> None:
    market = Market(host, fill_at_once=True)
    strat = container(host, two_children(scripted))
    market.tick()
    assert legs(market.orders) == [("BUY", "OPEN", 2)]
    strat.command("disable", {"name": "b"})
    assert legs(market.orders[1:]) == [("BUY", "OPEN", 1)]  # net 3
    strat.command("enable", {"name": "b"})
    assert legs(market.orders[2:]) == [("SELL", "CLOSE", 1)]  # net 2 again
    strat.command("weight", {"name": "a", "weight": 2})
    assert legs(market.orders[3:]) == [("BUY", "OPEN", 3)]  # 2 x 3 - 1 = 5
    strat.command("weight", {"name": "a", "weight": 0.5})
    assert legs(market.orders[4:]) == [("SELL", "CLOSE", 4)]  # 1.5 - 1 = 0.5 -> 1 lot
    listed = strat.command("list", {})
    assert listed["instruments"]["IF2101"]["position"] == 1
    house = next(c for c in listed["children"] if c["name"] == "(unattributed)")
    assert house["lots"]["IF2101"] == pytest.approx(0.5)  # the rounding is the house's
    ids = [int(o["order_ref"]) for o in market.orders]
    assert len(set(ids)) == len(ids) and ids == sorted(ids)


def test_a_target_change_crossing_zero_closes_then_opens(host: DaemonHost, scripted: str) -> None:
    market = Market(host, fill_at_once=True)
    strat = container(host, {"a": {"spec": scripted, "config": {"targets": {"IF2101": 2}}}})
    market.tick()
    child(strat, "a").set_target("IF2101", -3)
    market.tick()
    assert legs(market.orders) == [("BUY", "OPEN", 2), ("SELL", "CLOSE", 2), ("SELL", "OPEN", 3)]
    assert strat.command("list", {})["instruments"]["IF2101"]["position"] == -3
    assert child(strat, "a").position("IF2101") == -3


def test_shfe_closes_yesterday_then_today(host: DaemonHost, scripted: str) -> None:
    market = Market(host)
    strat = container(host, {"c": {"spec": scripted, "config": {"targets": {"rb2105": -2}}}})
    market.position("rb2105", position=3, yd_position=2, today_position=1,
                    open_cost=3 * 3500.0 * 10)  # long (direction 0), average open 3500
    market.tick("rb2105", last=3600.0, spread=1.0)
    assert legs(market.orders) == [("SELL", "CLOSE_YESTERDAY", 2), ("SELL", "CLOSE_TODAY", 1),
                                   ("SELL", "OPEN", 2)]
    assert {float(o["price"]) for o in market.orders} == {3599.0}
    for order in market.orders:
        market.fill(order, price=3599.0)
    listed = {c["name"]: c for c in strat.command("list", {})["children"]}
    assert listed["c"]["lots"] == {"rb2105": pytest.approx(-2)}
    assert listed["(unattributed)"]["lots"] == {}  # the start-up position was closed out
    assert listed["(unattributed)"]["pnl"] == pytest.approx(3 * (3599 - 3500) * 10)


@pytest.mark.parametrize(("position", "delta", "exchange", "expected"), [
    (Position(long_today=2), -5, "CFFEX", [("SELL", "CLOSE", 2), ("SELL", "OPEN", 3)]),
    (Position(short_yesterday=1, short_today=4), 3, "INE",
     [("BUY", "CLOSE_YESTERDAY", 1), ("BUY", "CLOSE_TODAY", 2)]),
    (Position(long_yesterday=1), 2, "SHFE", [("BUY", "OPEN", 2)]),
])
def test_legs(position: Position, delta: int, exchange: str,
              expected: list[tuple[str, str, int]]) -> None:
    assert [(d.name, o.name, v) for d, o, v in position.legs(delta, exchange)] == expected


def test_fills_and_a_new_trading_day_move_the_buckets() -> None:
    position = Position(long_yesterday=2, long_today=1)
    position.fill(Direction.SELL, Offset.CLOSE, 3)  # a plain close takes yesterday's first
    assert (position.long_yesterday, position.long_today) == (0, 0)
    position.fill(Direction.SELL, Offset.OPEN, 2)
    position.roll()
    assert (position.short_yesterday, position.short_today, position.net) == (2, 0, -2)


def test_an_order_in_flight_holds_the_instrument_until_settled(host: DaemonHost,
                                                               scripted: str) -> None:
    market = Market(host)
    strat = container(host, {"a": {"spec": scripted, "config": {"targets": {"IF2101": 2}}}})
    market.tick()
    first = market.orders[0]
    market.status(first, OrderStatus.ALL_TRADED)  # CTP may report this before the trade
    child(strat, "a").set_target("IF2101", 4)
    market.tick()
    assert len(market.orders) == 1  # its fill is still to come
    market.trade(first)
    assert legs(market.orders[1:]) == [("BUY", "OPEN", 2)]  # 4 - 2, sent as it settled
    market.trade(market.orders[1], volume=1)  # a FAK half filled, the rest cancelled
    market.status(market.orders[1], OrderStatus.CANCELLED, traded=1)
    assert legs(market.orders[2:]) == [("BUY", "OPEN", 1)]


def test_a_rejected_order_holds_the_instrument_back_on_the_data_clock(host: DaemonHost,
                                                                      scripted: str) -> None:
    market = Market(host)
    container(host, {"a": {"spec": scripted, "config": {"targets": {"IF2101": 1}}}},
              retry_after_s=0.2)
    start = 1_000 * 10**9
    market.tick(ts_ns=start)
    market.reject(market.orders[0])
    market.tick(ts_ns=start + 150_000_000)
    assert len(market.orders) == 1  # held back: 0.15 s of data time has passed
    market.timer(start + 250_000_000)
    market.tick(ts_ns=start + 200_000_000)  # a tick stamped earlier does not turn it back
    assert legs(market.orders[1:]) == [("BUY", "OPEN", 1)]


def test_a_resting_order_is_cancelled_on_the_data_clock_and_the_target_sent_again(
        host: DaemonHost, scripted: str) -> None:
    market = Market(host)
    strat = container(host, {"a": {"spec": scripted, "config": {"targets": {"IF2101": 2}}}},
                      price_type="limit", cancel_after_s=1.0)
    second = 1_000_000_000
    market.timer(100 * second)
    market.tick()
    resting = market.orders[0]
    market.timer(100 * second + second // 2)
    assert market.cancels == []  # not yet working for cancel_after_s
    market.trade(resting, volume=1)  # partly filled, then it rests
    market.timer(101 * second)
    assert [(int(c["order_ref"]), int(c["source"]), bytes(c["instrument"])) for c in market.cancels
            ] == [(int(resting["order_ref"]), 42, b"IF2101")]
    market.timer(101 * second + second // 2)
    assert len(market.cancels) == 1  # asked once per cancel_after_s
    market.timer(102 * second)
    assert len(market.cancels) == 2  # no answer: asked again
    market.status(resting, OrderStatus.CANCELLED, traded=1)
    assert legs(market.orders[1:]) == [("BUY", "OPEN", 1)]  # the rest of the target, at once
    assert strat.router.cancels == 2 and not strat.router.orders.keys() - {
        int(market.orders[1]["order_ref"])}


def test_no_cancel_when_cancel_after_is_off(host: DaemonHost, scripted: str) -> None:
    market = Market(host)
    container(host, {"a": {"spec": scripted, "config": {"targets": {"IF2101": 1}}}},
              price_type="limit", cancel_after_s=0)
    market.tick()
    market.timer(10**15)
    assert len(market.orders) == 1 and market.cancels == []


def test_pos_update_reaches_every_child(host: DaemonHost, scripted: str) -> None:
    market = Market(host)
    strat = container(host, two_children(scripted))
    strat.command("disable", {"name": "b"})
    market.position("IF2101", position=1, today_position=1)  # long
    market.position("IF2101", account="other", position=5, today_position=5)  # not adopted
    for name in ("a", "b"):
        assert child(strat, name).seen.count(EventType.POS_UPDATE) == 2
    assert strat.command("list", {})["instruments"]["IF2101"]["position"] == 1
    market.position("IF2101", direction=PosDirection.SHORT, position=3, yd_position=3)
    listed = strat.command("list", {})["instruments"]["IF2101"]
    assert (listed["position"], listed["long_today"], listed["short_yesterday"]) == (-2, 1, 3)


def test_pnl_is_attributed_by_contribution_to_the_net_order(host: DaemonHost,
                                                            scripted: str) -> None:
    market = Market(host)
    strat = container(host, two_children(scripted))
    market.tick(last=100.0)
    order = market.orders[0]
    market.trade(order, volume=1, price=100.0)  # a gets 3/2 of each lot, b -1/2
    market.trade(order, volume=1, price=102.0)
    market.tick(last=105.0)
    a, b = child(strat, "a"), child(strat, "b")
    assert (a.position("IF2101"), b.position("IF2101")) == (pytest.approx(3), pytest.approx(-1))
    assert a.pnl() == pytest.approx((3 * 105 - 1.5 * 100 - 1.5 * 102) * IF_MULTIPLIER)  # 3600
    assert b.pnl() == pytest.approx((-105 + 0.5 * 100 + 0.5 * 102) * IF_MULTIPLIER)  # -1200
    assert a.pnl() + b.pnl() == pytest.approx((105 - 100 + 105 - 102) * IF_MULTIPLIER)
    strat.command("disable", {"name": "b"})  # b's short is bought back, all of it b's
    market.trade(market.orders[1], price=104.0)
    assert b.position("IF2101") == pytest.approx(0)
    assert b.pnl() == pytest.approx((0.5 * 100 + 0.5 * 102 - 104) * IF_MULTIPLIER)  # -900
    assert a.pnl() == pytest.approx(3600)
    listed = {c["name"]: c for c in strat.command("list", {})["children"]}
    assert listed["b"]["pnl"] == pytest.approx(-900) and listed["(unattributed)"]["lots"] == {}


def test_children_are_loaded_unloaded_and_reloaded_by_command(host: DaemonHost,
                                                              scripted: str) -> None:
    market = Market(host, fill_at_once=True)
    strat = container(host, {})
    market.tick()
    info = strat.command("load", {"name": "c", "spec": scripted, "weight": 2,
                                  "config": {"targets": {"IF2101": 1}}})
    assert (info["state"], info["weight"], info["counts"]) == ("running", 2, True)
    assert legs(market.orders) == [("BUY", "OPEN", 2)]
    with pytest.raises(ValueError, match="already loaded"):
        strat.command("load", {"name": "c", "spec": scripted})
    assert strat.command("reload", {"name": "c"})["state"] == "running"
    unloaded = strat.command("unload", {"name": "c"})
    assert (unloaded["state"], unloaded["lots"]) == ("unloaded", {})  # its share traded out
    assert legs(market.orders[1:]) == [("SELL", "CLOSE", 2)]
    assert strat.command("load", {"name": "c", "spec": scripted})["state"] == "running"
    with pytest.raises(ValueError, match="unknown command 'flatten'; known: list, load"):
        strat.command("flatten", {})
    with pytest.raises(KeyError, match="no child named 'zz'"):
        strat.command("disable", {"name": "zz"})
    with pytest.raises(ValueError, match="weight"):
        strat.command("weight", {"name": "c", "weight": -1})


FACTOR_READER = '''
from hft.daemons.engine.strategy.child import Strategy
from hft.daemons.runtime.events import EventType


class FactorReader(Strategy):
    def init(self, ctx):
        super().init(ctx)
        self.values = []
        ctx.subscribe(EventType.FACTOR, lambda record: self.values.append(float(record["value"])))
'''


def test_factor_values_are_relayed_while_a_child_reads_them(host: DaemonHost, scripted: str,
                                                            tmp_path: Path) -> None:
    strat = container(host, {"plain": {"spec": scripted}})
    assert host.bus.handlers(EventType.FACTOR) == ()  # no child reads them: no relay
    reader = tmp_path / "reader.py"
    reader.write_text(FACTOR_READER)
    strat.command("load", {"name": "reader", "spec": str(reader)})
    factor = empty(EventType.FACTOR)[0]
    factor["value"] = 1.5
    host.bus.publish(EventType.FACTOR, factor)
    assert child(strat, "reader").values == [1.5]
    strat.command("unload", {"name": "reader"})
    assert host.bus.handlers(EventType.FACTOR) == ()


def test_a_failing_child_wants_nothing(host: DaemonHost, scripted: str, tmp_path: Path) -> None:
    market = Market(host, fill_at_once=True)
    strat = container(host, two_children(scripted))
    market.tick()
    Path(scripted).write_text(SCRIPTED.replace("def start(self):",
                                               "def start(self):\n        raise RuntimeError('x')"))
    info = strat.command("reload", {"name": "b"})
    assert (info["state"], info["counts"]) == ("failed", False)
    assert legs(market.orders) == [("BUY", "OPEN", 2), ("BUY", "OPEN", 1)]


def test_a_raising_child_is_counted_and_its_siblings_trade_on(host: DaemonHost, scripted: str,
                                                               tmp_path: Path) -> None:
    faulty = tmp_path / "faulty.py"
    faulty.write_text(SCRIPTED.replace("self.seen.append(kind)", "1 / 0"))
    market = Market(host)
    strat = container(host, {"a": {"spec": scripted, "config": {"targets": {"IF2101": 1}}},
                             "bad": {"spec": str(faulty)}})
    market.tick()
    market.tick()
    assert legs(market.orders) == [("BUY", "OPEN", 1)]
    [errors] = [f for f in strat.metrics() if f.name == "hft_strategy_handler_errors"]
    [sample] = errors.samples
    assert sample.value == 2 and sample.labels["type"] == "MARKET_DATA"
    with pytest.raises(ValueError, match="finite"):
        child(strat, "a").set_target("IF2101", float("nan"))


def test_a_strategy_outside_a_container_fails_clearly(host: DaemonHost) -> None:
    entry = host.plugins.load("cross", "strategy_dual_ema", {})
    assert entry.state is PluginState.FAILED
    assert "is a child strategy: load it into a StrategyContainer" in entry.error


def test_dual_ema_crossover_follows_the_cross(host: DaemonHost) -> None:
    market = Market(host, fill_at_once=True)
    strat = container(host, {"cross": {"spec": "strategy_dual_ema",
                                       "config": {"fast": 2, "slow": 4, "lots": 2}}})
    for close in (10, 11, 12, 13):
        market.bar(close)
        market.bar(1.0, period_s=300)  # another bar length: ignored
    assert legs(market.orders) == [("BUY", "OPEN", 2)]  # warm, fast above slow
    for close in (12, 10, 8):
        market.bar(close)
    assert legs(market.orders[1:]) == [("SELL", "CLOSE", 2), ("SELL", "OPEN", 2)]
    assert child(strat, "cross").position("IF2101") == -2
    bad = strat.command("load", {"name": "bad", "spec": "strategy_dual_ema",
                                 "config": {"fast": 5, "slow": 3}})
    assert bad["state"] == "failed" and "fast (5) must be below slow (3)" in bad["error"]


@pytest.mark.parametrize("mode", ["fade", "follow"])
def test_book_imbalance_strategy_on_the_if_day(host: DaemonHost, mode: str) -> None:
    ticks = read_ticks(IF_DAY, InstrumentTable(ProductTable.load()))[:6000]
    market = Market(host, fill_at_once=True)
    strat = container(host, {"obi": {"spec": "strategy_book_imbalance", "config": {
        "levels": 1, "entry": 0.8, "exit": 0.3, "mode": mode}}})
    wanted = []
    for tick in ticks:
        host.bus.publish(EventType.MARKET_DATA, tick)
        wanted.append(child(strat, "obi").target("IF2101"))
    changes = [b - a for a, b in zip([0.0, *wanted], wanted, strict=False) if b != a]
    assert len(changes) > 10
    assert sum(int(o["volume"]) for o in market.orders) == sum(abs(c) for c in changes)
    assert strat.command("list", {})["instruments"]["IF2101"]["position"] == wanted[-1]
    bids, asks = ticks["bid_volume"][:, 0], ticks["ask_volume"][:, 0]
    imbalance = (bids - asks) / (bids + asks)
    first_entry = imbalance[np.flatnonzero(abs(imbalance) >= 0.8)[0]]
    assert (changes[0] > 0) == ((first_entry > 0) == (mode == "follow"))
    assert np.isfinite(child(strat, "obi").pnl())


def test_book_imbalance_strategy_trades_only_on_ticks_that_count(host: DaemonHost) -> None:
    market = Market(host)
    strat = container(host, {"obi": {"spec": "strategy_book_imbalance", "config": {
        "levels": 1, "entry": 0.6, "exit": 0.2, "mode": "fade"}}})
    bid_heavy = {"bid_volume": [90, 0, 0, 0, 0], "ask_volume": [10, 0, 0, 0, 0]}
    for flag in (TickFlag.OUT_OF_SESSION, TickFlag.STALE, TickFlag.VOLUME_BACKWARDS):
        market.tick(flags=flag, **bid_heavy)  # imbalance 0.8, but the tick does not count
        assert child(strat, "obi").target("IF2101") == 0
    market.tick(flags=TickFlag.DAYS_DERIVED, **bid_heavy)
    assert child(strat, "obi").target("IF2101") == -1


def test_the_container_quotes_and_rebalances_only_on_ticks_that_count(host: DaemonHost,
                                                                       scripted: str) -> None:
    market = Market(host)
    container(host, {"a": {"spec": scripted, "config": {"targets": {"IF2101": 1}}}})
    assert market.orders == []  # no price yet: the order waits for one
    market.tick(last=5100.0, flags=TickFlag.OUT_OF_SESSION)  # a settlement print after the close
    market.tick(last=5100.0, flags=TickFlag.STALE)
    assert market.orders == []
    market.tick(last=5000.0)
    assert legs(market.orders) == [("BUY", "OPEN", 1)] and float(market.orders[0]["price"]) < 5100


def test_a_live_tick_that_makes_orders_samples_its_tick_to_order_latency(
        host: DaemonHost, scripted: str) -> None:
    market = Market(host)
    strat = container(host, {"a": {"spec": scripted, "config": {"targets": {"IF2101": 1}}}})
    stamped = time.time_ns()
    market.tick(ts_ns=stamped)  # hft_md's receive time, just now: its order goes out
    sent = time.time_ns()
    [order] = market.orders
    market.fill(order)
    market.tick(ts_ns=time.time_ns())  # makes no order (the target is reached): no sample
    child(strat, "a").set_target("IF2101", 2)
    market.tick(ts_ns=time.time_ns() - 2 * LIVE_TICK_NS)  # a replayed tick's order: no sample
    assert len(market.orders) == 2
    samples = {sample.name: sample.value for sample in _tick_to_order(strat).samples
               if sample.labels.get("le") in (None, "+Inf")}
    assert samples["hft_strategy_tick_to_order_seconds_count"] == 1
    assert 0 < samples["hft_strategy_tick_to_order_seconds_sum"] <= (sent - stamped) / 1e9


def _tick_to_order(strat: StrategyContainer) -> Metric:
    [family] = [f for f in strat.metrics() if f.name == "hft_strategy_tick_to_order_seconds"]
    assert all(sample.labels["container"] == "strat" for sample in family.samples)
    return family
