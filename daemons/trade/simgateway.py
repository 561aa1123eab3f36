"""The simulated exchange as the risk daemon's gateway plugin (``sim_exchange``).

On the risk daemon's bus it takes what the order desk lets through (ORDER_SEND, CANCEL_REQ),
the market (MARKET_DATA, from a ``replay`` plugin following hft_md's journal) and the data's
clock (TIMER), and publishes the exchange's returns (RTN_ORDER, RTN_TRADE), which the desk
journals as they come.

State across restarts: the whole matching state (working orders with their queue positions,
ids, accounts) is written to ``<run>/NAME.json`` after every event that made a return and on
stop, atomically (a temp file renamed into place, mode 0600), and restored at start. Queue
positions advance between two returns without a write: a restored order stands no nearer
the front than it did (conservative). An order the desk asks about again after a restart
(``OrderFlag.RECOVERED``: journaled, no return seen) is answered with its current status if
the exchange knows it, or LOST if it never arrived.

Positions: at start (after the positions the desk journaled are read) and every
``reconcile_interval_s``, the desk's published positions are compared with the exchange's
accounts, as the CTP gateway compares them with the counter's; each difference is an ALERT
``position_mismatch`` (after a crash between the desk journaling a return and the state's
write, this is how the two are seen to disagree).
"""

from __future__ import annotations

import json
import os
import tempfile
from pathlib import Path
from typing import Any

from pydantic import Field

from hft.daemons.runtime.alerts import AlertPublisher
from hft.daemons.runtime.events import DTYPES, EventType, OrderFlag, OrderStatus, empty, fields_struct
from hft.daemons.runtime.journal import JournalNotFound, JournalReader
from hft.daemons.runtime.plugins import Plugin, PluginContext
from hft.daemons.runtime.waitmode import WaitMode
from hft.daemons.trade.poscheck import PositionCheck
from hft.daemons.trade.simexchange import SimExchange, SimExchangeConfig

_RECOVERED = int(OrderFlag.RECOVERED)
_ORDER_KEY = fields_struct(DTYPES[EventType.ORDER_SEND],
                           ("flags", "source", "instrument", "exchange", "order_ref", "price",
                            "volume", "direction", "offset", "account")).unpack_from


class SimGatewayConfig(SimExchangeConfig):
    """The simulated exchange's own settings, and the gateway's."""

    journal: str = Field(default="risk", min_length=1)
    """The risk journal, read at start for the positions the desk published."""
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
        self._returned = False
        self._state_path = Path(ctx.host.run_dir) / f"{ctx.name}.json"
        self.exchange = self._restored() or SimExchange(self.config, self._publish)
        ctx.subscribe(EventType.MARKET_DATA, self.on_tick)
        ctx.subscribe(EventType.TIMER, self.on_timer)
        ctx.subscribe(EventType.ORDER_SEND, self.on_order)
        ctx.subscribe(EventType.CANCEL_REQ, self.on_cancel)
        ctx.subscribe(EventType.POS_UPDATE, self.position_check.on_published)

    def start(self) -> None:
        self._read_published_positions()
        self.reconcile()
        self.ctx.call_every(self.config.reconcile_interval_s, self.reconcile)

    def reconcile(self) -> None:
        """ALERT each side where the desk's published position and the exchange's differ."""
        self.position_check.compare(self.exchange.accounts.holdings())

    def stop(self) -> None:
        self._save()

    def on_tick(self, record: Any) -> None:
        self.exchange.on_tick(record)
        self._save_if_returned()

    def on_timer(self, record: Any) -> None:
        self.exchange.on_time(int(record["ts_ns"]))
        self._save_if_returned()

    def on_order(self, record: Any) -> None:
        if _ORDER_KEY(record)[0] & _RECOVERED:
            self._answer_recovered(record)
        else:
            self.exchange.submit(record)
        self._save_if_returned()

    def on_cancel(self, record: Any) -> None:
        self.exchange.cancel(record)
        self._save_if_returned()

    def _publish(self, record: Any) -> None:
        self._returned = True
        self.ctx.bus.publish(int(record["type"]), record)

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
        self._publish(lost)

    def _read_published_positions(self) -> None:
        try:
            reader = JournalReader(self.ctx.host.journal_dir, self.config.journal,
                                   start="begin", wait_mode=WaitMode.BUSY)
        except JournalNotFound:
            return
        with reader:
            for kind, record in reader.committed():
                if kind == EventType.POS_UPDATE:
                    self.position_check.on_published(record)

    def _save_if_returned(self) -> None:
        if self._returned:
            self._save()

    def _save(self) -> None:
        _replace(self._state_path, json.dumps(self.exchange.snapshot(), allow_nan=True).encode())
        self._returned = False

    def _restored(self) -> SimExchange | None:
        try:
            state = json.loads(self._state_path.read_bytes())
        except FileNotFoundError:
            return None
        exchange = SimExchange.restore(self.config, state, self._publish)
        self.ctx.log.info("simulated exchange restored", extra={
            "state": str(self._state_path), "working": exchange.working()})
        return exchange



def _replace(path: Path, data: bytes) -> None:
    """Write ``path`` whole or not at all (a temp file renamed over it), readable by its owner
    only: a crash mid-write leaves the previous state."""
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    with os.fdopen(fd, "wb") as file:  # mkstemp's file is 0600
        file.write(data)
    os.replace(tmp, path)
