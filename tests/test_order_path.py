"""The order path across real processes: engine -> engine journal -> risk desk -> risk journal
-> gateway, and the returns back into the engine's strategy container; restarts of the risk
daemon at the worst moments."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from support.daemons import Daemon, spawn_daemon, wait_for, wait_serving, write_config
from support.sample_data import IF_DAY
from test_factors_daemon import FEED
from test_strategy import SCRIPTED
from test_strategy_daemon import metrics

from hft.daemons.md.csvfile import read_ticks
from hft.daemons.refdata.instruments import InstrumentTable, ProductTable
from hft.daemons.runtime.config import SuiteConfig, load_config
from hft.daemons.runtime.events import EventType, OrderFlag, OrderStatus, empty
from hft.daemons.runtime.host import DaemonHost
from hft.daemons.runtime.journal import JournalReader, JournalWriter

# The gateway at the far end, as a plugin of the risk daemon: it fills each ORDER_SEND at its
# price, publishing the returns from inside the ORDER_SEND's dispatch. If the file named by
# config "crash_file" exists, it deletes it and SIGKILLs its own daemon on the next order,
# after the desk committed the decision and before anything was sent: the worst moment. A
# RECOVERED order it never saw is answered LOST, as a counter that never received it would.
# While the file named by "rest_file" exists, orders rest unfilled until cancelled.
GATEWAY = '''
import os, signal
from pathlib import Path
from hft.daemons.runtime.events import EventType, OrderFlag, OrderStatus, empty
from hft.daemons.runtime.plugins import Plugin


class Gateway(Plugin):
    def init(self, ctx):
        super().init(ctx)
        self.trade = empty(EventType.RTN_TRADE)[0]
        self.status = empty(EventType.RTN_ORDER)[0]
        ctx.subscribe(EventType.ORDER_SEND, self.on_order)
        ctx.subscribe(EventType.CANCEL_REQ, self.on_cancel)

    def on_cancel(self, cancel):
        self.status["order_ref"], self.status["source"] = cancel["order_ref"], cancel["source"]
        self.status["status"] = OrderStatus.CANCELLED
        self.ctx.bus.publish(EventType.RTN_ORDER, self.status)

    def on_order(self, order):
        crash = Path(self.ctx.config.get("crash_file", "/nonexistent"))
        if crash.exists():
            crash.unlink()
            os.kill(os.getpid(), signal.SIGKILL)
        for record in (self.trade, self.status):
            for name in ("source", "instrument", "exchange", "order_ref", "account",
                         "direction", "offset"):
                record[name] = order[name]
        self.status["volume"] = order["volume"]
        if order["flags"] & OrderFlag.RECOVERED:
            self.status["status"], self.status["volume_traded"] = OrderStatus.LOST, 0
            self.ctx.bus.publish(EventType.RTN_ORDER, self.status)
            return
        if Path(self.ctx.config.get("rest_file", "/nonexistent")).exists():
            self.status["status"], self.status["volume_traded"] = OrderStatus.NOT_TRADED, 0
            self.status["order_sys_id"] = b"X%d" % order["order_ref"]
            self.ctx.bus.publish(EventType.RTN_ORDER, self.status)
            return
        self.trade["price"], self.trade["volume"] = order["price"], order["volume"]
        self.status["volume_traded"] = order["volume"]
        self.status["status"] = OrderStatus.ALL_TRADED
        self.ctx.bus.publish(EventType.RTN_TRADE, self.trade)
        self.ctx.bus.publish(EventType.RTN_ORDER, self.status)
'''


@pytest.fixture
def suite(tmp_path: Path) -> Iterator[Callable[[str], Daemon]]:
    """Writes the engine + risk config; yields a starter that (re)starts either daemon."""
    for name, text in (("feed.py", FEED), ("gateway.py", GATEWAY), ("scripted.py", SCRIPTED)):
        (tmp_path / name).write_text(text)
    config = write_config(tmp_path, f"""
