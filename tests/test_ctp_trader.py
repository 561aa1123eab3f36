"""The CTP trader gateway (``ctp_trader``) against an emulated counter at the API boundary:
the real order desk and the real gateway in a risk daemon host, the counter's answers coming
through the real SPI with real openctp-ctp structs on the API's own thread."""

from __future__ import annotations

import fcntl
import logging
import os
import shutil
import stat
import sys
import termios
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from openctp_ctp import tdapi
from support import ctp_td_emulator
from support.ctp_td_emulator import EmulatedCounter, tick
from support.daemons import spawn_daemon, wait_for, wait_serving, write_config
from support.pagecache import file_page_is_dirty

from hft.daemons.runtime import host as host_module
from hft.daemons.runtime.config import SuiteConfig
from hft.daemons.runtime.events import EventType, Offset, OrderStatus, empty
from hft.daemons.runtime.host import DaemonHost
from hft.daemons.runtime.journal import JournalReader, JournalWriter
from hft.daemons.runtime.timers import NEVER

BROKER, USER, PASSWORD = "9999", "218001", "s3cr3t-TD-4711"
WRONG = "wr0ng-TD-0815"
ENGINE = Path(__file__).parent
FUTEX_WAITV = 449  # x86_64 and aarch64


class Risk:
    """A risk daemon host in this process with ``order_desk`` and the emulated gateway; the
    test's thread is its main loop (``pump``)."""

    def __init__(self, home: Path, password: str = PASSWORD, **config: Any) -> None:
        self.host = DaemonHost("risk", SuiteConfig.model_validate({"paths": {"home": str(home)}}))
        JournalWriter(self.host.journal_dir, "engine").close()  # the desk follows it at once
        self.seen: list[tuple[int, Any]] = []
        for kind in (EventType.RTN_ORDER, EventType.RTN_TRADE, EventType.ALERT):
            self.host.bus.subscribe(kind, lambda r, k=kind: self.seen.append((k, r.copy())))
        desk = self.host.plugins.load("desk", "order_desk", {}, start=False)
        assert desk.error == "", desk.error
        settings = {"fronts": ["tcp://127.0.0.1:10201"], "broker_id": BROKER, "user_id": USER,
                    "password": password, "query_interval_s": 0.02} | config
        gateway = self.host.plugins.load("td", "support.ctp_td_emulator:EmulatedCtpTrader", settings,
                                             start=False)
        assert gateway.error == "", gateway.error
        self.desk, self.gateway = desk.instance, gateway.instance
        self.host.plugins.start_all()

    def pump(self) -> None:
        self.desk.poll()  # type: ignore[union-attr]
        self.gateway.poll()  # type: ignore[union-attr]

    def until(self, probe: Any, what: str) -> Any:
        def step() -> Any:
            self.pump()
            return probe()
        return wait_for(step, what)

    def ready(self) -> None:
        self.until(lambda: self.gateway.state == "ready", "login, confirmation and queries")

    def returns(self, kind: EventType) -> list[Any]:
        return [r for k, r in self.seen if k == kind]

    def stop(self) -> None:
        self.host.plugins.stop_all()


@pytest.fixture
def counter() -> Iterator[EmulatedCounter]:
    ctp_td_emulator.COUNTER = EmulatedCounter(broker_id=BROKER, user_id=USER, password=PASSWORD,
                                              query_interval_s=0.02)
    ctp_td_emulator.COUNTER.tick(tick("IF2603", "CFFEX", last=4500.0, bid=4499.8, ask=4500.2))
    ctp_td_emulator.COUNTER.tick(tick("rb2605", "SHFE", last=3100.0, bid=3099.0, ask=3101.0))
    yield ctp_td_emulator.COUNTER
    ctp_td_emulator.COUNTER = None


@pytest.fixture
def risks(tmp_path: Path) -> Iterator[list[Risk]]:
    started: list[Risk] = []
    yield started
    for risk in started:
        risk.stop()


