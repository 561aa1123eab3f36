"""K-line bars: the session rules as precomputed tables, and the live builder (tick by tick).

The rules (DESIGN.md, "Conventions"), which the batch path (barbatch.py) shares through the
tables and :func:`order_verdict` below:

- a bar is labelled by its start on the local clock; 1-minute bars exist only for minutes
  inside a session; the call-auction minute folds into the first bar of its session and a
  section's end minute (11:30:00.x) into that section's last bar (``SessionTemplate``);
- N-minute and hour bars are windows aligned on the local clock (N divides a day) and clipped
  to each section: a window never spans a break (10:15-10:30) or two sections, and a clipped
  bar is labelled by its first minute; a daily bar is one trading day, night included,
  labelled by local midnight of its TradingDay; ``period_s`` stays the nominal length;
- a trading day without a night session (calendar) has no night bars, and its day session
  opens with the call auction in the minute before it (08:59 for the SHFE/DCE/CZCE templates);
- volume and turnover are deltas of the cumulative fields within the trading day, from zero;
  a bar's volume is its last cumulative volume minus the one before its first tick, so the
  same two floats are subtracted on both paths and bars of any period add up exactly;
- OHLC come from LastPrice; a rise of HighestPrice (fall of LowestPrice) between two ticks
  of the same trading day is an extreme that traded in between: it goes into the later tick's
  bar. The first tick of a trading day contributes only its LastPrice;
- empty minutes make no bar; ``ts_ns`` of a BAR record is the bar's end (not the moment it
  was closed), so live and batch records are identical byte for byte.

Ticks that make no bar (``ignored``): flagged OUT_OF_SESSION, STALE (a login replay of an old
snapshot) or VOLUME_BACKWARDS, with an empty LastPrice, or outside the sessions of their
trading day. Ticks that are refused, counted and never applied (see :func:`order_verdict`):
``late`` -- of an earlier trading day or an earlier bar than the instrument's previous
applied tick, with a cumulative volume below it, or (live only) for a bar the clock already
closed; ``duplicate`` -- same exchange time and cumulative volume as the previous applied
tick (it carries nothing new). A refused tick never changes a bar; what it traded is still
counted, since the next applied tick's cumulative fields include it.

Live bars close on the clock: ``on_clock(now_ns)`` (TIMER events carry the data's clock)
closes every bar whose end plus ``grace_ns`` has passed, so the 11:29 bar is out at
11:30:00 + grace without waiting for the 13:00 tick; a tick of a later bar closes the
current one at once.
"""

from __future__ import annotations

import bisect
import datetime as dt
import re
import struct
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field

import numpy as np

from hft.daemons.md.normalize import CHINA_UTC_OFFSET_NS
from hft.daemons.refdata import calendar
from hft.daemons.refdata.instruments import ProductTable
from hft.daemons.refdata.sessions import (
    MINUTES_PER_DAY,
    NO_BAR,
    SessionTemplate,
    day_only,
    local_minute,
    tday_minute,
)
from hft.daemons.runtime.events import (
    HEADER_DTYPE,
    TICK_DTYPE,
    EventType,
    TickFlag,
    empty,
    record_struct,
)

MINUTE_MS = 60_000
DAY_MS = MINUTES_PER_DAY * MINUTE_MS
MINUTE_NS = MINUTE_MS * 10**6
DAY_S = 86_400
NEVER = 2**63 - 1
SKIP_FLAGS = int(TickFlag.OUT_OF_SESSION | TickFlag.STALE | TickFlag.VOLUME_BACKWARDS)
"""Tick flags that keep a tick out of every bar."""
_NIGHT_END = 720  # trading-day minute of 06:00: night minutes are below it
_EPOCH = dt.date(1970, 1, 1)
_BAR = int(EventType.BAR)
BAR_STRUCT = record_struct(EventType.BAR)


# --- periods ----------------------------------------------------------------------------------

