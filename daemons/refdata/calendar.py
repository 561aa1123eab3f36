"""The Chinese futures trading calendar: trading days, night sessions, ActionDay.

Holidays come from the maintained ``chinese-calendar`` package (the State Council's
schedule, including weekends folded into long holidays). Exchanges trade on weekdays that
are not public holidays (make-up working Saturdays are not trading days), and hold no night
session on the evening before a holiday other than an ordinary weekend.

Years the package has no data for fall back to "every weekday trades", with a warning, so a
stale install degrades instead of stopping the feed; update chinese-calendar each December.
"""

from __future__ import annotations

import datetime as dt
import functools
import logging
import warnings

import chinese_calendar

from hft.daemons.refdata.clock import CHINA_UTC_OFFSET_NS, DAY_NS, MORNING_END_MS, NIGHT_START_MS

log = logging.getLogger(__name__)

Day = int
"""A calendar day as the int YYYYMMDD used in records."""


def to_date(day: Day) -> dt.date:
    return dt.date(day // 10000, day // 100 % 100, day % 100)


def to_day(date: dt.date) -> Day:
    return date.year * 10000 + date.month * 100 + date.day


def add_days(day: Day, days: int) -> Day:
    return to_day(to_date(day) + dt.timedelta(days=days))


_EPOCH = dt.date(1970, 1, 1)


def local_midnight_ns(day: Day) -> int:
    """00:00 China time of calendar day ``day``, ns since the epoch."""
    return (to_date(day) - _EPOCH).days * DAY_NS - CHINA_UTC_OFFSET_NS


@functools.lru_cache(maxsize=4096)
def is_trading_day(day: Day) -> bool:
    date = to_date(day)
    if date.weekday() >= 5:
        return False
    try:
        return bool(chinese_calendar.is_workday(date))
    except NotImplementedError:
        warnings.warn(f"chinese-calendar has no holiday data for {date.year}; treating every "
                      "weekday as a trading day (upgrade chinese-calendar)", stacklevel=2)
        return True


def next_trading_day(day: Day) -> Day:
    """The first trading day strictly after ``day``."""
    day = add_days(day, 1)
    while not is_trading_day(day):
        day = add_days(day, 1)
    return day


def prev_trading_day(day: Day) -> Day:
    """The last trading day strictly before ``day``."""
    day = add_days(day, -1)
    while not is_trading_day(day):
        day = add_days(day, -1)
    return day


@functools.lru_cache(maxsize=4096)
def has_night_session(trading_day: Day) -> bool:
    """Whether trading day ``trading_day`` opens with a night session the evening before:
    only when nothing but an ordinary weekend lies between it and the previous trading day."""
    if not is_trading_day(trading_day):
        return False
    day = add_days(prev_trading_day(trading_day), 1)
    while day != trading_day:
        if _is_public_holiday(day):
            return False
        day = add_days(day, 1)
    return True


def _is_public_holiday(day: Day) -> bool:
    try:
        on_holiday, name = chinese_calendar.get_holiday_detail(to_date(day))
    except NotImplementedError:
        return False
    return bool(on_holiday and name is not None)


def action_day(trading_day: Day, update_ms: int) -> Day:
    """The calendar day an exchange clock time ``update_ms`` of ``trading_day`` happened on.

    Evening ticks (>= 18:00) happened on the previous trading day (a Monday's night session is
    Friday evening); after-midnight ticks (< 06:00) on the day after that; day-session ticks
    on the trading day itself."""
    if update_ms >= NIGHT_START_MS:
        return prev_trading_day(trading_day)
    if update_ms < MORNING_END_MS:
        return add_days(prev_trading_day(trading_day), 1)
    return trading_day


def trading_day_of(action: Day, update_ms: int) -> Day:
    """The trading day a tick at calendar day ``action`` and clock ``update_ms`` belongs to
    (the inverse of :func:`action_day`, for feeds whose TradingDay is wrong at night)."""
    if update_ms >= NIGHT_START_MS:
        return next_trading_day(action)
    if update_ms < MORNING_END_MS:
        return next_trading_day(add_days(action, -1))
    return action