def start(risks: list[Risk], home: Path, **options: Any) -> Risk:
    risk = Risk(home, **options)
    risks.append(risk)
    return risk


def request(home: Path, ref: int, *, instrument: str = "IF2603", exchange: str = "CFFEX",
            price: float = 4500.2, volume: int = 1, direction: int = 0,
            offset: int = Offset.OPEN, cancel: bool = False) -> None:
    """An ORDER_REQ (or CANCEL_REQ) in the engine journal, as order_link writes it."""
    record = empty(EventType.CANCEL_REQ if cancel else EventType.ORDER_REQ)[0]
    record["ts_ns"], record["order_ref"], record["source"] = time.time_ns(), ref, 7
    record["instrument"], record["exchange"], record["account"] = instrument, exchange, USER
    if not cancel:
        record["price"], record["volume"] = price, volume
        record["direction"], record["offset"] = direction, offset
    with JournalWriter(home / "journal", "engine") as engine:
        engine.append(record)


def cancel_passed_by_the_desk(risk: Risk, ref: int) -> None:
    """A CANCEL_REQ on the risk bus, as the desk publishes one it let through."""
    cancel = empty(EventType.CANCEL_REQ)[0]
    cancel["order_ref"], cancel["source"], cancel["account"] = ref, 7, USER
    cancel["instrument"], cancel["exchange"] = "IF2603", "CFFEX"
    risk.host.bus.publish(int(EventType.CANCEL_REQ), cancel)


def held(risk: Risk, instrument: str) -> int:
    """Long lots in the desk's book, as its last POS_UPDATE said."""
    return risk.gateway.position_check.published.get((USER, instrument, 0), (0, 0))[0]


def statuses(risk: Risk, ref: int) -> list[int]:
    return [int(r["status"]) for r in risk.returns(EventType.RTN_ORDER) if r["order_ref"] == ref]


# --- orders ---------------------------------------------------------------------------------

def test_an_order_fills_through_the_counter_and_the_book_moves(
        counter: EmulatedCounter, risks: list[Risk], tmp_path: Path) -> None:
    risk = start(risks, tmp_path)
    risk.ready()
    request(tmp_path, 1)  # buy 1 IF2603 at the ask: fills on arrival
    risk.until(lambda: OrderStatus.ALL_TRADED in statuses(risk, 1), "the fill")
    [trade] = risk.returns(EventType.RTN_TRADE)
    assert (trade["order_ref"], trade["source"], trade["volume"], trade["price"]) == \
        (1, 7, 1, 4500.2)
    assert bytes(trade["account"]) == USER.encode() and bytes(trade["exchange"]) == b"CFFEX"
    assert held(risk, "IF2603") == 1
    [order] = risk.gateway.orders.values()
    [leg] = order.legs
    ctp_ref = leg.ctp[2]
    assert ctp_ref > 0 and counter.orders[ctp_ref]["SessionID"] == 1
    [filled] = [r for r in risk.returns(EventType.RTN_ORDER) if r["status"] == OrderStatus.ALL_TRADED]
    assert bytes(filled["message"]).decode() == "全部成交"  # GB18030 from the front, decoded
    assert counter.flow_violations == 0 and counter.api.callback_errors == 0
    assert counter.api.topics["private"] == tdapi.THOST_TERT_RESUME


def test_order_refs_start_above_the_logins_max_order_ref(
        counter: EmulatedCounter, risks: list[Risk], tmp_path: Path) -> None:
    counter.max_order_ref_elsewhere = 5000  # another terminal of the user ordered today
    risk = start(risks, tmp_path)
    risk.ready()
    request(tmp_path, 1)
    risk.until(lambda: OrderStatus.ALL_TRADED in statuses(risk, 1), "the fill")
    assert list(counter.orders) == [5001]  # a ref at or below 5000 the counter refuses


