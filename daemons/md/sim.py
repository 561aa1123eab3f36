"""The simulated feed, hft_md's default source: the simulated market, recorded like a live feed.

It runs as a poller on hft_md's main loop: each call moves the simulated exchange clock on by
the wall time since the last call (times ``speed``) and records the snapshots it reaches, so
a stress rate only needs a smaller ``interval_ms``. Closed hours take no wall time: a demo
started on a Saturday shows Monday's session at once.
"""

from __future__ import annotations

import datetime as dt
import time
from collections.abc import Iterable

from prometheus_client.core import Metric
from pydantic import BaseModel, ConfigDict, Field

from hft.daemons.md.recorder import Recorder
from hft.daemons.md.simmarket import SimulatedMarket
from hft.daemons.refdata.clock import CHINA
from hft.daemons.refdata.instruments import InstrumentTable, ProductTable, product_code
from hft.daemons.runtime.plugins import Plugin, PluginContext


class SimFeedConfig(BaseModel):
    model_config = ConfigDict(extra="forbid")

    instruments: list[str] = Field(default=["IF", "rb", "cu", "ag"], min_length=1)
    """Instrument ids, or product codes that mean their next-month contract. The defaults
    cover a day-only index future and night sessions to 23:00, 01:00 and 02:30."""
    journal: str = Field(default="md-sim", pattern=r"^[A-Za-z0-9_-]{1,64}$")
    seed: int = 0
    interval_ms: int = Field(default=500, ge=1, le=60_000)
    """Milliseconds between two snapshots of an instrument (CTP: about 500)."""
    speed: float = Field(default=1.0, gt=0, le=10_000)
    start: dt.datetime | None = None
    """Exchange time (China) the simulation starts at; default: now."""
    snapshot: bool = True
    """Also keep the latest tick of each instrument in <run>/<journal>.snap."""


class SimFeed(Plugin):
    """hft_md source plugin: a simulated market with realistic sessions and fields."""

    Config = SimFeedConfig

    def init(self, ctx: PluginContext) -> None:
        super().init(ctx)
        config: SimFeedConfig = ctx.config
        self._config = config
        self._table = InstrumentTable(ProductTable.load())
        start = config.start or dt.datetime.now(CHINA)
        self._start = start if start.tzinfo else start.replace(tzinfo=CHINA)
        self._instruments = [self._table.register(_contract(name, self._start, self._table))
                             for name in config.instruments]

    def start(self) -> None:
        config = self._config
        self.recorder = Recorder.open(
            "sim", self.ctx.host.journal_dir, config.journal, self._table,
            snapshot_path=self.ctx.host.run_dir / f"{config.journal}.snap" if config.snapshot else None,
            stale_after_s=None)
        # a restart resumes after the journal's last record: its clock may be ahead of ours
        resume = dt.datetime.fromtimestamp(self.recorder.last_received_ns / 1e9, CHINA)
        self._market = SimulatedMarket(self._instruments, max(self._start, resume),
                                       seed=config.seed, interval_ms=config.interval_ms)
        self._target_ms = float(self._market.now_ms)
        self._last_poll_ns = time.monotonic_ns()
        self.ctx.add_poller(self.poll)

    def poll(self) -> int:
        now_ns = time.monotonic_ns()
        self._target_ms += (now_ns - self._last_poll_ns) / 1e6 * self._config.speed
        self._last_poll_ns = now_ns
        recorded, market = 0, self._market
        for snapshot in market.advance(int(self._target_ms)):
            # the simulation is its own exchange: it receives each snapshot at its own time
            recorded += self.recorder.on_depth(snapshot, market.now_ms * 1_000_000)
        self._target_ms = max(self._target_ms, self._market.now_ms - self._config.interval_ms)
        return recorded

    def stop(self) -> None:
        self.recorder.gap("sim feed stopped")
        self.recorder.close()

    def metrics(self) -> Iterable[Metric]:
        return self.recorder.metrics()


def _contract(name: str, start: dt.datetime, table: InstrumentTable) -> str:
    """A product code becomes its next-month contract (CZCE writes the year with one digit)."""
    if any(ch.isdigit() for ch in name):
        product_code(name)  # validates the id
        return name
    product = table.products[name]
    month = start.month % 12 + 1
    year = start.year + (start.month == 12)
    year_text = f"{year % 10}" if product.exchange == "CZCE" else f"{year % 100:02d}"
    return f"{name}{year_text}{month:02d}"
