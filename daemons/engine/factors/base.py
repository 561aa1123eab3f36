"""The factor API: one factor's math, incremental and vectorized, and its definition.

A :class:`Factor` holds the state of one factor on one instrument's stream (ticks, or bars of
one length). ``update(record)`` takes the next record and returns the new value in O(1),
allocating nothing beyond Python's own numbers; ``compute(records)`` returns, for a whole
history at once, the values ``update`` would have returned record by record from a fresh
state. The tests hold every shipped factor to that parity, so a backtest that computes
factors vectorized sees exactly what live trading sees.

A :class:`FactorDef` is what a factor plugin hosts: a name, the event type and bar length it
reads, and how to make the per-instrument state. Which records reach ``update`` is the host's
choice, the same as :meth:`FactorDef.reads` makes over arrays: the ticks that count
(``events.UNCOUNTED``: never a stale, volume-backwards or out-of-session tick) and the bars
of the factor's length. Per-bar factors keep their state across trading days (the first bar
of a day continues from the last of the day before); see each factor for what that means.
"""

from __future__ import annotations

import math
from abc import ABC, abstractmethod
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np
from pydantic import BaseModel, ConfigDict, Field

from hft.daemons.refdata.instruments import Product
from hft.daemons.runtime.events import EventType, counted, fields_struct

NAN = math.nan
NAME_PATTERN = r"^[A-Za-z0-9_.:-]{1,32}$"
"""A FACTOR record's name field is 32 ASCII bytes."""
MINUTE_S = 60

Reader = Callable[[Any], tuple[Any, ...]]


def field_reader(dtype: np.dtype[np.void], *names: str) -> Reader:
    """A function reading the named fields of one record (an np.void, a journal slot, any
    buffer) in one ``struct.unpack_from`` call: a few times cheaper than numpy field access.
    Fields come back in record order; a subarray field gives one value per element."""
    return fields_struct(dtype, names).unpack_from


class Factor(ABC):
    """One factor on one instrument's stream: O(1) incremental ``update`` and vectorized
    ``compute`` giving the same values."""

    __slots__ = ()

    @abstractmethod
    def update(self, record: Any) -> float:
        """The value after ``record`` (NaN while warming up)."""

    @abstractmethod
    def compute(self, records: np.ndarray) -> np.ndarray:
        """The values ``update`` returns for each of ``records`` from a fresh state
        (float64, one per record); this object's own state is left alone."""


@dataclass(frozen=True)
class FactorDef:
    """A factor as a plugin hosts it: published as FACTOR records named ``name``."""

    name: str
    event_type: EventType
    """MARKET_DATA or BAR: the records ``update`` takes."""
    make: Callable[[Product | None], Factor]
    """A fresh per-instrument state; the product (None if unknown) gives the multiplier."""
    period_s: int = 0
    """For bars: the bar length read (other lengths are ignored); 0 for ticks."""

    def reads(self, records: np.ndarray) -> np.ndarray:
        """Which of ``records`` (one instrument's, of ``event_type``) the factor reads, as a
        bool mask: the ticks that count (``events.counted``), the bars of its length. The
        hosts choose the same records one at a time."""
        if self.event_type is EventType.MARKET_DATA:
            return counted(records)
        return np.asarray(records["period_s"] == self.period_s)

    def compute(self, records: np.ndarray, product: Product | None = None) -> np.ndarray:
        """The factor over a history of one instrument's records, vectorized: one value per
        record it reads (``records[self.reads(records)]``), the values a host publishes."""
        return self.make(product).compute(_selected(records, self.reads(records)))


def _selected(records: np.ndarray, mask: np.ndarray) -> np.ndarray:
    """``records[mask]``, without a copy when every record is selected (the usual history),
    and copied as whole records of bytes otherwise (numpy copies a padded record dtype field
    by field, a few times slower)."""
    if mask.all():
        return records
    whole = np.dtype((np.void, records.dtype.itemsize))
    selected: np.ndarray = records.view(whole)[mask].view(records.dtype)
    return selected


class FactorConfig(BaseModel):
    """What every factor's config has."""

    model_config = ConfigDict(extra="forbid")

    name: str | None = Field(default=None, pattern=NAME_PATTERN)
    """The FACTOR record name; default from the parameters, e.g. ``ema_20``."""


class BarFactorConfig(FactorConfig):
    """A factor of bar closes."""

    period_s: int = Field(default=MINUTE_S, ge=1)
    """The bar length read, in seconds (the K-line engine publishes several)."""

    def definition(self, stem: str, make: Callable[[Product | None], Factor]) -> FactorDef:
        """The bar factor this config sets up: reading bars of ``period_s``, named ``stem``
        for 1-minute bars and ``stem_300s`` for others, unless ``name`` is set."""
        suffix = "" if self.period_s == MINUTE_S else f"_{self.period_s}s"
        return FactorDef(self.name or f"{stem}{suffix}", EventType.BAR, make, self.period_s)