def test_a_refused_insert_is_rejected_with_the_counters_error(
        counter: EmulatedCounter, risks: list[Risk], tmp_path: Path) -> None:
    risk = start(risks, tmp_path)
    risk.ready()
    request(tmp_path, 1, offset=Offset.CLOSE)  # nothing to close: 30 from the counter
    risk.until(lambda: OrderStatus.REJECTED in statuses(risk, 1), "the refusal")
    [rejected] = [r for r in risk.returns(EventType.RTN_ORDER) if r["order_ref"] == 1]
    assert rejected["error_id"] == 30 and bytes(rejected["message"]).decode() == "CTP:平仓量超过持仓量"
    assert not risk.desk.working  # type: ignore[union-attr]
    risk.pump()
    assert len(statuses(risk, 1)) == 1  # OnRspOrderInsert and OnErrRtnOrderInsert: one return


def test_a_cancel_of_a_filled_order_is_refused_with_26(
        counter: EmulatedCounter, risks: list[Risk], tmp_path: Path) -> None:
    risk = start(risks, tmp_path)
    risk.ready()
    request(tmp_path, 1)
    risk.until(lambda: OrderStatus.ALL_TRADED in statuses(risk, 1), "the fill")
    cancel_passed_by_the_desk(risk, 1)  # it raced the fill: the desk still had it working
    refused = risk.until(lambda: [r for r in risk.returns(EventType.RTN_ORDER)
                                  if r["flags"] & 1], "the refused cancel")
    assert refused[0]["error_id"] == 26 and refused[0]["status"] == OrderStatus.ALL_TRADED


def test_a_resting_order_is_cancelled(counter: EmulatedCounter, risks: list[Risk],
                                      tmp_path: Path) -> None:
    risk = start(risks, tmp_path)
    risk.ready()
    request(tmp_path, 1, price=4490.0)
    risk.until(lambda: OrderStatus.NOT_TRADED in statuses(risk, 1), "the order resting")
    request(tmp_path, 1, cancel=True)
    risk.until(lambda: OrderStatus.CANCELLED in statuses(risk, 1), "the cancel")


# --- login ------------------------------------------------------------------------------------

def test_a_wrong_password_is_not_retried_and_never_shown(
        counter: EmulatedCounter, risks: list[Risk], tmp_path: Path,
        caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)
    risk = start(risks, tmp_path, password=WRONG, login_retry_s=0.01)
    risk.until(lambda: risk.gateway.state == "error", "the refusal")
    counter.api.disconnect(0x1001)  # even after a reconnect: no second attempt
    risk.until(lambda: risk.gateway.stats["disconnects"] == 1, "the reconnect")
    time.sleep(0.1)
    risk.pump()
    assert counter.api.login_attempts == 1 and risk.gateway.state == "error"
    [alert] = risk.returns(EventType.ALERT)
    assert bytes(alert["code"]) == b"login_refused"
    request(tmp_path, 1)
    risk.until(lambda: statuses(risk, 1) == [OrderStatus.REJECTED], "the order refused")
    metrics = [repr(sample) for family in risk.gateway.metrics() for sample in family.samples]
    assert any("hft_ctp_td_login_failures" in text for text in metrics)
    texts = [repr(risk.gateway), caplog.text, *(repr(vars(r)) for r in caplog.records),
             *(bytes(r["message"]).decode() for _, r in risk.seen), *metrics]
    for text in texts:
        assert WRONG not in text and PASSWORD not in text


def test_credentials_come_from_the_environment_or_a_0600_file(
        counter: EmulatedCounter, risks: list[Risk], tmp_path: Path,
        monkeypatch: pytest.MonkeyPatch) -> None:
    secrets = tmp_path / "ctp.json"
    secrets.write_text(f'{{"password": "{PASSWORD}"}}')
    secrets.chmod(0o644)
    with pytest.raises(AssertionError, match="make it 0600"):
        start(risks, tmp_path / "a", password="", credentials_file=str(secrets))
    secrets.chmod(0o600)
    secrets.write_text('{"password": 47114711}')  # not echoed in the error, unlike pydantic's
    with pytest.raises(AssertionError, match="password must be a string") as refused:
        start(risks, tmp_path / "c", password="", credentials_file=str(secrets))
    assert "47114711" not in str(refused.value)
    secrets.write_text(f'{{"password": "{PASSWORD}"}}')
    monkeypatch.setenv("CTP_BROKER_ID", BROKER)
    risk = start(risks, tmp_path / "b", password="", broker_id="", credentials_file=str(secrets))
    risk.ready()
    assert PASSWORD not in repr(risk.gateway) and PASSWORD not in repr(risk.gateway.settings)