@dataclass(frozen=True)
class Period:
    """A bar length: ``minutes`` > 0 for clock windows, 0 for one trading day."""

    name: str
    minutes: int

    @property
    def seconds(self) -> int:
        return self.minutes * 60 if self.minutes else DAY_S


_PERIOD = re.compile(r"^([1-9]\d*)([mhd])$")


def parse_period(text: str) -> Period:
    """'1m', '5m', '1h', '1d' ... -> Period; ValueError says what is accepted."""
    match = _PERIOD.match(text.strip())
    if match is None:
        raise ValueError(f"bad period {text!r}: expected N followed by m (minutes), h (hours) "
                         "or d (days), e.g. 1m, 5m, 15m, 30m, 1h, 1d")
    count, unit = int(match.group(1)), match.group(2)
    if unit == "d":
        if count != 1:
            raise ValueError(f"bad period {text!r}: a daily bar is one trading day; only 1d")
        return Period("1d", 0)
    minutes = count * 60 if unit == "h" else count
    if MINUTES_PER_DAY % minutes:
        raise ValueError(f"bad period {text!r}: clock-aligned windows need a length that "
                         "divides a day (1440 minutes), e.g. 1m, 5m, 15m, 30m, 1h, 2h, 4h")
    return Period(f"{minutes // 60}h" if minutes % 60 == 0 else f"{minutes}m", minutes)


def parse_periods(texts: Iterable[str]) -> tuple[Period, ...]:
    """Distinct periods in the given order; ValueError for a bad, repeated or empty list."""
    periods = tuple(parse_period(text) for text in texts)
    if not periods:
        raise ValueError("no bar period given; e.g. ['1m', '5m', '1d']")
    names = [period.name for period in periods]
    repeated = sorted({name for name in names if names.count(name) > 1})
    if repeated:
        raise ValueError(f"bar period(s) {repeated} given more than once")
    return periods


# --- tables -----------------------------------------------------------------------------------

@dataclass(frozen=True)
class Schedule:
    """One session layout (a template with or without its night) and every period's windows,
    computed once: which 1-minute bar each local minute feeds, which window each bar is in.
    Arrays for the batch path, the same as lists (cheaper to index from Python) for the live
    one."""

    name: str
    bar_of_local: np.ndarray
    """Local minute of the day (update_ms // 60000) -> 1-minute bar index, or NO_BAR."""
    bar_minutes: np.ndarray
    """Trading-day minute (sessions.py clock) of each bar's label."""
    groups: tuple[np.ndarray, ...]
    """Per period: the window index of each 1-minute bar."""
    group_first: tuple[np.ndarray, ...]
    group_last: tuple[np.ndarray, ...]
    bar_of: list[int] = field(repr=False)
    group_of: tuple[list[int], ...] = field(repr=False)
    last_of_group: tuple[list[int], ...] = field(repr=False)
    ms_from: list[int] = field(repr=False)
    ms_to: list[int] = field(repr=False)
    """Per bar: the local clock range (ms since midnight) of the run of minutes around its
    label that feed it, auction or end minute included: the live path's one-compare test."""


def make_schedule(template: SessionTemplate, periods: Sequence[Period]) -> Schedule:
    minutes = template.bar_starts.astype(np.int32)
    section = np.zeros(len(minutes), dtype=np.int64)
    for number, sect in enumerate(template.sections):
        section[(minutes >= sect.start) & (minutes < sect.end)] = number
    local = np.array([local_minute(int(m)) for m in minutes], dtype=np.int64)
    groups, firsts, lasts = [], [], []
    for period in periods:
        if period.minutes:
            key = section * MINUTES_PER_DAY + local // period.minutes
            group = np.concatenate(([0], np.cumsum(key[1:] != key[:-1]))).astype(np.int32)
        else:
            group = np.zeros(len(minutes), dtype=np.int32)
        edges = np.flatnonzero(np.diff(group)) + 1
        groups.append(group)
        firsts.append(np.concatenate(([0], edges)).astype(np.int32))
        lasts.append(np.concatenate((edges - 1, [len(group) - 1])).astype(np.int32))
    by_local = template.bar_of_minute[[tday_minute(m) for m in range(MINUTES_PER_DAY)]].tolist()
    ms_from, ms_to = [], []
    for bar, first in enumerate(local.tolist()):
        last = first
        while first > 0 and by_local[first - 1] == bar:
            first -= 1
        while last + 1 < MINUTES_PER_DAY and by_local[last + 1] == bar:
            last += 1
        ms_from.append(first * MINUTE_MS)
        ms_to.append((last + 1) * MINUTE_MS)
    return Schedule(template.name, np.array(by_local, dtype=np.int32), minutes, tuple(groups),
                    tuple(firsts), tuple(lasts), by_local, tuple(g.tolist() for g in groups),
                    tuple(g.tolist() for g in lasts), ms_from, ms_to)


