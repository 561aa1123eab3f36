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
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import IO, Any

import numpy as np

from hft.daemons.md.depth import DEPTH_FIELDS, EMPTY_PRICE, TEXT_FIELDS, DepthValues
from hft.daemons.md.normalize import TickError, TickNormalizer
from hft.daemons.refdata.clock import CHINA
from hft.daemons.refdata.instruments import InstrumentTable
from hft.daemons.runtime.events import DEPTH, TICK_DTYPE, TickFlag

_VOLUME_BACKWARDS = int(TickFlag.VOLUME_BACKWARDS)
_INTEGERS = frozenset(("UpdateMillisec", "Volume", *(f"{side}Volume{level}" for side in ("Bid", "Ask")
                                                      for level in range(1, DEPTH + 1))))
_AMOUNTS = frozenset(("Turnover", "OpenInterest", "PreOpenInterest"))  # NaN when missing
_DELTAS = ("VolumeDelta", "TurnoverDelta", "OpenInterestDelta")
KNOWN_COLUMNS = frozenset(DEPTH_FIELDS) | frozenset(_DELTAS)
REQUIRED = ("InstrumentID", "UpdateTime", "LastPrice")
_VOLUME = DEPTH_FIELDS.index("Volume")
_TURNOVER = DEPTH_FIELDS.index("Turnover")
_AVERAGE = DEPTH_FIELDS.index("AveragePrice")
_LAST = DEPTH_FIELDS.index("LastPrice")
_DAYS = (DEPTH_FIELDS.index("TradingDay"), DEPTH_FIELDS.index("ActionDay"))


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
    raw = records.view(np.uint8).data
    count = 0
    parser = _RowParser(columns)
    last_ts: dict[bytes, int] = {}
    for line, values in enumerate(reader, start=2):
        if not values:
            continue
        if len(values) != len(columns):
            raise CsvTickError(path, line, f"{len(values)} fields, the header has {len(columns)}")
        row = parser.values(path, line, values, normalizer.instruments)
        if count == len(records):  # grow (np.concatenate would drop the dtype's padding)
            grown = np.zeros(2 * len(records), dtype=TICK_DTYPE)
            grown[:count] = records
            records, raw = grown, grown.view(np.uint8).data
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


class _RowParser:
    """Turns a CSV row into DepthValues, with one converter per field chosen from the
    header once: present columns are parsed, missing ones get their empty value."""

    def __init__(self, columns: list[str]) -> None:
        self.columns = columns
        position = {name: i for i, name in enumerate(columns)}
        self._plan = [(position.get(name), _converter(name), _empty(name)) for name in DEPTH_FIELDS]
        self._volume_delta = position.get("VolumeDelta") if "Volume" not in position else None
        self._turnover_delta = position.get("TurnoverDelta") if "Turnover" not in position else None
        self._derive_turnover = "Turnover" not in position and self._turnover_delta is None
        self._day = b""
        self._volume = 0
        self._turnover = 0.0

    def values(self, path: Path, line: int, row: list[str], instruments: InstrumentTable) -> DepthValues:
        try:
            values = [convert(row[i]) if i is not None and row[i] else empty
                      for i, convert, empty in self._plan]
        except ValueError:
            raise CsvTickError(path, line, _bad_field(dict(zip(self.columns, row, strict=True)))) from None
        if values[_LAST] >= EMPTY_PRICE:
            raise CsvTickError(path, line, "LastPrice is empty")
        day = values[_DAYS[0]] or values[_DAYS[1]]
        if day != self._day:
            self._day, self._volume, self._turnover = day, 0, 0.0
        if self._volume_delta is not None:
            self._volume += int(row[self._volume_delta] or 0)
            values[_VOLUME] = self._volume
        if self._turnover_delta is not None:
            self._turnover += float(row[self._turnover_delta] or 0)
            values[_TURNOVER] = self._turnover
        elif self._derive_turnover and values[_AVERAGE] < EMPTY_PRICE:
            values[_TURNOVER] = _turnover_from_average(values, instruments)
        return DepthValues._make(values)


def _converter(name: str) -> Callable[[str], Any]:
    if name in TEXT_FIELDS:
        return lambda text: text.strip().encode()
    return int if name in _INTEGERS else float


def _empty(name: str) -> Any:
    if name in TEXT_FIELDS:
        return b""
    if name in _INTEGERS:
        return 0
    return math.nan if name in _AMOUNTS else EMPTY_PRICE


def _turnover_from_average(values: list[Any], instruments: InstrumentTable) -> float:
    """CTP's AveragePrice is turnover per lot (per unit on CZCE, which needs the multiplier)."""
    product = instruments.products.product_of(values[DEPTH_FIELDS.index("InstrumentID")].decode())
    per_lot = values[_AVERAGE] * (product.multiplier if product.exchange == "CZCE" else 1)
    return float(per_lot * values[_VOLUME])


def _bad_field(fields: dict[str, str]) -> str:
    """Which field failed to parse, and why (only called on the error path)."""
    for name in DEPTH_FIELDS:
        text = fields.get(name, "")
        if not text or name in TEXT_FIELDS:
            continue
        try:
            _converter(name)(text)
        except ValueError:
            kind = "an integer" if name in _INTEGERS else "a number"
            return f"{name}={text!r} is not {kind}"
    return "a field is malformed"


def _check_consistent(path: Path, line: int, row: DepthValues, normalizer: TickNormalizer,
                      last_ts: dict[bytes, int]) -> None:
    """Refuse a file that contradicts itself: an import is history, and a broken file should
    be fixed rather than half trusted (a live feed only flags the same faults)."""
    if normalizer.last_flags & _VOLUME_BACKWARDS:
        raise CsvTickError(path, line, f"Volume {row.Volume} is below the previous tick's of "
                                       "the same trading day")
    instrument, ts = row.InstrumentID, normalizer.last_exchange_ts
    if ts < last_ts.get(instrument, ts):
        raise CsvTickError(path, line, f"time goes backwards for {instrument.decode()}")
    last_ts[instrument] = ts


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
        local = dt.datetime.fromtimestamp(int(tick["exchange_ts_ns"]) / 1e9, CHINA)
        row = [str(tick["trading_day"]), str(tick["action_day"]),
               local.strftime("%Y-%m-%d %H:%M:%S.") + f"{int(tick['update_ms']) % 1000:03d}",
               str(int(tick["exchange_ts_ns"])), tick["exchange"].decode(),
               tick["instrument"].decode()]
        row += [number_text(tick[name]) for name in _RECORD_PRICES]
        row += [str(int(tick["volume"])), number_text(tick["turnover"]), number_text(tick["open_interest"]),
                number_text(tick["pre_open_interest"])]
        for level in range(DEPTH):
            row += [number_text(tick["bid_price"][level]), str(int(tick["bid_volume"][level])),
                    number_text(tick["ask_price"][level]), str(int(tick["ask_volume"][level]))]
        row.append(str(int(tick["flags"])))
        yield row


def number_text(value: float) -> str:
    """Shortest text that reads back as the same float; empty for NaN."""
    number = float(value)
    if math.isnan(number):
        return ""
    return str(int(number)) if number.is_integer() and abs(number) < 1e15 else repr(number)