# --- disconnects and restarts -------------------------------------------------------------------

def test_a_disconnect_mid_order_recovers_its_fill_once(
        counter: EmulatedCounter, risks: list[Risk], tmp_path: Path) -> None:
    risk = start(risks, tmp_path)
    risk.ready()
    request(tmp_path, 1, price=4490.0)
    risk.until(lambda: OrderStatus.NOT_TRADED in statuses(risk, 1), "the order resting")
    counter.api.disconnect(0x2001, reconnect_after_s=0.2)
    risk.until(lambda: risk.gateway.state == "disconnected", "the disconnect")
    counter.tick(tick("IF2603", "CFFEX", last=4489.0, bid=4488.8, ask=4489.2, ts_ns=2,
                      volume=150))  # traded through: the order fills while the link is down
    risk.until(lambda: risk.gateway.stats["logins"] == 2 and risk.gateway.state == "ready",
               "re-login and the queries")
    risk.until(lambda: OrderStatus.ALL_TRADED in statuses(risk, 1), "the fill, from the replay")
    assert len(risk.returns(EventType.RTN_TRADE)) == 1  # replay + trade query: one trade
    assert risk.gateway.stats["duplicate_trades"] >= 1
    assert held(risk, "IF2603") == 1


def test_an_order_lost_on_the_wire_before_a_disconnect_is_lost_explicitly(
        counter: EmulatedCounter, risks: list[Risk], tmp_path: Path) -> None:
    risk = start(risks, tmp_path)
    risk.ready()
    counter.drop_inserts = True  # the request leaves, the connection dies before it arrives
    request(tmp_path, 1, price=4490.0)
    risk.until(lambda: risk.gateway.stats["orders_sent"] == 1, "the order sent")
    counter.drop_inserts = False
    counter.api.disconnect(0x1001, reconnect_after_s=0.05)
    risk.until(lambda: statuses(risk, 1) == [OrderStatus.LOST], "the order declared lost")
    assert [bytes(r["code"]) for r in risk.returns(EventType.ALERT)] == [b"order_lost"]
    assert not risk.desk.working  # type: ignore[union-attr]
    assert not counter.orders


@pytest.mark.parametrize("auth_code", ["0000000000000000", "WRONG-AUTH-CODE0"])
def test_authentication_comes_first_and_a_refused_one_is_final(
        risks: list[Risk], tmp_path: Path, auth_code: str) -> None:
    ctp_td_emulator.COUNTER = counter = EmulatedCounter(
        broker_id=BROKER, user_id=USER, password=PASSWORD, app_id="client_hft_1.0",
        auth_code="0000000000000000")
    try:
        risk = start(risks, tmp_path, app_id="client_hft_1.0", auth_code=auth_code)
        if auth_code == "0000000000000000":
            risk.ready()
            assert counter.api.login_attempts == 1
        else:
            risk.until(lambda: risk.gateway.state == "error", "the refused authentication")
            assert counter.api.login_attempts == 0
            [alert] = risk.returns(EventType.ALERT)
            assert b"ErrorID 63" in bytes(alert["message"])
            assert auth_code.encode() not in bytes(alert["message"])
    finally:
        ctp_td_emulator.COUNTER = None


