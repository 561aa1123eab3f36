"""K-line bars, live: a BarBuilder turns ticks into bars one tick at a time.

The rules and their tables are in bartables.py (shared with the batch path, barbatch.py).
Live bars close on the clock: ``on_clock(now_ns)`` (TIMER events carry the data's clock)
closes every bar whose end plus ``grace_ns`` has passed, so the 11:29 bar is out at
11:30:00 + grace without waiting for the 13:00 tick; a tick of a later bar closes the
current one at once.
"""

from __future__ import annotations

import bisect
import struct
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np

from hft.daemons.engine.bartables import (
    APPLY,
    DAY_MS,
    LATE,
    MINUTE_MS,
    NEVER,
    DaySchedule,
    Period,
    SessionBook,
    joined_late,
    order_verdict,
)
from hft.daemons.refdata.instruments import ProductTable
from hft.daemons.refdata.sessions import (
    NO_BAR,
    SessionTemplate,
)
from hft.daemons.runtime.events import (
    HEADER_DTYPE,
    TICK_DTYPE,
    UNCOUNTED,
    EventType,
    empty,
    fields_struct,
    record_struct,
)

_BAR = int(EventType.BAR)
BAR_STRUCT = record_struct(EventType.BAR)


# --- the live builder -------------------------------------------------------------------------

_unpack_tick = struct.Struct("<16xQ" + fields_struct(
    TICK_DTYPE, ("instrument", "update_ms", "last_price", "volume"), start=24,
    raw_spans=(("highest_price", "lowest_price"), ("turnover", "open_interest"))).format[1:]).unpack_from
"""(key, instrument, update_ms, last_price, extremes, volume, turnover_oi) of a tick, in one call.
The key is type | flags << 16 | trading_day << 32: adjacent header fields read as one word
that the fast path compares with the previous applied tick's (same day, same flags, none of
them UNCOUNTED) in one go. ``extremes`` (HighestPrice, LowestPrice) and ``turnover_oi``
(Turnover, OpenInterest) stay raw bytes: the fast path only compares the first, and only a
closing bar reads the second, so they are decoded (``_unpack_pair``) when needed."""
_unpack_pair = struct.Struct("<dd").unpack
assert [HEADER_DTYPE.fields[n][1] for n in ("type", "flags", "trading_day")] == [16, 18, 20]  # type: ignore[index]
_NAN = float("nan")
_NO_EXTREMES = struct.pack("<dd", _NAN, _NAN)
_NO_TURNOVER = struct.pack("<dd", 0.0, _NAN)


@dataclass
class BarStats:
    """Counters read by the plugin's metrics (plain ints: nothing to do on the hot path)."""

    bars: list[int]
    """Bars emitted, per period (in the builder's period order)."""
    late: int = 0
    duplicate: int = 0
    ignored: int = 0
    unknown: int = 0
    """Ticks of instruments the product table does not know."""


class _Window:
    """An open N-minute / hour / daily bar, built from the 1-minute bars as they close (each
    tick belongs to exactly one 1-minute bar, so this equals building it from the ticks)."""

    __slots__ = ("c", "deadline", "g", "h", "l", "o", "oi", "period", "t", "t0", "v", "v0")

    def __init__(self, period: int) -> None:
        self.period = period
        self.g = -1  # window index in the day, -1 when none is open
        self.deadline = NEVER
        self.o = self.h = self.l = self.c = self.t = self.t0 = self.oi = 0.0
        self.v = self.v0 = 0


class _Instrument:
    """Per-instrument state: the day's tables, the open 1-minute bar, the previous applied
    tick's fields the rules compare against."""

    __slots__ = ("c", "cur", "day", "days", "deadline", "exchange", "extremes", "h", "hi_ms", "index",
                 "key", "l", "last_bar", "lo_ms", "minute_deadline", "ms", "o", "raw_id", "t0",
                 "template", "turnover_oi", "v", "v0", "windows")

    def __init__(self, raw_id: bytes, index: int, exchange: bytes, template: SessionTemplate,
                 windows: list[_Window]) -> None:
        self.raw_id, self.index, self.exchange, self.template = raw_id, index, exchange, template
        self.windows = windows
        self.day = 0
        self.key = -1  # type | flags << 16 | trading_day << 32 of the previous applied tick
        self.days: DaySchedule | None = None
        self.cur = -1  # the open 1-minute bar, -1 when none
        self.lo_ms = self.hi_ms = 0  # local clock range feeding the open bar; empty when none
        self.last_bar = -1  # latest bar opened or closed by the clock this day
        self.deadline = self.minute_deadline = NEVER
        self.o = self.h = self.l = self.c = self.t0 = 0.0
        self.v = self.v0 = 0
        self.ms = -1
        self.extremes = _NO_EXTREMES  # the previous applied tick's, raw (see _unpack_tick)
        self.turnover_oi = _NO_TURNOVER


