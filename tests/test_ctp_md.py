"""The CTP md adapter and the instrument query: the real openctp SPI subclasses, driven
through the emulators with real structs (and by the real APIs against a socket that drops
every connection), recording into real journal files."""

from __future__ import annotations

import logging
import math
import os
import socket
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from openctp_ctp import mdapi, tdapi
from support.ctp_emulator import CtpMdEmulator, CtpTraderEmulator
from support.ctpdata import depth
from support.daemons import wait_for

from hft.daemons.md.ctp import CtpMarketData, MdState, select_instruments
from hft.daemons.md.ctp_instruments import InstrumentQueryError, query_instruments, register_listed
from hft.daemons.md.ctpstruct import RawStructReader
from hft.daemons.md.depth import DepthValues
from hft.daemons.md.recorder import Recorder
from hft.daemons.refdata.instruments import InstrumentTable, ProductTable
from hft.daemons.runtime.events import EventType
from hft.daemons.runtime.journal import JournalReader
from hft.daemons.runtime.secrets import Secret
from hft.daemons.runtime.snapshot import SnapshotReader

BROKER, USER, PASSWORD = "9999", "218001", "s3cr3t-PW-4711"
WRONG_PASSWORD = "wr0ng-PW-0815"
TRADING_DAY = "20260105"


class Journal:
    """Everything in the md journal so far, re-read on each call."""

    def __init__(self, directory: Path) -> None:
        self.directory = directory

    def records(self) -> list[np.void]:
        out = []
        with JournalReader(self.directory, "md-ctp") as reader:
            while (record := reader.read()) is not None:
                out.append(record.copy())
        return out

    def ticks(self) -> list[np.void]:
        return [r for r in self.records() if r["type"] == EventType.MARKET_DATA]

    def gaps(self) -> list[str]:
        return [bytes(r["reason"]).decode() for r in self.records() if r["type"] == EventType.FEED_GAP]


@pytest.fixture
def recorder(tmp_path: Path) -> Iterator[Recorder]:
    rec = Recorder.open("ctp", tmp_path, "md-ctp", InstrumentTable(ProductTable.load()),
                        snapshot_path=tmp_path / "md.snap", stale_after_s=None)
    yield rec
    rec.close()


@pytest.fixture
def emulator() -> CtpMdEmulator:
    return CtpMdEmulator(broker_id=BROKER, user_id=USER, password=PASSWORD,
                         trading_day=TRADING_DAY)


@pytest.fixture
def journal(tmp_path: Path) -> Journal:
    return Journal(tmp_path)


def make_adapter(recorder: Recorder, emulator: CtpMdEmulator, tmp_path: Path, *,
                 password: str = PASSWORD, **options: Any) -> CtpMarketData:
    options.setdefault("instruments", ["rb2605", "IF2603"])
    return CtpMarketData(recorder, ["tcp://127.0.0.1:10211"], BROKER, USER, password,
                         flow_dir=tmp_path / "flow", api_factory=emulator.factory, **options)


@pytest.fixture
def adapters() -> Iterator[list[CtpMarketData]]:
    """Adapters a test started; each is stopped (before its recorder closes)."""
    running: list[CtpMarketData] = []
    yield running
    for adapter in running:
        adapter.stop()


def started(adapters: list[CtpMarketData], adapter: CtpMarketData) -> CtpMarketData:
    adapters.append(adapter)
    adapter.start()
    return adapter


def subscribed(adapter: CtpMarketData) -> bool:
    return (adapter.state is MdState.SUBSCRIBED
            and adapter.stats.subscribed == len(adapter.instruments))


# --- login, subscription, ticks -----------------------------------------------------------

