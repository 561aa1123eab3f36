"""KlineEngine: the engine daemon's K-line plugin (MARKET_DATA + TIMER in, BAR out).

Ticks go straight from the bus into the live builder; TIMER events carry the data's clock
(the replay plugin publishes them), so bars close on time in live trading and in a backtest
alike. Each closed bar is published on the bus as a BAR record.
"""

from __future__ import annotations

from collections.abc import Iterable

import numpy as np
from prometheus_client.core import CounterMetricFamily, Metric
from pydantic import BaseModel, ConfigDict, Field, field_validator

from hft.daemons.engine.bars import BarBuilder
from hft.daemons.engine.bartables import parse_periods
from hft.daemons.engine.products import products
from hft.daemons.runtime.events import TIMER_DTYPE, EventType, fields_struct
from hft.daemons.runtime.plugins import Plugin, PluginContext

_BAR = int(EventType.BAR)
_TIMER_CLOCK = fields_struct(TIMER_DTYPE, ("ts_ns",))


class KlineConfig(BaseModel):
    model_config = ConfigDict(extra="forbid")

    periods: list[str] = Field(default=["1m", "5m", "15m", "30m", "1h", "1d"], min_length=1)
    """Bar periods: Nm or Nh dividing a day (clock-aligned windows), or 1d (a trading day)."""
    grace_s: float = Field(default=1.0, ge=0.0, le=60.0)
    """How long after its end a bar waits for a late print (11:30:00.4 belongs to 11:29)."""
    late_join_baseline: bool = True
    """Started mid-day (an engine restart), take each instrument's first tick of the day as
    its volume baseline instead of putting the day's earlier volume into its first bar."""

    @field_validator("periods")
    @classmethod
    def _valid_periods(cls, periods: list[str]) -> list[str]:
        parse_periods(periods)  # ValueError names the bad one
        return periods


class KlineEngine(Plugin):
    """Builds bars of every instrument on the bus and publishes them as BAR records."""

    Config = KlineConfig

    def init(self, ctx: PluginContext) -> None:
        super().init(ctx)
        config: KlineConfig = ctx.config
        self.builder = BarBuilder(products(), parse_periods(config.periods),
                                  self._publish, grace_ns=round(config.grace_s * 1e9),
                                  late_join_baseline=config.late_join_baseline)
        ctx.subscribe(EventType.MARKET_DATA, self.builder.on_tick)
        ctx.subscribe(EventType.TIMER, self._on_timer)

    def _on_timer(self, record: np.void) -> None:
        (now_ns,) = _TIMER_CLOCK.unpack_from(record)  # type: ignore[arg-type]  # void: a buffer
        self.builder.on_clock(now_ns)

    def _publish(self, bar: np.void) -> None:
        self.ctx.bus.publish(_BAR, bar)

    def metrics(self) -> Iterable[Metric]:
        stats = self.builder.stats
        bars = CounterMetricFamily("hft_kline_bars", "Bars emitted", labels=["period"])
        for period, count in zip(self.builder.periods, list(stats.bars), strict=True):
            bars.add_metric([period.name], count)
        return (bars, *(_counter(f"hft_kline_{name}_ticks", doc, getattr(stats, name))
                        for name, doc in _TICK_COUNTERS))


_TICK_COUNTERS = (
    ("late", "Ticks refused: their bar was closed, or they went back in time or volume"),
    ("duplicate", "Ticks refused: same exchange time and volume as the previous one"),
    ("ignored", "Ticks outside every session, or flagged out of session, stale or volume backwards"),
    ("unknown", "Ticks of instruments the product table does not know"),
)


def _counter(name: str, documentation: str, value: int) -> Metric:
    family = CounterMetricFamily(name, documentation)
    family.add_metric([], value)
    return family