[daemons.engine]
metrics_port = 0

[daemons.engine.plugins.link]
spec = "order_link"

[daemons.engine.plugins.feed]
spec = "{tmp_path / 'feed.py'}"
config = {{ instrument = "IF2101" }}

[daemons.engine.plugins.strat]
spec = "strategy_container"
config.account = "sim-a"
config.retry_after_s = 0
config.price_type = "limit"
config.children.long = {{ spec = "{tmp_path / 'scripted.py'}", config = {{ targets = {{ IF2101 = 3 }} }} }}

[daemons.risk]
metrics_port = 0

[daemons.risk.plugins.desk]
spec = "order_desk"

[daemons.risk.plugins.gateway]
spec = "{tmp_path / 'gateway.py'}"
config = {{ crash_file = "{tmp_path / 'crash'}", rest_file = "{tmp_path / 'rest'}" }}
""")
    running: dict[str, Daemon] = {}

    def start(name: str) -> Daemon:
        daemon = running[name] = spawn_daemon(name, config, tmp_path / f"{name}.stderr")
        return wait_serving(daemon)

    yield start
    for daemon in running.values():
        daemon.stop()


def journal(daemon: Daemon, name: str) -> list[tuple[int, Any]]:
    """Every record of a journal as (type, copy)."""
    reader = JournalReader(daemon.suite.journal_dir, name)
    records = []
    try:
        while (record := reader.read()) is not None:
            records.append((reader.last_type, record.copy()))
    finally:
        reader.close()
    return records


def command(engine: Daemon, plugin: str, cmd: str, /, **args: Any) -> Any:
    with engine.client() as client:
        return client.plugin_command(plugin, cmd, args)


def position(engine: Daemon) -> int:
    return int(command(engine, "strat", "list")["instruments"]["IF2101"]["position"])


def kinds(records: list[tuple[int, Any]]) -> list[str]:
    return [EventType(kind).name for kind, _ in records]


def test_an_order_goes_through_risk_and_its_fill_comes_back(
        suite: Callable[[str], Daemon]) -> None:
    risk, engine = suite("risk"), suite("engine")
    command(engine, "feed", "publish", steps=1)  # the first price: the order goes out
    wait_for(lambda: position(engine) == 3, "the fill to reach the engine's container")

    requests = journal(engine, "engine")
    assert kinds(requests) == ["ORDER_REQ"]
    order = requests[0][1]
    assert (int(order["volume"]), int(order["seq"]), bytes(order["account"])) == (3, 1, b"sim-a")
    decided = journal(risk, "risk")
    assert kinds(decided) == ["ORDER_SEND", "RTN_TRADE", "POS_UPDATE", "RTN_ORDER"]
    send = decided[0][1]
    assert int(send["origin_seq"]) == 1  # which request it decides
    for name in ("source", "order_ref", "instrument", "price", "volume", "direction", "account"):
        assert send[name] == order[name], name
    assert decided[1][1]["order_ref"] == order["order_ref"]


def test_a_restarted_risk_daemon_decides_nothing_twice(suite: Callable[[str], Daemon]) -> None:
    risk, engine = suite("risk"), suite("engine")
    command(engine, "feed", "publish", steps=1)
    wait_for(lambda: position(engine) == 3, "the first fill")
    risk.process.send_signal(signal.SIGKILL)
    risk.process.wait()
    command(engine, "strat", "weight", name="long", weight=2)  # an order while risk is down
    assert kinds(journal(engine, "engine")) == ["ORDER_REQ", "ORDER_REQ"]

    risk = suite("risk")
    wait_for(lambda: position(engine) == 6, "the order made while risk was down to fill")
    sends = [int(r["origin_seq"]) for kind, r in journal(risk, "risk")
             if kind == EventType.ORDER_SEND]
    assert sends == [1, 2]  # the first was not decided again


def test_a_crash_between_decision_and_gateway_leaves_the_order_lost_not_sent_twice(
        suite: Callable[[str], Daemon], tmp_path: Path) -> None:
    risk, engine = suite("risk"), suite("engine")
    (tmp_path / "crash").touch()  # the gateway dies on the next order, before sending it
    command(engine, "feed", "publish", steps=1)
    wait_for(lambda: risk.process.poll() is not None, "the risk daemon to die mid-order")
    assert risk.process.returncode == -signal.SIGKILL
    assert kinds(journal(risk, "risk")) == ["ORDER_SEND"]  # decided, committed, never sent

    risk = suite("risk")
    # the restarted desk asks the gateway about the order; it never saw it: LOST. The
    # container then trades again (a new request), which fills.
    wait_for(lambda: position(engine) == 3, "a fresh order after the lost one to fill", 20)
    records = journal(risk, "risk")
    lost = [r for kind, r in records if kind == EventType.RTN_ORDER
            and r["status"] == OrderStatus.LOST]
    assert len(lost) == 1
    sends = [int(r["origin_seq"]) for kind, r in records if kind == EventType.ORDER_SEND]
    assert sends == [1, 2]  # the lost one was not sent again by the desk
    assert not any(int(r["flags"]) & OrderFlag.RECOVERED for kind, r in records
                   if kind == EventType.ORDER_SEND)  # the journal keeps the original


def request(ts_ns: int, ref: int) -> Any:
    order = empty(EventType.ORDER_REQ)[0]
    order["ts_ns"], order["order_ref"], order["volume"], order["price"] = ts_ns, ref, 1, 5000.0
    order["instrument"], order["exchange"], order["account"] = b"IF2101", b"CFFEX", b"sim-a"
    return order


@pytest.fixture
def desk_host(tmp_path: Path) -> Iterator[DaemonHost]:
    """A risk daemon's host in this process, its bus watched, the desk not loaded yet."""
    host = DaemonHost("risk", SuiteConfig.model_validate({"paths": {"home": str(tmp_path)}}))
    yield host
    host.plugins.stop_all()


