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

The whole record is packed with one ``struct.pack_into`` call; per-day and per-second
values are cached, so the per-tick Python work is a few attribute reads and comparisons.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from typing import Any

from hft.daemons.refdata import calendar
from hft.daemons.refdata.instruments import Instrument, InstrumentTable
from hft.daemons.refdata.sessions import tday_minute
from hft.daemons.runtime.events import EventType, TickFlag, record_struct

EMPTY_PRICE = 1e300
"""Prices at or above this are CTP's DBL_MAX 'no value' and become NaN."""
NAN = float("nan")
CHINA_UTC_OFFSET_NS = 8 * 3600 * 10**9
_EPOCH = dt.date(1970, 1, 1)
_NIGHT_EXCHANGE_KEEPS_ACTION_DAY = frozenset({b"CZCE"})
"""Exchanges whose TradingDay is wrong at night (their ActionDay is right)."""
TICK_STRUCT = record_struct(EventType.MARKET_DATA)
_MARKET_DATA = int(EventType.MARKET_DATA)  # plain ints: enum attribute access is slow
_STALE, _VOLUME_BACKWARDS = int(TickFlag.STALE), int(TickFlag.VOLUME_BACKWARDS)
_DAYS_DERIVED, _OUT_OF_SESSION = int(TickFlag.DAYS_DERIVED), int(TickFlag.OUT_OF_SESSION)


DEPTH_FIELDS = (
    "TradingDay", "ActionDay", "UpdateTime", "InstrumentID", "ExchangeID", "UpdateMillisec",
    "LastPrice", "OpenPrice", "HighestPrice", "LowestPrice", "ClosePrice", "SettlementPrice",
    "PreClosePrice", "PreSettlementPrice", "UpperLimitPrice", "LowerLimitPrice", "AveragePrice",
    "Volume", "Turnover", "OpenInterest", "PreOpenInterest",
    "BidPrice1", "BidPrice2", "BidPrice3", "BidPrice4", "BidPrice5",
    "AskPrice1", "AskPrice2", "AskPrice3", "AskPrice4", "AskPrice5",
    "BidVolume1", "BidVolume2", "BidVolume3", "BidVolume4", "BidVolume5",
    "AskVolume1", "AskVolume2", "AskVolume3", "AskVolume4", "AskVolume5",
)
"""The CThostFtdcDepthMarketDataField fields a snapshot is made of, in the order the
normalizer takes them: five texts (as bytes), UpdateMillisec, then the numbers in the order of
the MARKET_DATA record's body."""

DepthValues = tuple[Any, ...]
"""One snapshot: the values of DEPTH_FIELDS, in that order."""


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