@dataclass(frozen=True)
class DaySchedule:
    """A schedule placed on one trading day: bar and window times as ns since the epoch."""

    trading_day: int
    schedule: Schedule
    bar_start_ns: np.ndarray
    group_start_ns: tuple[np.ndarray, ...]
    group_end_ns: tuple[np.ndarray, ...]
    bar_start: list[int] = field(repr=False)
    bar_end: list[int] = field(repr=False)
    """Each bar's end (its label + 1 minute), ns: sorted, for the live clock."""
    group_start: tuple[list[int], ...] = field(repr=False)
    group_end: tuple[list[int], ...] = field(repr=False)


def local_midnight_ns(day: int) -> int:
    """00:00 China time of calendar day ``day`` (YYYYMMDD), ns since the epoch."""
    return (calendar.to_date(day) - _EPOCH).days * DAY_S * 10**9 - CHINA_UTC_OFFSET_NS


def place(schedule: Schedule, trading_day: int, periods: Sequence[Period]) -> DaySchedule:
    """Minutes of the trading-day clock -> times: night minutes count from 18:00 of the
    previous trading day (Friday evening for a Monday), day minutes from 18:00 of the
    calendar day before the trading day."""
    night_base = local_midnight_ns(calendar.prev_trading_day(trading_day)) + 18 * 60 * MINUTE_NS
    day_base = local_midnight_ns(trading_day) - 6 * 60 * MINUTE_NS
    minutes = schedule.bar_minutes.astype(np.int64)
    starts = np.where(minutes < _NIGHT_END, night_base, day_base) + minutes * MINUTE_NS
    ends = starts + MINUTE_NS
    group_starts, group_ends = [], []
    for period, first, last in zip(periods, schedule.group_first, schedule.group_last, strict=True):
        group_starts.append(starts[first] if period.minutes else
                            np.array([local_midnight_ns(trading_day)], dtype=np.int64))
        group_ends.append(ends[last])
    return DaySchedule(trading_day, schedule, starts, tuple(group_starts), tuple(group_ends),
                       starts.tolist(), ends.tolist(), tuple(g.tolist() for g in group_starts),
                       tuple(g.tolist() for g in group_ends))


class SessionBook:
    """Schedules per template, and the latest day schedules (a daemon runs for months: old
    days are dropped, and rebuilt in microseconds should a late tick need one)."""

    KEEP_DAYS = 64

    def __init__(self, periods: Sequence[Period]) -> None:
        self.periods = tuple(periods)
        self._schedules: dict[tuple[str, bool], Schedule] = {}
        self._days: dict[tuple[str, int], DaySchedule] = {}

    def day(self, template: SessionTemplate, trading_day: int) -> DaySchedule:
        placed = self._days.get((template.name, trading_day))
        if placed is None:
            try:
                calendar.to_date(trading_day)
            except ValueError:
                raise ValueError(f"trading day {trading_day} is not a YYYYMMDD date") from None
            night = template.has_night and calendar.has_night_session(trading_day)
            schedule = self._schedules.get((template.name, night))
            if schedule is None:
                layout = template if night or not template.has_night else day_only(template)
                schedule = make_schedule(layout, self.periods)
                self._schedules[(template.name, night)] = schedule
            placed = place(schedule, trading_day, self.periods)
            if len(self._days) >= self.KEEP_DAYS:
                del self._days[next(iter(self._days))]
            self._days[(template.name, trading_day)] = placed
        return placed


