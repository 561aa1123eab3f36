"""Tick CSV files with CTP field names as the header, in and out.

Import reads a whole file into normalized records before anything is written, so a file
that fails anywhere leaves nothing behind; the error names the file, the line and the reason.
Required columns: InstrumentID, UpdateTime, LastPrice, Volume and one of TradingDay/ActionDay.
Every other CTP column is optional: a missing price is empty (NaN), a missing volume 0, and
derivable columns are derived: ActionDay/TradingDay from each other and the calendar, Volume
and Turnover from VolumeDelta/TurnoverDelta when only the deltas are there, Turnover from
AveragePrice x Volume when that is all there is.
"""

from __future__ import annotations

import csv
import datetime as dt
import math
from collections.abc import Iterator
from pathlib import Path
from types import SimpleNamespace
from typing import IO

import numpy as np

from hft.daemons.md.normalize import TickError, TickNormalizer
from hft.daemons.refdata.instruments import InstrumentTable
from hft.daemons.runtime.events import DEPTH, TICK_DTYPE, TickFlag

_VOLUME_BACKWARDS = int(TickFlag.VOLUME_BACKWARDS)
EMPTY = 1.7976931348623157e308  # what CTP sends for a missing price; normalized to NaN

_PRICES = ("LastPrice", "OpenPrice", "HighestPrice", "LowestPrice", "ClosePrice",
           "SettlementPrice", "PreClosePrice", "PreSettlementPrice", "UpperLimitPrice",
           "LowerLimitPrice", "AveragePrice",
           *(f"{side}Price{level}" for side in ("Bid", "Ask") for level in range(1, DEPTH + 1)))
_COUNTS = ("UpdateMillisec", "Volume",
           *(f"{side}Volume{level}" for side in ("Bid", "Ask") for level in range(1, DEPTH + 1)))
_AMOUNTS = ("Turnover", "OpenInterest", "PreOpenInterest")
_TEXTS = ("TradingDay", "ActionDay", "UpdateTime", "InstrumentID", "ExchangeID")
_DELTAS = ("VolumeDelta", "TurnoverDelta", "OpenInterestDelta")
KNOWN_COLUMNS = frozenset(_PRICES + _COUNTS + _AMOUNTS + _TEXTS + _DELTAS)
REQUIRED = ("InstrumentID", "UpdateTime", "LastPrice")


class CsvTickError(ValueError):
    """A tick file that cannot be imported, with where and why."""

    def __init__(self, path: Path, line: int, reason: str) -> None:
        self.path, self.line, self.reason = path, line, reason
        super().__init__(f"{path}:{line}: {reason}" if line else f"{path}: {reason}")


def read_ticks(path: Path, instruments: InstrumentTable) -> np.ndarray:
    """Every tick of ``path`` as normalized MARKET_DATA records (nothing is written)."""
    normalizer = TickNormalizer(instruments, stale_after_s=None)
    try:
        with path.open(newline="", encoding="utf-8") as handle:
            return _read(path, handle, normalizer)
    except UnicodeDecodeError as exc:
        raise CsvTickError(path, 0, f"not UTF-8 text ({exc.reason})") from None
    except OSError as exc:
        raise CsvTickError(path, 0, exc.strerror or str(exc)) from None


def _read(path: Path, handle: IO[str], normalizer: TickNormalizer) -> np.ndarray:
    reader = csv.reader(handle)
    header = next(reader, None)
    if header is None:
        raise CsvTickError(path, 1, "empty file: expected a header row of CTP field names")
    columns = _check_header(path, [name.strip() for name in header])
    records = np.zeros(1024, dtype=TICK_DTYPE)
    raw = records.view(np.uint8)
    count = 0
    cumulative = _Cumulative()
    last_ts: dict[str, int] = {}
    for line, values in enumerate(reader, start=2):
        if not values:
            continue
        if len(values) != len(columns):
            raise CsvTickError(path, line, f"{len(values)} fields, the header has {len(columns)}")
        row = _row(path, line, dict(zip(columns, values, strict=True)), cumulative,
                   normalizer.instruments)
        if count == len(records):  # grow (np.concatenate would drop the dtype's padding)
            grown = np.zeros(2 * len(records), dtype=TICK_DTYPE)
            grown[:count] = records
            records, raw = grown, grown.view(np.uint8)
        try:
            kept = normalizer.normalize(row, None, raw, count * TICK_DTYPE.itemsize)
        except TickError as exc:
            raise CsvTickError(path, line, str(exc)) from None
        if kept:
            _check_consistent(path, line, row, normalizer, last_ts)
            count += 1
    if count == 0:
        raise CsvTickError(path, 0, "no ticks after the header")
    return records[:count]


def _check_header(path: Path, columns: list[str]) -> list[str]:
    unknown = [c for c in columns if c not in KNOWN_COLUMNS]
    if unknown:
        hint = " (is the header row missing?)" if any(c[:1].isdigit() for c in unknown) else ""
        raise CsvTickError(path, 1, f"unknown column(s) {unknown}{hint}; expected CTP "
                                    "DepthMarketData field names")
    missing = [c for c in REQUIRED if c not in columns]
    if "Volume" not in columns and "VolumeDelta" not in columns:
        missing.append("Volume")
    if "TradingDay" not in columns and "ActionDay" not in columns:
        missing.append("TradingDay or ActionDay")
    if missing:
        raise CsvTickError(path, 1, f"missing required column(s) {missing}")
    duplicated = sorted({c for c in columns if columns.count(c) > 1})
    if duplicated:
        raise CsvTickError(path, 1, f"column(s) {duplicated} appear more than once")
    return columns


