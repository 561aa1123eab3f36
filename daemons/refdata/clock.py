"""Exchange time of day: the China clock (UTC+8) and the trading-day clock, named once.

Chinese futures exchanges stamp ticks in China local time, UTC+8 all year. A trading day
starts at 18:00 of the evening before (its night session) and ends with its day session; the
*trading-day clock* counts minutes from that 18:00, so a trading day's minutes increase
monotonically: 21:00 = 180, 00:00 = 360, 02:30 = 510 (night, below 06:00 = 720), then
09:00 = 900, 15:00 = 1260. Which calendar days those are is the calendar's business
(calendar.py); this module only knows the time of day.
"""

import datetime as dt

CHINA_UTC_OFFSET_NS = 8 * 3600 * 10**9
"""China local time minus UTC, in ns."""
CHINA = dt.timezone(dt.timedelta(hours=8), "China")
"""The exchanges' time zone, for datetime conversions."""

MINUTE_MS = 60_000
MINUTE_NS = MINUTE_MS * 10**6
MINUTES_PER_DAY = 1440
DAY_MS = MINUTES_PER_DAY * MINUTE_MS
DAY_S = 86_400
DAY_NS = DAY_S * 10**9

NIGHT_START_MS = 18 * 3600 * 1000
"""Exchange clock times from 18:00 belong to the next trading day's night session."""
MORNING_END_MS = 6 * 3600 * 1000
"""Exchange clock times before 06:00 are the after-midnight part of a night session."""
EVENING_START_MINUTE = NIGHT_START_MS // MINUTE_MS
"""The local minute of the day where the trading-day clock starts (18:00)."""
EVENING_START_NS = EVENING_START_MINUTE * MINUTE_NS
"""18:00 as ns after local midnight."""


def tday_minute(local_minute: int) -> int:
    """Local minute of the day (0..1439) -> minute on the trading-day clock."""
    return (local_minute - EVENING_START_MINUTE) % MINUTES_PER_DAY


def local_minute(tday: int) -> int:
    """Minute on the trading-day clock -> local minute of the day (0..1439)."""
    return (tday + EVENING_START_MINUTE) % MINUTES_PER_DAY


NIGHT_END_MINUTE = tday_minute(MORNING_END_MS // MINUTE_MS)
"""06:00 on the trading-day clock (720): night-session minutes are below it."""


def is_night(update_ms: int) -> bool:
    """Whether exchange clock time ``update_ms`` (ms after local midnight) is night-session
    time: from 18:00, or before 06:00."""
    return update_ms >= NIGHT_START_MS or update_ms < MORNING_END_MS
