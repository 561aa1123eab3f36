"""Tick normalization and CSV import: the CTP quirks, on the real IF day and real CTP structs."""

from __future__ import annotations

import csv
import math
from pathlib import Path
from typing import Any, NamedTuple

import numpy as np
import pytest
from openctp_ctp import mdapi
from support.ctpdata import depth
from support.sample_data import IF_DAY

from hft.daemons.md.csvfile import CSV_COLUMNS, CsvTickError, read_ticks, tick_rows
from hft.daemons.md.ctpstruct import RawStructReader
from hft.daemons.md.depth import DEPTH_FIELDS, DepthValues
from hft.daemons.md.normalize import TickError, TickNormalizer, resolve_days
from hft.daemons.refdata.instruments import InstrumentTable, ProductTable
from hft.daemons.runtime.events import TICK_DTYPE, TickFlag

READER = RawStructReader(mdapi.CThostFtdcDepthMarketDataField, DepthValues)


@pytest.fixture(scope="module")
def products() -> ProductTable:
    return ProductTable.load()


@pytest.fixture
def instruments(products: ProductTable) -> InstrumentTable:
    return InstrumentTable(products)


def ctp_struct(instrument: str = "ag2106", *, trading_day: str = "20210105",
               time: str = "10:00:00", **fields: Any) -> Any:
    return depth(instrument, trading_day=trading_day, time_=time, **{"last": 5000.0, **fields})


@pytest.fixture(scope="module")
def raw_reader() -> RawStructReader[DepthValues]:
    return RawStructReader(mdapi.CThostFtdcDepthMarketDataField, DepthValues)


def ctp_tick(**fields: Any) -> DepthValues:
    """A snapshot as the CTP adapter hands it over: a real struct, read from its memory."""
    return READER.read(ctp_struct(**fields))


def normalized(normalizer: TickNormalizer, md: DepthValues,
               received_ns: int | None = None) -> np.void | None:
    out = bytearray(TICK_DTYPE.itemsize)
    if not normalizer.normalize(md, received_ns, out):
        return None
    return np.frombuffer(bytes(out), TICK_DTYPE)[0]


def test_raw_struct_reader_agrees_with_the_swig_getters(raw_reader: RawStructReader[DepthValues]) -> None:
    md = ctp_struct(instrument="IO2101-C-5000", exchange="CFFEX", ms=387)
    md.Volume, md.BidVolume5, md.AskPrice3, md.PreOpenInterest = 123456, 77, 4321.5, 9.5e4
    values = raw_reader.read(md)
    assert type(values) is DepthValues
    for name in DEPTH_FIELDS:
        value, expected = getattr(values, name), getattr(md, name)
        if isinstance(expected, str):  # char arrays come back raw: the text, then NULs
            assert value.rstrip(b"\0") == expected.encode() and not value.rstrip(b"\0").count(0), name
        else:
            assert value == expected, name


def test_raw_struct_reader_fills_a_record_in_any_field_order() -> None:
    """DepthValues is declared in the struct's memory order (read without reordering); a
    record in another order gets the same values by name."""

    class Picked(NamedTuple):
        Volume: int
        InstrumentID: bytes
        LastPrice: float

    md = ctp_struct(instrument="rb2105", last=4321.0, volume=17)
    values = RawStructReader(mdapi.CThostFtdcDepthMarketDataField, Picked).read(md)
    assert (values.Volume, values.InstrumentID.rstrip(b"\0"), values.LastPrice) == (17, b"rb2105", 4321.0)


# --- the real IF day -------------------------------------------------------------------------

def test_the_real_if_day_imports_without_loss_and_reads_back_equal(instruments: InstrumentTable) -> None:
    records = read_ticks(IF_DAY, instruments)
    with IF_DAY.open() as handle:
        source = list(csv.DictReader(handle))
    assert len(records) == len(source) == 27955
    out = [dict(zip(CSV_COLUMNS, row, strict=True)) for row in tick_rows(records)]
    for original, back in zip(source, out, strict=True):
        for name in ("TradingDay", "ActionDay", "ExchangeID", "InstrumentID"):
            assert back[name] == original[name]
        assert back["LocalTime"][11:] == f"{original['UpdateTime']}.{int(original['UpdateMillisec']):03d}"
        for name in ("LastPrice", "OpenPrice", "HighestPrice", "LowestPrice", "SettlementPrice",
                     "UpperLimitPrice", "LowerLimitPrice", "Volume", "Turnover", "OpenInterest",
                     "PreClosePrice", "PreSettlementPrice", "PreOpenInterest", "BidPrice1",
                     "BidVolume1", "AskPrice1", "AskVolume1"):
            assert float(back[name]) == float(original[name]), (name, original, back)
    first = records[0]
    assert first["exchange_ts_ns"] == 1609723740400000000  # 2021-01-04 09:29:00.400 +08:00
    assert math.isnan(first["close_price"]) and math.isnan(first["bid_price"][1])
    # the post-close settlement snapshots are kept, marked outside the session
    assert records["flags"][-2] & TickFlag.OUT_OF_SESSION
    assert records["flags"][-2:].tolist() == [TickFlag.OUT_OF_SESSION] * 2
    assert not (records["flags"][:-2] & TickFlag.OUT_OF_SESSION).any()


