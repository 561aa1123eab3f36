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
"""(header_word, instrument, update_ms, last_price, extremes, volume, turnover_oi) of a tick,
in one call. ``header_word`` is the header's type, flags and trading_day, adjacent, read as
one 8-byte word: the fast path compares it with the previous applied tick's (same day, same
flags, none of them UNCOUNTED) in one go, and the slow path names its parts
(``_flags_and_day``): one word costs less per tick than two fields (measured, ~5%).
``extremes`` (HighestPrice, LowestPrice) and ``turnover_oi`` (Turnover, OpenInterest) stay
raw bytes: the fast path only compares the first, and only a closing bar reads the second,
so they are decoded (``_unpack_pair``) when needed."""
_unpack_pair = struct.Struct("<dd").unpack
assert [HEADER_DTYPE.fields[n][1] for n in ("type", "flags", "trading_day")] == [16, 18, 20]  # type: ignore[index]
_FLAGS_SHIFT, _DAY_SHIFT = 16, 32  # bit offsets of flags and trading_day in a header word


def _flags_and_day(header_word: int) -> tuple[int, int]:
    return header_word >> _FLAGS_SHIFT & 0xFFFF, header_word >> _DAY_SHIFT
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


class _OpenBar:
    """An open bar of any period: its prices so far, the cumulative volume (and, for a
    window, turnover) at its latest tick and just before its first one, and when the clock
    closes it (end + grace). The open 1-minute bar lives in its instrument's state (whose
    volume is the latest applied tick's); each longer period's in a :class:`_Window`."""

    __slots__ = ("close", "due_ns", "high", "low", "open", "turnover_before", "volume",
                 "volume_before")

    def __init__(self) -> None:
        self.open = self.high = self.low = self.close = self.turnover_before = 0.0
        self.volume = self.volume_before = 0
        self.due_ns = NEVER


class _Window(_OpenBar):
    """An open N-minute / hour / daily bar, built from the 1-minute bars as they close (each
    tick belongs to exactly one 1-minute bar, so this equals building it from the ticks)."""

    __slots__ = ("group", "open_interest", "period", "turnover")

    def __init__(self, period: int) -> None:
        super().__init__()
        self.period = period
        self.group = -1  # window index in the day (bartables' groups), -1 when none is open
        self.turnover = self.open_interest = 0.0


class _Instrument(_OpenBar):
    """Per-instrument state: the day's tables, the open 1-minute bar (the inherited fields),
    the open windows, the previous applied tick's fields the rules compare against."""

    __slots__ = ("bar", "bar_from_ms", "bar_to_ms", "day_schedule", "exchange", "extremes",
                 "header_word", "index", "last_bar", "next_due_ns", "raw_id", "template",
                 "trading_day", "turnover_oi", "update_ms", "windows")

    def __init__(self, raw_id: bytes, index: int, exchange: bytes, template: SessionTemplate,
                 windows: list[_Window]) -> None:
        super().__init__()
        self.raw_id, self.index, self.exchange, self.template = raw_id, index, exchange, template
        self.windows = windows
        self.trading_day = 0
        self.header_word = -1  # of the previous applied tick (see _unpack_tick)
        self.day_schedule: DaySchedule | None = None
        self.bar = -1  # the open 1-minute bar's index in the day, -1 when none
        self.bar_from_ms = self.bar_to_ms = 0  # local clock range feeding it; empty when none
        self.last_bar = -1  # latest bar opened or closed by the clock this day
        self.next_due_ns = NEVER  # the earliest due_ns of its open bars
        self.update_ms = -1
        self.extremes = _NO_EXTREMES  # the previous applied tick's, raw (see _unpack_tick)
        self.turnover_oi = _NO_TURNOVER


