"""Sample bar strategy: dual-EMA crossover on 1-minute bars.

Long ``lots`` while the fast EMA of the closes is above the slow one, short while it is
below: always in the market once both EMAs are warm, reversing at each cross. It reuses the
EMA factor's math, one pair of EMAs per instrument.
"""

from __future__ import annotations

from typing import Any, Self

from pydantic import BaseModel, ConfigDict, Field, model_validator

from hft.daemons.engine.factors.base import MINUTE_S, field_reader
from hft.daemons.engine.factors.ema import Ema
from hft.daemons.engine.strategy.child import Strategy
from hft.daemons.engine.strategy.ledger import instrument_key
from hft.daemons.runtime.events import BAR_DTYPE, EventType
from hft.daemons.runtime.plugins import PluginContext

_BAR = field_reader(BAR_DTYPE, "instrument", "period_s")


class DualEmaConfig(BaseModel):
    model_config = ConfigDict(extra="forbid")

    fast: int = Field(default=10, ge=1)
    slow: int = Field(default=30, ge=2)
    lots: int = Field(default=1, ge=1)
    period_s: int = Field(default=MINUTE_S, ge=1)
    """The bar length traded."""
    instruments: list[str] = []
    """Instruments traded (default: every instrument whose bars arrive)."""

    @model_validator(mode="after")
    def _fast_is_faster(self) -> Self:
        if self.fast >= self.slow:
            raise ValueError(f"fast ({self.fast}) must be below slow ({self.slow})")
        return self


class DualEmaCross(Strategy):
    """Child strategy: the dual-EMA crossover (module docstring)."""

    Config = DualEmaConfig

    def init(self, ctx: PluginContext) -> None:
        super().init(ctx)
        self.config: DualEmaConfig = ctx.config
        self._only = frozenset(instrument_key(i) for i in self.config.instruments)
        self._emas: dict[bytes, tuple[Ema, Ema]] = {}
        ctx.subscribe(EventType.BAR, self.on_bar)

    def on_bar(self, record: Any) -> None:
        key, period_s = _BAR(record)
        if period_s != self.config.period_s or (self._only and key not in self._only):
            return
        emas = self._emas.get(key)
        if emas is None:
            emas = self._emas[key] = (Ema(self.config.fast), Ema(self.config.slow))
        fast, slow = emas[0].update(record), emas[1].update(record)
        if fast != slow and slow == slow:  # both warm (the slow one warms last) and apart
            self.set_target(key, self.config.lots if fast > slow else -self.config.lots)
