"""The simulated exchange as the risk daemon's gateway plugin (``sim_exchange``): an order the
desk asks about again after a restart (RECOVERED) is answered with what the exchange knows of
it, or LOST; the exchange's state survives a reload of the plugin; the desk's published
positions are checked against the exchange's accounts."""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

import numpy as np
from test_desk_positions import load_desk
from test_simexchange import DAY, T0

from hft.daemons.runtime.config import SuiteConfig
from hft.daemons.runtime.events import (
    DTYPES,
    Direction,
    EventType,
    OrderFlag,
    OrderStatus,
    PriceType,
    empty,
)
from hft.daemons.runtime.host import DaemonHost
from hft.daemons.runtime.journal import JournalReader, JournalWriter
from hft.daemons.runtime.waitmode import WaitMode
from hft.daemons.trade.simgateway import SimGateway


def host_with_exchange(tmp_path: Path) -> tuple[DaemonHost, list[Any]]:
    """A risk daemon's host in this process with the simulated exchange; its returns kept."""
    host = DaemonHost("risk", SuiteConfig.model_validate({"paths": {"home": str(tmp_path)}}))
    host.run_dir.mkdir(mode=0o700, parents=True)  # where the state file goes (the daemon makes it)
    returns: list[Any] = []
    host.bus.subscribe(EventType.RTN_ORDER, lambda r: returns.append(
        np.frombuffer(r.tobytes(), dtype=DTYPES[EventType.RTN_ORDER])[0]))
    load_exchange(host)
    tick = empty(EventType.MARKET_DATA)
    tick["ts_ns"], tick["trading_day"], tick["instrument"] = T0, DAY, b"IF2101"
    tick["last_price"], tick["upper_limit_price"], tick["lower_limit_price"] = 5000.0, 5500.0, 4500.0
    tick["bid_price"][0, 0], tick["bid_volume"][0, 0] = 5000.0, 10
    tick["ask_price"][0, 0], tick["ask_volume"][0, 0] = 5000.2, 10
    host.bus.publish(EventType.MARKET_DATA, tick[0])
    return host, returns


def load_exchange(host: DaemonHost, *, then_run_the_loop: bool = True) -> SimGateway:
    """The plugin loaded, and (unless a test loads more first) the loop's next turn run, when
    a daemon's plugins have all started."""
    entry = host.plugins.load("exchange", "sim_exchange", {"accounts": {"sim": 1e9}})
    assert entry.error == "" and isinstance(entry.instance, SimGateway)
    if then_run_the_loop:
        host.timers.run_due(time.monotonic_ns())
    return entry.instance


def buy_at_the_ask(host: DaemonHost, ref: int, volume: int) -> None:
    """A FAK buy of IF2101 at the ask, as the engine journals it."""
    with JournalWriter(host.journal_dir, "engine") as engine:
        order = empty(EventType.ORDER_REQ)[0]
        order["ts_ns"], order["order_ref"], order["volume"] = time.time_ns(), ref, volume
        order["instrument"], order["exchange"], order["account"] = b"IF2101", b"CFFEX", b"sim"
        order["price"], order["direction"], order["price_type"] = (
            5000.2, Direction.BUY, PriceType.FAK)
        engine.append(order)


def journaled(host: DaemonHost, kind: EventType) -> list[Any]:
    with JournalReader(host.journal_dir, "risk", start="begin", wait_mode=WaitMode.BUSY) as reader:
        return [record.copy() for k, record in reader.committed() if k == kind]


def send(host: DaemonHost, ref: int, *, recovered: bool = False) -> None:
    """A resting buy of 1 IF2101 (below the bid), as the desk publishes it."""
    order = empty(EventType.ORDER_SEND)
    order["ts_ns"], order["trading_day"], order["instrument"] = T0, DAY, b"IF2101"
    order["order_ref"], order["price"], order["volume"] = ref, 4990.0, 1
    order["direction"], order["price_type"], order["account"] = (
        Direction.BUY, PriceType.LIMIT, b"sim")
    order["flags"] = OrderFlag.RECOVERED if recovered else 0
    host.bus.publish(EventType.ORDER_SEND, order[0])