def test_login_subscribe_and_ticks_land_normalized_in_the_journal_and_snapshot(
        recorder: Recorder, emulator: CtpMdEmulator, journal: Journal, tmp_path: Path,
        adapters: list[CtpMarketData]) -> None:
    adapter = started(adapters, make_adapter(recorder, emulator, tmp_path))
    wait_for(lambda: subscribed(adapter), "login and subscription")
    assert emulator.subscribed == {"rb2605", "IF2603"}
    assert emulator.flow_path == f"{tmp_path / 'flow'}{os.sep}" and (tmp_path / "flow").is_dir()
    assert adapter.trading_day == 20260105 and emulator.GetTradingDay() == TRADING_DAY
    assert adapter.stats.logins == 1 and adapter.stats.errors == 0

    emulator.push(depth("rb2605", last=3100.0))
    emulator.play([depth("IF2603", exchange="CFFEX", last=4500.2, ms=0),
                   depth("rb2605", last=3101.0, time_="10:00:01", volume=12)], interval_s=0.01)
    wait_for(lambda: len(journal.ticks()) == 3, "three ticks")
    ticks = journal.ticks()

    first = journal.records()[0]
    assert first["type"] == EventType.FEED_GAP and bytes(first["reason"]) == b"recorder started"
    rb, if_, rb2 = ticks
    assert bytes(rb["instrument"]) == b"rb2605" and bytes(rb["exchange"]) == b"SHFE"
    assert rb["last_price"] == 3100.0 and rb["bid_price"][0] == 3099.0 and rb["ask_volume"][0] == 4
    assert rb["trading_day"] == 20260105 and rb["update_ms"] == 36_000_500
    for name in ("open_price", "close_price", "settlement_price", "upper_limit_price", "average_price"):
        assert math.isnan(rb[name]), name  # DBL_MAX -> NaN
    assert np.isnan(rb["bid_price"][1:]).all() and np.isnan(rb["ask_price"][1:]).all()
    assert bytes(if_["exchange"]) == b"CFFEX" and if_["last_price"] == 4500.2
    assert rb2["volume"] == 12 and rb["ts_ns"] <= rb2["ts_ns"] <= time.time_ns()
    assert emulator.delivered == 3 and emulator.callback_errors == 0

    snapshot = SnapshotReader(tmp_path / "md.snap")
    try:
        latest = snapshot.read(b"rb2605")
        assert latest is not None and latest["last_price"] == 3101.0 and latest["volume"] == 12
        latest_if = snapshot.read(b"IF2603")
        assert latest_if is not None and latest_if["last_price"] == 4500.2
    finally:
        snapshot.close()


def test_the_recorder_counts_every_normalizer_fault_in_its_metrics(recorder: Recorder) -> None:
    read = RawStructReader(mdapi.CThostFtdcDepthMarketDataField, DepthValues).read
    now = time.time_ns()
    assert recorder.on_depth(read(depth("rb2605", action_day="", volume=20)), now)  # derived
    assert recorder.on_depth(read(depth("rb2605", time_="10:00:01", volume=10)), now)  # fell
    assert not recorder.on_depth(read(depth("rb2605", time_="10:00:01", volume=10)), now)
    counters = {family.name: family.samples[0].value for family in recorder.metrics()
                if family.type == "counter"}
    assert {name: counters[name] for name in ("hft_md_ticks", "hft_md_days_derived",
                                              "hft_md_volume_backwards", "hft_md_duplicates_dropped")
            } == {"hft_md_ticks": 2, "hft_md_days_derived": 1, "hft_md_volume_backwards": 1,
                  "hft_md_duplicates_dropped": 1}


def test_ticks_for_unsubscribed_instruments_are_not_recorded(
        recorder: Recorder, emulator: CtpMdEmulator, journal: Journal, tmp_path: Path,
        adapters: list[CtpMarketData]) -> None:
    adapter = started(adapters, make_adapter(recorder, emulator, tmp_path, instruments=["rb2605"]))
    wait_for(lambda: subscribed(adapter), "subscription")
    emulator.push(depth("ag2606", last=7000.0))
    emulator.push(depth("rb2605", last=3100.0))  # delivered after the ag2606 one was handled
    ticks = wait_for(lambda: journal.ticks(), "the rb2605 tick")
    assert [bytes(t["instrument"]) for t in ticks] == [b"rb2605"]
    assert emulator.dropped == 1 and emulator.delivered == 1


