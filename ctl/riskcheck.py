"""``hftctl risk check``: the live check chain over an order/cancel stream from a CSV file,
so a trader sees what new limits would have done to yesterday's flow.

The rows become the same ORDER_REQ/CANCEL_REQ records the risk daemon decides, fed to the
same :class:`RiskChain` with each row's ``ts`` as its clock. Offline nothing fills: an
accepted limit order works until a later row cancels it, and an accepted FAK/FOK/market
order is done at once (a CANCELLED return, as an exchange gives an unfilled FAK). The whole
file is read and checked before anything is decided, so a bad row prints nothing but the
line and the reason.
"""

from __future__ import annotations

import csv
import datetime as dt
import math
import sys
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import TextIO

import click

from hft.daemons.refdata.clock import CHINA
from hft.daemons.refdata.instruments import ProductTable
from hft.daemons.risk.chain import RiskChain
from hft.daemons.risk.limits import LimitError, load_limits
from hft.daemons.runtime.events import (
    CANCEL_DTYPE,
    ORDER_DTYPE,
    RECORD_SIZE,
    RTN_ORDER_DTYPE,
    Direction,
    Offset,
    OrderStatus,
    PriceType,
    fields_struct,
)

COLUMNS = ("ts", "account", "exchange", "instrument", "action", "order_id", "direction",
           "offset", "price", "volume", "order_type")
OUTPUT_COLUMNS = ("row", "order_id", "account", "action", "decision", "reason")
CANCEL_NEEDS = ("ts", "account", "instrument", "action", "order_id")
ACTIONS = ("insert", "cancel")
DIRECTIONS = {"buy": Direction.BUY, "sell": Direction.SELL}
OFFSETS = {"open": Offset.OPEN, "close": Offset.CLOSE, "close_today": Offset.CLOSE_TODAY,
           "close_yesterday": Offset.CLOSE_YESTERDAY}
ORDER_TYPES = {"limit": PriceType.LIMIT, "market": PriceType.MARKET, "fak": PriceType.FAK,
               "fok": PriceType.FOK}
_EPOCH = dt.datetime(1970, 1, 1, tzinfo=dt.UTC)
_FIELD_BYTES = {"account": 16, "instrument": 32, "exchange": 8}

_PACK_INSERT = fields_struct(ORDER_DTYPE, ("ts_ns", "instrument", "exchange", "order_ref", "price",
                                           "volume", "direction", "offset", "price_type",
                                           "account"), size=RECORD_SIZE).pack_into
_PACK_CANCEL = fields_struct(CANCEL_DTYPE, ("ts_ns", "instrument", "order_ref", "account"),
                             size=RECORD_SIZE).pack_into
_PACK_RTN = fields_struct(RTN_ORDER_DTYPE, ("order_ref", "status", "account"),
                          size=RECORD_SIZE).pack_into


class OrderFileError(ValueError):
    """A row that cannot be read: the message names the file, the line and the reason."""


@dataclass(frozen=True, slots=True)
class Row:
    """One parsed input row; ``line`` is its line number in the file."""

    line: int
    ts_ns: int
    account: str
    exchange: str
    instrument: str
    action: str
    order_id: str
    direction: int
    offset: int
    price: float
    volume: int
    order_type: int


@dataclass(frozen=True, slots=True)
class Decision:
    row: Row
    accepted: bool
    reason: str

    def csv_row(self) -> tuple[int, str, str, str, str, str]:
        return (self.row.line, self.row.order_id, self.row.account, self.row.action,
                "accept" if self.accepted else "reject", self.reason)


def read_rows(source: TextIO, name: str) -> list[Row]:
    """Every row of an orders CSV, checked; OrderFileError at the first bad one."""
    reader = csv.DictReader(source)
    header = [column.strip() for column in reader.fieldnames or ()]
    missing = [column for column in COLUMNS if column not in header]
    unknown = [column for column in header if column not in COLUMNS]
    if missing or unknown:
        raise OrderFileError(f"{name} line 1: the header must name {','.join(COLUMNS)}"
                             + (f"; missing {', '.join(missing)}" if missing else "")
                             + (f"; unknown {', '.join(unknown)}" if unknown else ""))
    reader.fieldnames = header
    rows: list[Row] = []
    last_ts = -math.inf
    for raw in reader:
        line = reader.line_num
        try:
            row = _row(line, {key: (value or "").strip() for key, value in raw.items()
                              if key is not None})
            if None in raw:
                raise ValueError(f"{len(raw[None])} more field(s) than the header's "
                                 f"{len(COLUMNS)}")
            if row.ts_ns < last_ts:
                raise ValueError("ts is before the previous row's (the file must be in time order)")
        except ValueError as exc:
            raise OrderFileError(f"{name} line {line}: {exc}") from None
        last_ts = row.ts_ns
        rows.append(row)
    return rows


def _row(line: int, raw: dict[str, str]) -> Row:
    action = raw["action"]
    if action not in ACTIONS:
        raise ValueError(f"action {action!r} is not insert or cancel")
    needed = CANCEL_NEEDS if action == "cancel" else tuple(c for c in COLUMNS if c != "exchange")
    for column in needed:
        if not raw.get(column) and not (column == "price" and raw["order_type"] == "market"):
            raise ValueError(f"{column} is empty")
    for column, width in _FIELD_BYTES.items():
        if not raw[column].isascii() or len(raw[column]) > width:
            raise ValueError(f"{column} {raw[column]!r} is not at most {width} ASCII characters")
    ts_ns = _ts_ns(raw["ts"])
    if action == "cancel":
        return Row(line, ts_ns, raw["account"], raw["exchange"], raw["instrument"], action,
                   raw["order_id"], 0, 0, math.nan, 0, 0)
    return Row(line, ts_ns, raw["account"], raw["exchange"], raw["instrument"], action,
               raw["order_id"], _word(raw, "direction", DIRECTIONS),
               _word(raw, "offset", OFFSETS), _price(raw["price"]), _volume(raw["volume"]),
               _word(raw, "order_type", ORDER_TYPES))


