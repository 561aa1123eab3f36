"""The simulated exchange as the risk daemon's gateway plugin (``sim_exchange``).

On the risk daemon's bus it takes what the order desk lets through (ORDER_SEND, CANCEL_REQ),
the market (MARKET_DATA, from a ``replay`` plugin following hft_md's journal) and the data's
clock (TIMER), and publishes the exchange's returns (RTN_ORDER, RTN_TRADE), which the desk
journals as they come.

State across restarts, written ahead: after every event that made returns, the whole
matching state (working orders with their queue positions, ids, accounts) and those returns
are written to ``<run>/NAME.json`` (atomically: a temp file renamed into place, mode 0600),
and only then are the returns published. So the exchange is never behind the risk journal:
a crash between the write and the desk journaling the returns leaves returns the journal
lacks, and the restarted gateway publishes exactly those (a return is the same record to the
byte) before anything else. Queue positions advance between two returns without a write: a
restored order stands no nearer the front than it did (conservative). An order the desk asks
about again after a restart (``OrderFlag.RECOVERED``: journaled, no return seen) is answered
with its current status if the exchange knows it, or LOST if it never arrived.

Positions: at start (with the positions the desk journaled) and every ``reconcile_interval_s``,
the desk's published positions are compared with the exchange's accounts, as the CTP gateway
compares them with the counter's; each difference is an ALERT ``position_mismatch``.
"""

from __future__ import annotations

import json
import os
import tempfile
from pathlib import Path
from typing import Any

import numpy as np
from pydantic import Field

from hft.daemons.runtime.alerts import AlertPublisher
from hft.daemons.runtime.events import DTYPES, EventType, OrderFlag, OrderStatus, empty, fields_struct
from hft.daemons.runtime.journal import JournalNotFound, JournalReader
from hft.daemons.runtime.plugins import Plugin, PluginContext
from hft.daemons.runtime.waitmode import WaitMode
from hft.daemons.trade.poscheck import PositionCheck
from hft.daemons.trade.simexchange import SimExchange, SimExchangeConfig

_RECOVERED = int(OrderFlag.RECOVERED)
_RETURNS = frozenset({int(EventType.RTN_ORDER), int(EventType.RTN_TRADE)})
_SEQ_SIZE = 8
"""The seq leads every record; the journal writes it, so a return is compared after it."""
_TYPE_OFFSET = DTYPES[EventType.RTN_ORDER].fields["type"][1]  # type: ignore[index]
_ORDER_KEY = fields_struct(DTYPES[EventType.ORDER_SEND],
                           ("flags", "source", "instrument", "exchange", "order_ref", "price",
                            "volume", "direction", "offset", "account")).unpack_from


class SimGatewayConfig(SimExchangeConfig):
    """The simulated exchange's own settings, and the gateway's."""

    journal: str = Field(default="risk", min_length=1)
    """The risk journal, read at start for the returns and positions the desk journaled."""
    reconcile_interval_s: float = Field(default=60.0, gt=0, allow_inf_nan=False)
    """How often the desk's positions are compared with the exchange's accounts."""


