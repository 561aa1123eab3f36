"""EMA of bar closes: ``ema_t = ema_{t-1} + alpha (close_t - ema_{t-1})``, ``alpha = 2/(N+1)``.

Seeded with the simple mean of the first N closes (NaN before that), as TA-Lib does, so the
first value does not depend on where the history happens to start. It carries across trading
days: a day's first bar continues the EMA of the day before.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
from pydantic import Field

from hft.daemons.engine.factors.base import NAN, BarFactorConfig, Factor, FactorDef, field_reader
from hft.daemons.engine.factors.host import FactorPlugin
from hft.daemons.runtime.events import BAR_DTYPE

_CLOSE = field_reader(BAR_DTYPE, "close")
_MAX_GROWTH = 1e100
"""Bound on the weights' growth within one block of the vectorized filter (see ema_filter)."""


class Ema(Factor):
    """The EMA of one instrument's bar closes."""

    __slots__ = ("_count", "_sum", "_value", "alpha", "period")

    def __init__(self, period: int) -> None:
        self.period = period
        self.alpha = 2.0 / (period + 1)
        self._count = 0
        self._sum = 0.0
        self._value = NAN

    def update(self, record: Any) -> float:
        (close,) = _CLOSE(record)
        if self._count == self.period:
            self._value += self.alpha * (close - self._value)
            return self._value
        self._count += 1
        self._sum += close
        if self._count == self.period:
            self._value = self._sum / self.period
        return self._value

    def compute(self, records: np.ndarray) -> np.ndarray:
        close = np.asarray(records["close"], dtype=np.float64)
        out = np.full(len(close), NAN)
        period = self.period
        if len(close) >= period:
            seed = float(np.cumsum(close[:period])[-1]) / period  # summed in order, as update does
            out[period - 1] = seed
            out[period:] = ema_filter(close[period:], self.alpha, seed)
        return out


def ema_filter(values: np.ndarray, alpha: float, previous: float) -> np.ndarray:
    """``y_k = y_{k-1} + alpha (x_k - y_{k-1})`` from ``y_{-1} = previous``, vectorized.

    Within a block, ``y_k = d^(k+1) (previous + alpha * sum_{j<=k} x_j d^-(j+1))`` with
    ``d = 1 - alpha``: a cumulative sum. Blocks are cut where ``d^-k`` would pass 1e100, so
    nothing overflows and the relative error stays near ``eps / alpha``.
    """
    decay = 1.0 - alpha
    if decay <= 0.0:
        return values.astype(np.float64, copy=True)
    block = max(1, int(math.log(_MAX_GROWTH) / -math.log(decay)))
    out = np.empty(len(values), dtype=np.float64)
    growth = decay ** -np.arange(1, min(block, len(values)) + 1, dtype=np.float64)
    for start in range(0, len(values), block):
        chunk = values[start:start + block]
        scale = growth[:len(chunk)]
        out[start:start + len(chunk)] = (previous + alpha * np.cumsum(chunk * scale)) / scale
        previous = float(out[start + len(chunk) - 1])
    return out


class EmaConfig(BarFactorConfig):
    period: int = Field(default=20, ge=1, le=100_000)
    """N: bars in the seed mean; alpha = 2 / (N + 1)."""


class EmaFactor(FactorPlugin):
    """Plugin: the EMA of bar closes as FACTOR ``ema_N``."""

    Config = EmaConfig

    @classmethod
    def define(cls, config: EmaConfig) -> FactorDef:
        return config.definition(f"ema_{config.period}", lambda product: Ema(config.period))
