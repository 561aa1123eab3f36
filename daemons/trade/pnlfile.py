"""``hftctl pnl``'s files: trades and settlement prices in, one row per day and position out.

Everything is read and checked, and every trade booked, before a row is produced: a file
refused anywhere (a malformed row, an unknown instrument, a close beyond the position)
yields a :class:`PnlFileError` naming the file, the line and the reason, and no output.

Trades are booked in file order through :class:`~hft.daemons.trade.book.PositionBook` (the
live book's rules); trading days must not go backwards. The days reported are those either
file names. At the end of each day every instrument is marked at its settlement price, or,
where the prices file has none, at its last trade price that day, or, if it did not trade,
at its previous mark; each fallback mark of a held position is reported as a note, and the
row says which it was (``mark_source``). Then every lot becomes yesterday's.
"""

from __future__ import annotations

import csv
import io
import json
import re
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from datetime import date
from decimal import Decimal, InvalidOperation
from pathlib import Path

from hft.daemons.runtime.events import Direction, Offset, PosDirection
from hft.daemons.trade.book import (
    BookError,
    Contract,
    PositionBook,
    PositionEntry,
    decimal_to_money,
    money_to_decimal,
)

TRADE_COLUMNS = ("trading_day", "time", "account", "exchange", "instrument", "direction",
                 "offset", "price", "volume", "commission")
PRICE_COLUMNS = ("trading_day", "instrument", "settlement_price")
OUTPUT_COLUMNS = ("trading_day", "account", "instrument", "direction", "position",
                  "today_position", "yd_position", "open_cost", "position_cost",
                  "close_profit_by_date", "close_profit_by_trade", "position_profit",
                  "position_profit_by_trade", "commission", "mark_price", "mark_source")
"""The required columns, then what the positions were marked at and where that came from."""

SETTLEMENT, LAST_TRADE, PREVIOUS_MARK = "settlement", "last_trade", "previous_mark"
"""``mark_source`` values."""

DIRECTIONS = {"buy": Direction.BUY, "sell": Direction.SELL}
OFFSETS = {"open": Offset.OPEN, "close": Offset.CLOSE, "close_today": Offset.CLOSE_TODAY,
           "close_yesterday": Offset.CLOSE_YESTERDAY}
SIDES = {PosDirection.LONG: "long", PosDirection.SHORT: "short"}
_TIME = re.compile(r"^([01]\d|2[0-3]):[0-5]\d:[0-5]\d(\.\d{1,6})?$")
_DAY = re.compile(r"^\d{8}$")
_COUNT = re.compile(r"^\d+$")
_NUMERIC = frozenset(OUTPUT_COLUMNS[4:15]) | {"trading_day"}


class PnlFileError(ValueError):
    """A file refused: which file, which line (0: the file as a whole), and why."""

    def __init__(self, path: Path, line: int, reason: str) -> None:
        self.path, self.line, self.reason = path, line, reason
        super().__init__(f"{path}:{line}: {reason}" if line else f"{path}: {reason}")


@dataclass(frozen=True, slots=True)
class Trade:
    line: int
    trading_day: int
    account: str
    instrument: str
    direction: Direction
    offset: Offset
    ticks: int
    volume: int
    commission: int  # micro-yuan


@dataclass(frozen=True)
class Report:
    """The output rows (``OUTPUT_COLUMNS``, as text) and the notes about fallback marks."""

    rows: list[tuple[str, ...]]
    notes: list[str]


def _rows(path: Path, columns: Sequence[str]) -> Iterator[tuple[int, dict[str, str]]]:
    """(line number, row) of a CSV file whose header is exactly ``columns``."""
    expected = ",".join(columns)
    try:
        with path.open(newline="", encoding="utf-8-sig") as handle:
            reader = csv.reader(handle)
            header = next(reader, None)
            if header is None:
                raise PnlFileError(path, 1, f"empty file; the header must be {expected}")
            if [name.strip() for name in header] != list(columns):
                raise PnlFileError(path, 1, f"the header must be {expected}, got "
                                            f"{','.join(header)}")
            for values in reader:
                if not values:
                    continue  # a blank line
                if len(values) != len(columns):
                    raise PnlFileError(path, reader.line_num, f"{len(values)} fields, the "
                                                              f"header has {len(columns)}")
                yield reader.line_num, dict(zip(columns, (v.strip() for v in values),
                                                strict=True))
    except OSError as exc:
        raise PnlFileError(path, 0, f"cannot read: {exc.strerror}") from None
    except UnicodeDecodeError:
        raise PnlFileError(path, 0, "not UTF-8 text") from None
    except csv.Error as exc:
        raise PnlFileError(path, 0, f"not CSV: {exc}") from None


