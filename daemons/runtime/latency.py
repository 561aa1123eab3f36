"""Latency histograms that cost the hot path one array store: samples in, buckets at scrape.

A prometheus_client Histogram's ``observe()`` takes a lock and walks its buckets on every
call, too much per tick or per order. :class:`LatencySamples` keeps a preallocated ring of
nanosecond samples instead (a Python list: storing an int in one costs a third of a numpy
array's item store): the hot path stores one int and bumps a counter
(:meth:`LatencySamples.add`), and the scrape (the /metrics thread) folds the samples written
since the last scrape into cumulative bucket counts with numpy, then reports them as a
histogram in seconds with buckets from 1 µs (:data:`BUCKETS_S`).

One writer thread and one folding thread need no lock: the writer only ever writes the slot
past ``written`` and then bumps it, and the fold reads slots below the ``written`` it saw. A
writer that laps the ring between two scrapes (more than ``capacity`` samples) overwrites
samples not folded yet: the fold then takes the newest ``capacity`` and counts the rest in
``lost``, so the histogram stays a true sample of what happened.
"""

from __future__ import annotations

import threading
from collections.abc import Sequence

import numpy as np
from prometheus_client.core import HistogramMetricFamily

BUCKETS_S: tuple[float, ...] = (*(float(f"{mantissa}e{exponent}") for exponent in range(-6, 0)
                                   for mantissa in (1, 2, 5)), 1.0)
"""Upper bounds, seconds: 1, 2, 5 µs ... 200, 500 ms, 1 s (then +Inf)."""
_BOUNDS_NS = np.array([round(bound * 1e9) for bound in BUCKETS_S], dtype=np.int64)
_LE = [*map(repr, BUCKETS_S), "+Inf"]  # "1e-06" ... "1.0", as prometheus_client spells them
DEFAULT_CAPACITY = 1 << 16
"""Samples between two scrapes before the oldest are lost (65536: 4 s of 16k orders/s)."""


class LatencySamples:
    """A ring of latency samples (ns) and the histogram folded from them."""

    __slots__ = ("_counts", "_fold_lock", "_folded", "_mask", "_ring", "_sum_ns", "lost",
                 "written")

    def __init__(self, capacity: int = DEFAULT_CAPACITY) -> None:
        if capacity <= 0 or capacity & (capacity - 1):
            raise ValueError(f"capacity must be a power of two, got {capacity}")
        self._ring = [0] * capacity
        self._mask = capacity - 1
        self.written = 0
        """Samples added so far (the next one goes to slot ``written & mask``)."""
        self._folded = 0
        self._counts = np.zeros(len(_BOUNDS_NS) + 1, dtype=np.int64)
        """Per-bucket (not cumulative) counts of the folded samples, the last one +Inf."""
        self._sum_ns = 0
        self.lost = 0
        """Samples overwritten before a scrape folded them."""
        self._fold_lock = threading.Lock()  # two scrapes at once must not fold twice

    def add(self, ns: int) -> None:
        """One sample, in nanoseconds: the hot path's whole cost."""
        self._ring[self.written & self._mask] = ns
        self.written += 1

    def fold(self) -> None:
        """Fold the samples added since the last fold into the bucket counts."""
        with self._fold_lock:
            end, start = self.written, self._folded
            capacity = self._mask + 1
            if end - start > capacity:
                self.lost += end - start - capacity
                start = end - capacity
            if end == start:
                return
            ring = np.array(self._ring, dtype=np.int64)
            samples = ring[np.arange(start, end, dtype=np.int64) & self._mask]
            buckets = np.searchsorted(_BOUNDS_NS, samples, side="left")
            self._counts += np.bincount(buckets, minlength=len(self._counts))
            self._sum_ns += int(samples.sum())
            self._folded = end

    def family(self, name: str, documentation: str, labels: Sequence[str] = (),
               label_values: Sequence[str] = ()) -> HistogramMetricFamily:
        """The histogram ``name`` (seconds) of every sample so far, folded first."""
        self.fold()
        family = HistogramMetricFamily(name, documentation, labels=list(labels))
        cumulative = np.cumsum(self._counts)
        family.add_metric(list(label_values), list(zip(_LE, cumulative.tolist(), strict=True)),
                          sum_value=self._sum_ns / 1e9)
        return family
