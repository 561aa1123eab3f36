"""VWAP of the trading day: cumulative Turnover / (cumulative Volume x multiplier).

CTP's cumulative fields start from zero each trading day, so the day's VWAP needs no state
of its own and starts afresh each trading day; the multiplier turns turnover (CNY) per lot
into a price. Only ticks that count reach it (``events.UNCOUNTED``): a tick whose Volume went
backwards carries totals that are not the day's and gives no value.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from hft.daemons.engine.factors.base import NAN, Factor, FactorConfig, FactorDef, field_reader
from hft.daemons.engine.factors.host import FactorPlugin
from hft.daemons.refdata.instruments import Product
from hft.daemons.runtime.events import TICK_DTYPE, EventType

_VOLUME_TURNOVER = field_reader(TICK_DTYPE, "volume", "turnover")


class Vwap(Factor):
    """The day's VWAP of one instrument (NaN before its first trade)."""

    __slots__ = ("multiplier",)

    def __init__(self, multiplier: float) -> None:
        self.multiplier = multiplier

    def update(self, record: Any) -> float:
        volume, turnover = _VOLUME_TURNOVER(record)
        return turnover / (volume * self.multiplier) if volume > 0 else NAN

    def compute(self, records: np.ndarray) -> np.ndarray:
        volume = np.asarray(records["volume"], dtype=np.float64)
        traded = volume > 0
        out = np.full(len(volume), NAN)
        out[traded] = records["turnover"][traded] / (volume[traded] * self.multiplier)
        return out


def _make(product: Product | None) -> Vwap:
    if product is None:
        raise ValueError("VWAP needs the contract multiplier: the product is not in the table")
    return Vwap(product.multiplier)


class VwapFactor(FactorPlugin):
    """Plugin: the day's VWAP from ticks as FACTOR ``vwap``."""

    Config = FactorConfig

    @classmethod
    def define(cls, config: FactorConfig) -> FactorDef:
        return FactorDef(config.name or "vwap", EventType.MARKET_DATA, _make)