def decide_all(host: DaemonHost, config: dict[str, Any]) -> list[tuple[int, int, bytes]]:
    """Load the desk, let it decide what the engine journal holds; (type, ref, rule) each."""
    decided: list[tuple[int, int, bytes]] = []
    for kind in (EventType.ORDER_SEND, EventType.RISK_REJECT):
        host.bus.subscribe(kind, lambda r, kind=kind: decided.append(
            (kind, int(r["order_ref"]), bytes(r["rule"]) if kind == EventType.RISK_REJECT
             else b"")))
    entry = host.plugins.load("desk", "order_desk", config)
    assert entry.error == "" and entry.instance is not None
    while entry.instance.poll():  # type: ignore[attr-defined]
        pass
    return decided


def test_a_request_older_than_max_age_is_refused_as_stale(desk_host: DaemonHost) -> None:
    now = time.time_ns()
    with JournalWriter(desk_host.journal_dir, "engine") as engine:
        engine.append(request(now, 1))
        engine.append(request(now - 60 * 10**9, 2))  # waited a minute: the desk was down
        engine.append(request(now, 3))
    with JournalWriter(desk_host.journal_dir, "risk") as risk:  # 1 was decided before
        send = request(now, 1)
        send["type"], send["origin_seq"] = EventType.ORDER_SEND, 1
        risk.append(send)
    assert decide_all(desk_host, {"max_request_age_s": 10}) == [
        (EventType.ORDER_SEND, 1, b""),  # no return in the journal: asked about again
        (EventType.RISK_REJECT, 2, b"stale"), (EventType.ORDER_SEND, 3, b"")]


def test_a_fresh_risk_journal_starts_max_age_back(desk_host: DaemonHost) -> None:
    now = time.time_ns()
    with JournalWriter(desk_host.journal_dir, "engine") as engine:
        engine.append(request(now - 3600 * 10**9, 1))  # yesterday's flow: not decided at all
        engine.append(request(now, 2))
    assert decide_all(desk_host, {"max_request_age_s": 10}) == [(EventType.ORDER_SEND, 2, b"")]