def test_a_transient_login_refusal_is_retried(
        counter: EmulatedCounter, risks: list[Risk], tmp_path: Path) -> None:
    counter.refusals = 2  # ErrorID 7: the counter is not ready yet
    risk = start(risks, tmp_path, login_retry_s=0.01)
    risk.ready()
    assert risk.gateway.stats["login_failures"] == 2 and counter.api.login_attempts == 3


def test_queries_keep_to_the_flow_limit(counter: EmulatedCounter, risks: list[Risk],
                                        tmp_path: Path) -> None:
    counter.query_interval_s = 0.1  # the counter refuses (-3) queries closer than this
    risk = start(risks, tmp_path, query_interval_s=0.1)
    deadline = time.monotonic() + 10
    while risk.gateway.state != "ready" and time.monotonic() < deadline:
        risk.pump()  # a busy main loop: the gateway alone spaces its queries
    assert risk.gateway.state == "ready" and risk.gateway.stats["queries"] == 5
    assert counter.flow_violations == 0


def test_instrument_status_is_followed(counter: EmulatedCounter, risks: list[Risk],
                                       tmp_path: Path) -> None:
    risk = start(risks, tmp_path)
    risk.ready()
    counter.api.instrument_status("IF2603", "CFFEX", "6")  # closed
    risk.until(lambda: risk.gateway.instrument_status.get(b"IF2603") == "6", "the status")


def blocked_in(thread_id: int) -> int | None:
    """The system call a thread of this process is blocked in (/proc's ``syscall``), None
    while it runs."""
    fields = Path(f"/proc/self/task/{thread_id}/syscall").read_text().split()
    return int(fields[0]) if fields[0] not in ("running", "-1") else None


@pytest.mark.timeout(60)  # a loop nothing wakes would sleep for days: fail in a minute
def test_a_counters_callback_wakes_the_risk_daemon_asleep_on_its_journals(
        counter: EmulatedCounter, risks: list[Risk], tmp_path: Path,
        monkeypatch: pytest.MonkeyPatch) -> None:
    """A return from the counter, queued on the API's thread, ends the host's sleep: with the
    sleep's bounds lifted and no timer set, the loop, seen blocked in futex_waitv on the
    engine journal (the desk follows it) and its wake word, handles the callback, which
    nothing but the callback's wake-up could have made it do."""
    risk = start(risks, tmp_path)
    risk.ready()
    monkeypatch.setattr(host_module, "MAX_BLOCK_NS", 10**15)  # days
    monkeypatch.setattr(host_module, "MAX_WAITER_BLOCK_NS", 10**15)
    assert risk.host.timers.next_due_ns == NEVER
    loop_thread = threading.get_native_id()
    failures: list[BaseException] = []

    def counter_side() -> None:
        try:
            wait_for(lambda: blocked_in(loop_thread) == FUTEX_WAITV, "the loop asleep")
            counter.api.instrument_status("IF2603", "CFFEX", "6")  # on the API's thread
            wait_for(lambda: risk.gateway.instrument_status.get(b"IF2603") == "6",
                     "the callback handled by the sleeping loop")
        except BaseException as exc:
            failures.append(exc)
        finally:
            risk.host.request_stop("test over")

    feeder = threading.Thread(target=counter_side)
    feeder.start()
    with risk.host._stop_on_signals():  # the self-pipe and signal handlers, as in run()
        risk.host._loop()  # the daemon's main loop, on this (the main) thread, until the stop
        pipe = risk.host._wake_fds
        assert pipe is not None
        unread = fcntl.ioctl(pipe[0], termios.FIONREAD, bytes(4))
    feeder.join()
    assert failures == []
    assert int.from_bytes(unread, sys.byteorder) == 0  # the wake-ups' bytes drained too


