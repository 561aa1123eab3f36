"""The order desk's position book in a risk daemon host: a working close order's lots show
as frozen in its POS_UPDATEs until its fills and final status release them, and a desk
restarted from its journal holds the same frozen lots."""

from __future__ import annotations

import time
from typing import Any

from test_order_path import desk_host  # noqa: F401  (the fixture)

from hft.daemons.runtime.events import Direction, EventType, Offset, OrderFlag, OrderStatus, empty
from hft.daemons.runtime.host import DaemonHost
from hft.daemons.runtime.journal import JournalWriter
from hft.daemons.runtime.plugins import Plugin, PluginContext


class RestingGateway(Plugin):
    """Fills an open at once; a close rests until the test fills or cancels it, after
    ``config["fill_at_once"]`` of its lots filled during the ORDER_SEND's dispatch (as the
    simulated exchange fills what crosses the book)."""

    def init(self, ctx: PluginContext) -> None:
        super().init(ctx)
        self.resting: dict[int, Any] = {}
        ctx.subscribe(EventType.ORDER_SEND, self.on_order)

    def on_order(self, order: Any) -> None:
        if order["flags"] & OrderFlag.RECOVERED:
            return
        if order["offset"] == Offset.OPEN:
            self.trade(order, int(order["volume"]))
            self.status(order, OrderStatus.ALL_TRADED, int(order["volume"]))
            return
        self.resting[int(order["order_ref"])] = order.copy()
        at_once = self.ctx.config.get("fill_at_once", 0)
        if at_once:
            self.trade(order, at_once)
        self.status(order, OrderStatus.PART_TRADED if at_once else OrderStatus.NOT_TRADED,
                    at_once)

    def trade(self, order: Any, volume: int) -> None:
        trade = empty(EventType.RTN_TRADE)[0]
        for name in ("source", "instrument", "exchange", "order_ref", "account", "direction",
                     "offset", "price"):
            trade[name] = order[name]
        trade["volume"] = volume
        self.ctx.bus.publish(EventType.RTN_TRADE, trade)

    def status(self, order: Any, status: OrderStatus, traded: int) -> None:
        rtn = empty(EventType.RTN_ORDER)[0]
        for name in ("source", "instrument", "exchange", "order_ref", "account", "direction",
                     "offset", "price", "volume"):
            rtn[name] = order[name]
        rtn["status"], rtn["volume_traded"] = status, traded
        self.ctx.bus.publish(EventType.RTN_ORDER, rtn)


def request(ref: int, direction: Direction, offset: Offset, volume: int,
            price: float = 5000.0) -> Any:
    order = empty(EventType.ORDER_REQ)[0]
    order["ts_ns"], order["order_ref"], order["volume"], order["price"] = (
        time.time_ns(), ref, volume, price)
    order["instrument"], order["exchange"], order["account"] = b"IF2101", b"CFFEX", b"sim-a"
    order["direction"], order["offset"] = direction, offset
    return order


def load_gateway(host: DaemonHost, config: dict[str, Any]) -> RestingGateway:
    gateway = host.plugins.load("gateway", f"{__name__}:RestingGateway", config).instance
    assert isinstance(gateway, RestingGateway)
    return gateway


def load_desk(host: DaemonHost) -> Any:
    """The order desk loaded, the engine journal's requests decided."""
    entry = host.plugins.load("desk", "order_desk", {})
    assert entry.error == "" and entry.instance is not None
    while entry.instance.poll():  # type: ignore[attr-defined]
        pass
    return entry.instance


def frozen_lots(desk: Any) -> list[tuple[int, int]]:
    """(position, frozen) of every side in the desk's book."""
    return [(entry.position, entry.frozen) for entry in desk.positions.book.entries()]


def test_a_close_order_freezes_its_lots_while_it_works_and_after_a_restart(
        desk_host: DaemonHost) -> None:  # noqa: F811
    published: list[tuple[int, int]] = []
    desk_host.bus.subscribe(EventType.POS_UPDATE, lambda r: published.append(
        (int(r["position"]), int(r["frozen"]))))
    gateway = load_gateway(desk_host, {})
    with JournalWriter(desk_host.journal_dir, "engine") as engine:
        engine.append(request(1, Direction.BUY, Offset.OPEN, 3))
        engine.append(request(2, Direction.SELL, Offset.CLOSE, 2))
        load_desk(desk_host)
    assert published == [(3, 0), (3, 2)]  # the open's fill, then the close's frozen lots
    gateway.trade(gateway.resting[2], 1)
    assert published[-1] == (2, 1)
    desk_host.plugins.unload("desk")
    restarted = load_desk(desk_host)  # the book is rebuilt from the risk journal
    assert frozen_lots(restarted) == [(2, 1)]
    gateway.status(gateway.resting[2], OrderStatus.CANCELLED, 1)
    assert published[-1] == (2, 0)
    assert frozen_lots(restarted) == [(2, 0)]


def test_lots_filled_during_the_gateway_call_are_not_frozen(desk_host: DaemonHost) -> None:  # noqa: F811
    gateway = load_gateway(desk_host, {"fill_at_once": 1})
    with JournalWriter(desk_host.journal_dir, "engine") as engine:
        engine.append(request(1, Direction.BUY, Offset.OPEN, 3))
        engine.append(request(2, Direction.SELL, Offset.CLOSE, 3))  # 1 fills, 2 rest
        desk = load_desk(desk_host)
    assert frozen_lots(desk) == [(2, 2)]
    gateway.trade(gateway.resting[2], 2)
    gateway.status(gateway.resting[2], OrderStatus.ALL_TRADED, 3)
    assert frozen_lots(desk) == [(0, 0)]
    desk_host.plugins.unload("desk")
    assert frozen_lots(load_desk(desk_host)) == [(0, 0)]  # the journal replays to the same


def tick(host: DaemonHost, trading_day: int, last: float) -> None:
    record = empty(EventType.MARKET_DATA)[0]
    record["trading_day"], record["instrument"], record["exchange"] = trading_day, b"IF2101", b"CFFEX"
    record["last_price"] = last
    host.bus.publish(EventType.MARKET_DATA, record)


def test_a_new_trading_day_publishes_every_side_it_moves(desk_host: DaemonHost) -> None:  # noqa: F811
    published: list[tuple[int, int, int, float]] = []
    desk_host.bus.subscribe(EventType.POS_UPDATE, lambda r: published.append(
        (int(r["position"]), int(r["today_position"]), int(r["yd_position"]),
         float(r["close_profit_by_date"]))))
    load_gateway(desk_host, {"fill_at_once": 1})
    with JournalWriter(desk_host.journal_dir, "engine") as engine:
        engine.append(request(1, Direction.BUY, Offset.OPEN, 3))
        engine.append(request(2, Direction.SELL, Offset.CLOSE, 1, 5010.0))  # filled at once
        desk = load_desk(desk_host)
    tick(desk_host, 20210104, 5000.0)
    tick(desk_host, 20210104, 5010.0)  # a mark within the day publishes nothing
    assert published == [(3, 3, 0, 0.0), (2, 2, 0, 10.0 * 300)]
    tick(desk_host, 20210105, 5020.0)  # the night session opens the next trading day
    assert published[-1] == (2, 0, 2, 0.0)  # yesterday's lots now, the day's profit gone
    assert len(published) == 3 and desk.positions.trading_day == 20210105