# --- CTP quirks --------------------------------------------------------------------------------

def test_dbl_max_prices_become_nan_from_a_real_ctp_struct(instruments: InstrumentTable) -> None:
    tick = normalized(TickNormalizer(instruments), ctp_tick(), received_ns=None)
    assert tick is not None
    assert tick["last_price"] == 5000.0 and tick["bid_price"][0] == 4999.0
    for name in ("open_price", "close_price", "settlement_price", "average_price"):
        assert math.isnan(tick[name]), name
    assert np.isnan(tick["bid_price"][1:]).all() and np.isnan(tick["ask_price"][1:]).all()
    assert tick["update_ms"] == 36_000_500 and tick["exchange"] == b"SHFE"


@pytest.mark.parametrize("ms", [0, 500, 97, 387, 999])
def test_update_millisec_is_an_integer_count(instruments: InstrumentTable, ms: int) -> None:
    tick = normalized(TickNormalizer(instruments), ctp_tick(ms=ms))
    assert tick is not None and tick["update_ms"] % 1000 == ms


def test_exact_duplicates_are_dropped_and_counted(instruments: InstrumentTable) -> None:
    normalizer = TickNormalizer(instruments)
    assert normalized(normalizer, ctp_tick()) is not None
    assert normalized(normalizer, ctp_tick()) is None
    assert normalized(normalizer, ctp_tick(ms=0)) is not None  # a new time is not a duplicate
    assert normalizer.stats.duplicates == 1 and normalizer.stats.ticks == 2


def test_stale_snapshots_are_flagged_or_dropped(instruments: InstrumentTable) -> None:
    login_at_night = 1609851600 * 10**9  # 2021-01-05 21:00 +08:00; the tick is from 10:00
    tick = normalized(TickNormalizer(instruments), ctp_tick(), received_ns=login_at_night)
    assert tick is not None and tick["flags"] & TickFlag.STALE and tick["ts_ns"] == login_at_night
    dropping = TickNormalizer(instruments, drop_stale=True)
    assert normalized(dropping, ctp_tick(), received_ns=login_at_night) is None
    assert dropping.stats.stale_dropped == 1
    fresh = normalized(TickNormalizer(instruments), ctp_tick(), received_ns=1609812000 * 10**9 + 10**9)
    assert fresh is not None and not fresh["flags"] & TickFlag.STALE


def test_volume_going_backwards_is_flagged(instruments: InstrumentTable) -> None:
    normalizer = TickNormalizer(instruments)
    normalized(normalizer, ctp_tick(volume=10))
    tick = normalized(normalizer, ctp_tick(volume=9, ms=0, time="10:00:01"))
    assert tick is not None and tick["flags"] & TickFlag.VOLUME_BACKWARDS
    assert normalizer.stats.volume_backwards == 1


@pytest.mark.parametrize(
    ("exchange", "trading_day", "action_day", "time", "expected"),
    [
        # DCE night ticks carry TradingDay as ActionDay: a Monday's night is Friday evening
        ("DCE", "20210111", "20210111", "21:30:00", (20210111, 20210108, True)),
        # after midnight on a Friday night is Saturday
        ("SHFE", "20210111", "20210111", "01:00:00", (20210111, 20210109, True)),
        # SHFE gets both right
        ("SHFE", "20210111", "20210108", "21:30:00", (20210111, 20210108, False)),
        # CZCE sends the calendar day as TradingDay at night; ActionDay is right
        ("CZCE", "20210108", "20210108", "21:30:00", (20210111, 20210108, True)),
        # after a holiday: the first night session after National Day 2020 (Fri 10-09 evening)
        ("DCE", "20201012", "20201012", "22:00:00", (20201012, 20201009, True)),
        # New Year 2021: Monday 01-04's previous trading day is Thursday 12-31
        ("SHFE", "20210104", "", "21:00:00", (20210104, 20201231, True)),
        # day session: both are the trading day; a missing ActionDay is filled in
        ("CFFEX", "20210104", "", "09:30:00", (20210104, 20210104, True)),
        ("CFFEX", "20210104", "20210104", "09:30:00", (20210104, 20210104, False)),
    ],
)
def test_action_day_is_derived_where_the_exchange_gets_it_wrong(
        exchange: str, trading_day: str, action_day: str, time: str,
        expected: tuple[int, int, bool]) -> None:
    hours, minutes, seconds = (int(p) for p in time.split(":"))
    update_ms = (hours * 3600 + minutes * 60 + seconds) * 1000
    assert resolve_days(exchange.encode(), trading_day.encode(), action_day.encode(), update_ms) == expected


