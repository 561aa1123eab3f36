"""Realized volatility: ``sqrt(sum of r^2)`` over the last N log returns of bar closes.

Per bar, not annualized: multiply by ``sqrt(bars per year)`` for an annual figure. Prices
must be positive (log returns). It carries across trading days: the return from a day's last
bar to the next day's first (the overnight gap) is one of the N, like any other.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
from numpy.lib.stride_tricks import sliding_window_view
from pydantic import Field

from hft.daemons.engine.factors.base import NAN, BarFactorConfig, Factor, FactorDef, field_reader
from hft.daemons.engine.factors.host import FactorPlugin
from hft.daemons.runtime.events import BAR_DTYPE

_CLOSE = field_reader(BAR_DTYPE, "close")


class RealizedVolatility(Factor):
    """Rolling realized volatility of one instrument: a ring of squared returns and their
    running sum, re-summed exactly once per turn of the ring so rounding cannot drift (O(1)
    amortized)."""

    __slots__ = ("_at", "_previous", "_returns", "_squares", "_sum")

    def __init__(self, window: int) -> None:
        self._squares = [0.0] * window
        self._at = 0
        self._sum = 0.0
        self._returns = -1  # log returns seen; -1 before the first close
        self._previous = NAN

    def update(self, record: Any) -> float:
        (close,) = _CLOSE(record)
        previous, self._previous = self._previous, close
        self._returns += 1
        if self._returns == 0:
            return NAN
        change = math.log(close / previous)
        square = change * change
        at = self._at
        self._sum += square - self._squares[at]
        self._squares[at] = square
        at += 1
        if at == len(self._squares):
            at = 0
            self._sum = math.fsum(self._squares)
        self._at = at
        if self._returns < len(self._squares):
            return NAN
        return math.sqrt(self._sum) if self._sum > 0.0 else 0.0  # > 0: rounding may leave -0

    def compute(self, records: np.ndarray) -> np.ndarray:
        close = np.asarray(records["close"], dtype=np.float64)
        window = len(self._squares)
        out = np.full(len(close), NAN)
        if len(close) > window:
            squares = np.log(close[1:] / close[:-1]) ** 2
            out[window:] = np.sqrt(sliding_window_view(squares, window).sum(axis=1))
        return out


class VolatilityConfig(BarFactorConfig):
    window: int = Field(default=20, ge=1, le=10_000)
    """N: log returns in the window."""


class RealizedVolFactor(FactorPlugin):
    """Plugin: rolling realized volatility as FACTOR ``rvol_N``."""

    Config = VolatilityConfig

    @classmethod
    def define(cls, config: VolatilityConfig) -> FactorDef:
        return config.definition(f"rvol_{config.window}",
                                 lambda product: RealizedVolatility(config.window))
