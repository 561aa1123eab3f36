"""K-line bars: periods, the session rules as precomputed tables, the tick-ordering rule.

The rules (DESIGN.md, "Conventions"), shared by the live builder (bars.py) and the batch path
(barbatch.py) through the tables and :func:`order_verdict` below:

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

Ticks that make no bar (``ignored``): those that do not count (``events.UNCOUNTED``, the rule
factors and strategies follow too: OUT_OF_SESSION, STALE, VOLUME_BACKWARDS), with an empty
LastPrice, or outside the sessions of their
trading day. Ticks that are refused, counted and never applied (see :func:`order_verdict`):
``late`` -- of an earlier trading day or an earlier bar than the instrument's previous
applied tick, with a cumulative volume below it, or (live only) for a bar the clock already
closed; ``duplicate`` -- same exchange time and cumulative volume as the previous applied
tick (it carries nothing new). A refused tick never changes a bar; what it traded is still
counted, since the next applied tick's cumulative fields include it.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field

import numpy as np

from hft.daemons.refdata import calendar
from hft.daemons.refdata.calendar import local_midnight_ns as local_midnight_ns  # re-exported
from hft.daemons.refdata.clock import DAY_MS as DAY_MS  # re-exported
from hft.daemons.refdata.clock import (
    DAY_NS,
    DAY_S,
    EVENING_START_NS,
    MINUTE_NS,
    MINUTES_PER_DAY,
    NIGHT_END_MINUTE,
    local_minute,
    tday_minute,
)
from hft.daemons.refdata.clock import MINUTE_MS as MINUTE_MS  # re-exported
from hft.daemons.refdata.sessions import SessionTemplate, day_only
from hft.daemons.runtime.events import UNCOUNTED
from hft.daemons.runtime.timers import NEVER as NEVER  # re-exported

SKIP_FLAGS = UNCOUNTED
"""``events.UNCOUNTED`` (the one rule for which ticks count) by the name bars.py and
barbatch.py first knew it by."""


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
    group_start_ns: tuple[np.ndarray, ...]
    group_end_ns: tuple[np.ndarray, ...]
    bar_start: list[int] = field(repr=False)
    bar_end: list[int] = field(repr=False)
    """Each bar's end (its label + 1 minute), ns: sorted, for the live clock."""
    group_start: tuple[list[int], ...] = field(repr=False)
    group_end: tuple[list[int], ...] = field(repr=False)


def place(schedule: Schedule, trading_day: int, periods: Sequence[Period]) -> DaySchedule:
    """Minutes of the trading-day clock -> times: night minutes count from 18:00 of the
    previous trading day (Friday evening for a Monday), day minutes from 18:00 of the
    calendar day before the trading day."""
    night_base = local_midnight_ns(calendar.prev_trading_day(trading_day)) + EVENING_START_NS
    day_base = local_midnight_ns(trading_day) + EVENING_START_NS - DAY_NS
    minutes = schedule.bar_minutes.astype(np.int64)
    starts = np.where(minutes < NIGHT_END_MINUTE, night_base, day_base) + minutes * MINUTE_NS
    ends = starts + MINUTE_NS
    group_starts, group_ends = [], []
    for period, first, last in zip(periods, schedule.group_first, schedule.group_last, strict=True):
        group_starts.append(starts[first] if period.minutes else
                            np.array([local_midnight_ns(trading_day)], dtype=np.int64))
        group_ends.append(ends[last])
    return DaySchedule(trading_day, schedule, tuple(group_starts), tuple(group_ends),
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


def joined_late(joined_ns: int, days: DaySchedule, bar: int) -> bool:
    """Whether an instrument's first tick of a trading day, in ``bar``, must serve as its
    volume baseline: the builder joined the stream (its first tick, at ``joined_ns``) after
    the day's first bar began, and this tick is not in that bar. What traded before it is then
    unknown, so it contributes only its LastPrice; otherwise the day counts from zero (the
    auction volume in the first bar; an illiquid contract's first trade in its own bar).
    Only a live builder asks: the batch path takes its input as the whole history."""
    return bar > 0 and joined_ns > days.bar_start[0]


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