def hftctl(config: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "hft.ctl", *args, "--config", str(config)],
                          capture_output=True, text=True, timeout=60)


def test_orders_trades_and_cancel_from_hftctl(suite: Callable[[str], Daemon],
                                              tmp_path: Path) -> None:
    risk, engine = suite("risk"), suite("engine")
    config = tmp_path / "hft.toml"
    command(engine, "feed", "publish", steps=1)
    wait_for(lambda: position(engine) == 3, "the first fill")
    (tmp_path / "rest").touch()  # from now on orders rest
    command(engine, "strat", "weight", name="long", weight=2)  # buy 3 more: it rests
    wait_for(lambda: len(json_lines(hftctl(config, "orders", "--json"))) == 2, "two orders")

    first, second = json_lines(hftctl(config, "orders", "--json"))
    assert (first["status"], first["traded"], first["volume"]) == ("all_traded", 3, 3)
    assert (second["status"], second["account"], second["direction"]) == (
        "not_traded", "sim-a", "buy")
    [trade] = json_lines(hftctl(config, "trades", "--json"))
    assert (trade["volume"], trade["order_ref"]) == (3, first["order_ref"])
    table = hftctl(config, "orders").stdout
    assert "not_traded" in table and str(second["order_ref"]) in table

    refused = hftctl(config, "cancel", str(first["order_ref"]))  # filled: not working
    assert refused.returncode == 1 and "no working order" in refused.stderr
    cancelled = hftctl(config, "cancel", str(second["order_ref"]))
    assert cancelled.returncode == 0, cancelled.stderr
    wait_for(lambda: json_lines(hftctl(config, "orders", "--json"))[1]["status"] == "cancelled",
             "the cancel to come back")
    cancels = [r for kind, r in journal(risk, "risk") if kind == EventType.CANCEL_REQ]
    assert len(cancels) == 1 and int(cancels[0]["origin_seq"]) == 0  # by hand, journaled


def json_lines(completed: subprocess.CompletedProcess[str]) -> list[dict[str, Any]]:
    assert completed.returncode == 0, completed.stderr
    return [json.loads(line) for line in completed.stdout.splitlines()]


def test_the_simulated_exchange_fills_and_the_book_sends_positions_back(tmp_path: Path) -> None:
    """hft_md's journal (written here) -> engine (replay, container, order_link) -> risk (replay,
    order_desk, sim_exchange): the container's order fills against the real IF book, the fill
    moves the exact book, and its POS_UPDATE reaches the engine and ``hftctl positions``."""
    (tmp_path / "scripted.py").write_text(SCRIPTED)
    config = write_config(tmp_path, f"""
[daemons.engine]
metrics_port = 0

[daemons.engine.plugins.replay]
spec = "replay"
config = {{ journals = ["md"] }}

[daemons.engine.plugins.link]
spec = "order_link"

[daemons.engine.plugins.strat]
spec = "strategy_container"
config.account = "sim-a"
config.children.long = {{ spec = "{tmp_path / 'scripted.py'}", config = {{ targets = {{ IF2101 = 2 }} }} }}

[daemons.risk]
metrics_port = 0

[daemons.risk.plugins.market]
spec = "replay"
config = {{ journals = ["md"] }}

[daemons.risk.plugins.desk]
spec = "order_desk"
config = {{ default_fees = {{ open_rate = 0.0001, margin_rate = 0.12 }} }}

[daemons.risk.plugins.exchange]
spec = "sim_exchange"
config = {{ accounts = {{ sim-a = 2000000.0 }} }}
""")
    ticks = read_ticks(IF_DAY, InstrumentTable(ProductTable.load()))[300:800]  # continuous trading
    md = JournalWriter(load_config(config).journal_dir, "md", trading_day=20210104)
    daemons = [spawn_daemon(name, config, tmp_path / f"{name}.stderr") for name in ("risk", "engine")]
    try:
        risk, engine = map(wait_serving, daemons)
        for tick in ticks:  # the journal existed before they started: both follow from its end
            md.append(tick)
            time.sleep(0.01)
            if position(engine) == 2:
                break
        assert position(engine) == 2, "the container does not hold 2 lots after 500 ticks"
        fills = [r for kind, r in journal(risk, "risk") if kind == EventType.RTN_TRADE]
        assert sum(int(f["volume"]) for f in fills) == 2
        bought = sum(float(f["price"]) * int(f["volume"]) for f in fills)
        [long] = [p for p in json_lines(hftctl(config, "positions", "--json"))
                  if p["direction"] == "long"]
        assert (long["account"], long["instrument"], long["position"],
                long["today_position"]) == ("sim-a", "IF2101", 2, 2)
        assert long["open_cost"] == pytest.approx(bought * 300)
        assert long["margin"] == pytest.approx(bought * 300 * 0.12)
        assert long["commission"] == pytest.approx(bought * 300 * 0.0001)  # the desk's fees
    finally:
        for daemon in daemons:
            daemon.stop()
        md.close()