def test_instruments_are_subscribed_in_chunks(
        recorder: Recorder, emulator: CtpMdEmulator, tmp_path: Path,
        adapters: list[CtpMarketData]) -> None:
    ids = [f"rb26{m:02d}" for m in range(1, 13)] + ["IF2603", "IF2606", "ag2606"]
    adapter = started(adapters, make_adapter(recorder, emulator, tmp_path, instruments=ids,
                                             subscribe_chunk=4))
    wait_for(lambda: subscribed(adapter), "15 instruments subscribed in 4 requests")
    assert emulator.subscribed == set(ids) and adapter.stats.subscribed == 15


# --- login failures and secrets -------------------------------------------------------------

def test_a_wrong_password_is_an_error_counted_logged_and_never_shown(
        recorder: Recorder, emulator: CtpMdEmulator, tmp_path: Path, adapters: list[CtpMarketData],
        caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)
    adapter = started(adapters, make_adapter(recorder, emulator, tmp_path, password=WRONG_PASSWORD,
                                             login_retry_s=0.01))
    wait_for(lambda: adapter.state is MdState.ERROR, "the login to be refused")
    assert adapter.stats.login_failures == 1 and adapter.stats.errors == 1
    assert adapter.stats.logins == 0 and emulator.subscribed == frozenset()
    refused = [r for r in caplog.records if r.getMessage().startswith("CTP md login refused")]
    assert len(refused) == 1
    assert vars(refused[0])["error_id"] == 3
    assert vars(refused[0])["error_msg"] == "CTP:不合法的登录"  # the front's GB18030, decoded

    # credentials refused: no retry, not even after a reconnect (brokers lock accounts)
    emulator.disconnect(0x1001)
    wait_for(lambda: adapter.stats.disconnects == 1 and adapter.state is MdState.ERROR,
             "the reconnect to end in the error state again")
    assert emulator.login_attempts == 1

    texts = [repr(adapter), str(adapter), repr(emulator), caplog.text]
    texts += [repr(vars(record)) for record in caplog.records]
    with pytest.raises(RuntimeError) as started_twice:
        adapter.start()
    texts += [str(started_twice.value), repr(started_twice.value)]
    with pytest.raises(ValueError) as bad_front:
        CtpMarketData(recorder, ["10.0.0.1:41213"], BROKER, USER, WRONG_PASSWORD,
                      instruments=["rb2605"], flow_dir=tmp_path / "flow2")
    texts += [str(bad_front.value), repr(bad_front.value)]
    assert "10.0.0.1:41213" in str(bad_front.value)
    for text in texts:
        assert WRONG_PASSWORD not in text and PASSWORD not in text


def test_a_transient_login_failure_is_retried(
        recorder: Recorder, emulator: CtpMdEmulator, tmp_path: Path,
        adapters: list[CtpMarketData]) -> None:
    emulator.refuse_logins(2)  # ErrorID 7: the front is not ready yet
    adapter = started(adapters, make_adapter(recorder, emulator, tmp_path, login_retry_s=0.01))
    wait_for(lambda: subscribed(adapter), "login after two refusals")
    assert emulator.login_attempts == 3
    assert adapter.stats.login_failures == 2 and adapter.stats.logins == 1


def test_secrets_stay_hidden_even_when_refused(recorder: Recorder, tmp_path: Path) -> None:
    secret = Secret(PASSWORD)
    assert PASSWORD not in f"{secret} {secret!r}" and secret.reveal() == PASSWORD
    too_long = "x" * 40 + PASSWORD  # CTP's Password field holds 40 characters
    with pytest.raises(ValueError, match="Password is too long for CTP's") as refused:
        CtpMarketData(recorder, ["tcp://127.0.0.1:10211"], BROKER, USER, Secret(too_long),
                      instruments=["rb2605"], flow_dir=tmp_path / "flow")
    assert PASSWORD not in str(refused.value) and PASSWORD not in repr(refused.value)


# --- disconnects ---------------------------------------------------------------------------------

