"""CTP depth-market-data fields -> one normalized MARKET_DATA record, quirks handled.

The quirks of a real CTP feed, and what happens to each:

- empty prices arrive as DBL_MAX: stored as NaN;
- ``UpdateMillisec`` is an integer count of milliseconds (0, 500, 97, 387 ... all occur);
- TradingDay/ActionDay are wrong at night on some exchanges: DCE sends TradingDay as
  ActionDay, CZCE sends the calendar day as TradingDay. The field the exchange gets right is
  kept and the other derived from it with the trading calendar (a Monday's night session is
  Friday evening; after-midnight ticks are the next calendar day); ``DAYS_DERIVED`` is set
  when a field was replaced;
- an exact duplicate of the instrument's previous snapshot is dropped;
- a snapshot much older than its receive time (CTP replays the last tick at login) is flagged
  ``STALE``, or dropped when configured;
- a cumulative volume that falls within a trading day is flagged ``VOLUME_BACKWARDS``;
- a snapshot outside the product's sessions (settlement prints after the close) is kept and
  flagged ``OUT_OF_SESSION``, so bar builders can skip it without losing it.

The whole record is packed with one ``struct.pack_into`` call. What an UpdateTime text means
(ms since midnight, part of the day, session minute) is cached per text, and each instrument
keeps the days its day fields resolved to, so the per-tick Python work is a few lookups and
comparisons.
"""

from __future__ import annotations

from dataclasses import dataclass

from hft.daemons.md.depth import DEPTH_FIELDS as DEPTH_FIELDS  # re-exported: their first home
from hft.daemons.md.depth import DepthValues as DepthValues
from hft.daemons.refdata import calendar
from hft.daemons.refdata.clock import CHINA_UTC_OFFSET_NS as CHINA_UTC_OFFSET_NS  # re-exported
from hft.daemons.refdata.clock import MINUTE_MS, MORNING_END_MS, NIGHT_START_MS, is_night, tday_minute
from hft.daemons.refdata.instruments import Instrument, InstrumentTable
from hft.daemons.refdata.sessions import day_only
from hft.daemons.runtime.events import EventType, TickFlag, record_struct

_NO_PRICE = 1e300
"""Prices at or above this are CTP's EMPTY_PRICE (DBL_MAX, 'no value') and become NaN."""
NAN = float("nan")
_NIGHT_EXCHANGE_KEEPS_ACTION_DAY = frozenset({b"CZCE"})
"""Exchanges whose TradingDay is wrong at night (their ActionDay is right)."""
TICK_STRUCT = record_struct(EventType.MARKET_DATA)
_MARKET_DATA = int(EventType.MARKET_DATA)  # plain ints: enum attribute access is slow
_STALE, _VOLUME_BACKWARDS = int(TickFlag.STALE), int(TickFlag.VOLUME_BACKWARDS)
_DAYS_DERIVED, _OUT_OF_SESSION = int(TickFlag.DAYS_DERIVED), int(TickFlag.OUT_OF_SESSION)
_NO_DAYS_KEY = (b"", b"", b"", -1)  # matches no tick: a part of the day is 0, 1 or 2
_DIGITS = tuple(b"%d" % digit for digit in range(10))
assert NIGHT_START_MS % MINUTE_MS == MORNING_END_MS % MINUTE_MS == 0, \
    "_parse_time gives all of a minute one part of the day: the parts must start on a minute"


_Clock = tuple[int, int, int]
"""What an UpdateTime text means: (ms since midnight, part of the day, session minute)."""
_DaysKey = tuple[bytes, bytes, bytes, int]
"""(ExchangeID, TradingDay, ActionDay as sent, part of the day): what the days depend on."""
_Days = tuple[int, int, bool, int, bytes]
"""(TradingDay, ActionDay, whether one was derived, local midnight of ActionDay in ns, the
day's in-session table)."""


class TickError(ValueError):
    """A snapshot whose fields cannot be read as a tick (bad time, unknown day)."""


@dataclass
class NormalizerStats:
    """Counters the recorder exports as metrics."""

    ticks: int = 0
    duplicates: int = 0
    stale: int = 0
    stale_dropped: int = 0
    volume_backwards: int = 0
    days_derived: int = 0