def _new_extremes(st: _Instrument, extremes: bytes) -> None:
    """The tick's HighestPrice or LowestPrice moved since the previous applied tick: a trade
    between the two snapshots set a new day high (low), which belongs to this tick's bar."""
    high, low = _unpack_pair(extremes)
    previous_high, previous_low = _unpack_pair(st.extremes)
    if high > previous_high and high > st.h:
        st.h = high
    if low < previous_low and low < st.l:
        st.l = low
    st.extremes = extremes


BarSink = Callable[[np.void], object]
"""Receives each closed bar as a BAR record, valid only during the call (the buffer is reused)."""


class BarBuilder:
    """Live bars of every instrument it sees, for the given periods (see the module doc)."""

    def __init__(self, products: ProductTable, periods: Sequence[Period], on_bar: BarSink, *,
                 grace_ns: int = 1_000_000_000, late_join_baseline: bool = False) -> None:
        self.products = products
        self.periods = tuple(periods)
        self.book = SessionBook(self.periods)
        self.grace_ns = grace_ns
        self.stats = BarStats([0] * len(self.periods))
        self._seconds = [period.seconds for period in self.periods]
        self._on_bar = on_bar
        minute = [i for i, p in enumerate(self.periods) if p.minutes == 1]
        self._minute_period = minute[0] if minute else -1
        self._window_periods = [i for i, p in enumerate(self.periods) if p.minutes != 1]
        self._states: dict[bytes, _Instrument] = {}
        self._unknown: set[bytes] = set()
        self._next_deadline = NEVER
        self._joined_ns = NEVER if late_join_baseline else 0
        """Exchange time of the first tick this builder saw, when it takes a late join's
        first ticks as volume baselines (bartables.joined_late); else 0, and every trading
        day counts from zero, as the batch path does for complete history."""
        self._out = empty(EventType.BAR, 1)
        self._buffer = self._out.view(np.uint8).data
        self._record = self._out[0]

    def add_instrument(self, instrument_id: str, index: int = -1, trading_day: int = 0) -> None:
        """Prepare an instrument's state, and its session tables for ``trading_day`` if given,
        before its first tick (else that tick does it: a millisecond, once per session
        template and day). KeyError/ValueError if the product table does not know it."""
        raw_id = instrument_id.encode().ljust(32, b"\0")
        if raw_id not in self._states:
            product = self.products.product_of(instrument_id)
            self._states[raw_id] = _Instrument(
                raw_id, index, product.exchange.encode(), product.session,
                [_Window(p) for p in self._window_periods])
        if trading_day:
            self.book.day(self._states[raw_id].template, trading_day)

    def on_tick(self, record: np.void) -> None:
        """Apply one MARKET_DATA record. The common case (a tick of the open bar) is inline."""
        key, raw_id, ms, last, extremes, volume, turnover_oi = _unpack_tick(
            record)  # type: ignore[arg-type]  # numpy.void has the buffer protocol; its stubs omit it
        try:
            st = self._states[raw_id]
        except KeyError:
            self._tick(record, None, key, raw_id, ms, last, extremes, volume, turnover_oi)
            return
        if (key != st.key or last != last or ms < st.lo_ms or ms >= st.hi_ms
                or (volume <= st.v and (volume < st.v or ms == st.ms))):
            self._tick(record, st, key, raw_id, ms, last, extremes, volume, turnover_oi)
            return
        if last > st.h:
            st.h = last
        elif last < st.l:
            st.l = last
        if extremes != st.extremes:
            _new_extremes(st, extremes)
        st.c = last
        st.v = volume
        st.turnover_oi = turnover_oi
        st.ms = ms

    def on_clock(self, now_ns: int) -> None:
        """Close every bar whose end + grace is at or before ``now_ns`` (the data's clock)."""
        if now_ns < self._next_deadline:
            return
        following = NEVER
        for st in self._states.values():
            if st.deadline <= now_ns:
                self._expire(st, now_ns)
            following = min(following, st.deadline)
        self._next_deadline = following

    def flush(self) -> None:
        """Close every open bar now (the end of a backtest)."""
        self.on_clock(NEVER - 1)

    # --- the slow path: new bar, new day, refusals ------------------------------------------

    def _tick(self, record: np.void, st: _Instrument | None, key: int, raw_id: bytes, ms: int,
              last: float, extremes: bytes, volume: int, turnover_oi: bytes) -> None:
        flags, day = key >> 16 & 0xFFFF, key >> 32
        if self._joined_ns == NEVER:
            self._joined_ns = int(record["exchange_ts_ns"])
        if st is None:
            st = self._register(record, raw_id)
            if st is None:
                self.stats.unknown += 1
                return
        days = st.days if day == st.day and st.days is not None else self.book.day(st.template, day)
        bar = days.schedule.bar_of[ms // MINUTE_MS] if 0 <= ms < DAY_MS else NO_BAR
        if flags & UNCOUNTED or last != last or bar == NO_BAR:
            self.stats.ignored += 1
            return
        verdict = order_verdict(st.day, st.last_bar, st.ms, st.v, day, bar, ms, volume)
        if verdict == APPLY and day == st.day and bar == st.last_bar != st.cur:
            verdict = LATE  # its bar was closed by the clock
        if verdict != APPLY:
            if verdict == LATE:
                self.stats.late += 1
            else:
                self.stats.duplicate += 1
            return
        if day != st.day:
            self._roll(st, day, days)
            if joined_late(self._joined_ns, days, bar):
                st.v, st.turnover_oi = volume, turnover_oi  # the baseline: it contributes only its price
        if bar != st.cur:
            self._open(st, bar, last)
        st.h, st.l = max(st.h, last), min(st.l, last)
        if extremes != st.extremes:
            _new_extremes(st, extremes)
        st.c, st.v, st.turnover_oi, st.ms, st.key = last, volume, turnover_oi, ms, key

    def _register(self, record: np.void, raw_id: bytes) -> _Instrument | None:
        if raw_id in self._unknown:
            return None
        try:
            self.add_instrument(raw_id.rstrip(b"\0").decode("ascii"), int(record["instrument_index"]))
        except (KeyError, ValueError, UnicodeDecodeError):
            self._unknown.add(raw_id)
            return None
        return self._states[raw_id]

    def _roll(self, st: _Instrument, day: int, days: DaySchedule) -> None:
        """A new trading day: close what the old one left open, start from zero."""
        self._close_all(st)
        st.day, st.days = day, days
        st.last_bar, st.ms, st.v = -1, -1, 0
        st.extremes, st.turnover_oi = _NO_EXTREMES, _NO_TURNOVER

    def _open(self, st: _Instrument, bar: int, last: float) -> None:
        if st.cur >= 0:
            self._close_minute(st)
        days = st.days
        assert days is not None
        st.cur = st.last_bar = bar
        st.lo_ms, st.hi_ms = days.schedule.ms_from[bar], days.schedule.ms_to[bar]
        st.o = st.h = st.l = st.c = last
        st.v0, st.t0 = st.v, _unpack_pair(st.turnover_oi)[0]
        st.minute_deadline = days.bar_end[bar] + self.grace_ns
        st.deadline = min(st.deadline, st.minute_deadline)
        self._next_deadline = min(self._next_deadline, st.deadline)

    def _close_minute(self, st: _Instrument) -> None:
        """Emit the open 1-minute bar and fold it into every window; emit a window whose
        last minute this was."""
        days, bar = st.days, st.cur
        assert days is not None
        turnover, oi = _unpack_pair(st.turnover_oi)
        if self._minute_period >= 0:
            self._emit(st, self._minute_period, days.bar_start[bar], days.bar_end[bar],
                       st.o, st.h, st.l, st.c, st.v - st.v0, turnover - st.t0, oi)
        deadline = NEVER
        for w in st.windows:
            group = days.schedule.group_of[w.period][bar]
            if group != w.g:
                if w.g >= 0:
                    self._emit_window(st, w)
                w.g, w.o, w.h, w.l, w.v0, w.t0 = group, st.o, st.h, st.l, st.v0, st.t0
                w.deadline = days.group_end[w.period][group] + self.grace_ns
            else:
                if st.h > w.h:
                    w.h = st.h
                if st.l < w.l:
                    w.l = st.l
            w.c, w.v, w.t, w.oi = st.c, st.v, turnover, oi
            if bar == days.schedule.last_of_group[w.period][group]:
                self._emit_window(st, w)
            elif w.deadline < deadline:
                deadline = w.deadline
        st.cur, st.lo_ms, st.hi_ms, st.minute_deadline, st.deadline = -1, 0, 0, NEVER, deadline

    def _emit_window(self, st: _Instrument, w: _Window) -> None:
        assert st.days is not None
        self._emit(st, w.period, st.days.group_start[w.period][w.g],
                   st.days.group_end[w.period][w.g], w.o, w.h, w.l, w.c, w.v - w.v0,
                   w.t - w.t0, w.oi)
        w.g, w.deadline = -1, NEVER

    def _close_all(self, st: _Instrument) -> None:
        if st.cur >= 0:
            self._close_minute(st)
        for w in st.windows:
            if w.g >= 0:
                self._emit_window(st, w)
        st.deadline = NEVER

    def _expire(self, st: _Instrument, now_ns: int) -> None:
        """Close what the clock has passed; bars up to now - grace are closed for good."""
        if st.minute_deadline <= now_ns:
            self._close_minute(st)
        for w in st.windows:
            if w.deadline <= now_ns:
                self._emit_window(st, w)
        st.deadline = min([st.minute_deadline, *(w.deadline for w in st.windows)])
        if st.days is not None:
            passed = bisect.bisect_right(st.days.bar_end, now_ns - self.grace_ns) - 1
            st.last_bar = max(st.last_bar, passed)

    def _emit(self, st: _Instrument, period: int, start_ns: int, end_ns: int, o: float, h: float,
              low: float, c: float, volume: int, turnover: float, oi: float) -> None:
        BAR_STRUCT.pack_into(self._buffer, 0, 0, end_ns, _BAR, 0, st.day, st.index, 0, st.raw_id,
                             st.exchange, self._seconds[period], start_ns, o, h, low, c,
                             volume, turnover, oi)
        self.stats.bars[period] += 1
        self._on_bar(self._record)

