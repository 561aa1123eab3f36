"""The exchange clock's one home: UTC+8, local midnight and the trading-day clock."""

from __future__ import annotations

import datetime as dt

from hft.daemons.refdata import calendar
from hft.daemons.refdata.clock import (
    CHINA,
    NIGHT_END_MINUTE,
    is_night,
    local_minute,
    tday_minute,
)


def test_the_trading_day_clock_starts_at_six_in_the_evening() -> None:
    spelled = {"18:00": 0, "21:00": 180, "00:00": 360, "02:30": 510, "06:00": 720, "09:00": 900,
               "15:00": 1260, "17:59": 1439}
    for text, minute in spelled.items():
        hours, minutes = map(int, text.split(":"))
        assert tday_minute(hours * 60 + minutes) == minute, text
        assert local_minute(minute) == hours * 60 + minutes, text
    assert NIGHT_END_MINUTE == 720


def test_night_time_runs_from_six_in_the_evening_to_six_in_the_morning() -> None:
    hour = 3_600_000
    assert [is_night(ms) for ms in (0, 6 * hour - 1, 6 * hour, 18 * hour - 1, 18 * hour)] == [
        True, True, False, False, True]


def test_local_midnight_is_china_time() -> None:
    expected = dt.datetime(2021, 1, 4, tzinfo=dt.timezone(dt.timedelta(hours=8)))
    assert calendar.local_midnight_ns(20210104) == int(expected.timestamp()) * 10**9
    assert dt.datetime.fromtimestamp(calendar.local_midnight_ns(20210104) / 1e9, CHINA) == expected