def test_a_restarted_engine_takes_up_its_order_in_flight_instead_of_sending_it_again(
        suite: Callable[[str], Daemon], tmp_path: Path) -> None:
    config = tmp_path / "hft.toml"
    suite("risk")
    engine = suite("engine")
    (tmp_path / "rest").touch()  # the order rests at the gateway
    command(engine, "feed", "publish", steps=1)
    wait_for(lambda: [r["status"] for r in json_lines(hftctl(config, "orders", "--json"))]
             == ["not_traded"], "the order to rest")
    engine.process.send_signal(signal.SIGKILL)
    engine.process.wait()

    engine = suite("engine")  # it takes the resting order up again at start
    command(engine, "feed", "publish", steps=2)  # prices: the same change would go out again
    assert kinds(journal(engine, "engine")) == ["ORDER_REQ"]  # ... but it is in flight
    (tmp_path / "rest").unlink()
    [resting] = json_lines(hftctl(config, "orders", "--json"))
    assert hftctl(config, "cancel", str(resting["order_ref"])).returncode == 0
    # cancelled: the container settles the adopted order and sends the change once more
    wait_for(lambda: position(engine) == 3, "the new order to fill")
    assert kinds(journal(engine, "engine")) == ["ORDER_REQ", "ORDER_REQ"]


def test_a_risk_rejection_reaches_the_strategy(suite: Callable[[str], Daemon],
                                              tmp_path: Path) -> None:
    suite("risk")
    engine = suite("engine")
    config = tmp_path / "hft.toml"
    assert hftctl(config, "risk", "set", "default", "max_order_volume", "1").returncode == 0
    command(engine, "feed", "publish", steps=1)  # buy 3: refused
    wait_for(lambda: metrics(engine).get(("hft_bus_events_published_total",
                                          frozenset({("type", "RISK_REJECT")})), 0) >= 1,
             "the RISK_REJECT on the engine's bus")
    refused = json_lines(hftctl(config, "orders", "--json"))  # the container tries again
    assert refused and all(row["status"] == "risk_rejected"
                           and row["message"].startswith("max_volume") for row in refused)
    assert position(engine) == 0


def test_the_order_journals_can_be_made_durable(desk_host: DaemonHost) -> None:
    """``durable = true`` reaches the writers of both order journals (their msync per commit
    is tested with the journal)."""
    desk = desk_host.plugins.load("desk", "order_desk", {"durable": True}).instance
    link = desk_host.plugins.load("link", "order_link", {"durable": True}).instance
    assert desk is not None and link is not None
    assert desk._writer.durable and link._writer.durable  # type: ignore[attr-defined]