def _day(text: str) -> int:
    if _DAY.match(text):
        try:
            date(int(text[:4]), int(text[4:6]), int(text[6:]))
            return int(text)
        except ValueError:
            pass
    raise ValueError(f"trading_day {text!r} is not a date YYYYMMDD")


def _decimal(name: str, text: str) -> Decimal:
    try:
        value = Decimal(text)
    except InvalidOperation:
        raise ValueError(f"{name} {text!r} is not a number") from None
    if not value.is_finite():
        raise ValueError(f"{name} {text!r} is not a number")
    return value


def _price(contract: Contract, name: str, text: str) -> int:
    value = _decimal(name, text)
    if value <= 0:
        raise ValueError(f"{name} {text} must be > 0")
    return contract.exact_ticks(value, name)


def _choice(name: str, text: str, choices: Mapping[str, int]) -> int:
    if text not in choices:
        raise ValueError(f"{name} {text!r} is not one of {'|'.join(choices)}")
    return choices[text]


def _trade(book: PositionBook, line: int, row: Mapping[str, str]) -> Trade:
    """One checked trade row (ValueError naming the field at fault)."""
    day = _day(row["trading_day"])
    if not _TIME.match(row["time"]):
        raise ValueError(f"time {row['time']!r} is not HH:MM:SS[.ffffff]")
    if not row["account"]:
        raise ValueError("account is empty")
    contract = book.contract(row["instrument"])
    if row["exchange"] != contract.exchange:
        raise ValueError(f"exchange {row['exchange']!r} is not {row['instrument']}'s "
                         f"({contract.exchange})")
    direction = _choice("direction", row["direction"], DIRECTIONS)
    offset = _choice("offset", row["offset"], OFFSETS)
    if not _COUNT.match(row["volume"]) or int(row["volume"]) == 0:
        raise ValueError(f"volume {row['volume']!r} is not a whole number of lots > 0")
    commission = _decimal("commission", row["commission"])
    if commission < 0:
        raise ValueError(f"commission {row['commission']} is negative")
    try:
        commission_money = decimal_to_money(commission)
    except BookError:
        raise ValueError(f"commission {row['commission']} has more than 6 decimal places") \
            from None
    return Trade(line, day, row["account"], row["instrument"], Direction(direction),
                 Offset(offset), _price(contract, "price", row["price"]), int(row["volume"]),
                 commission_money)


def read_trades(path: Path, book: PositionBook) -> list[Trade]:
    """Every trade of the file, checked (instruments against ``book``'s product table)."""
    trades: list[Trade] = []
    for line, row in _rows(path, TRADE_COLUMNS):
        try:
            trade = _trade(book, line, row)
        except ValueError as exc:  # BookError included
            raise PnlFileError(path, line, str(exc)) from None
        if trades and trade.trading_day < trades[-1].trading_day:
            raise PnlFileError(path, line, f"trading_day {trade.trading_day} is before the "
                                           f"previous row's {trades[-1].trading_day}: trades "
                                           "must be in trading-day order")
        trades.append(trade)
    return trades


def read_prices(path: Path, book: PositionBook) -> dict[tuple[int, str], int]:
    """(trading day, instrument) -> settlement price in ticks."""
    prices: dict[tuple[int, str], int] = {}
    lines: dict[tuple[int, str], int] = {}
    for line, row in _rows(path, PRICE_COLUMNS):
        try:
            key = (_day(row["trading_day"]), row["instrument"])
            ticks = _price(book.contract(row["instrument"]), "settlement_price",
                           row["settlement_price"])
        except ValueError as exc:
            raise PnlFileError(path, line, str(exc)) from None
        if key in prices:
            raise PnlFileError(path, line, f"a second settlement_price for {key[1]} on {key[0]} "
                                           f"(the first is on line {lines[key]})")
        prices[key], lines[key] = ticks, line
    return prices