def answers(returns: list[Any]) -> list[tuple[int, str]]:
    found = [(int(r["order_ref"]), OrderStatus(int(r["status"])).name) for r in returns]
    returns.clear()
    return found


def test_a_recovered_order_is_answered_with_what_the_exchange_knows_or_lost(
        tmp_path: Path) -> None:
    host, returns = host_with_exchange(tmp_path)
    try:
        send(host, 1)
        assert answers(returns) == [(1, "SUBMITTING"), (1, "NOT_TRADED")]
        host.plugins.unload("exchange")  # a restart: the state is saved, then restored
        load_exchange(host)
        send(host, 1, recovered=True)  # it reached the exchange: its status as it stands
        send(host, 2, recovered=True)  # it never did
        assert answers(returns) == [(1, "NOT_TRADED"), (2, "LOST")]
        send(host, 1, recovered=True)  # asking again changes nothing at the exchange
        assert answers(returns) == [(1, "NOT_TRADED")]
    finally:
        host.plugins.stop_all()


def test_positions_that_differ_from_the_exchanges_accounts_are_alerted_once(
        tmp_path: Path) -> None:
    host, _ = host_with_exchange(tmp_path)
    alerts: list[str] = []
    host.bus.subscribe(EventType.ALERT, lambda r: alerts.append(
        f"{bytes(r['code']).decode()}: {bytes(r['message']).decode()}"))
    try:
        buy_at_the_ask(host, 1, 2)
        load_desk(host)
        gateway = host.plugins.get("exchange").instance
        assert isinstance(gateway, SimGateway)
        gateway.reconcile()  # the desk's book and the exchange agree: 2 lots long
        assert alerts == []
        host.plugins.unload("exchange")  # its state file loses the fill, as a crash could
        state_path = host.run_dir / "exchange.json"
        state = json.loads(state_path.read_text())
        for side in state["accounts"]["sim"]["sides"]:
            side[2] = side[3] = 0  # no lots today or yesterday
        state_path.write_text(json.dumps(state))
        restarted = load_exchange(host)  # the check runs once it has started
        assert alerts == ["position_mismatch: sim IF2101 long: desk (2, 2) counter (0, 0) "
                          "(position, today)"]
        restarted.reconcile()
        assert len(alerts) == 1  # the same difference is not alerted again
    finally:
        host.plugins.stop_all()


def test_returns_written_with_the_state_but_never_published_are_published_after_a_restart(
        tmp_path: Path) -> None:
    host, _ = host_with_exchange(tmp_path)
    alerts: list[Any] = []
    host.bus.subscribe(EventType.ALERT, alerts.append)
    try:
        gateway = host.plugins.get("exchange").instance
        assert isinstance(gateway, SimGateway)
        gateway._save_then_publish = gateway._save  # type: ignore[method-assign]
        buy_at_the_ask(host, 1, 2)  # filled, written ahead, then the daemon dies unpublished
        desk = load_desk(host)
        assert journaled(host, EventType.RTN_TRADE) == [] and desk.positions.lots("sim", "IF2101") == (0, 0)
        host.plugins.unload("desk")
        host.plugins.unload("exchange")
        load_exchange(host, then_run_the_loop=False)  # a daemon starts all its plugins,
        desk = load_desk(host)  # the desk asking about its order in flight,
        host.timers.run_due(time.monotonic_ns())  # then its loop turns
        [trade] = journaled(host, EventType.RTN_TRADE)  # the fill, once
        assert (int(trade["order_ref"]), int(trade["volume"])) == (1, 2)
        assert desk.positions.lots("sim", "IF2101") == (2, 0)
        assert alerts == []  # the desk's book and the exchange agree
        buy_at_the_ask(host, 2, 1)  # filled, written ahead and published (journaled) ...
        while desk.poll():
            pass
        state_path = host.run_dir / "exchange.json"
        killed_state = state_path.read_bytes()  # ... and the daemon dies before a next write
        host.plugins.unload("desk")
        host.plugins.unload("exchange")
        state_path.write_bytes(killed_state)
        load_exchange(host, then_run_the_loop=False)
        load_desk(host)
        host.timers.run_due(time.monotonic_ns())
        assert [int(t["order_ref"]) for t in journaled(host, EventType.RTN_TRADE)] == [1, 2]
    finally:
        host.plugins.stop_all()
