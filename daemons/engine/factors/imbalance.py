"""Order-book imbalance: ``sum w_k (bid_k - ask_k) / sum w_k (bid_k + ask_k)`` over the first
L levels' volumes, ``w_k = decay^k`` (k from 0).

In [-1, 1]: +1 is all bids, -1 all asks; NaN on an empty book. L = 1 is the classic
level-1 imbalance; L = 5 weighs the depth, nearer levels more. On a level-1 feed (the
usual CTP feed, the IF day) the deeper levels have zero volume, so any L gives exactly the
level-1 imbalance: only a feed with five levels makes L > 1 differ.
"""

from __future__ import annotations

from typing import Any

import numpy as np
from pydantic import Field

from hft.daemons.engine.factors.base import NAN, Factor, FactorConfig, FactorDef, field_reader
from hft.daemons.engine.factors.host import FactorPlugin
from hft.daemons.runtime.events import DEPTH, TICK_DTYPE, EventType

_VOLUMES = field_reader(TICK_DTYPE, "bid_volume", "ask_volume")
"""All DEPTH bid volumes, then all DEPTH ask volumes."""


class BookImbalance(Factor):
    """Depth-weighted volume imbalance of one instrument's book."""

    __slots__ = ("_levels", "weights")

    def __init__(self, levels: int, decay: float) -> None:
        self.weights = tuple(decay ** level for level in range(levels))
        self._levels = tuple((weight, level, DEPTH + level) for level, weight in enumerate(self.weights))

    def update(self, record: Any) -> float:
        volumes = _VOLUMES(record)
        difference = total = 0.0
        for weight, bid, ask in self._levels:
            difference += weight * (volumes[bid] - volumes[ask])
            total += weight * (volumes[bid] + volumes[ask])
        return difference / total if total else NAN

    def compute(self, records: np.ndarray) -> np.ndarray:
        levels = len(self.weights)
        bids = records["bid_volume"][:, :levels].astype(np.float64)
        asks = records["ask_volume"][:, :levels].astype(np.float64)
        difference = np.zeros(len(records))
        total = np.zeros(len(records))
        for level, weight in enumerate(self.weights):  # level by level, summed as update does
            difference += weight * (bids[:, level] - asks[:, level])
            total += weight * (bids[:, level] + asks[:, level])
        out = np.full(len(records), NAN)
        np.divide(difference, total, out=out, where=total != 0)
        return out


class ImbalanceConfig(FactorConfig):
    levels: int = Field(default=1, ge=1, le=DEPTH)
    """L: book levels counted (1 = best bid and ask only)."""
    decay: float = Field(default=0.5, gt=0.0, le=1.0)
    """Weight of each level relative to the one above it."""


class BookImbalanceFactor(FactorPlugin):
    """Plugin: order-book imbalance from ticks as FACTOR ``obi_L``."""

    Config = ImbalanceConfig

    @classmethod
    def define(cls, config: ImbalanceConfig) -> FactorDef:
        return FactorDef(config.name or f"obi_{config.levels}", EventType.MARKET_DATA,
                         lambda product: BookImbalance(config.levels, config.decay))