def _new_extremes(st: _Instrument, extremes: bytes) -> None:
    """The tick's HighestPrice or LowestPrice moved since the previous applied tick: a trade
    between the two snapshots set a new day high (low), which belongs to this tick's bar."""
    high, low = _unpack_pair(extremes)
    previous_high, previous_low = _unpack_pair(st.extremes)
    if high > previous_high and high > st.high:
        st.high = high
    if low < previous_low and low < st.low:
        st.low = low
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
        self._next_due_ns = NEVER
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
        header_word, raw_id, ms, last, extremes, volume, turnover_oi = _unpack_tick(
            record)  # type: ignore[arg-type]  # numpy.void has the buffer protocol; its stubs omit it
        try:
            st = self._states[raw_id]
        except KeyError:
            self._tick(record, None, header_word, raw_id, ms, last, extremes, volume, turnover_oi)
            return
        if (header_word != st.header_word or last != last or ms < st.bar_from_ms
                or ms >= st.bar_to_ms
                or (volume <= st.volume and (volume < st.volume or ms == st.update_ms))):
            self._tick(record, st, header_word, raw_id, ms, last, extremes, volume, turnover_oi)
            return
        if last > st.high:
            st.high = last
        elif last < st.low:
            st.low = last
        if extremes != st.extremes:
            _new_extremes(st, extremes)
        st.close = last
        st.volume = volume
        st.turnover_oi = turnover_oi
        st.update_ms = ms

    def on_clock(self, now_ns: int) -> None:
        """Close every bar whose end + grace is at or before ``now_ns`` (the data's clock)."""
        if now_ns < self._next_due_ns:
            return
        following = NEVER
        for st in self._states.values():
            if st.next_due_ns <= now_ns:
                self._expire(st, now_ns)
            following = min(following, st.next_due_ns)
        self._next_due_ns = following

    def flush(self) -> None:
        """Close every open bar now (the end of a backtest)."""
        self.on_clock(NEVER - 1)

    # --- the slow path: new bar, new day, refusals ------------------------------------------

    def _tick(self, record: np.void, st: _Instrument | None, header_word: int, raw_id: bytes,
              ms: int, last: float, extremes: bytes, volume: int, turnover_oi: bytes) -> None:
        flags, day = _flags_and_day(header_word)
        if self._joined_ns == NEVER:
            self._joined_ns = int(record["exchange_ts_ns"])
        if st is None:
            st = self._register(record, raw_id)
            if st is None:
                self.stats.unknown += 1
                return
        days = (st.day_schedule if day == st.trading_day and st.day_schedule is not None
                else self.book.day(st.template, day))
        bar = days.schedule.bar_of[ms // MINUTE_MS] if 0 <= ms < DAY_MS else NO_BAR
        if flags & UNCOUNTED or last != last or bar == NO_BAR:
            self.stats.ignored += 1
            return
        verdict = order_verdict(st.trading_day, st.last_bar, st.update_ms, st.volume, day, bar,
                                ms, volume)
        if verdict == APPLY and day == st.trading_day and bar == st.last_bar != st.bar:
            verdict = LATE  # its bar was closed by the clock
        if verdict != APPLY:
            if verdict == LATE:
                self.stats.late += 1
            else:
                self.stats.duplicate += 1
            return
        if day != st.trading_day:
            self._roll(st, day, days)
            if joined_late(self._joined_ns, days, bar):
                st.volume, st.turnover_oi = volume, turnover_oi  # the baseline: only its price counts
        if bar != st.bar:
            self._open(st, bar, last)
        st.high, st.low = max(st.high, last), min(st.low, last)
        if extremes != st.extremes:
            _new_extremes(st, extremes)
        st.close, st.volume, st.turnover_oi, st.update_ms = last, volume, turnover_oi, ms
        st.header_word = header_word

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
        st.trading_day, st.day_schedule = day, days
        st.last_bar, st.update_ms, st.volume = -1, -1, 0
        st.extremes, st.turnover_oi = _NO_EXTREMES, _NO_TURNOVER

    def _open(self, st: _Instrument, bar: int, last: float) -> None:
        if st.bar >= 0:
            self._close_minute(st)
        days = st.day_schedule
        assert days is not None
        st.bar = st.last_bar = bar
        st.bar_from_ms, st.bar_to_ms = days.schedule.ms_from[bar], days.schedule.ms_to[bar]
        st.open = st.high = st.low = st.close = last
        st.volume_before, st.turnover_before = st.volume, _unpack_pair(st.turnover_oi)[0]
        st.due_ns = days.bar_end[bar] + self.grace_ns
        st.next_due_ns = min(st.next_due_ns, st.due_ns)
        self._next_due_ns = min(self._next_due_ns, st.next_due_ns)

    def _close_minute(self, st: _Instrument) -> None:
        """Emit the open 1-minute bar and fold it into every window; emit a window whose
        last minute this was."""
        days, bar = st.day_schedule, st.bar
        assert days is not None
        turnover, open_interest = _unpack_pair(st.turnover_oi)
        if self._minute_period >= 0:
            self._emit(st, self._minute_period, days.bar_start[bar], days.bar_end[bar], st,
                       turnover, open_interest)
        next_due_ns = NEVER
        for window in st.windows:
            group = days.schedule.group_of[window.period][bar]
            if group != window.group:
                if window.group >= 0:
                    self._emit_window(st, window)
                window.group, window.open, window.high, window.low = group, st.open, st.high, st.low
                window.volume_before, window.turnover_before = st.volume_before, st.turnover_before
                window.due_ns = days.group_end[window.period][group] + self.grace_ns
            else:
                if st.high > window.high:
                    window.high = st.high
                if st.low < window.low:
                    window.low = st.low
            window.close, window.volume, window.turnover = st.close, st.volume, turnover
            window.open_interest = open_interest
            if bar == days.schedule.last_of_group[window.period][group]:
                self._emit_window(st, window)
            elif window.due_ns < next_due_ns:
                next_due_ns = window.due_ns
        st.bar, st.bar_from_ms, st.bar_to_ms, st.due_ns = -1, 0, 0, NEVER
        st.next_due_ns = next_due_ns

    def _emit_window(self, st: _Instrument, window: _Window) -> None:
        assert st.day_schedule is not None
        self._emit(st, window.period, st.day_schedule.group_start[window.period][window.group],
                   st.day_schedule.group_end[window.period][window.group], window,
                   window.turnover, window.open_interest)
        window.group, window.due_ns = -1, NEVER

    def _close_all(self, st: _Instrument) -> None:
        if st.bar >= 0:
            self._close_minute(st)
        for window in st.windows:
            if window.group >= 0:
                self._emit_window(st, window)
        st.next_due_ns = NEVER

    def _expire(self, st: _Instrument, now_ns: int) -> None:
        """Close what the clock has passed; bars up to now - grace are closed for good."""
        if st.due_ns <= now_ns:
            self._close_minute(st)
        for window in st.windows:
            if window.due_ns <= now_ns:
                self._emit_window(st, window)
        st.next_due_ns = min([st.due_ns, *(window.due_ns for window in st.windows)])
        if st.day_schedule is not None:
            passed = bisect.bisect_right(st.day_schedule.bar_end, now_ns - self.grace_ns) - 1
            st.last_bar = max(st.last_bar, passed)

    def _emit(self, st: _Instrument, period: int, start_ns: int, end_ns: int, bar: _OpenBar,
              turnover: float, open_interest: float) -> None:
        """Publish ``bar`` (of ``period``) as a BAR record; its turnover and open interest
        are the cumulative ones at its latest tick."""
        BAR_STRUCT.pack_into(self._buffer, 0, 0, end_ns, _BAR, 0, st.trading_day, st.index, 0,
                             st.raw_id, st.exchange, self._seconds[period], start_ns, bar.open,
                             bar.high, bar.low, bar.close, bar.volume - bar.volume_before,
                             turnover - bar.turnover_before, open_interest)
        self.stats.bars[period] += 1
        self._on_bar(self._record)