def test_a_restart_answers_recovered_orders_and_never_reuses_an_order_ref(
        counter: EmulatedCounter, risks: list[Risk], tmp_path: Path) -> None:
    risk = start(risks, tmp_path)
    risk.ready()
    request(tmp_path, 1)
    risk.until(lambda: OrderStatus.ALL_TRADED in statuses(risk, 1), "the first fill")
    first_ref = max(counter.orders)
    # order 2 is journaled by the desk and reaches the counter; its returns never make it
    # into the risk journal (the daemon dies first): the counter has it
    counter.resume = False
    risk.gateway.ctx.unsubscribe(EventType.ORDER_SEND, risk.gateway.on_order)
    risk.gateway.ctx.subscribe(EventType.ORDER_SEND, _sent_then_die(risk))
    request(tmp_path, 2, price=4490.0)
    risk.until(lambda: len(counter.orders) == 2, "order 2 at the counter")
    # order 3 is journaled, and the daemon dies before the gateway sends it
    request(tmp_path, 3)
    risk.until(lambda: len(risk.desk.working) == 2, "order 3 decided")  # type: ignore[union-attr]
    risk.stop()
    risks.remove(risk)

    again = start(risks, tmp_path)
    again.ready()
    again.until(lambda: statuses(again, 2) and statuses(again, 3), "answers to the recovered")
    assert statuses(again, 2) == [OrderStatus.NOT_TRADED]  # what the counter knows
    assert statuses(again, 3) == [OrderStatus.LOST]
    [alert] = [r for r in again.returns(EventType.ALERT) if bytes(r["code"]) == b"order_lost"]
    assert b"order 3 of source 7" in bytes(alert["message"])
    assert not again.returns(EventType.RTN_TRADE)  # order 1's fill was published before
    cancel_passed_by_the_desk(again, 3)  # the lost order: the counter never had it
    refused = again.until(lambda: [r for r in again.returns(EventType.RTN_ORDER)
                                   if r["flags"] & 1], "the refused cancel")
    assert refused[0]["order_ref"] == 3 and refused[0]["error_id"] == 25
    request(tmp_path, 4)
    again.until(lambda: OrderStatus.ALL_TRADED in statuses(again, 4), "a new order fills")
    refs = sorted(counter.orders)
    assert len(refs) == 3 and refs[0] == first_ref and len(set(refs)) == 3
    assert counter.orders[refs[-1]]["SessionID"] == 2
    mapping = tmp_path / "run" / "td.orders"
    assert stat.S_IMODE(mapping.stat().st_mode) == 0o600


def _sent_then_die(risk: Risk) -> Any:
    gateway = risk.gateway

    def send(record: Any) -> None:
        gateway._spi._put = lambda item: None  # the daemon is gone: no return lands
        gateway.on_order(record)
        gateway.ctx.unsubscribe(EventType.ORDER_SEND, send)
    return send


# --- SHFE offsets and positions -----------------------------------------------------------------

def test_a_shfe_close_goes_as_close_today_from_the_position(
        counter: EmulatedCounter, risks: list[Risk], tmp_path: Path) -> None:
    risk = start(risks, tmp_path)
    risk.ready()
    request(tmp_path, 1, instrument="rb2605", exchange="SHFE", price=3101.0, volume=2)
    risk.until(lambda: OrderStatus.ALL_TRADED in statuses(risk, 1), "the open")
    request(tmp_path, 2, instrument="rb2605", exchange="SHFE", price=3099.0, direction=1,
            offset=Offset.CLOSE)
    risk.until(lambda: OrderStatus.ALL_TRADED in statuses(risk, 2), "the close")
    assert counter.orders[max(counter.orders)]["CombOffsetFlag"] == "3"  # close today
    trade = risk.returns(EventType.RTN_TRADE)[-1]
    assert trade["offset"] == Offset.CLOSE_TODAY
    assert held(risk, "rb2605") == 1


