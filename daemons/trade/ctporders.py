"""The CTP trader gateway's order ids: engine (source, order_ref, account) <-> CTP
(FrontID, SessionID, OrderRef), kept in a 0600 file so an OrderRef is never used twice.

CTP identifies an order by FrontID + SessionID + OrderRef, and a counter refuses an OrderRef
at or below the session's MaxOrderRef. The gateway numbers its orders itself, above both the
login's MaxOrderRef and every OrderRef it ever used (across restarts too): each mapping is
appended to ``<run>/<gateway>.orders`` (one JSON object a line, written before the order
leaves), and the highest OrderRef in the file is where a restarted gateway continues. A
restart keeps only the latest trading day's lines (the counter forgets older orders) and the
highest OrderRef.

Durable (``durable = true`` in the gateway's config, with the order desk's): each mapping is
written to the disk (fdatasync) before the order leaves, and the compacted file (fsync, then
the rename, then an fsync of the directory) before the first order is appended to it, so a
power loss cannot take back an OrderRef the counter has seen or the mapping that ties its
returns to the engine's order. Without it a mapping survives a crash of the process (it is
in the page cache once written) but not of the machine.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO

from hft.daemons.runtime.events import FINAL_STATUSES, OrderStatus
from hft.daemons.runtime.files import sync_directory

EngineKey = tuple[int, int, bytes]
"""(source, order_ref, account) as ORDER_SEND carries them."""
CtpKey = tuple[int, int, int]
"""(FrontID, SessionID, OrderRef)."""


@dataclass
class Leg:
    """One CTP order of an engine order (an engine order is one leg, or two when a SHFE/INE
    close takes yesterday's lots and today's)."""

    ctp: CtpKey
    offset: int
    """The offset sent to the counter (close today or close yesterday on SHFE/INE)."""
    volume: int
    traded: int = 0
    status: int = int(OrderStatus.SUBMITTING)
    order_sys_id: bytes = b""
    seen_by_counter: bool = False

    @property
    def working(self) -> bool:
        return self.status not in FINAL_STATUSES


@dataclass
class CtpOrder:
    """One engine order as sent to the counter, and what the counter said of it so far."""

    engine: EngineKey
    trading_day: int
    instrument: bytes = b""
    exchange: bytes = b""
    instrument_index: int = -1
    price: float = float("nan")
    volume: int = 0
    direction: int = 0
    offset: int = 0
    """The engine's offset (CLOSE stays CLOSE when its legs go as close today / yesterday)."""
    legs: list[Leg] = field(default_factory=list)
    status: int = int(OrderStatus.SUBMITTING)
    traded: int = 0
    order_sys_id: bytes = b""
    message: bytes = b""
    published: tuple[int, int, bytes] = (-1, -1, b"")
    """(status, traded, order_sys_id) of the last RTN_ORDER published: repeats are dropped."""

    @property
    def working(self) -> bool:
        return self.status not in FINAL_STATUSES

    @property
    def seen_by_counter(self) -> bool:
        return any(leg.seen_by_counter for leg in self.legs)

    def settle(self) -> None:
        """The engine order's state from its legs': filled when every lot is, ended when
        every leg is (REJECTED when all were refused, else CANCELLED), else working."""
        legs = self.legs
        if not legs:
            return
        self.traded = sum(leg.traded for leg in legs)
        self.order_sys_id = legs[0].order_sys_id
        statuses = {leg.status for leg in legs}
        if statuses <= FINAL_STATUSES:
            wanted = sum(leg.volume for leg in legs)
            self.status = int(OrderStatus.ALL_TRADED if self.traded >= wanted else
                              OrderStatus.REJECTED if statuses == {OrderStatus.REJECTED} else
                              OrderStatus.CANCELLED)
        elif self.traded:
            self.status = int(OrderStatus.PART_TRADED)
        elif statuses & {OrderStatus.NOT_TRADED, OrderStatus.PART_TRADED}:
            self.status = int(OrderStatus.NOT_TRADED)
        else:
            self.status = int(OrderStatus.SUBMITTING)


class OrderRefFile:
    """The append-only mapping file (0600); see the module docstring."""

    def __init__(self, path: Path, *, durable: bool = False) -> None:
        self.path = path
        self.durable = durable
        self.max_order_ref = 0
        self.mappings: list[tuple[EngineKey, CtpKey, int]] = []
        """(engine key, CTP key, trading day) of the latest trading day in the file."""
        self._load()
        self._file: IO[str] = self._rewrite()

    def _load(self) -> None:
        try:
            lines = self.path.read_text().splitlines()
        except FileNotFoundError:
            return
        rows: list[tuple[EngineKey, CtpKey, int]] = []
        for number, line in enumerate(lines, 1):
            try:
                item = json.loads(line)
                self.max_order_ref = max(self.max_order_ref, int(item["max_order_ref"]))
                if "source" in item:
                    rows.append(((int(item["source"]), int(item["order_ref"]),
                                  str(item["account"]).encode()),
                                 (int(item["front"]), int(item["session"]),
                                  int(item["max_order_ref"])), int(item["day"])))
            except (ValueError, KeyError, TypeError) as exc:
                if number == len(lines):  # a line cut short by a crash mid-write
                    break
                raise ValueError(f"{self.path}:{number}: not an order mapping ({exc})") from None
        latest = max((day for _, _, day in rows), default=0)
        self.mappings = [row for row in rows if row[2] == latest]

    def _rewrite(self) -> IO[str]:
        """The file compacted to the latest day's lines, then opened for appending."""
        self.path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
        temporary = self.path.with_suffix(".tmp")
        descriptor = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(descriptor, "w") as out:
            out.write(json.dumps({"max_order_ref": self.max_order_ref}) + "\n")
            for engine, ctp, day in self.mappings:
                out.write(_line(engine, ctp, day))
            if self.durable:
                out.flush()
                os.fsync(out.fileno())
        os.replace(temporary, self.path)
        if self.durable:
            sync_directory(self.path.parent)
        return open(self.path, "a", encoding="utf-8")  # kept open: one append per order

    def next_ref(self, floor: int) -> int:
        """The next OrderRef: above ``floor`` (the login's MaxOrderRef) and every one used."""
        self.max_order_ref = max(self.max_order_ref, floor) + 1
        return self.max_order_ref

    def record(self, engine: EngineKey, ctp: CtpKey, day: int) -> None:
        """Append one mapping and flush it to the kernel (durable: to the disk) before the
        order is sent."""
        self._file.write(_line(engine, ctp, day))
        self._file.flush()
        if self.durable:
            os.fdatasync(self._file.fileno())
        self.mappings.append((engine, ctp, day))

    def close(self) -> None:
        self._file.close()


_LINE = ('{"source": %d, "order_ref": %d, "account": %s, "front": %d, "session": %d, '
         '"max_order_ref": %d, "day": %d}\n')
"""One mapping line (formatted by hand: json.dumps costs more than the write). Its
``max_order_ref`` is the CTP OrderRef, the highest used when the line was written."""


def _line(engine: EngineKey, ctp: CtpKey, day: int) -> str:
    account = json.dumps(engine[2].rstrip(b"\0").decode())
    return _LINE % (engine[0], engine[1], account, ctp[0], ctp[1], ctp[2], day)