class TickNormalizer:
    """Normalizes snapshots of many instruments; keeps the per-instrument state it needs."""

    def __init__(self, instruments: InstrumentTable, *, stale_after_s: float | None = 30.0,
                 drop_stale: bool = False, source: int = 0) -> None:
        self.instruments = instruments
        self.stale_after_ns = None if stale_after_s is None else int(stale_after_s * 1e9)
        self.drop_stale = drop_stale
        self.source = source
        self.stats = NormalizerStats()
        self.last_flags = 0
        """Flags of the last record kept."""
        self.last_exchange_ts = 0
        """Exchange time (ns) of the last record kept."""
        self._last_body: dict[int, bytes] = {}
        self._last_volume: dict[int, tuple[int, int]] = {}
        self._second_ms: dict[bytes, int] = {}
        self._days: dict[tuple[bytes, bytes, bytes, int], tuple[int, int, bool]] = {}
        self._by_raw_id: dict[bytes, Instrument] = {}
        self._midnight_ns: dict[int, int] = {}

    def normalize(self, md: DepthValues, received_ns: int | None, out: bytearray | memoryview,
                  offset: int = 0) -> bool:
        """Pack snapshot ``md`` (DEPTH_FIELDS values) into ``out[offset:offset+RECORD_SIZE]``;
        False if it is to be dropped (a duplicate, or stale with drop_stale). ``received_ns``
        None (historical data) stamps the record with its exchange time and skips the staleness
        check. Raises TickError for unreadable fields."""
        (trading_day_text, action_day_text, update_time, instrument_id, exchange, millisec,
         last, open_, high, low, close, settlement, pre_close, pre_settlement, upper, lower,
         average, volume, turnover, open_interest, pre_open_interest,
         bid1, bid2, bid3, bid4, bid5, ask1, ask2, ask3, ask4, ask5,
         bv1, bv2, bv3, bv4, bv5, av1, av2, av3, av4, av5) = md
        instrument = self._instrument(instrument_id)
        index = instrument.index
        exchange = exchange or instrument.exchange_id
        update_ms = self._update_ms(update_time, millisec)
        trading_day, action_day, derived = self._resolve_days(exchange, trading_day_text,
                                                              action_day_text, update_ms)
        exchange_ts = self._midnight(action_day) + update_ms * 1_000_000
        flags = _DAYS_DERIVED if derived else 0
        previous = self._last_volume.get(index)
        if previous is not None and previous[0] == trading_day and volume < previous[1]:
            flags |= _VOLUME_BACKWARDS
        if not instrument.product.session.contains(tday_minute(update_ms // 60_000)):
            flags |= _OUT_OF_SESSION
        if received_ns is None:
            received_ns = exchange_ts
        stale = self.stale_after_ns is not None and received_ns - exchange_ts > self.stale_after_ns
        if stale:
            flags |= _STALE
        e = EMPTY_PRICE
        TICK_STRUCT.pack_into(
            out, offset, 0, received_ns, _MARKET_DATA, flags, trading_day, index, self.source,
            instrument_id, exchange, action_day, update_ms, exchange_ts,
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
        body = bytes(out[offset + 32:offset + TICK_STRUCT.size])
        if body == self._last_body.get(index):
            self.stats.duplicates += 1
            return False
        self._last_body[index] = body
        self._last_volume[index] = (trading_day, volume)
        if stale:
            self.stats.stale += 1
            if self.drop_stale:
                self.stats.stale_dropped += 1
                return False
        self.stats.ticks += 1
        self.last_flags, self.last_exchange_ts = flags, exchange_ts
        if flags & _VOLUME_BACKWARDS:
            self.stats.volume_backwards += 1
        if derived:
            self.stats.days_derived += 1
        return True

    def _instrument(self, instrument_id: bytes) -> Instrument:
        instrument = self._by_raw_id.get(instrument_id)
        if instrument is None:
            try:
                instrument = self.instruments.register(instrument_id.decode("ascii"))
            except (KeyError, ValueError) as exc:
                raise TickError(f"instrument {instrument_id!r}: {exc}") from None
            self._by_raw_id[instrument_id] = instrument
        return instrument

    def _update_ms(self, update_time: bytes, millisec: int) -> int:
        second = self._second_ms.get(update_time)
        if second is None:
            try:
                hours, minutes, seconds = (int(part) for part in update_time.split(b":"))
            except ValueError:
                raise TickError(f"UpdateTime {update_time!r} is not HH:MM:SS") from None
            if not (0 <= hours < 24 and 0 <= minutes < 60 and 0 <= seconds < 60):
                raise TickError(f"UpdateTime {update_time!r} is out of range")
            second = (hours * 3600 + minutes * 60 + seconds) * 1000
            self._second_ms[update_time] = second
        if not 0 <= millisec < 1000:
            raise TickError(f"UpdateMillisec {millisec} is not in 0..999")
        return second + millisec

    def _resolve_days(self, exchange: bytes, trading_day: bytes, action_day: bytes,
                      update_ms: int) -> tuple[int, int, bool]:
        """(TradingDay, ActionDay, whether one was derived), cached per day pair and part."""
        part = 1 if update_ms >= calendar.NIGHT_START_MS else 2 if update_ms < calendar.MORNING_END_MS else 0
        key = (exchange, trading_day, action_day, part)
        resolved = self._days.get(key)
        if resolved is None:
            resolved = resolve_days(exchange, trading_day, action_day, update_ms)
            self._days[key] = resolved
        return resolved

    def _midnight(self, day: int) -> int:
        """Local (UTC+8) midnight of ``day`` as ns since the epoch."""
        ns = self._midnight_ns.get(day)
        if ns is None:
            ns = (calendar.to_date(day) - _EPOCH).days * 86_400 * 10**9 - CHINA_UTC_OFFSET_NS
            self._midnight_ns[day] = ns
        return ns


def resolve_days(exchange: bytes, trading_day: bytes, action_day: bytes,
                 update_ms: int) -> tuple[int, int, bool]:
    """The (TradingDay, ActionDay) a tick really has, and whether either field was replaced.

    By day both are the trading day. At night the field the exchange gets right is kept (CZCE:
    ActionDay; the others: TradingDay) and the other derived; a missing field is derived from
    the one present."""
    given_trading = _parse_day(trading_day, "TradingDay")
    given_action = _parse_day(action_day, "ActionDay")
    night = update_ms >= calendar.NIGHT_START_MS or update_ms < calendar.MORNING_END_MS
    if not night:
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
