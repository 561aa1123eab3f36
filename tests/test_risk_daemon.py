"""The risk daemon's checks and controls end to end: a real risk daemon (market replay, order
desk with limits, simulated exchange) fed requests through a real engine journal, driven by
``hftctl risk`` and ``hftctl orders``; the kill switch cancels resting orders on the simulated
exchange, and switches and limit changes survive a restart."""

from __future__ import annotations

import csv
import datetime as dt
import json
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from support.daemons import Daemon, spawn_daemon, wait_for, wait_serving, write_config
from support.sample_data import IF_DAY
from test_strategy_daemon import metrics

from hft.daemons.md.csvfile import read_ticks
from hft.daemons.refdata.clock import CHINA
from hft.daemons.refdata.instruments import InstrumentTable, ProductTable
from hft.daemons.runtime.config import load_config
from hft.daemons.runtime.events import Direction, EventType, PriceType, empty
from hft.daemons.runtime.journal import JournalReader, JournalWriter

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

    def __init__(self, directory: Path, config: str = CONFIG) -> None:
        self.config = write_config(directory, config)
        self.directory = directory
        journal_dir = load_config(self.config).journal_dir
        self.md = JournalWriter(journal_dir, "md", trading_day=20210104)
        self.engine = JournalWriter(journal_dir, "engine")
        self.ticks = read_ticks(IF_DAY, InstrumentTable(ProductTable.load()))[300:]
        self.risk: Daemon | None = None
        self.ref = 0
        self.refs: dict[str, int] = {}

    def start(self) -> None:
        risk = self.risk = spawn_daemon("risk", self.config, self.directory / "risk.stderr")
        wait_serving(risk)
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

    def request(self, row: dict[str, Any]) -> int:
        """One row of an offline orders stream as the engine journals it; its seq there."""
        ref = self.refs.setdefault(row["order_id"], len(self.refs) + 1)
        ts_ns = int(dt.datetime.fromisoformat(row["ts"]).timestamp() * 1e9)
        if row["action"] == "cancel":
            cancel = empty(EventType.CANCEL_REQ)[0]
            cancel["ts_ns"], cancel["order_ref"], cancel["account"] = ts_ns, ref, b"sim-a"
            cancel["instrument"], cancel["exchange"] = b"IF2101", b"CFFEX"
            return self.engine.append(cancel)
        order = empty(EventType.ORDER_REQ)[0]
        order["ts_ns"], order["order_ref"], order["volume"] = ts_ns, ref, row["volume"]
        order["instrument"], order["exchange"], order["account"] = b"IF2101", b"CFFEX", b"sim-a"
        order["price"], order["price_type"] = row["price"], PriceType.LIMIT
        order["direction"] = Direction.BUY if row["direction"] == "buy" else Direction.SELL
        return self.engine.append(order)

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


LIMITS = {"max_orders_per_s": 3, "max_order_volume": 5, "duplicate_window_ms": 300,
          "max_working_orders": 4, "max_cancels_per_s": 1}


def stream(start: dt.datetime) -> list[dict[str, Any]]:
    """An order flow that meets every configured limit: bursts, duplicates, big orders, more
    working orders than allowed, cancels of live, cancelled and unknown orders."""
    rows: list[dict[str, Any]] = []
    at = start

    def row(step_ms: int, action: str, order_id: str, volume: int = 1, price_ticks: int = 50,
            direction: str = "buy") -> None:
        nonlocal at
        at += dt.timedelta(milliseconds=step_ms)
        rows.append({"ts": at.isoformat(timespec="microseconds"), "account": "sim-a",
                     "exchange": "CFFEX", "instrument": "IF2101", "action": action,
                     "order_id": order_id, "direction": direction, "offset": "open",
                     "price_ticks": price_ticks, "volume": volume, "order_type": "limit"})

    for n in range(5):  # a burst: the fourth and fifth within the second are refused
        row(10, "insert", f"a{n}", price_ticks=50 + n)
    row(10, "insert", "big", volume=9)  # max_volume
    row(1100, "insert", "d1", price_ticks=70)
    row(50, "insert", "d2", price_ticks=70)  # duplicate within 300 ms
    row(400, "insert", "w5", price_ticks=71)  # the fifth working order: working_orders
    row(10, "cancel", "a0")
    row(10, "cancel", "a0")  # already cancelled: unknown_order
    row(10, "cancel", "a1")  # the second accepted cancel within a second: cancel_rate
    row(10, "cancel", "nope")  # never sent: unknown_order
    row(1100, "cancel", "a1")
    row(10, "insert", "w6", price_ticks=72)
    return rows