def pnl(trades_path: Path, prices_path: Path | None, book: PositionBook) -> Report:
    """Book every trade, day by day, and report each position at each day's end."""
    trades = read_trades(trades_path, book)
    prices = read_prices(prices_path, book) if prices_path is not None else {}
    days = sorted({trade.trading_day for trade in trades} | {day for day, _ in prices})
    by_day: dict[int, list[Trade]] = {day: [] for day in days}
    for trade in trades:
        by_day[trade.trading_day].append(trade)
    rows: list[tuple[str, ...]] = []
    notes: list[str] = []
    sources: dict[str, str] = {}
    for day in days:
        last: dict[str, int] = {}
        for trade in by_day[day]:
            try:
                book.trade(trade.account, trade.instrument, trade.direction, trade.offset,
                           trade.ticks, trade.volume, trade.commission)
            except BookError as exc:
                raise PnlFileError(trades_path, trade.line, str(exc)) from None
            last[trade.instrument] = trade.ticks
        for instrument in book.instruments():
            sources[instrument] = _mark(book, day, instrument, prices, last, notes)
        entries = [entry for entry in book.entries() if entry.position or entry.traded]
        entries.sort(key=lambda e: (e.account, e.contract.instrument, e.direction))
        rows += [_row(day, entry, sources[entry.contract.instrument]) for entry in entries]
        book.roll()
    return Report(rows, notes)


def _mark(book: PositionBook, day: int, instrument: str, prices: dict[tuple[int, str], int],
          last: dict[str, int], notes: list[str]) -> str:
    """Mark ``instrument`` at the day's end; returns where the mark came from."""
    settlement = prices.get((day, instrument))
    if settlement is not None:
        book.mark(instrument, settlement)
        return SETTLEMENT
    source = LAST_TRADE if instrument in last else PREVIOUS_MARK
    if source == LAST_TRADE:
        book.mark(instrument, last[instrument])
    held = [entry for entry in book.entries_of(instrument) if entry.position]
    if held:
        contract = held[0].contract
        assert held[0].mark_ticks is not None
        price = contract.exact_price(held[0].mark_ticks)
        what = "the day's last trade price" if source == LAST_TRADE else (
            "the previous mark (it did not trade that day)")
        notes.append(f"note: no settlement price for {instrument} on {day}: marked at {what} "
                     f"{price}")
    return source


def _row(day: int, entry: PositionEntry, source: str) -> tuple[str, ...]:
    money = (entry.open_cost, entry.position_cost, entry.close_profit_by_date,
             entry.close_profit_by_trade, entry.position_profit, entry.position_profit_by_trade,
             entry.commission)
    mark = entry.mark_ticks
    return (str(day), entry.account, entry.contract.instrument, SIDES[entry.direction],
            str(entry.position), str(entry.today_position), str(entry.yd_position),
            *(str(money_to_decimal(value)) for value in money),
            "" if mark is None else str(entry.contract.exact_price(mark)), source)


def csv_text(report: Report) -> str:
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(OUTPUT_COLUMNS)
    writer.writerows(report.rows)
    return out.getvalue()


def json_text(report: Report) -> str:
    """One JSON object per row; amounts are JSON numbers written exactly (parse them as
    decimals, e.g. ``json.loads(line, parse_float=Decimal)``, to keep them exact)."""
    lines = []
    for row in report.rows:
        fields = (f"{json.dumps(name)}: {_json_value(name, value)}"
                  for name, value in zip(OUTPUT_COLUMNS, row, strict=True))
        lines.append("{" + ", ".join(fields) + "}")
    return "".join(line + "\n" for line in lines)


def _json_value(name: str, value: str) -> str:
    if name in _NUMERIC:
        return value or "null"
    return json.dumps(value)