def test_a_disconnect_is_journaled_and_the_adapter_logs_in_and_resubscribes_by_itself(
        recorder: Recorder, emulator: CtpMdEmulator, journal: Journal, tmp_path: Path,
        adapters: list[CtpMarketData], caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO)
    adapter = started(adapters, make_adapter(recorder, emulator, tmp_path))
    wait_for(lambda: subscribed(adapter), "the first subscription")
    emulator.push(depth("rb2605", last=3100.0))
    before = wait_for(lambda: journal.ticks(), "a tick before the disconnect")[0]

    emulator.trading_day = "20260106"  # the front comes back for the night session
    emulator.disconnect(0x2001, reconnect_after_s=0.05)
    wait_for(lambda: adapter.stats.logins == 2 and subscribed(adapter), "re-login and resubscription")
    assert emulator.subscribed == {"rb2605", "IF2603"} and adapter.stats.disconnects == 1
    assert adapter.trading_day == 20260106
    assert any(r.getMessage() == "CTP trading day" and vars(r)["trading_day"] == 20260106
               for r in caplog.records)

    emulator.push(depth("rb2605", trading_day="20260106", time_="21:00:00", ms=0, last=3105.0))
    wait_for(lambda: len(journal.ticks()) == 2, "a tick after the reconnect")
    records = journal.records()
    kinds = [int(r["type"]) for r in records]
    assert kinds == [EventType.FEED_GAP, EventType.MARKET_DATA, EventType.FEED_GAP,
                     EventType.MARKET_DATA]
    gap = records[2]
    assert bytes(gap["reason"]) == b"front disconnected: 0x2001 heartbeat timeout"
    assert gap["last_ns"] == before["ts_ns"]
    assert records[3]["trading_day"] == 20260106 and recorder.writer.trading_day == 20260106


def test_one_gap_per_outage_while_the_api_keeps_retrying(
        recorder: Recorder, emulator: CtpMdEmulator, journal: Journal, tmp_path: Path,
        adapters: list[CtpMarketData]) -> None:
    adapter = started(adapters, make_adapter(recorder, emulator, tmp_path))
    wait_for(lambda: subscribed(adapter), "subscription")
    emulator.disconnect(0x1001, stay_down=True)
    wait_for(lambda: adapter.state is MdState.DISCONNECTED, "the disconnect")
    for _ in range(2):  # the real API reports each failed reconnect attempt
        emulator.call_soon(lambda: adapter._spi.OnFrontDisconnected(0x1001))
    wait_for(lambda: adapter.stats.disconnects == 3, "two failed reconnects")
    assert adapter.state is MdState.DISCONNECTED and adapter.stats.subscribed == 0
    assert journal.gaps() == ["recorder started", "front disconnected: 0x1001 network read failed"]


# --- instrument selection ------------------------------------------------------------------

KNOWN = ["rb2605", "rb2610", "p2605", "pp2605", "pg2605", "IF2603", "IF2606", "IC2603", "SR605"]


def test_product_patterns_select_the_right_instruments() -> None:
    table = InstrumentTable(ProductTable.load())
    chosen = select_instruments(["ag2606", "rb2605"], ["rb*", "p*", "IF26*", "SR*"], KNOWN, table)
    assert chosen == ["ag2606", "rb2605", "rb2610", "p2605", "IF2603", "IF2606", "SR605"]
    assert table["p2605"].product.code == "p" and table["SR605"].exchange == "CZCE"
    assert select_instruments([], ["I?2603"], KNOWN, table) == ["IF2603", "IC2603"]
    # without a list, the instruments registered in the table are the known ones
    registered = InstrumentTable(ProductTable.load())
    for instrument_id in KNOWN:
        registered.register(instrument_id)
    assert select_instruments([], ["pg*"], None, registered) == ["pg2605"]


def test_bad_instrument_selections_are_refused_naming_the_fault() -> None:
    table = InstrumentTable(ProductTable.load())
    with pytest.raises(ValueError, match=r"pattern 'zz\*' matches none of the 9 known"):
        select_instruments([], ["zz*"], KNOWN, table)
    with pytest.raises(ValueError, match="cannot subscribe 'XX2601': unknown product 'XX'"):
        select_instruments(["XX2601"], [], KNOWN, table)
    with pytest.raises(ValueError, match="need the list of listed instruments"):
        select_instruments([], ["rb*"], None, table)


