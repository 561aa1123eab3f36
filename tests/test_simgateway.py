"""The simulated exchange as the risk daemon's gateway plugin (``sim_exchange``): an order the
desk asks about again after a restart (RECOVERED) is answered with what the exchange knows of
it, or LOST, and the exchange's state survives a reload of the plugin."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
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


def load_exchange(host: DaemonHost) -> None:
    entry = host.plugins.load("exchange", "sim_exchange", {"accounts": {"sim": 1e9}})
    assert entry.error == ""


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
