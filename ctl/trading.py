"""What ``hftctl orders``, ``trades`` and ``positions`` show: the risk journal, read directly.

The risk daemon's journal holds every decision, return and position change in the order they
happened (docs/ARCHITECTURE.md, "Order path"), so these views need no daemon to answer: any
process may read a journal. An order is its ORDER_SEND with the latest RTN_ORDER about it, or
a request the checks refused (status ``risk_rejected``, the rule and reason as its message).
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np

from hft.daemons.refdata.clock import CHINA
from hft.daemons.runtime.config import SuiteConfig
from hft.daemons.runtime.events import (
    BODIES,
    Direction,
    EventType,
    Offset,
    OrderStatus,
    PosDirection,
    PriceType,
)
from hft.daemons.runtime.journal import JournalNotFound, JournalReader

DESK_SPEC = "order_desk"
RISK_DAEMON = "risk"
_ORDER_KINDS = frozenset({EventType.ORDER_SEND, EventType.RISK_REJECT, EventType.RTN_ORDER})


def desk_name(suite: SuiteConfig) -> str:
    """The name of the risk daemon's order desk plugin in this config."""
    for name, plugin in suite.daemon(RISK_DAEMON).plugins.items():
        if plugin.spec == DESK_SPEC:
            return name
    raise ValueError(f"the {RISK_DAEMON} daemon of this config loads no {DESK_SPEC!r} plugin, "
                     "so nothing trades")


def risk_journal(suite: SuiteConfig) -> tuple[Path, str]:
    """Where the suite's order desk journals: its directory and name."""
    desk = suite.daemon(RISK_DAEMON).plugins[desk_name(suite)]
    return suite.journal_dir, str(desk.config.get("journal", "risk"))


def records(directory: Path, name: str) -> Iterator[tuple[EventType, Any]]:
    """Every record of a journal (copies), oldest first; records lost to retention are
    skipped."""
    try:
        reader = JournalReader(directory, name, start="begin")
    except JournalNotFound:
        raise ValueError(f"no journal {name!r} in {directory}: the risk daemon has not run "
                         "with this config yet") from None
    try:
        for event_type, record in reader.committed():
            if event_type in BODIES:
                yield EventType(event_type), record.copy()
    finally:
        reader.close()


def orders(journal: Iterator[tuple[EventType, Any]]) -> list[dict[str, Any]]:
    """One row per order sent or refused, in the order they were decided."""
    rows: dict[tuple[int, int, bytes], dict[str, Any]] = {}
    for kind, record in journal:
        if kind not in _ORDER_KINDS:
            continue
        key = (int(record["source"]), int(record["order_ref"]), bytes(record["account"]))
        if kind == EventType.ORDER_SEND:
            rows[key] = _order_row(record, "submitting", "")
        elif kind == EventType.RISK_REJECT and key not in rows:
            rows[key] = _order_row(record, "risk_rejected",
                                   f"{_text(record['rule'])}: {_text(record['reason'])}")
        elif kind == EventType.RTN_ORDER and key in rows:
            row = rows[key]
            row["status"] = OrderStatus(int(record["status"])).name.lower()
            row["traded"] = int(record["volume_traded"])
            row["order_sys_id"] = _text(record["order_sys_id"])
            row["message"] = _text(record["message"])
    return list(rows.values())


def trades(journal: Iterator[tuple[EventType, Any]]) -> list[dict[str, Any]]:
    return [{"time": _local(int(r["ts_ns"])), "account": _text(r["account"]),
             "instrument": _text(r["instrument"]), "order_ref": int(r["order_ref"]),
             "trade_id": _text(r["trade_id"]),
             "direction": Direction(int(r["direction"])).name.lower(),
             "offset": Offset(int(r["offset"])).name.lower(), "price": float(r["price"]),
             "volume": int(r["volume"])}
            for kind, r in journal if kind == EventType.RTN_TRADE]


def positions(journal: Iterator[tuple[EventType, Any]]) -> list[dict[str, Any]]:
    """The latest POS_UPDATE of each account, instrument and direction: every field."""
    latest: dict[tuple[str, str, str], dict[str, Any]] = {}
    names = [field.name for field in BODIES[EventType.POS_UPDATE]]
    for kind, record in journal:
        if kind != EventType.POS_UPDATE:
            continue
        row = {"trading_day": int(record["trading_day"]),
               **{name: _plain(record[name]) for name in names}}
        row["direction"] = PosDirection(row["direction"]).name.lower()
        latest[row["account"], row["instrument"], row["direction"]] = row
    return list(latest.values())


def _order_row(record: Any, status: str, message: str) -> dict[str, Any]:
    return {"time": _local(int(record["ts_ns"])), "account": _text(record["account"]),
            "order_ref": int(record["order_ref"]), "instrument": _text(record["instrument"]),
            "direction": _enum(Direction, record, "direction"),
            "offset": _enum(Offset, record, "offset"),
            "price_type": _enum(PriceType, record, "price_type"),
            "price": _plain(record["price"]) if "price" in record.dtype.names else None,
            "volume": int(record["volume"]) if "volume" in record.dtype.names else None,
            "traded": 0, "status": status, "order_sys_id": "", "message": message}


def _enum(kind: type[Direction] | type[Offset] | type[PriceType], record: Any,
          name: str) -> str | None:
    if name not in record.dtype.names:
        return None  # a RISK_REJECT does not repeat the order's fields
    return kind(int(record[name])).name.lower()


def _plain(value: Any) -> Any:
    """A record field as JSON can hold it."""
    if isinstance(value, bytes):
        return _text(value)
    number = value.item() if isinstance(value, np.generic) else value
    return None if isinstance(number, float) and number != number else number


def _text(value: bytes) -> str:
    return bytes(value).rstrip(b"\0").decode("utf-8", "replace")


def _local(ts_ns: int) -> str:
    return dt.datetime.fromtimestamp(ts_ns / 1e9, CHINA).strftime("%Y-%m-%d %H:%M:%S.%f")