def test_the_adapter_subscribes_what_the_patterns_select(
        recorder: Recorder, emulator: CtpMdEmulator, tmp_path: Path,
        adapters: list[CtpMarketData]) -> None:
    adapter = started(adapters, make_adapter(recorder, emulator, tmp_path, instruments=[],
                                             patterns=["rb*", "IF*"], known_instruments=KNOWN))
    assert adapter.instruments == ("rb2605", "rb2610", "IF2603", "IF2606")
    wait_for(lambda: subscribed(adapter), "the selected instruments")
    assert emulator.subscribed == {"rb2605", "rb2610", "IF2603", "IF2606"}


# --- instruments from the trader front ------------------------------------------------------

APP_ID, AUTH_CODE = "client_hft_1.0", "0000000000000000"


def listed(instrument: str, exchange: str, product: str, multiple: int, tick: float,
           name: str, product_class: str = "1") -> dict[str, Any]:
    return {"InstrumentID": instrument, "ExchangeID": exchange, "ProductID": product,
            "ProductClass": product_class, "VolumeMultiple": multiple, "PriceTick": tick,
            "InstrumentName": name, "ExpireDate": "20260515", "IsTrading": 1}


LISTING = [
    listed("rb2605", "SHFE", "rb", 10, 1.0, "螺纹钢2605"),
    listed("rb2610", "SHFE", "rb", 10, 1.0, "螺纹钢2610"),
    listed("IF2603", "CFFEX", "IF", 300, 0.2, "沪深300股指2603"),
    listed("SR605", "CZCE", "SR", 10, 1.0, "白糖605"),
    listed("rb2605C3200", "SHFE", "rb", 10, 0.5, "螺纹钢期权", product_class="2"),
    listed("zz2605", "SHFE", "zz", 5, 5.0, "未知品种"),
]


def trader(**options: Any) -> CtpTraderEmulator:
    return CtpTraderEmulator(LISTING, broker_id=BROKER, user_id=USER, password=PASSWORD,
                             app_id=APP_ID, auth_code=AUTH_CODE, **options)