class SimGateway(Plugin):
    """Risk daemon plugin: the simulated exchange behind the order desk."""

    Config = SimGatewayConfig
    """Its state file is ``<run>/<plugin name>.json``."""

    def init(self, ctx: PluginContext) -> None:
        super().init(ctx)
        self.config: SimGatewayConfig = ctx.config
        self.position_check = PositionCheck(AlertPublisher(ctx.bus, ctx.name))
        self._unpublished: list[bytes] = []
        """Returns written with the state and not yet all published, oldest first, as bytes
        (a numpy copy of a record would not keep the bytes past its last field)."""
        self._unsaved = False
        self._publishing = False
        self._state_path = Path(ctx.host.run_dir) / f"{ctx.name}.json"
        self.exchange = self._restored() or SimExchange(self.config, self._hold)
        ctx.subscribe(EventType.MARKET_DATA, self.on_tick)
        ctx.subscribe(EventType.TIMER, self.on_timer)
        ctx.subscribe(EventType.ORDER_SEND, self.on_order)
        ctx.subscribe(EventType.CANCEL_REQ, self.on_cancel)
        ctx.subscribe(EventType.POS_UPDATE, self.position_check.on_published)

    def start(self) -> None:
        self.ctx.call_soon(self._catch_up)
        self.ctx.call_every(self.config.reconcile_interval_s, self.reconcile)

    def _catch_up(self) -> None:
        """Once every plugin has started (the desk journals what is published): the returns
        the last run wrote and the risk journal lacks, then the position check."""
        self._save_then_publish()
        self.reconcile()

    def reconcile(self) -> None:
        """ALERT each side where the desk's published position and the exchange's differ."""
        self.position_check.compare(self.exchange.accounts.holdings())

    def stop(self) -> None:
        self._save()

    def on_tick(self, record: Any) -> None:
        self.exchange.on_tick(record)
        self._save_then_publish()

    def on_timer(self, record: Any) -> None:
        self.exchange.on_time(int(record["ts_ns"]))
        self._save_then_publish()

    def on_order(self, record: Any) -> None:
        if _ORDER_KEY(record)[0] & _RECOVERED:
            self._answer_recovered(record)
        else:
            self.exchange.submit(record)
        self._save_then_publish()

    def on_cancel(self, record: Any) -> None:
        self.exchange.cancel(record)
        self._save_then_publish()

    def _hold(self, record: Any) -> None:
        """The exchange's returns wait for the state's write (the exchange reuses its
        buffers: a copy)."""
        self._unpublished.append(record.tobytes())
        self._unsaved = True

    def _save_then_publish(self) -> None:
        """Write the state with the event's returns, then publish them in order. A return's
        handler may send the exchange another event (a cancel): its returns are written and
        queued behind, and this loop publishes them."""
        if self._unsaved:
            self._save()
        if self._publishing:
            return
        self._publishing = True
        try:
            while self._unpublished:
                kind, record = _record(self._unpublished[0])
                self.ctx.bus.publish(kind, record)
                self._unpublished.pop(0)  # only now: a crash before it publishes it again
        finally:
            self._publishing = False

    def _answer_recovered(self, order: Any) -> None:
        """An order journaled before a restart with no return: what the exchange knows."""
        (_, source, instrument, exchange, ref, price, volume, direction, offset,
         account) = _ORDER_KEY(order)
        if self.exchange.report(account.rstrip(b"\0").decode(), ref):
            return
        lost = empty(EventType.RTN_ORDER)[0]
        for name, value in (("source", source), ("instrument", instrument),
                            ("exchange", exchange), ("order_ref", ref), ("price", price),
                            ("volume", volume), ("direction", direction), ("offset", offset),
                            ("account", account), ("trading_day", order["trading_day"]),
                            ("instrument_index", order["instrument_index"])):
            lost[name] = value
        lost["status"] = OrderStatus.LOST
        lost["message"] = b"the simulated exchange never received it"
        lost["ts_ns"] = self.exchange.clock_ns
        self._hold(lost)

    def _save(self) -> None:
        state = self.exchange.snapshot()
        state["unpublished"] = [raw.hex() for raw in self._unpublished]
        _replace(self._state_path, json.dumps(state, allow_nan=True).encode())
        self._unsaved = False

    def _restored(self) -> SimExchange | None:
        """The exchange as the last write left it, and the returns written with it that the
        risk journal lacks, queued to go first; the desk's journaled positions read."""
        journaled = self._read_journal()
        try:
            state = json.loads(self._state_path.read_bytes())
        except FileNotFoundError:
            return None
        exchange = SimExchange.restore(self.config, state, self._hold)
        written = [bytes.fromhex(text) for text in state.get("unpublished", [])]
        self._unpublished = [raw for raw in written if raw[_SEQ_SIZE:] not in journaled]
        self.ctx.log.info("simulated exchange restored", extra={
            "state": str(self._state_path), "working": exchange.working(),
            "returns_to_publish": len(self._unpublished)})
        return exchange

    def _read_journal(self) -> set[bytes]:
        """Every return in the risk journal (its bytes after the seq); its POS_UPDATEs go to
        the position check."""
        returns: set[bytes] = set()
        try:
            reader = JournalReader(self.ctx.host.journal_dir, self.config.journal,
                                   start="begin", wait_mode=WaitMode.BUSY)
        except JournalNotFound:
            return returns
        with reader:
            for kind, record in reader.committed():
                if kind in _RETURNS:
                    returns.add(record.tobytes()[_SEQ_SIZE:])
                elif kind == EventType.POS_UPDATE:
                    self.position_check.on_published(record)
        return returns



def _record(raw: bytes) -> tuple[int, Any]:
    """A return held as bytes: its type, and a record of that type over a copy of them."""
    kind = int.from_bytes(raw[_TYPE_OFFSET:_TYPE_OFFSET + 2], "little")
    return kind, np.frombuffer(bytearray(raw), DTYPES[EventType(kind)])[0]


def _replace(path: Path, data: bytes) -> None:
    """Write ``path`` whole or not at all (a temp file renamed over it), readable by its owner
    only: a crash mid-write leaves the previous state."""
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    with os.fdopen(fd, "wb") as file:  # mkstemp's file is 0600
        file.write(data)
    os.replace(tmp, path)