def test_the_live_desk_and_hftctl_risk_check_decide_a_stream_alike(tmp_path: Path) -> None:
    rig = Rig(tmp_path, CONFIG.replace("config.limits.default = { max_order_volume = 5 }",
                                       "config.limits.default = { " + ", ".join(
                                           f"{key} = {value}" for key, value in LIMITS.items())
                                       + " }"))
    try:
        rig.start()
        rows = stream(dt.datetime.now(CHINA))
        bid = float(rig.ticks[0]["bid_price"][0])
        for row in rows:  # prices below the bid: nothing fills, as offline
            row["price"] = round(bid - 0.2 * row.pop("price_ticks"), 1)

        orders = tmp_path / "orders.csv"
        with orders.open("w", newline="") as handle:
            writer = csv.DictWriter(handle, fieldnames=list(rows[0]))
            writer.writeheader()
            writer.writerows(rows)
        limits = tmp_path / "limits.toml"
        limits.write_text("[default]\n" + "".join(f"{k} = {v}\n" for k, v in LIMITS.items()))
        offline = subprocess.run([sys.executable, "-m", "hft.ctl", "risk", "check", "--orders",
                                  str(orders), "--config", str(limits)],
                                 capture_output=True, text=True, timeout=60)
        assert offline.returncode == 0, offline.stderr
        expected = [(r["decision"], r["reason"]) for r in csv.DictReader(offline.stdout.splitlines())]

        seqs = [rig.request(row) for row in rows]
        wait_for(lambda: len(decisions(rig)) == len(rows), "the desk to decide every row", 20)
        live = decisions(rig)
        assert [live[seq] for seq in seqs] == expected
        assert {reason for _, reason in expected} >= {
            "", "order_rate", "max_volume", "duplicate", "working_orders", "unknown_order",
            "cancel_rate"}  # the stream meets every limit it configures
    finally:
        rig.stop()
        rig.md.close()
        rig.engine.close()


def decisions(rig: Rig) -> dict[int, tuple[str, str]]:
    """The desk's decision per engine journal seq: accept, or reject with the rule."""
    reader = JournalReader(load_config(rig.config).journal_dir, "risk")
    found: dict[int, tuple[str, str]] = {}
    try:
        for kind, record in reader.committed():
            if kind in (EventType.ORDER_SEND, EventType.CANCEL_REQ) and record["origin_seq"]:
                found[int(record["origin_seq"])] = ("accept", "")
            elif kind == EventType.RISK_REJECT:
                found[int(record["origin_seq"])] = (
                    "reject", bytes(record["rule"]).rstrip(b"\0").decode())
    finally:
        reader.close()
    return found


def test_the_simulated_exchange_keeps_its_working_orders_across_a_kill(rig: Rig) -> None:
    rig.start()
    first, second = rig.order(1), rig.order(2)
    wait_for(lambda: status(rig, first) == status(rig, second) == "not_traded", "two resting")
    assert rig.risk is not None
    rig.risk.process.send_signal(signal.SIGKILL)
    rig.risk.process.wait()

    rig.start()  # the exchange's state was saved after each return: both orders rest again
    assert rig.hftctl("cancel", str(first)).returncode == 0
    wait_for(lambda: status(rig, first) == "cancelled", "the restored order to be cancelled")
    assert status(rig, second) == "not_traded"  # an unknown order's cancel would be refused (25)


def test_a_restart_keeps_the_days_cancel_count(tmp_path: Path) -> None:
    rig = Rig(tmp_path, CONFIG.replace("config.limits.default = { max_order_volume = 5 }",
                                       "config.limits.default = { max_daily_cancels = 1 }"))
    try:
        rig.start()
        first, second = rig.order(1), rig.order(1, ticks_below_bid=60)
        wait_for(lambda: status(rig, first) == status(rig, second) == "not_traded", "resting")
        assert rig.hftctl("cancel", str(first)).returncode == 0
        wait_for(lambda: status(rig, first) == "cancelled", "the day's one cancel")
        rig.stop()
        rig.start()  # the counters come back from the risk journal
        refused = rig.hftctl("cancel", str(second))
        assert refused.returncode == 1 and "daily_cancels" in refused.stderr
        assert status(rig, second) == "not_traded"
    finally:
        rig.stop()
        rig.md.close()
        rig.engine.close()