def test_instruments_come_from_the_trader_front_with_sessions_from_the_product_table(
        tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    front = trader()
    products = ProductTable.load()
    found = query_instruments(["tcp://127.0.0.1:10201"], BROKER, USER, PASSWORD,
                              products=products, app_id=APP_ID, auth_code=AUTH_CODE,
                              flow_dir=tmp_path / "td", api_factory=front.factory, timeout_s=10)
    assert [i.id for i in found] == ["rb2605", "rb2610", "IF2603", "SR605"]  # no options
    rb, _, if_, sr = found
    assert rb.name == "螺纹钢2605" and rb.expire_date == 20260515  # GB18030 on the wire
    assert (rb.product.exchange, rb.product.code, rb.product.multiplier, rb.product.price_tick) == \
        ("SHFE", "rb", 10, 1.0)
    assert rb.product.session == products["rb"].session and found[1].product is rb.product
    assert if_.product.multiplier == 300 and if_.product.price_tick == 0.2 and if_.product.precision == 1
    assert sr.product.exchange == "CZCE"
    assert any(vars(r).get("products") == ["zz"] for r in caplog.records)  # no session template
    assert front.topics == {"private": tdapi.THOST_TERT_QUICK, "public": tdapi.THOST_TERT_QUICK}
    assert front.login_attempts == 1 and front.queries == 1 and front.callback_errors == 0

    table = InstrumentTable(products)
    register_listed(table, found)
    assert table["IF2603"].product is if_.product
    assert select_instruments([], ["rb*"], None, table) == ["rb2605", "rb2610"]


@pytest.mark.parametrize(("password", "auth_code", "error"), [
    (WRONG_PASSWORD, AUTH_CODE, "refused login for user '218001' of broker '9999': "
                                "ErrorID 3: CTP:不合法的登录"),
    (PASSWORD, "WRONG-AUTH-CODE0", "refused authentication for user '218001' of broker '9999': "
                                    "ErrorID 63: CTP:客户端认证失败"),
])
def test_a_refused_instrument_query_login_names_the_step_and_hides_the_secrets(
        tmp_path: Path, password: str, auth_code: str, error: str) -> None:
    front = trader()
    with pytest.raises(InstrumentQueryError) as refused:
        query_instruments(["tcp://127.0.0.1:10201"], BROKER, USER, password,
                          products=ProductTable.load(), app_id=APP_ID, auth_code=auth_code,
                          flow_dir=tmp_path / "td", api_factory=front.factory, timeout_s=10)
    assert error in str(refused.value)
    assert front.login_attempts == (1 if auth_code == AUTH_CODE else 0)  # never retried
    for secret in (password, auth_code):
        assert secret not in str(refused.value) and secret not in repr(refused.value)


def test_a_disconnect_during_the_instrument_query_starts_over(tmp_path: Path) -> None:
    class DroppingFront(CtpTraderEmulator):
        def ReqQryInstrument(self, field: Any, request_id: int) -> int:
            if self.queries == 0:
                self.disconnect(0x2001)  # queued before the answer, which is lost with it
            return super().ReqQryInstrument(field, request_id)

    front = DroppingFront(LISTING, broker_id=BROKER, user_id=USER, password=PASSWORD)
    found = query_instruments(["tcp://127.0.0.1:10201"], BROKER, USER, PASSWORD,
                              products=ProductTable.load(), flow_dir=tmp_path / "td",
                              api_factory=front.factory, timeout_s=10)
    assert len(found) == 4 and front.queries == 2 and front.login_attempts == 2


# --- stop ----------------------------------------------------------------------------------

def test_stop_releases_the_api_and_nothing_reaches_the_recorder_afterwards(
        recorder: Recorder, emulator: CtpMdEmulator, journal: Journal, tmp_path: Path) -> None:
    adapter = make_adapter(recorder, emulator, tmp_path)
    adapter.start()
    wait_for(lambda: subscribed(adapter), "subscription")
    emulator.play([depth("rb2605", ms=ms) for ms in range(0, 1000, 10)], interval_s=0.001)
    wait_for(lambda: emulator.delivered > 0, "ticks flowing")
    adapter.stop()  # while the feed plays
    assert adapter.state is MdState.DISCONNECTED
    assert emulator.Join() == 0  # the thread that made the callbacks has ended
    assert 0 < len(journal.ticks()) == emulator.delivered < 100  # every callback completed
    with pytest.raises(RuntimeError, match="released"):
        emulator.SubscribeMarketData(["rb2605"], 1)
    adapter.stop()  # idempotent


def test_stop_from_a_callback_is_refused(
        recorder: Recorder, emulator: CtpMdEmulator, tmp_path: Path,
        adapters: list[CtpMarketData]) -> None:
    adapter = started(adapters, make_adapter(recorder, emulator, tmp_path))
    wait_for(lambda: subscribed(adapter), "subscription")
    errors: list[BaseException] = []

    def stop_inside() -> None:
        try:
            adapter.stop()
        except RuntimeError as exc:
            errors.append(exc)

    emulator.call_soon(stop_inside)  # runs on the thread that makes the callbacks
    wait_for(lambda: errors, "stop() inside a callback")
    assert "from a CTP callback" in str(errors[0]) and adapter.state is MdState.SUBSCRIBED


# --- the real API ----------------------------------------------------------------------------

@pytest.fixture
def closing_listener() -> Iterator[str]:
    """A TCP port that accepts connections and closes them at once: the real API connects,
    gets OnFrontDisconnected(0x1001) and retries about once a second."""
    server = socket.create_server(("127.0.0.1", 0))

    def serve() -> None:
        while True:
            try:
                connection, _ = server.accept()
            except OSError:
                return
            connection.close()

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    yield f"tcp://127.0.0.1:{server.getsockname()[1]}"
    server.shutdown(socket.SHUT_RDWR)  # wakes the blocked accept() (close alone does not)
    server.close()
    thread.join(timeout=5)


def test_the_real_api_reports_a_dropped_connection_and_releases(
        recorder: Recorder, journal: Journal, tmp_path: Path, closing_listener: str) -> None:
    adapter = CtpMarketData(recorder, [closing_listener], BROKER, USER, PASSWORD,
                            instruments=["rb2605"], flow_dir=tmp_path / "flow")
    adapter.start()
    try:
        assert adapter.state in (MdState.CONNECTING, MdState.DISCONNECTED)
        wait_for(lambda: adapter.stats.disconnects >= 1, "OnFrontDisconnected from the real API")
        wait_for(lambda: "front disconnected: 0x1001 network read failed" in journal.gaps(),
                 "the gap in the journal")
        assert adapter.state is MdState.DISCONNECTED and adapter.stats.logins == 0
    finally:
        began = time.monotonic()
        adapter.stop()
    assert time.monotonic() - began < 5
    count = len(journal.records())
    time.sleep(0.1)
    assert len(journal.records()) == count


def test_the_real_trader_api_times_out_naming_the_stage(tmp_path: Path, closing_listener: str) -> None:
    began = time.monotonic()
    with pytest.raises(InstrumentQueryError, match=r"within 1.0 s \(still (connecting|reconnecting)\)"):
        query_instruments([closing_listener], BROKER, USER, PASSWORD, products=ProductTable.load(),
                          flow_dir=tmp_path / "td", timeout_s=1.0)
    assert time.monotonic() - began < 6


# --- a real front --------------------------------------------------------------------------

LIVE_VARIABLES = ("CTP_MD_FRONT", "CTP_BROKER_ID", "CTP_USER_ID", "CTP_PASSWORD")


@pytest.mark.live
@pytest.mark.skipif(not all(os.environ.get(name) for name in LIVE_VARIABLES),
                    reason="set CTP_MD_FRONT, CTP_BROKER_ID, CTP_USER_ID and CTP_PASSWORD "
                           "(and optionally CTP_INSTRUMENTS, default rb2605) to run against a "
                           "real front")
def test_a_real_front_delivers_ticks(recorder: Recorder, journal: Journal, tmp_path: Path) -> None:
    instruments = os.environ.get("CTP_INSTRUMENTS", "rb2605").split(",")
    adapter = CtpMarketData(recorder, os.environ["CTP_MD_FRONT"].split(","),
                            os.environ["CTP_BROKER_ID"], os.environ["CTP_USER_ID"],
                            os.environ["CTP_PASSWORD"], instruments=instruments,
                            flow_dir=tmp_path / "flow")
    adapter.start()
    try:
        wait_for(lambda: adapter.state is MdState.SUBSCRIBED, "login to the real front", 30)
        assert adapter.trading_day > 20200101
        wait_for(lambda: journal.ticks(), "a tick from the real front (during trading hours)", 30)
    finally:
        adapter.stop()


TD_VARIABLES = ("CTP_TD_FRONT", "CTP_BROKER_ID", "CTP_USER_ID", "CTP_PASSWORD")


@pytest.mark.live
@pytest.mark.skipif(not all(os.environ.get(name) for name in TD_VARIABLES),
                    reason="set CTP_TD_FRONT, CTP_BROKER_ID, CTP_USER_ID and CTP_PASSWORD (and "
                           "CTP_APP_ID, CTP_AUTH_CODE where the broker requires them) to query "
                           "a real trader front")
def test_a_real_trader_front_lists_instruments(tmp_path: Path) -> None:
    found = query_instruments(os.environ["CTP_TD_FRONT"].split(","), os.environ["CTP_BROKER_ID"],
                              os.environ["CTP_USER_ID"], os.environ["CTP_PASSWORD"],
                              app_id=os.environ.get("CTP_APP_ID", ""),
                              auth_code=os.environ.get("CTP_AUTH_CODE", ""),
                              products=ProductTable.load(), flow_dir=tmp_path / "td")
    rb = [i for i in found if i.product.code == "rb"]
    assert rb and all(i.product.multiplier == 10 and i.product.exchange == "SHFE" for i in rb)