APPLY, LATE, DUPLICATE = 0, 1, 2


def order_verdict(prev_day: int, prev_bar: int, prev_ms: int, prev_volume: int,
                  day: int, bar: int, ms: int, volume: int) -> int:
    """Whether an in-session tick is applied, given the instrument's previous applied one:
    LATE if it is of an earlier trading day or bar, or its cumulative volume went down;
    DUPLICATE if it has the same time and volume (nothing traded, nothing new)."""
    if day != prev_day:
        return APPLY if day > prev_day else LATE
    if bar < prev_bar or volume < prev_volume:
        return LATE
    return DUPLICATE if volume == prev_volume and ms == prev_ms else APPLY


def fields_struct(dtype: np.dtype[np.void], names: Sequence[str], start: int = 0) -> struct.Struct:
    """A Struct that reads just ``names`` (in this order, which must follow the layout) out
    of a record in one ``unpack_from``: far cheaper than numpy field access per field.
    ``start``: the byte the Struct starts at (to append it to another one)."""
    fields = dtype.fields
    assert fields is not None
    parts, position = ["<"], start
    for name in names:
        field_dtype, offset = fields[name][:2]
        assert offset >= position, f"{name} is out of layout order"
        kind = f"{field_dtype.kind}{field_dtype.itemsize}"
        parts.append("x" * (offset - position) + _STRUCT_CODES.get(kind, f"{field_dtype.itemsize}s"))
        position = offset + field_dtype.itemsize
    return struct.Struct("".join(parts))


_STRUCT_CODES = {"u2": "H", "i4": "i", "i8": "q", "f8": "d"}


# --- the live builder -------------------------------------------------------------------------

_TICK_FIELDS = ("instrument", "update_ms", "last_price", "highest_price", "lowest_price", "volume",
                "turnover", "open_interest")
_unpack_tick = struct.Struct("<16xQ" + fields_struct(TICK_DTYPE, _TICK_FIELDS, 24).format[1:]).unpack_from
"""(type | flags << 16 | trading_day << 32, *_TICK_FIELDS) of a tick: type, flags and
trading_day are adjacent header fields, read as one word that the fast path compares with
the previous applied tick's (same day, same flags, none of them SKIP_FLAGS) in one go."""
assert [HEADER_DTYPE.fields[n][1] for n in ("type", "flags", "trading_day")] == [16, 18, 20]  # type: ignore[index]
_NAN = float("nan")


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

    __slots__ = ("c", "cur", "day", "days", "deadline", "exchange", "h", "hi_ms", "index", "key",
                 "l", "last_bar", "lo_ms", "minute_deadline", "ms", "o", "oi", "ph", "pl", "raw_id",
                 "t", "t0", "template", "v", "v0", "windows")

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
        self.o = self.h = self.l = self.c = self.t = self.t0 = self.oi = 0.0
        self.ph = self.pl = _NAN  # previous applied tick's HighestPrice, LowestPrice
        self.v = self.v0 = 0
        self.ms = -1


BarSink = Callable[[np.void], object]
"""Receives each closed bar as a BAR record, valid only during the call (the buffer is reused)."""