@pytest.mark.parametrize(
    ("field", "value", "message"),
    [("UpdateTime", "9:3", "not HH:MM:SS"), ("UpdateTime", "25:00:00", "out of range"),
     ("UpdateMillisec", 1000, "not in 0..999"), ("TradingDay", "2021014", "not YYYYMMDD"),
     ("TradingDay", "20210230", "not a calendar date"), ("InstrumentID", "???", "product code")],
)
def test_unreadable_fields_are_named(instruments: InstrumentTable, field: str, value: object,
                                     message: str) -> None:
    md = ctp_struct()
    setattr(md, field, value)
    with pytest.raises(TickError, match=message):
        TickNormalizer(instruments).normalize(READER.read(md), None, bytearray(384))


# --- CSV import errors and optional columns -----------------------------------------------------

def write(path: Path, text: str) -> Path:
    path.write_text(text)
    return path


HEADER = "TradingDay,UpdateTime,UpdateMillisec,InstrumentID,LastPrice,Volume,Turnover\n"


@pytest.mark.parametrize(
    ("text", "line", "message"),
    [
        ("", 1, "empty file"),
        ("20210104,09:30:00,0,IF2101,5230,1,1\n", 1, "is the header row missing"),
        ("TradingDay,UpdateTime,Bogus\n", 1, "unknown column"),
        ("TradingDay,UpdateTime,InstrumentID,LastPrice\n", 1, "missing required column"),
        (HEADER + "20210104,09:30:00,0,IF2101,5230,1,1\n20210104,09:30:01,0,IF2101,x,2,2\n", 3,
         "LastPrice='x' is not a number"),
        (HEADER + "20210104,09:30:00,0,IF2101,5230,1\n", 2, "6 fields, the header has 7"),
        (HEADER + "20210104,09:30:00,0,IF2101,5230,5,1\n20210104,09:30:01,0,IF2101,5230,4,1\n", 3,
         "Volume 4 is below"),
        (HEADER + "20210104,09:30:01,0,IF2101,5230,5,1\n20210104,09:30:00,0,IF2101,5230,6,1\n", 3,
         "time goes backwards"),
        (HEADER + "20210104,09:30:00,0,IF2101,,5,1\n", 2, "LastPrice is empty"),
        (HEADER, 0, "no ticks"),
    ],
    ids=["empty", "headerless", "unknown-column", "missing-column", "bad-number", "short-row",
         "volume-backwards", "time-backwards", "no-price", "no-ticks"],
)
def test_bad_files_are_refused_with_file_line_and_reason(
        tmp_path: Path, instruments: InstrumentTable, text: str, line: int, message: str) -> None:
    path = write(tmp_path / "bad.csv", text)
    with pytest.raises(CsvTickError, match=message) as error:
        read_ticks(path, instruments)
    assert error.value.line == line and error.value.path == path
    assert str(error.value).startswith(f"{path}:")


def test_optional_columns_are_derived(tmp_path: Path, instruments: InstrumentTable) -> None:
    path = write(tmp_path / "deltas.csv",
                 "TradingDay,UpdateTime,InstrumentID,LastPrice,VolumeDelta,TurnoverDelta\n"
                 "20210104,09:30:00,IF2101,5230,2,3138000\n"
                 "20210104,09:30:01,IF2101,5231,1,1569300\n")
    ticks = read_ticks(path, instruments)
    assert ticks["volume"].tolist() == [2, 3]
    assert ticks["turnover"].tolist() == [3138000.0, 4707300.0]
    assert ticks["action_day"].tolist() == [20210104, 20210104]
    assert ticks["exchange"].tolist() == [b"CFFEX", b"CFFEX"]  # from the product table
    assert np.isnan(ticks["ask_price"]).all() and (ticks["ask_volume"] == 0).all()


def test_turnover_from_average_price_uses_czce_per_unit_prices(tmp_path: Path,
                                                                instruments: InstrumentTable) -> None:
    path = write(tmp_path / "avg.csv", "TradingDay,UpdateTime,InstrumentID,LastPrice,Volume,AveragePrice\n"
                                       "20210104,09:30:00,SR105,5300,4,5299.5\n")
    assert read_ticks(path, instruments)["turnover"][0] == 5299.5 * 10 * 4  # SR: 10 t a lot


@pytest.mark.parametrize(("trading_day", "flagged"), [("20210104", False), ("20210105", True)],
                         ids=["first-day-after-new-year", "ordinary-day"])
def test_the_opening_auction_of_a_day_without_night_session_is_in_session(
        instruments: InstrumentTable, trading_day: str, flagged: bool) -> None:
    """rb trades a night session, so its day session has no call auction, except on a day
    without a night session (after a holiday), which opens with one at 08:59."""
    tick = normalized(TickNormalizer(instruments, stale_after_s=None),
                      ctp_tick(instrument="rb2105", trading_day=trading_day, action_day=trading_day,
                               time="08:59:00", ms=0))
    assert tick is not None
    assert bool(tick["flags"] & TickFlag.OUT_OF_SESSION) is flagged