def test_a_shfe_close_beyond_yesterdays_lots_is_split_into_yesterday_and_today(
        counter: EmulatedCounter, risks: list[Risk], tmp_path: Path) -> None:
    contract = counter.exchange._book(b"rb2605".ljust(32, b"\0")).contract  # type: ignore[union-attr]
    counter.exchange.accounts.set_position(USER, contract, 0, yesterday=1,  # type: ignore[attr-defined]
                                           price=3000.0)
    risk = start(risks, tmp_path)
    risk.ready()
    request(tmp_path, 1, instrument="rb2605", exchange="SHFE", price=3101.0)
    risk.until(lambda: OrderStatus.ALL_TRADED in statuses(risk, 1), "the open")
    request(tmp_path, 2, instrument="rb2605", exchange="SHFE", price=3099.0, volume=2,
            direction=1, offset=Offset.CLOSE)
    risk.until(lambda: OrderStatus.ALL_TRADED in statuses(risk, 2), "both legs filled")
    legs = sorted(counter.orders)[1:]
    assert [(counter.orders[ref]["CombOffsetFlag"], counter.orders[ref]["VolumeTotalOriginal"])
            for ref in legs] == [("4", 1), ("3", 1)]  # close yesterday, then close today
    closes = [r for r in risk.returns(EventType.RTN_TRADE) if r["order_ref"] == 2]
    assert sorted(int(t["offset"]) for t in closes) == [Offset.CLOSE_TODAY, Offset.CLOSE_YESTERDAY]
    final = [r for r in risk.returns(EventType.RTN_ORDER) if r["order_ref"] == 2][-1]
    assert (final["volume"], final["volume_traded"]) == (2, 2)
    assert counter.positions(USER) == []  # flat at the counter


def test_a_position_the_desk_does_not_know_is_alerted(
        counter: EmulatedCounter, risks: list[Risk], tmp_path: Path) -> None:
    contract = counter.exchange._book(b"rb2605".ljust(32, b"\0")).contract  # type: ignore[union-attr]
    counter.exchange.accounts.set_position(USER, contract, 0, yesterday=3,  # type: ignore[attr-defined]
                                           price=3000.0)
    risk = start(risks, tmp_path, reconcile_interval_s=0.01)
    risk.ready()
    risk.until(lambda: risk.gateway.stats["queries"] >= 8, "three more position queries")
    [alert] = [r for r in risk.returns(EventType.ALERT)  # once, not at every query
               if bytes(r["code"]) == b"position_mismatch"]
    assert bytes(alert["message"]) == b"218001 rb2605 long: desk (0, 0) counter (3, 0) " \
                                      b"(position, today)"


# --- the daemon process -------------------------------------------------------------------------

PLUGIN_FILE = """
import sys
sys.path.insert(0, {tests!r})
from support import ctp_td_emulator
from support.ctp_td_emulator import EmulatedCounter, EmulatedCtpTrader, tick

ctp_td_emulator.COUNTER = EmulatedCounter(broker_id="9999", user_id="218001",
                                          password="s3cr3t-TD-4711")
ctp_td_emulator.COUNTER.tick(tick("IF2603", "CFFEX", last=4500.0, bid=4499.8, ask=4500.2))
"""


def test_the_risk_daemon_trades_through_ctp_trader(tmp_path: Path) -> None:
    """``hft.daemons risk`` with order_desk + the gateway (a plugin file that only swaps the
    API factory for the emulated counter's): an engine request fills and is journaled."""
    (tmp_path / "emulated_td.py").write_text(PLUGIN_FILE.format(tests=str(ENGINE)))
    config = write_config(tmp_path, f"""
[daemons.risk]
metrics_port = 0

[daemons.risk.plugins.desk]
spec = "order_desk"

[daemons.risk.plugins.td]
spec = "{tmp_path / 'emulated_td.py'}:EmulatedCtpTrader"

[daemons.risk.plugins.td.config]
fronts = ["tcp://127.0.0.1:10201"]
broker_id = "{BROKER}"
user_id = "{USER}"
query_interval_s = 0.05
""")
    env_password = os.environ.get("CTP_PASSWORD")
    os.environ["CTP_PASSWORD"] = PASSWORD  # the daemon inherits it: never in the config
    try:
        daemon = spawn_daemon("risk", config, tmp_path / "risk.stderr")
    finally:
        if env_password is None:
            del os.environ["CTP_PASSWORD"]
        else:
            os.environ["CTP_PASSWORD"] = env_password
    try:
        wait_serving(daemon)
        wait_for(lambda: any(line["message"] == "CTP trader ready" for line in daemon.logs()),
                 "the gateway logged in and reconciled", 20)
        request(tmp_path / "home", 1)

        def journaled() -> list[Any]:
            try:
                reader = JournalReader(tmp_path / "home" / "journal", "risk")
            except Exception:
                return []
            with reader:
                records = []
                while (record := reader.read()) is not None:
                    records.append((reader.last_type, record.copy()))
            return records
        records = wait_for(lambda: [r for k, r in journaled() if k == EventType.RTN_TRADE],
                           "the fill in the risk journal", 20)
        assert records[0]["order_ref"] == 1 and records[0]["volume"] == 1
    finally:
        daemon.stop()
    assert PASSWORD not in (tmp_path / "risk.stderr").read_text()