class BarBuilder:
    """Live bars of every instrument it sees, for the given periods (see the module doc)."""

    def __init__(self, products: ProductTable, periods: Sequence[Period], on_bar: BarSink, *,
                 grace_ns: int = 1_000_000_000) -> None:
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
        key, raw_id, ms, last, high, low, volume, turnover, oi = _unpack_tick(
            record)  # type: ignore[arg-type]  # numpy.void has the buffer protocol; its stubs omit it
        try:
            st = self._states[raw_id]
        except KeyError:
            self._tick(record, None, key, raw_id, ms, last, high, low, volume, turnover, oi)
            return
        if (key != st.key or last != last or not st.lo_ms <= ms < st.hi_ms
                or (volume <= st.v and (volume < st.v or ms == st.ms))):
            self._tick(record, st, key, raw_id, ms, last, high, low, volume, turnover, oi)
            return
        if last > st.h:
            st.h = last
        elif last < st.l:
            st.l = last
        if high != st.ph:
            if high > st.ph and high > st.h:
                st.h = high
            st.ph = high
        if low != st.pl:
            if low < st.pl and low < st.l:
                st.l = low
            st.pl = low
        st.c = last
        st.v = volume
        st.t = turnover
        st.oi = oi
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
              last: float, high: float, low: float, volume: int, turnover: float, oi: float) -> None:
        flags, day = key >> 16 & 0xFFFF, key >> 32
        if st is None:
            st = self._register(record, raw_id)
            if st is None:
                self.stats.unknown += 1
                return
        days = st.days if day == st.day and st.days is not None else self.book.day(st.template, day)
        bar = days.schedule.bar_of[ms // MINUTE_MS] if 0 <= ms < DAY_MS else NO_BAR
        if flags & SKIP_FLAGS or last != last or bar == NO_BAR:
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
        if bar != st.cur:
            self._open(st, bar, last)
        self._apply(st, key, ms, last, high, low, volume, turnover, oi)

    def _register(self, record: np.void, raw_id: bytes) -> _Instrument | None:
        if raw_id in self._unknown:
            return None
        try:
            self.add_instrument(raw_id.rstrip(b"\0").decode("ascii"), int(record["instrument_index"]))
        except (KeyError, ValueError, UnicodeDecodeError):
            self._unknown.add(raw_id)
            return None
        return self._states[raw_id]

    @staticmethod
    def _apply(st: _Instrument, key: int, ms: int, last: float, high: float, low: float, volume: int,
               turnover: float, oi: float) -> None:
        """The rules for one applied tick (inlined in on_tick for the common case)."""
        st.h, st.l = max(st.h, last), min(st.l, last)
        if high > st.ph and high > st.h:
            st.h = high
        if low < st.pl and low < st.l:
            st.l = low
        st.ph, st.pl = high, low
        st.c, st.v, st.t, st.oi, st.ms, st.key = last, volume, turnover, oi, ms, key

    def _roll(self, st: _Instrument, day: int, days: DaySchedule) -> None:
        """A new trading day: close what the old one left open, start from zero."""
        self._close_all(st)
        st.day, st.days = day, days
        st.last_bar, st.ms, st.v, st.t = -1, -1, 0, 0.0
        st.ph = st.pl = _NAN

    def _open(self, st: _Instrument, bar: int, last: float) -> None:
        if st.cur >= 0:
            self._close_minute(st)
        days = st.days
        assert days is not None
        st.cur = st.last_bar = bar
        st.lo_ms, st.hi_ms = days.schedule.ms_from[bar], days.schedule.ms_to[bar]
        st.o = st.h = st.l = st.c = last
        st.v0, st.t0 = st.v, st.t
        st.minute_deadline = days.bar_end[bar] + self.grace_ns
        st.deadline = min(st.deadline, st.minute_deadline)
        self._next_deadline = min(self._next_deadline, st.deadline)

    def _close_minute(self, st: _Instrument) -> None:
        """Emit the open 1-minute bar and fold it into every window; emit a window whose
        last minute this was."""
        days, bar = st.days, st.cur
        assert days is not None
        if self._minute_period >= 0:
            self._emit(st, self._minute_period, days.bar_start[bar], days.bar_end[bar],
                       st.o, st.h, st.l, st.c, st.v - st.v0, st.t - st.t0, st.oi)
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
            w.c, w.v, w.t, w.oi = st.c, st.v, st.t, st.oi
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