class _InstrumentState:
    """What the normalizer keeps per instrument, found by the feed's raw id bytes."""

    __slots__ = ("days", "days_key", "exchange", "id", "in_day_session", "in_session", "index",
                 "instrument", "last_md", "last_trading_day", "last_volume")

    def __init__(self, instrument: Instrument) -> None:
        self.instrument = instrument
        self.index = instrument.index
        self.id = instrument.id.encode()
        self.exchange = instrument.exchange_id
        session = instrument.product.session
        self.in_session = bytes(session.bar_of_minute >= 0)
        """Trading-day minute -> 1 if it is in a session (auction and end minutes included)."""
        self.in_day_session = bytes(day_only(session).bar_of_minute >= 0) \
            if session.has_night else self.in_session
        """The same on a trading day without a night session (the first after a holiday)."""
        self.last_md: tuple[object, ...] = ()
        self.last_trading_day = 0
        self.last_volume = 0
        self.days_key: _DaysKey = _NO_DAYS_KEY
        """The day fields of the last tick: they change a few times a day, so one entry is a
        cache that nearly always hits and never grows."""
        self.days: _Days = (0, 0, False, 0, b"")
        """What ``days_key`` resolved to."""


class TickNormalizer:
    """Normalizes snapshots of many instruments; keeps the per-instrument state it needs.

    Text fields may arrive NUL padded (the raw CTP struct): they are only used as cache keys
    and stripped on a cache miss; records get the instrument's canonical id and exchange.
    """

    def __init__(self, instruments: InstrumentTable, *, stale_after_s: float | None = 30.0,
                 drop_stale: bool = False) -> None:
        self.instruments = instruments
        self.stale_after_ns = None if stale_after_s is None else int(stale_after_s * 1e9)
        self.drop_stale = drop_stale
        self.stats = NormalizerStats()
        self.last_flags = 0
        """Flags of the last record kept."""
        self.last_exchange_ts = 0
        """Exchange time (ns) of the last record kept."""
        self.last_trading_day = 0
        """TradingDay of the last record kept (the recorder rolls its journal on a new one)."""
        self.last_instrument_index = -1
        """Instrument index of the last record kept."""
        self._states: dict[bytes, _InstrumentState] = {}
        self._clocks: dict[bytes, _Clock] = {}

    def normalize(self, md: DepthValues, received_ns: int | None, out: bytearray | memoryview,
                  offset: int = 0) -> bool:
        """Pack snapshot ``md`` into ``out[offset:offset+RECORD_SIZE]``;
        False if it is to be dropped (a duplicate, or stale with drop_stale). ``received_ns``
        None (historical data) stamps the record with its exchange time and skips the staleness
        check. Raises TickError for unreadable fields."""
        (trading_day_text, exchange, last, pre_settlement, pre_close, pre_open_interest, open_,
         high, low, volume, turnover, open_interest, close, settlement, upper, lower, update_time,
         millisec, bid1, bv1, ask1, av1, bid2, bv2, ask2, av2, bid3, bv3, ask3, av3,
         bid4, bv4, ask4, av4, bid5, bv5, ask5, av5, average, action_day_text, instrument_id) = md
        state = self._states.get(instrument_id) or self._new_state(instrument_id)
        if md == state.last_md:
            self.stats.duplicates += 1
            return False
        second, part, minute = self._clocks.get(update_time) or self._parse_time(update_time)
        if not 0 <= millisec < 1000:
            raise TickError(f"UpdateMillisec {millisec} is not in 0..999")
        update_ms = second + millisec
        days_key = (exchange, trading_day_text, action_day_text, part)
        if days_key == state.days_key:
            trading_day, action_day, derived, midnight, in_session = state.days
        else:
            trading_day, action_day, derived, midnight, in_session = self._resolve(
                state, days_key, update_ms)
        exchange_ts = midnight + update_ms * 1_000_000
        flags = _DAYS_DERIVED if derived else 0
        if volume < state.last_volume and trading_day == state.last_trading_day:
            flags |= _VOLUME_BACKWARDS
        if not in_session[minute]:
            flags |= _OUT_OF_SESSION
        if received_ns is None:
            received_ns = exchange_ts
        stale = self.stale_after_ns is not None and received_ns - exchange_ts > self.stale_after_ns
        if stale:
            flags |= _STALE
            self.stats.stale += 1
            if self.drop_stale:
                self.stats.stale_dropped += 1
                return False
        e = _NO_PRICE
        TICK_STRUCT.pack_into(
            out, offset, 0, received_ns, _MARKET_DATA, flags, trading_day, state.index,
            0, state.id, state.exchange, action_day, update_ms, exchange_ts,
            last if last < e else NAN, open_ if open_ < e else NAN, high if high < e else NAN,
            low if low < e else NAN, close if close < e else NAN,
            settlement if settlement < e else NAN, pre_close if pre_close < e else NAN,
            pre_settlement if pre_settlement < e else NAN, upper if upper < e else NAN,
            lower if lower < e else NAN, average if average < e else NAN,
            volume, turnover, open_interest, pre_open_interest,
            bid1 if bid1 < e else NAN, bid2 if bid2 < e else NAN, bid3 if bid3 < e else NAN,
            bid4 if bid4 < e else NAN, bid5 if bid5 < e else NAN,
            ask1 if ask1 < e else NAN, ask2 if ask2 < e else NAN, ask3 if ask3 < e else NAN,
            ask4 if ask4 < e else NAN, ask5 if ask5 < e else NAN,
            bv1, bv2, bv3, bv4, bv5, av1, av2, av3, av4, av5,
        )
        state.last_md = md
        state.last_trading_day, state.last_volume = trading_day, volume
        self.stats.ticks += 1
        self.last_flags, self.last_exchange_ts = flags, exchange_ts
        self.last_trading_day, self.last_instrument_index = trading_day, state.index
        if flags & _VOLUME_BACKWARDS:
            self.stats.volume_backwards += 1
        if derived:
            self.stats.days_derived += 1
        return True

    def _new_state(self, instrument_id: bytes) -> _InstrumentState:
        name = instrument_id.rstrip(b"\0")
        try:
            instrument = self.instruments.register(name.decode("ascii"))
        except (KeyError, ValueError) as exc:
            raise TickError(f"instrument {name!r}: {exc}") from None
        state = self._states[instrument_id] = _InstrumentState(instrument)
        return state

    def _parse_time(self, update_time: bytes) -> _Clock:
        """Parse an UpdateTime text and cache what it means. A text spelt HH:MM:SS also
        caches the nine that differ from it only in the last digit: a quiet instrument sends
        a new second nearly every tick, which would otherwise be parsed on the hot path (ten,
        not the whole minute, keeps the one tick that pays for them to a few µs)."""
        text = update_time.rstrip(b"\0")
        try:
            hours, minutes, seconds = map(int, text.split(b":"))
        except ValueError:
            raise TickError(f"UpdateTime {text!r} is not HH:MM:SS") from None
        if not (0 <= hours < 24 and 0 <= minutes < 60 and 0 <= seconds < 60):
            raise TickError(f"UpdateTime {text!r} is out of range")
        start = (hours * 60 + minutes) * 60_000
        part = 1 if start >= NIGHT_START_MS else 2 if start < MORNING_END_MS else 0
        minute = tday_minute(hours * 60 + minutes)
        clocks = self._clocks
        if text == b"%02d:%02d:%02d" % (hours, minutes, seconds):  # spelt so: the nine parse alike
            prefix, padding = update_time[:7], update_time[8:]  # "HH:MM:S", the NULs
            first = start + seconds // 10 * 10_000
            for n, digit in enumerate(_DIGITS):
                clocks[prefix + digit + padding] = (first + n * 1000, part, minute)
        clock = clocks[update_time] = (start + seconds * 1000, part, minute)
        return clock

    def _resolve(self, state: _InstrumentState, key: _DaysKey, update_ms: int) -> _Days:
        """Resolve the instrument's day fields ``key``; keep the result as its last days."""
        exchange, trading_day, action_day, _ = key
        exchange_id = exchange.rstrip(b"\0") or state.exchange
        trading, action, derived = resolve_days(exchange_id, trading_day.rstrip(b"\0"),
                                                action_day.rstrip(b"\0"), update_ms)
        midnight = calendar.local_midnight_ns(action)
        in_session = state.in_session if calendar.has_night_session(trading) else state.in_day_session
        state.days_key, state.days = key, (trading, action, derived, midnight, in_session)
        return state.days


