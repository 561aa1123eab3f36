"""Sample tick strategy: order-book imbalance, faded (mean reversion) or followed.

The imbalance of the first ``levels`` book levels (the factor's math, per tick) past
``entry`` opens a position of ``lots``, back inside ``exit`` flattens it, in between the
position is kept (hysteresis, so the book flickering around one threshold does not churn
orders). ``fade`` sells into a bid-heavy book, betting that the pressure reverts; ``follow``
buys it, betting that the heavy side pushes the price. Ticks that do not count
(``events.UNCOUNTED``: stale, volume going backwards, out of session) are not traded on.
"""

from __future__ import annotations

from typing import Any, Literal, Self

from pydantic import BaseModel, ConfigDict, Field, model_validator

from hft.daemons.engine.factors.base import field_reader
from hft.daemons.engine.factors.imbalance import BookImbalance
from hft.daemons.engine.strategy.child import Strategy
from hft.daemons.engine.strategy.ledger import instrument_key
from hft.daemons.runtime.events import DEPTH, TICK_DTYPE, UNCOUNTED, EventType
from hft.daemons.runtime.plugins import PluginContext

_FLAGS_INSTRUMENT = field_reader(TICK_DTYPE, "flags", "instrument")


class ImbalanceStrategyConfig(BaseModel):
    model_config = ConfigDict(extra="forbid")

    levels: int = Field(default=5, ge=1, le=DEPTH)
    decay: float = Field(default=0.5, gt=0.0, le=1.0)
    entry: float = Field(default=0.6, gt=0.0, le=1.0)
    exit: float = Field(default=0.2, ge=0.0)
    lots: int = Field(default=1, ge=1)
    mode: Literal["fade", "follow"] = "fade"
    instruments: list[str] = []
    """Instruments traded (default: every instrument whose ticks arrive)."""

    @model_validator(mode="after")
    def _exit_inside_entry(self) -> Self:
        if self.exit >= self.entry:
            raise ValueError(f"exit ({self.exit}) must be below entry ({self.entry})")
        return self


class ImbalanceStrategy(Strategy):
    """Child strategy: trade the order-book imbalance (module docstring)."""

    Config = ImbalanceStrategyConfig

    def init(self, ctx: PluginContext) -> None:
        super().init(ctx)
        self.config: ImbalanceStrategyConfig = ctx.config
        self._only = frozenset(instrument_key(i) for i in self.config.instruments)
        self._sign = -1 if self.config.mode == "fade" else 1
        self._books: dict[bytes, BookImbalance] = {}
        ctx.subscribe(EventType.MARKET_DATA, self.on_tick)

    def on_tick(self, record: Any) -> None:
        flags, key = _FLAGS_INSTRUMENT(record)
        if flags & UNCOUNTED or (self._only and key not in self._only):
            return
        book = self._books.get(key)
        if book is None:
            book = self._books[key] = BookImbalance(self.config.levels, self.config.decay)
        signal = self._sign * book.update(record)
        config = self.config
        if signal >= config.entry:
            self.set_target(key, config.lots)
        elif signal <= -config.entry:
            self.set_target(key, -config.lots)
        elif abs(signal) <= config.exit:
            self.set_target(key, 0)
