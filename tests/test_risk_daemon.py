"""The risk daemon's checks and controls end to end: a real risk daemon (market replay, order
desk with limits, simulated exchange) fed requests through a real engine journal, driven by
``hftctl risk`` and ``hftctl orders``; the kill switch cancels resting orders on the simulated
exchange, and switches and limit changes survive a restart."""

from __future__ import annotations

import json
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from support.daemons import Daemon, serving, spawn_daemon, wait_for, write_config
from support.sample_data import IF_DAY
from test_strategy_daemon import metrics

from hft.daemons.md.csvfile import read_ticks
from hft.daemons.refdata.instruments import InstrumentTable, ProductTable
from hft.daemons.runtime.config import load_config
from hft.daemons.runtime.events import Direction, EventType, PriceType, empty
from hft.daemons.runtime.journal import JournalWriter

CONFIG = """
[daemons.risk]
metrics_port = 0

[daemons.risk.plugins.market]
spec = "replay"
config = { journals = ["md"] }

[daemons.risk.plugins.desk]
spec = "order_desk"
config.limits.default = { max_order_volume = 5 }

[daemons.risk.plugins.exchange]
spec = "sim_exchange"
config = { accounts = { sim-a = 5000000.0 } }
"""


class Rig:
    """A risk daemon and the journals it reads: the md journal and the engine journal."""

    def __init__(self, directory: Path) -> None:
        self.config = write_config(directory, CONFIG)
        self.directory = directory
        journal_dir = load_config(self.config).journal_dir
        self.md = JournalWriter(journal_dir, "md", trading_day=20210104)
        self.engine = JournalWriter(journal_dir, "engine")
        self.ticks = read_ticks(IF_DAY, InstrumentTable(ProductTable.load()))[300:]
        self.risk: Daemon | None = None
        self.ref = 0

    def start(self) -> None:
        risk = self.risk = spawn_daemon("risk", self.config, self.directory / "risk.stderr")
        wait_for(lambda: serving(risk), "risk to be SERVING", 20)
        self.md.append(self.ticks[0])  # the exchange's book

    def stop(self) -> None:
        if self.risk is not None:
            self.risk.stop()

    def order(self, volume: int, ticks_below_bid: int = 50) -> int:
        """A resting limit buy (below the bid), as the engine would journal it."""
        self.ref += 1
        order = empty(EventType.ORDER_REQ)[0]
        order["ts_ns"], order["order_ref"], order["volume"] = time.time_ns(), self.ref, volume
        order["instrument"], order["exchange"], order["account"] = b"IF2101", b"CFFEX", b"sim-a"
        order["price"] = round(float(self.ticks[0]["bid_price"][0]) - 0.2 * ticks_below_bid, 1)
        order["direction"], order["price_type"] = Direction.BUY, PriceType.LIMIT
        self.engine.append(order)
        return self.ref

    def hftctl(self, *args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run([sys.executable, "-m", "hft.ctl", *args, "--config",
                               str(self.config)], capture_output=True, text=True, timeout=60)

    def orders(self) -> dict[int, dict[str, Any]]:
        listed = self.hftctl("orders", "--json")
        assert listed.returncode == 0, listed.stderr
        return {row["order_ref"]: row for row in map(json.loads, listed.stdout.splitlines())}


@pytest.fixture
def rig(tmp_path: Path) -> Iterator[Rig]:
    rig = Rig(tmp_path)
    yield rig
    rig.stop()
    rig.md.close()
    rig.engine.close()


def status(rig: Rig, ref: int) -> str | None:
    row = rig.orders().get(ref)
    return None if row is None else str(row["status"])


def test_the_kill_switch_cancels_resting_orders_and_refuses_new_ones(rig: Rig) -> None:
    rig.start()
    first, second = rig.order(1), rig.order(2)
    wait_for(lambda: status(rig, first) == status(rig, second) == "not_traded", "two resting")
    killed = rig.hftctl("risk", "kill", "--cancel-all")
    assert killed.returncode == 0, killed.stderr
    assert "2 working order(s) cancelled" in killed.stdout
    wait_for(lambda: status(rig, first) == status(rig, second) == "cancelled",
             "the simulated exchange to cancel both")
    refused = rig.order(1)
    wait_for(lambda: status(rig, refused) == "risk_rejected", "a new order refused")
    assert rig.orders()[refused]["message"].startswith("kill_switch")
    assert rig.risk is not None
    samples = metrics(rig.risk)
    assert samples[("hft_risk_rejects_total", frozenset({("reason", "kill_switch")}))] == 1
    assert samples[("hft_risk_kill_switch", frozenset())] == 1
    assert rig.hftctl("risk", "resume").returncode == 0
    again = rig.order(1)
    wait_for(lambda: status(rig, again) == "not_traded", "orders to pass again")


def test_limit_changes_and_the_switch_survive_a_restart(rig: Rig) -> None:
    rig.start()
    too_big = rig.order(6)  # max_order_volume 5 from the config
    wait_for(lambda: status(rig, too_big) == "risk_rejected", "the config's limit")
    changed = rig.hftctl("risk", "set", "default", "max_order_volume", "2")
    assert changed.returncode == 0, changed.stderr
    bad = rig.hftctl("risk", "set", "default", "max_order_volume", "many")
    assert bad.returncode == 1 and "max_order_volume" in bad.stderr and "integer" in bad.stderr
    assert rig.hftctl("risk", "kill").returncode == 0

    rig.stop()
    rig.start()
    shown = json.loads(rig.hftctl("risk", "show", "--json").stdout)
    assert shown["killed"] is True
    assert shown["limits"]["default"]["max_order_volume"] == 2
    assert rig.hftctl("risk", "resume").returncode == 0
    three = rig.order(3)
    wait_for(lambda: status(rig, three) == "risk_rejected", "the changed limit after restart")
    assert "max_volume" in rig.orders()[three]["message"]