def resolve_days(exchange: bytes, trading_day: bytes, action_day: bytes,
                 update_ms: int) -> tuple[int, int, bool]:
    """The (TradingDay, ActionDay) a tick really has, and whether either field was replaced.

    By day both are the trading day. At night the field the exchange gets right is kept (CZCE:
    ActionDay; the others: TradingDay) and the other derived; a missing field is derived from
    the one present."""
    given_trading = _parse_day(trading_day, "TradingDay")
    given_action = _parse_day(action_day, "ActionDay")
    if not is_night(update_ms):
        day = given_trading or given_action
        if not day:
            raise TickError("both TradingDay and ActionDay are empty")
        return day, day, given_action != day or given_trading != day
    trust_action = exchange in _NIGHT_EXCHANGE_KEEPS_ACTION_DAY or not given_trading
    if trust_action:
        if not given_action:
            raise TickError("both TradingDay and ActionDay are empty")
        derived_trading = calendar.trading_day_of(given_action, update_ms)
        return derived_trading, given_action, derived_trading != given_trading
    derived_action = calendar.action_day(given_trading, update_ms)
    return given_trading, derived_action, derived_action != given_action


def _parse_day(text: bytes, name: str) -> int:
    if not text:
        return 0
    if len(text) != 8 or not text.isdigit():
        raise TickError(f"{name} {text!r} is not YYYYMMDD")
    day = int(text)
    try:
        calendar.to_date(day)
    except ValueError:
        raise TickError(f"{name} {text!r} is not a calendar date") from None
    return day
