"""Bars' input and output: one instrument's ticks out of a journal, bars as CSV rows.

The batch builder (barbatch.py) works on arrays only; this is what feeds it from an md
journal and prints its result, for ``hftctl bars`` (and ``hftctl ticks``, which streams the
same filtered batches).
"""

from __future__ import annotations

import datetime as dt
import math
from collections.abc import Iterator
from pathlib import Path

import numpy as np

from hft.daemons.md.normalize import CHINA_UTC_OFFSET_NS
from hft.daemons.runtime.events import EventType, concatenate
from hft.daemons.runtime.journal import JournalReader

_CHINA = dt.timezone(dt.timedelta(seconds=CHINA_UTC_OFFSET_NS // 10**9), "China")
_BATCH = 65_536


def instrument_batches(directory: Path, name: str, instrument: str) -> Iterator[np.ndarray]:
    """The MARKET_DATA records of ``instrument`` in journal ``directory/name``, a batch at a
    time (copies, in journal order; a batch may be empty). JournalNotFound when there is no
    such journal; ValueError, once the journal is read to its end, when it held no tick of
    the instrument, naming the instruments it does hold."""
    wanted = instrument.encode()
    held: set[bytes] = set()
    found = False
    with JournalReader(directory, name, start="begin") as reader:
        while (batch := reader.read_batch(_BATCH, EventType.MARKET_DATA)).size:
            ticks = batch[batch["type"] == EventType.MARKET_DATA]
            mine = ticks[ticks["instrument"] == wanted]
            if not mine.size:
                held.update(np.unique(ticks["instrument"]).tolist())
                continue
            found = True
            yield mine
    if not found:
        names = sorted(raw.rstrip(b"\0").decode("ascii", "replace") for raw in held)
        raise ValueError(f"no ticks of {instrument} in journal {directory / name} "
                         f"(it has: {', '.join(names) or 'no ticks at all'})")


def journal_ticks(directory: Path, name: str, instrument: str) -> np.ndarray:
    """Every MARKET_DATA record of ``instrument`` in journal ``directory/name``, as one array
    (errors as :func:`instrument_batches`)."""
    return concatenate(list(instrument_batches(directory, name, instrument)),
                       EventType.MARKET_DATA)


CSV_COLUMNS = ("datetime", "trading_day", "open", "high", "low", "close", "volume", "turnover",
               "open_interest")


def bar_rows(bars: np.ndarray) -> Iterator[list[str]]:
    """CSV rows (CSV_COLUMNS) for BAR records: the bar start as local ISO 8601 time."""
    for bar in bars:
        start = dt.datetime.fromtimestamp(int(bar["start_ns"]) // 10**9, _CHINA)
        yield [start.isoformat(), str(int(bar["trading_day"])),
               *(_number(float(bar[name])) for name in ("open", "high", "low", "close")),
               str(int(bar["volume"])), _number(float(bar["turnover"])),
               _number(float(bar["open_interest"]))]


def _number(value: float) -> str:
    """Shortest text that reads back as the same float; empty for NaN."""
    if math.isnan(value):
        return ""
    return str(int(value)) if value.is_integer() and abs(value) < 1e15 else repr(value)