class _Cumulative:
    """Running sums for files that carry only the delta columns."""

    def __init__(self) -> None:
        self.volume = 0
        self.turnover = 0.0
        self.day = ""


def _row(path: Path, line: int, fields: dict[str, str], cumulative: _Cumulative,
         instruments: InstrumentTable) -> SimpleNamespace:
    """The row with CTP's attribute names and types, the shape the normalizer reads."""
    try:
        row = SimpleNamespace(
            **{name: float(fields[name]) if fields.get(name) else EMPTY for name in _PRICES},
            **{name: int(fields[name]) if fields.get(name) else 0 for name in _COUNTS},
            **{name: float(fields[name]) if fields.get(name) else math.nan for name in _AMOUNTS},
            **{name: fields.get(name, "").strip() for name in _TEXTS},
        )
    except ValueError:
        raise CsvTickError(path, line, _bad_field(fields)) from None
    if row.LastPrice >= EMPTY:
        raise CsvTickError(path, line, "LastPrice is empty")
    day = row.TradingDay or row.ActionDay
    if day != cumulative.day:
        cumulative.day, cumulative.volume, cumulative.turnover = day, 0, 0.0
    if "Volume" not in fields:
        cumulative.volume += int(fields["VolumeDelta"] or 0)
        row.Volume = cumulative.volume
    if "Turnover" not in fields:
        if "TurnoverDelta" in fields:
            cumulative.turnover += float(fields["TurnoverDelta"] or 0)
            row.Turnover = cumulative.turnover
        elif row.AveragePrice < EMPTY:
            row.Turnover = _turnover_from_average(row, instruments)
    return row


def _turnover_from_average(row: SimpleNamespace, instruments: InstrumentTable) -> float:
    """CTP's AveragePrice is turnover per lot (per unit on CZCE, which needs the multiplier)."""
    product = instruments.products.product_of(row.InstrumentID)
    per_lot = row.AveragePrice * (product.multiplier if product.exchange == "CZCE" else 1)
    return float(per_lot * row.Volume)


def _bad_field(fields: dict[str, str]) -> str:
    for name in (*_PRICES, *_AMOUNTS):
        text = fields.get(name, "")
        try:
            float(text or 0)
        except ValueError:
            return f"{name}={text!r} is not a number"
    for name in _COUNTS:
        text = fields.get(name, "")
        if text and not text.lstrip("-").isdigit():
            return f"{name}={text!r} is not an integer"
    return "a field is malformed"


def _check_consistent(path: Path, line: int, row: SimpleNamespace, normalizer: TickNormalizer,
                      last_ts: dict[str, int]) -> None:
    """Refuse a file that contradicts itself: an import is history, and a broken file should
    be fixed rather than half trusted (a live feed only flags the same faults)."""
    if normalizer.last_flags & _VOLUME_BACKWARDS:
        raise CsvTickError(path, line, f"Volume {row.Volume} is below the previous tick's of "
                                       "the same trading day")
    ts = normalizer.last_exchange_ts
    if ts < last_ts.get(row.InstrumentID, ts):
        raise CsvTickError(path, line, f"time goes backwards for {row.InstrumentID}")
    last_ts[row.InstrumentID] = ts


CSV_COLUMNS = ("TradingDay", "ActionDay", "LocalTime", "TimestampNs", "ExchangeID",
               "InstrumentID", "LastPrice", "OpenPrice", "HighestPrice", "LowestPrice",
               "ClosePrice", "SettlementPrice", "PreClosePrice", "PreSettlementPrice",
               "UpperLimitPrice", "LowerLimitPrice", "AveragePrice", "Volume", "Turnover",
               "OpenInterest", "PreOpenInterest",
               *(f"{side}{kind}{level}" for level in range(1, DEPTH + 1)
                 for side in ("Bid", "Ask") for kind in ("Price", "Volume")), "Flags")
_RECORD_PRICES = ("last_price", "open_price", "highest_price", "lowest_price", "close_price",
                  "settlement_price", "pre_close_price", "pre_settlement_price",
                  "upper_limit_price", "lower_limit_price", "average_price")


def tick_rows(records: np.ndarray) -> Iterator[list[str]]:
    """CSV rows (CSV_COLUMNS) for normalized ticks: empty prices as empty fields, the local
    exchange clock with milliseconds, the ns timestamp."""
    for tick in records:
        local = dt.datetime.fromtimestamp(int(tick["exchange_ts_ns"]) / 1e9, _CHINA)
        row = [str(tick["trading_day"]), str(tick["action_day"]),
               local.strftime("%Y-%m-%d %H:%M:%S.") + f"{int(tick['update_ms']) % 1000:03d}",
               str(int(tick["exchange_ts_ns"])), tick["exchange"].decode(),
               tick["instrument"].decode()]
        row += [_number(tick[name]) for name in _RECORD_PRICES]
        row += [str(int(tick["volume"])), _number(tick["turnover"]), _number(tick["open_interest"]),
                _number(tick["pre_open_interest"])]
        for level in range(DEPTH):
            row += [_number(tick["bid_price"][level]), str(int(tick["bid_volume"][level])),
                    _number(tick["ask_price"][level]), str(int(tick["ask_volume"][level]))]
        row.append(str(int(tick["flags"])))
        yield row


_CHINA = dt.timezone(dt.timedelta(hours=8), "China")


def _number(value: float) -> str:
    """Shortest text that reads back as the same float; empty for NaN."""
    number = float(value)
    if math.isnan(number):
        return ""
    return str(int(number)) if number.is_integer() and abs(number) < 1e15 else repr(number)
