"""Bars out as CSV rows: what ``hftctl bars`` prints (the batch builder, barbatch.py, works on
arrays only; md/history.py reads one instrument's ticks out of a journal for it)."""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterator

import numpy as np

from hft.daemons.md.csvfile import number_text
from hft.daemons.refdata.clock import CHINA

CSV_COLUMNS = ("datetime", "trading_day", "open", "high", "low", "close", "volume", "turnover",
               "open_interest")


def bar_rows(bars: np.ndarray) -> Iterator[list[str]]:
    """CSV rows (CSV_COLUMNS) for BAR records: the bar start as local ISO 8601 time."""
    for bar in bars:
        start = dt.datetime.fromtimestamp(int(bar["start_ns"]) // 10**9, CHINA)
        yield [start.isoformat(), str(int(bar["trading_day"])),
               *(number_text(bar[name]) for name in ("open", "high", "low", "close")),
               str(int(bar["volume"])), number_text(bar["turnover"]),
               number_text(bar["open_interest"])]
