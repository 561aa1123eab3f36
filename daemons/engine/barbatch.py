"""Bars for history and backtests: the rules of bars.py over whole tick arrays, with numpy.

It uses the live builder's tables (SessionBook), its refusal rule (order_verdict) and the
same arithmetic, so its records equal the live builder's byte for byte when that one is fed
the same ticks in the same order and its clock never overtakes a tick (a replay drives the
clock from the data). The only per-tick Python loop is the exact fallback for ticks that
go back in time or volume (rare, dirty data); everything else is a few passes of numpy.
Arrays in, arrays out: md/history.py reads the ticks out of a journal, bario.py writes CSV.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterator, Sequence
from dataclasses import dataclass

import numpy as np

from hft.daemons.engine.bartables import (
    APPLY,
    DAY_MS,
    MINUTE_MS,
    DaySchedule,
    Period,
    SessionBook,
    order_verdict,
)
from hft.daemons.refdata.instruments import ProductTable
from hft.daemons.refdata.sessions import MINUTES_PER_DAY, NO_BAR, SessionTemplate
from hft.daemons.runtime.events import (
    RECORD_SIZE,
    TICK_DTYPE,
    UNCOUNTED,
    EventType,
    concatenate,
    empty,
)

_DAY_SHIFT = 12  # key = trading_day << 12 | bar: 4096 > any bar index
_VOLUME_BITS = 36  # key = trading_day << 36 | volume, for volumes below 2**36 lots


def _word(name: str) -> int:
    offset = int(TICK_DTYPE.fields[name][1])  # type: ignore[index]
    return offset // 8


_WORDS = [_word(name) for name in ("trading_day", "update_ms", "last_price", "highest_price",
                                   "lowest_price", "volume", "turnover", "open_interest")]
"""The 8-byte words of a tick the rules read: flags and trading_day share the first (bytes
18 and 20 of the header), update_ms is the upper half of the second, the rest fill theirs."""
assert TICK_DTYPE.fields is not None and [
    int(TICK_DTYPE.fields[name][1]) % 8 for name in ("flags", "trading_day", "update_ms")] == [2, 4, 4]
assert _word("flags") == _WORDS[0]


@dataclass(frozen=True)
class _Ticks:
    """The tick fields the rules read, one contiguous array each."""

    day: np.ndarray
    ms: np.ndarray
    flags: np.ndarray
    last: np.ndarray
    high: np.ndarray
    low: np.ndarray
    volume: np.ndarray
    turnover: np.ndarray
    oi: np.ndarray

    @classmethod
    def of(cls, ticks: np.ndarray) -> _Ticks:
        """Gathered row by row, so each record's cache lines are read once (field by field,
        a 384-byte stride reads them once per field): the batch path's main cost."""
        if ticks.dtype != TICK_DTYPE:  # e.g. np.concatenate's output, which drops the padding
            padded = np.zeros(len(ticks), dtype=TICK_DTYPE)
            for name in ticks.dtype.names or ():
                padded[name] = ticks[name]
            ticks = padded
        words = np.ascontiguousarray(ticks).view(np.uint64).reshape(len(ticks), RECORD_SIZE // 8)
        head, clock, last, high, low, volume, turnover, oi = np.take(words, _WORDS, axis=1).T.copy()
        return cls((head >> np.uint64(32)).astype(np.uint32).view(np.int32),
                   (clock >> np.uint64(32)).astype(np.uint32).view(np.int32),
                   (head >> np.uint64(16)).astype(np.uint16), last.view(np.float64),
                   high.view(np.float64), low.view(np.float64), volume.view(np.int64),
                   turnover.view(np.float64), oi.view(np.float64))

    def take(self, index: np.ndarray) -> _Ticks:
        return _Ticks(*(getattr(self, f.name)[index] for f in dataclasses.fields(self)))


def build_bars(ticks: np.ndarray, products: ProductTable, periods: Sequence[Period]) -> np.ndarray:
    """BAR records from MARKET_DATA records in arrival order: per instrument (first seen
    first), per period (in the given order), by time. KeyError/ValueError names an
    instrument the product table does not know."""
    book = SessionBook(periods)
    ids = ticks["instrument"]
    columns = _Ticks.of(ticks)
    parts = []
    remaining = np.ones(len(ticks), dtype=bool)
    while remaining.any():
        first = int(np.argmax(remaining))
        mine = ids == ids[first]
        remaining &= ~mine
        product = products.product_of(bytes(ids[first]).decode("ascii"))
        own = columns if mine.all() else columns.take(np.flatnonzero(mine))
        parts.append(_instrument_bars(own, book, product.session, bytes(ids[first]),
                                      int(ticks["instrument_index"][first]),
                                      product.exchange.encode()))
    return concatenate(parts, EventType.BAR)


def _instrument_bars(ticks: _Ticks, book: SessionBook, template: SessionTemplate, raw_id: bytes,
                     index: int, exchange: bytes) -> np.ndarray:
    bar = np.full(len(ticks.day), NO_BAR, dtype=np.int32)
    minute = np.clip(ticks.ms // MINUTE_MS, 0, MINUTES_PER_DAY - 1)
    for begin, end, days in _day_runs(ticks.day, book, template):
        bar[begin:end] = days.schedule.bar_of_local[minute[begin:end]]
    bar[(ticks.ms < 0) | (ticks.ms >= DAY_MS)] = NO_BAR  # not a clock time: in no session
    candidates = np.flatnonzero((bar != NO_BAR) & (ticks.flags & UNCOUNTED == 0)
                                & ~np.isnan(ticks.last))
    kept = candidates[_applied(ticks.day[candidates], bar[candidates], ticks.ms[candidates],
                               ticks.volume[candidates])]
    if not len(kept):
        return empty(EventType.BAR, 0)
    day, bar = ticks.day[kept], bar[kept]
    price, high, low = ticks.last[kept], ticks.high[kept], ticks.low[kept]

    # each tick's contribution to its bar's high and low: LastPrice, and a rise of the day's
    # HighestPrice (fall of LowestPrice) since the previous tick of the same trading day
    day_start = np.r_[True, day[1:] != day[:-1]]
    previous_high, previous_low = np.r_[np.nan, high[:-1]], np.r_[np.nan, low[:-1]]
    previous_high[day_start] = previous_low[day_start] = np.nan
    with np.errstate(invalid="ignore"):
        tick_high = np.where(high > previous_high, np.maximum(price, high), price)
        tick_low = np.where(low < previous_low, np.minimum(price, low), price)

    # 1-minute bars
    first, last = _segments((day.astype(np.int64) << _DAY_SHIFT) | bar)
    at_last = kept[last]
    minutes = _Bars(day[first], bar[first], price[first], np.maximum.reduceat(tick_high, first),
                    np.minimum.reduceat(tick_low, first), price[last], ticks.volume[at_last],
                    ticks.turnover[at_last], ticks.oi[at_last])
    new_day = np.r_[True, minutes.day[1:] != minutes.day[:-1]]
    minutes.v0[:] = np.r_[0, minutes.v[:-1]]
    minutes.t0[:] = np.r_[0.0, minutes.t[:-1]]
    minutes.v0[new_day], minutes.t0[new_day] = 0, 0.0

    parts = [_period_bars(minutes, number, period, book, template)
             for number, period in enumerate(book.periods)]
    out = empty(EventType.BAR, sum(len(part[0]) for part in parts))
    position = 0
    for (start_ns, end_ns, day, o, h, low, c, v, turnover, oi), period in zip(parts, book.periods,
                                                                           strict=True):
        rows = out[position:position + len(o)]
        position += len(o)
        rows["ts_ns"], rows["trading_day"], rows["start_ns"] = end_ns, day, start_ns
        rows["instrument_index"], rows["instrument"], rows["exchange"] = index, raw_id, exchange
        rows["period_s"] = period.seconds
        rows["open"], rows["high"], rows["low"], rows["close"] = o, h, low, c
        rows["volume"], rows["turnover"], rows["open_interest"] = v, turnover, oi
    return out


@dataclass
class _Bars:
    """Closed 1-minute bars as columns; v0/t0 are the cumulative fields before each bar."""

    day: np.ndarray
    bar: np.ndarray
    open: np.ndarray
    high: np.ndarray
    low: np.ndarray
    close: np.ndarray
    v: np.ndarray
    t: np.ndarray
    oi: np.ndarray

    def __post_init__(self) -> None:
        self.v0 = np.zeros_like(self.v)
        self.t0 = np.zeros_like(self.t)


def _period_bars(minutes: _Bars, number: int, period: Period, book: SessionBook,
                 template: SessionTemplate) -> tuple[np.ndarray, ...]:
    """One period's bars from the 1-minute bars (each tick is in exactly one of those)."""
    group = np.empty(len(minutes.bar), dtype=np.int32)
    start_ns = np.empty(len(minutes.bar), dtype=np.int64)
    end_ns = np.empty(len(minutes.bar), dtype=np.int64)
    for begin, end, days in _day_runs(minutes.day, book, template):
        group[begin:end] = days.schedule.groups[number][minutes.bar[begin:end]]
        start_ns[begin:end] = days.group_start_ns[number][group[begin:end]]
        end_ns[begin:end] = days.group_end_ns[number][group[begin:end]]
    first, last = _segments((minutes.day.astype(np.int64) << _DAY_SHIFT) | group)
    return (start_ns[first], end_ns[first], minutes.day[first], minutes.open[first],
            np.maximum.reduceat(minutes.high, first), np.minimum.reduceat(minutes.low, first),
            minutes.close[last], minutes.v[last] - minutes.v0[first],
            minutes.t[last] - minutes.t0[first], minutes.oi[last])


def _applied(day: np.ndarray, bar: np.ndarray, ms: np.ndarray, volume: np.ndarray) -> np.ndarray:
    """Which in-session ticks order_verdict applies. When bars and volumes never go back (the
    normal case) only duplicates are refused, which numpy finds at once; otherwise the
    verdict runs tick by tick, exactly as the live builder runs it."""
    wide_day = day.astype(np.int64)
    fits = not len(day) or (volume.min() >= 0 and volume.max() < 2**_VOLUME_BITS)
    if (fits and _ascending((wide_day << _DAY_SHIFT) | bar)
            and _ascending((wide_day << _VOLUME_BITS) | volume)):
        kept = np.ones(len(day), dtype=bool)
        kept[1:] = (day[1:] != day[:-1]) | (ms[1:] != ms[:-1]) | (volume[1:] != volume[:-1])
        return kept
    kept = np.zeros(len(day), dtype=bool)
    previous = (0, -1, -1, 0)
    for i, tick in enumerate(zip(day.tolist(), bar.tolist(), ms.tolist(), volume.tolist(),
                                 strict=True)):
        if order_verdict(*previous, *tick) == APPLY:
            kept[i], previous = True, tick
    return kept


def _ascending(keys: np.ndarray) -> bool:
    return bool(np.all(keys[1:] >= keys[:-1]))


def _segments(keys: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """First and last index of each run of equal keys."""
    first = np.flatnonzero(np.r_[True, keys[1:] != keys[:-1]])
    return first, np.r_[first[1:], len(keys)] - 1


def _day_runs(days: np.ndarray, book: SessionBook,
              template: SessionTemplate) -> Iterator[tuple[int, int, DaySchedule]]:
    """(begin, end, that day's schedule) for each run of one trading day."""
    first, last = _segments(days)
    for begin, end in zip(first.tolist(), last.tolist(), strict=True):
        yield begin, end + 1, book.day(template, int(days[begin]))
