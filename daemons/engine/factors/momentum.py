"""Momentum: the N-bar return of bar closes, ``close_t / close_{t-N} - 1``.

It carries across trading days: the N bars may span the close and the next open, so the
overnight gap is part of the return like any bar-to-bar change.
"""

from __future__ import annotations

from typing import Any

import numpy as np
from pydantic import Field

from hft.daemons.engine.factors.base import NAN, BarFactorConfig, Factor, FactorDef, field_reader
from hft.daemons.engine.factors.host import FactorPlugin
from hft.daemons.runtime.events import BAR_DTYPE

_CLOSE = field_reader(BAR_DTYPE, "close")


class Momentum(Factor):
    """The N-bar return of one instrument: a ring of the last N closes."""

    __slots__ = ("_at", "_closes")

    def __init__(self, bars: int) -> None:
        self._closes = [NAN] * bars  # NaN until filled, so the first N values are NaN
        self._at = 0

    def update(self, record: Any) -> float:
        close: float
        (close,) = _CLOSE(record)
        at = self._at
        then = self._closes[at]
        self._closes[at] = close
        self._at = at + 1 if at + 1 < len(self._closes) else 0
        return close / then - 1.0

    def compute(self, records: np.ndarray) -> np.ndarray:
        close = np.asarray(records["close"], dtype=np.float64)
        bars = len(self._closes)
        out = np.full(len(close), NAN)
        out[bars:] = close[bars:] / close[:-bars] - 1.0
        return out


class MomentumConfig(BarFactorConfig):
    bars: int = Field(default=10, ge=1, le=100_000)
    """N: the return is measured over the last N bars."""


class MomentumFactor(FactorPlugin):
    """Plugin: the N-bar return as FACTOR ``mom_N``."""

    Config = MomentumConfig

    @classmethod
    def define(cls, config: MomentumConfig) -> FactorDef:
        return config.definition(f"mom_{config.bars}", lambda product: Momentum(config.bars))
