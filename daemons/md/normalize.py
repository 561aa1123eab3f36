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
from typing import Protocol

from hft.daemons.refdata import calendar
from hft.daemons.refdata.instruments import Instrument, InstrumentTable
from hft.daemons.refdata.sessions import tday_minute
from hft.daemons.runtime.events import EventType, TickFlag, record_struct

EMPTY_PRICE = 1e300
"""Prices at or above this are CTP's DBL_MAX 'no value' and become NaN."""
NAN = float("nan")
CHINA_UTC_OFFSET_NS = 8 * 3600 * 10**9
_EPOCH = dt.date(1970, 1, 1)
_NIGHT_EXCHANGE_KEEPS_ACTION_DAY = frozenset({"CZCE"})
"""Exchanges whose TradingDay is wrong at night (their ActionDay is right)."""
TICK_STRUCT = record_struct(EventType.MARKET_DATA)
_MARKET_DATA = int(EventType.MARKET_DATA)  # plain ints: enum attribute access is slow
_STALE, _VOLUME_BACKWARDS = int(TickFlag.STALE), int(TickFlag.VOLUME_BACKWARDS)
_DAYS_DERIVED, _OUT_OF_SESSION = int(TickFlag.DAYS_DERIVED), int(TickFlag.OUT_OF_SESSION)


class DepthMarketData(Protocol):
    """The fields of CTP's CThostFtdcDepthMarketDataField this module reads (the real struct
    from openctp-ctp, or a CSV row adapter, satisfy it)."""

    TradingDay: str
    ActionDay: str
    UpdateTime: str
    UpdateMillisec: int
    InstrumentID: str
    ExchangeID: str
    LastPrice: float
    OpenPrice: float
    HighestPrice: float
    LowestPrice: float
    ClosePrice: float
    SettlementPrice: float
    PreClosePrice: float
    PreSettlementPrice: float
    UpperLimitPrice: float
    LowerLimitPrice: float
    AveragePrice: float
    Volume: int
    Turnover: float
    OpenInterest: float
    PreOpenInterest: float
    BidPrice1: float
    BidPrice2: float
    BidPrice3: float
    BidPrice4: float
    BidPrice5: float
    AskPrice1: float
    AskPrice2: float
    AskPrice3: float
    AskPrice4: float
    AskPrice5: float
    BidVolume1: int
    BidVolume2: int
    BidVolume3: int
    BidVolume4: int
    BidVolume5: int
    AskVolume1: int
    AskVolume2: int
    AskVolume3: int
    AskVolume4: int
    AskVolume5: int


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
        self._second_ms: dict[str, int] = {}
        self._days: dict[tuple[str, str, str, int], tuple[int, int, bool]] = {}
        self._midnight_ns: dict[int, int] = {}

    def normalize(self, md: DepthMarketData, received_ns: int | None, out: bytearray | memoryview,
                  offset: int = 0) -> bool:
        """Pack ``md`` into ``out[offset:offset+RECORD_SIZE]``; False if it is to be dropped
        (a duplicate, or stale with drop_stale). ``received_ns`` None (historical data) stamps
        the record with its exchange time and skips the staleness check. Raises TickError for
        unreadable fields."""
        instrument = self._instrument(md.InstrumentID)
        index = instrument.index
        exchange = md.ExchangeID or instrument.exchange
        update_ms = self._update_ms(md.UpdateTime, md.UpdateMillisec)
        trading_day, action_day, derived = self._resolve_days(exchange, md.TradingDay, md.ActionDay,
                                                              update_ms)
        exchange_ts = self._midnight(action_day) + update_ms * 1_000_000
        volume = md.Volume
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
            out, offset, 0, received_ns, _MARKET_DATA, flags, trading_day, index,
            self.source, md.InstrumentID.encode(), exchange.encode(), action_day, update_ms,
            exchange_ts,
            md.LastPrice if md.LastPrice < e else NAN,
            md.OpenPrice if md.OpenPrice < e else NAN,
            md.HighestPrice if md.HighestPrice < e else NAN,
            md.LowestPrice if md.LowestPrice < e else NAN,
            md.ClosePrice if md.ClosePrice < e else NAN,
            md.SettlementPrice if md.SettlementPrice < e else NAN,
            md.PreClosePrice if md.PreClosePrice < e else NAN,
            md.PreSettlementPrice if md.PreSettlementPrice < e else NAN,
            md.UpperLimitPrice if md.UpperLimitPrice < e else NAN,
            md.LowerLimitPrice if md.LowerLimitPrice < e else NAN,
            md.AveragePrice if md.AveragePrice < e else NAN,
            volume, md.Turnover, md.OpenInterest, md.PreOpenInterest,
            md.BidPrice1 if md.BidPrice1 < e else NAN,
            md.BidPrice2 if md.BidPrice2 < e else NAN,
            md.BidPrice3 if md.BidPrice3 < e else NAN,
            md.BidPrice4 if md.BidPrice4 < e else NAN,
            md.BidPrice5 if md.BidPrice5 < e else NAN,
            md.AskPrice1 if md.AskPrice1 < e else NAN,
            md.AskPrice2 if md.AskPrice2 < e else NAN,
            md.AskPrice3 if md.AskPrice3 < e else NAN,
            md.AskPrice4 if md.AskPrice4 < e else NAN,
            md.AskPrice5 if md.AskPrice5 < e else NAN,
            md.BidVolume1, md.BidVolume2, md.BidVolume3, md.BidVolume4, md.BidVolume5,
            md.AskVolume1, md.AskVolume2, md.AskVolume3, md.AskVolume4, md.AskVolume5,
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

    def _instrument(self, instrument_id: str) -> Instrument:
        try:
            return self.instruments[instrument_id]
        except KeyError:
            try:
                return self.instruments.register(instrument_id)
            except (KeyError, ValueError) as exc:
                raise TickError(f"instrument {instrument_id!r}: {exc}") from None

    def _update_ms(self, update_time: str, millisec: int) -> int:
        second = self._second_ms.get(update_time)
        if second is None:
            try:
                hours, minutes, seconds = (int(part) for part in update_time.split(":"))
            except ValueError:
                raise TickError(f"UpdateTime {update_time!r} is not HH:MM:SS") from None
            if not (0 <= hours < 24 and 0 <= minutes < 60 and 0 <= seconds < 60):
                raise TickError(f"UpdateTime {update_time!r} is out of range")
            second = (hours * 3600 + minutes * 60 + seconds) * 1000
            self._second_ms[update_time] = second
        if not 0 <= millisec < 1000:
            raise TickError(f"UpdateMillisec {millisec} is not in 0..999")
        return second + millisec

    def _resolve_days(self, exchange: str, trading_day: str, action_day: str,
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


def resolve_days(exchange: str, trading_day: str, action_day: str, update_ms: int) -> tuple[int, int, bool]:
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


def _parse_day(text: str, name: str) -> int:
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