def _ts_ns(text: str) -> int:
    try:
        when = dt.datetime.fromisoformat(text)
    except ValueError:
        raise ValueError(f"ts {text!r} is not ISO 8601 (e.g. 2021-01-04T09:30:00.500000)") from None
    if when.tzinfo is None:
        when = when.replace(tzinfo=CHINA)
    return (when - _EPOCH) // dt.timedelta(microseconds=1) * 1000


def _word(raw: dict[str, str], column: str, words: Mapping[str, int]) -> int:
    value = raw[column]
    if value not in words:
        raise ValueError(f"{column} {value!r} is not one of {', '.join(words)}")
    return int(words[value])


def _price(text: str) -> float:
    if not text:
        return math.nan
    try:
        return float(text)
    except ValueError:
        raise ValueError(f"price {text!r} is not a number") from None


def _volume(text: str) -> int:
    try:
        return int(text)
    except ValueError:
        raise ValueError(f"volume {text!r} is not an integer") from None


class OfflineDesk:
    """The chain plus what an exchange would answer when nothing fills."""

    def __init__(self, chain: RiskChain) -> None:
        self.chain = chain
        self._refs: dict[tuple[str, str], int] = {}
        self._request = bytearray(RECORD_SIZE)
        self._rtn = bytearray(RECORD_SIZE)

    def decide(self, row: Row) -> Decision:
        ref = self._ref(row.account, row.order_id)
        account = row.account.encode()
        if row.action == "insert":
            _PACK_INSERT(self._request, 0, row.ts_ns, row.instrument.encode(), row.exchange.encode(),
                         ref, row.price, _clamp_i4(row.volume), row.direction, row.offset,
                         row.order_type, account)
            rejection = self.chain.decide_insert(self._request, row.ts_ns)
            if rejection is None:
                for resting in self.chain.cancel_first:
                    self._cancelled(resting.order_ref, account)
                if row.order_type != PriceType.LIMIT:
                    self._cancelled(ref, account)
        else:
            _PACK_CANCEL(self._request, 0, row.ts_ns, row.instrument.encode(), ref, account)
            rejection = self.chain.decide_cancel(self._request, row.ts_ns)
            if rejection is None:
                self._cancelled(ref, account)
        return Decision(row, rejection is None, "" if rejection is None else rejection.code)

    def _ref(self, account: str, order_id: str) -> int:
        """The order_ref of the file's order id: the same id of one account, the same ref."""
        return self._refs.setdefault((account, order_id), len(self._refs) + 1)

    def _cancelled(self, ref: int, account: bytes) -> None:
        _PACK_RTN(self._rtn, 0, ref, int(OrderStatus.CANCELLED), account)
        self.chain.on_order(self._rtn)


def _clamp_i4(volume: int) -> int:
    """The record holds an int32: a volume beyond it is kept as an out-of-range one, so the
    chain refuses it as malformed or over max_order_volume instead of wrapping around."""
    return max(min(volume, 2**31 - 1), -(2**31))


@click.command("check")
@click.option("--orders", "orders_file", required=True, metavar="FILE",
              type=click.Path(exists=True, dir_okay=False, path_type=Path),
              help="Orders CSV: " + ",".join(COLUMNS) + ".")
@click.option("--config", "config_file", required=True, metavar="FILE",
              type=click.Path(exists=True, dir_okay=False, path_type=Path),
              help="TOML holding the risk table: [default] and [accounts.NAME].")
@click.option("--format", "output_format", type=click.Choice(["csv"]), default="csv",
              show_default=True)
def check(orders_file: Path, config_file: Path, output_format: str) -> None:
    """Decide every row of an order/cancel stream with the live check chain.

    ts is ISO 8601, China local time unless it carries an offset, rows in time order; a
    cancel row needs only ts, account, instrument, action and order_id. Nothing fills: an
    accepted limit order works until a row cancels it; FAK, FOK and market orders never rest.

    Prints one row per input row, in input order: row (the input's line number), order_id,
    account, action, decision (accept|reject) and reason (the check's code, empty when
    accepted). Warnings (cancel_ratio_warn, daily_cancels_warn) go to stderr. A malformed
    file or limit is refused with its line or key and the reason, and nothing is printed.
    """
    try:
        limits = load_limits(config_file)
        with orders_file.open(encoding="utf-8", newline="") as source:
            rows = read_rows(source, str(orders_file))
    except (LimitError, OrderFileError) as exc:
        raise click.ClickException(str(exc)) from None
    except UnicodeDecodeError as exc:
        raise click.ClickException(f"{orders_file}: not UTF-8 text ({exc.reason})") from None
    line = 0

    def alert(code: str, text: str) -> None:
        click.echo(f"line {line}: warning {code}: {text}", err=True)

    desk = OfflineDesk(RiskChain(limits, ProductTable.load(), alert=alert))
    writer = csv.writer(sys.stdout, lineterminator="\n")
    writer.writerow(OUTPUT_COLUMNS)
    for row in rows:
        line = row.line
        writer.writerow(desk.decide(row).csv_row())