# --- durable OrderRef mappings -------------------------------------------------------------

@pytest.fixture
def disk_home(tmp_path: Path) -> Iterator[Path]:
    """A home on a disk filesystem (tmpfs pages are never written out)."""
    home = Path("/var/tmp") / f"hft-ctp-{os.getpid()}-{tmp_path.name}"
    home.mkdir(mode=0o700)
    yield home
    shutil.rmtree(home)


@pytest.mark.parametrize("durable", [True, False])
def test_a_durable_gateways_order_ref_is_on_the_disk_when_the_order_leaves(
        counter: EmulatedCounter, risks: list[Risk], disk_home: Path,
        monkeypatch: pytest.MonkeyPatch, durable: bool) -> None:
    """With ``durable = true`` the mapping line's page is clean (written out) at the moment
    the counter receives the order, and so is the compacted file before it; without it both
    are still dirty in the page cache, lost to a power failure."""
    risk = start(risks, disk_home, durable=durable)
    refs = risk.gateway.refs
    compacted_dirty = file_page_is_dirty(refs.path, 0)
    risk.ready()
    at_the_counter: list[bool] = []
    insert = counter.insert

    def observed(api: Any, field: Any) -> int:
        at_the_counter.append(file_page_is_dirty(refs.path, refs.path.stat().st_size - 1))
        return insert(api, field)

    monkeypatch.setattr(counter, "insert", observed)
    for ref in (1, 2):
        request(disk_home, ref)
        risk.until(lambda ref=ref: OrderStatus.ALL_TRADED in statuses(risk, ref), "the fill")
    assert len(at_the_counter) == 2
    written_out = [not compacted_dirty, *(not dirty for dirty in at_the_counter)]
    assert all(written_out) if durable else not all(written_out)


# --- a real front -------------------------------------------------------------------------------

TD_VARIABLES = ("CTP_TD_FRONT", "CTP_BROKER_ID", "CTP_USER_ID", "CTP_PASSWORD")


@pytest.mark.live
@pytest.mark.skipif(not all(os.environ.get(name) for name in TD_VARIABLES),
                    reason="set CTP_TD_FRONT, CTP_BROKER_ID, CTP_USER_ID and CTP_PASSWORD (and "
                           "CTP_APP_ID, CTP_AUTH_CODE where the broker requires them) to log in "
                           "to a real trader front (e.g. SimNow) and query orders and positions")
def test_a_real_trader_front_logs_in_and_reconciles(tmp_path: Path) -> None:
    host = DaemonHost("risk", SuiteConfig.model_validate({"paths": {"home": str(tmp_path)}}))
    entry = host.plugins.load("td", "ctp_trader", {})
    assert entry.error == "", entry.error
    host.plugins.start_all()
    try:
        gateway: Any = entry.instance
        wait_for(lambda: gateway.poll() >= 0 and gateway.state == "ready",
                 "login and queries on the real front", 60)
        assert gateway.trading_day > 20200101
    finally:
        host.plugins.stop_all()
