"""The event protocol: one fixed-size numpy structured dtype per event type.

The same records travel on the in-process EventBus and through the mmap journals, so a
record is never converted between the two. Every dtype has the same itemsize
(``RECORD_SIZE``) and starts with the same 32-byte header, so a journal slot can be viewed
as any event type and the ``type`` field says which one it is.

Conventions (see docs/ARCHITECTURE.md):

- time is int64 nanoseconds since the Unix epoch (UTC); the exchange's trading day is an
  int32 ``YYYYMMDD``; local (China, UTC+8) clock times of day are milliseconds since midnight;
- an empty CTP price (DBL_MAX on the wire) is stored as NaN, never as a price;
- strings are fixed-width bytes (ASCII for identifiers, UTF-8 for messages), NUL padded;
- ``seq`` is 0 on a record that has not been committed to a journal.
"""

from __future__ import annotations

import hashlib
import struct
from collections.abc import Iterable
from enum import IntEnum, IntFlag
from typing import NamedTuple

import numpy as np

RECORD_SIZE = 384
"""Bytes per record: six cache lines, room for a tick with five depth levels."""


class EventType(IntEnum):
    """The ``type`` field of every record. Values are part of the journal format."""

    MARKET_DATA = 1  # a normalized tick (hft_md -> md journal)
    ORDER_REQ = 2  # a strategy's intent to trade (engine -> engine journal)
    ORDER_SEND = 3  # an ORDER_REQ approved by risk and sent to the gateway
    CANCEL_REQ = 4  # a request to cancel a working order
    RTN_ORDER = 5  # an order status return from the exchange / simulator
    RTN_TRADE = 6  # a fill return from the exchange / simulator
    POS_UPDATE = 7  # a position book change for one instrument
    RISK_REJECT = 8  # an ORDER_REQ or CANCEL_REQ refused by a risk rule, with the reason
    BAR = 9  # a closed K-line bar
    FACTOR = 10  # one factor value
    TIMER = 11  # a clock tick from the host's timer wheel
    ALERT = 12  # an operational alarm (watchdog, risk, feed gap)
    FEED_GAP = 13  # market data may be missing between two times (feed down, hft_md restarted)


MAX_EVENT_TYPE = max(EventType) + 1


class TickFlag(IntFlag):
    """``flags`` bits of a MARKET_DATA record."""

    STALE = 1  # exchange time far behind the receive time (e.g. the replay at a night login)
    VOLUME_BACKWARDS = 2  # cumulative Volume fell within the trading day
    DAYS_DERIVED = 4  # TradingDay or ActionDay was wrong or missing and was derived
    OUT_OF_SESSION = 8  # exchange time outside the product's sessions (e.g. settlement snapshots)


UNCOUNTED = int(TickFlag.STALE | TickFlag.VOLUME_BACKWARDS | TickFlag.OUT_OF_SESSION)
"""The one rule for which ticks count: a tick with any of these flags is kept in the journal
but counts for nothing downstream. Bars, factors and strategies skip it: a login replay of an
old snapshot, a cumulative volume that fell (its totals are not the day's), a snapshot outside
the sessions (the settlement prints after the close). DAYS_DERIVED ticks count. Per tick the
test is ``flags & UNCOUNTED`` (one operation on the hot paths); over arrays, :func:`counted`."""


def counted(ticks: np.ndarray) -> np.ndarray:
    """Which of an array of MARKET_DATA records count (see UNCOUNTED), as a bool mask."""
    return np.asarray(ticks["flags"] & UNCOUNTED == 0)


class OrderFlag(IntFlag):
    """``flags`` bits of an ORDER_REQ or ORDER_SEND published again after a restart."""

    RECOVERED = 1  # sent before a restart, not settled since: its owner takes it up again


class Direction(IntEnum):
    BUY = 0
    SELL = 1


class PosDirection(IntEnum):
    """The side a position is held on (CTP's PosiDirection): a buy opens or closes into it."""

    LONG = 0
    SHORT = 1


class Offset(IntEnum):
    OPEN = 0
    CLOSE = 1
    CLOSE_TODAY = 2  # SHFE/INE distinguish today's position when closing
    CLOSE_YESTERDAY = 3


class PriceType(IntEnum):
    LIMIT = 0
    MARKET = 1
    FAK = 2  # fill and kill: the rest is cancelled
    FOK = 3  # fill or kill: all or nothing


class OrderStatus(IntEnum):
    SUBMITTING = 0  # sent, no exchange acknowledgement yet
    NOT_TRADED = 1  # working at the exchange, nothing filled
    PART_TRADED = 2  # working, partly filled
    ALL_TRADED = 3  # terminal
    CANCELLED = 4  # terminal (volume_traded may be > 0)
    REJECTED = 5  # terminal: refused by the counter or the exchange
    LOST = 6  # terminal: in flight when a daemon crashed and never confirmed


FINAL_STATUSES = frozenset({OrderStatus.ALL_TRADED, OrderStatus.CANCELLED, OrderStatus.REJECTED,
                            OrderStatus.LOST})
"""The terminal statuses: an order in one of them trades no more."""


class AlertLevel(IntEnum):
    INFO = 0
    WARNING = 1
    CRITICAL = 2


class Field(NamedTuple):
    """One field of a record: its name, numpy format and what it means (units, sentinels)."""

    name: str
    format: str
    doc: str


HEADER: tuple[Field, ...] = (
    Field("seq", "<u8", "journal sequence number, from 1 and gapless per journal; 0 = not committed"),
    Field("ts_ns", "<i8", "when the record was made by its producer, ns since epoch (UTC)"),
    Field("type", "<u2", "EventType"),
    Field("flags", "<u2", "per-type bit flags (see each type's FLAG_ constants)"),
    Field("trading_day", "<i4", "exchange TradingDay YYYYMMDD; 0 = not applicable"),
    Field("instrument_index", "<i4", "index in the instrument table for O(1) lookups; -1 = none"),
    Field("source", "<u4", "id of the producer: strategy (child) id, account index, plugin id"),
)
HEADER_SIZE = 32

_INSTRUMENT = Field("instrument", "S32", "instrument id as CTP spells it, e.g. b'IF2101'")
_EXCHANGE = Field("exchange", "S8", "exchange id: CFFEX, SHFE, DCE, CZCE, INE, GFEX")
_ORDER_REF = Field("order_ref", "<i8", "client order id, unique per (source, trading day)")
_ORDER_SYS_ID = Field("order_sys_id", "S24", "exchange order id (CTP OrderSysID); empty until known")
_DIRECTION = Field("direction", "u1", "Direction: 0 buy, 1 sell")
_OFFSET = Field("offset", "u1", "Offset: 0 open, 1 close, 2 close today, 3 close yesterday")
_ORIGIN_SEQ = Field("origin_seq", "<u8", "risk journal: seq of the engine journal request this "
                    "record decides; 0 in the engine journal")

TICK_FIELDS: tuple[Field, ...] = (
    _INSTRUMENT,
    _EXCHANGE,
    Field("action_day", "<i4", "calendar day YYYYMMDD of update_ms (derived where CTP's is wrong)"),
    Field("update_ms", "<i4", "exchange clock, ms since local midnight: UpdateTime*1000+UpdateMillisec"),
    Field("exchange_ts_ns", "<i8", "action_day + update_ms as ns since epoch (UTC)"),
    Field("last_price", "<f8", "LastPrice; NaN = empty"),
    Field("open_price", "<f8", "OpenPrice of the trading day; NaN = empty"),
    Field("highest_price", "<f8", "HighestPrice of the trading day; NaN = empty"),
    Field("lowest_price", "<f8", "LowestPrice of the trading day; NaN = empty"),
    Field("close_price", "<f8", "ClosePrice (set after the close); NaN = empty"),
    Field("settlement_price", "<f8", "SettlementPrice (set after the close); NaN = empty"),
    Field("pre_close_price", "<f8", "PreClosePrice; NaN = empty"),
    Field("pre_settlement_price", "<f8", "PreSettlementPrice; NaN = empty"),
    Field("upper_limit_price", "<f8", "UpperLimitPrice; NaN = empty"),
    Field("lower_limit_price", "<f8", "LowerLimitPrice; NaN = empty"),
    Field("average_price", "<f8", "AveragePrice as the exchange sends it (CZCE: per unit); NaN = empty"),
    Field("volume", "<i8", "cumulative Volume of the trading day, lots"),
    Field("turnover", "<f8", "cumulative Turnover of the trading day, CNY"),
    Field("open_interest", "<f8", "OpenInterest, lots"),
    Field("pre_open_interest", "<f8", "PreOpenInterest, lots"),
    Field("bid_price", "<f8", "BidPrice1..5; NaN = empty level", ),
    Field("ask_price", "<f8", "AskPrice1..5; NaN = empty level"),
    Field("bid_volume", "<i4", "BidVolume1..5, lots; 0 = empty level"),
    Field("ask_volume", "<i4", "AskVolume1..5, lots; 0 = empty level"),
)
DEPTH = 5
_DEPTH_FIELDS = {"bid_price", "ask_price", "bid_volume", "ask_volume"}

ORDER_FIELDS: tuple[Field, ...] = (
    _INSTRUMENT,
    _EXCHANGE,
    _ORDER_REF,
    Field("price", "<f8", "limit price; NaN for a market order"),
    Field("volume", "<i4", "lots, > 0"),
    _DIRECTION,
    _OFFSET,
    Field("price_type", "u1", "PriceType: 0 limit, 1 market, 2 FAK, 3 FOK"),
    Field("hedge", "u1", "CTP hedge flag: 0 speculation, 1 arbitrage, 2 hedge"),
    Field("account", "S16", "investor account the order trades for"),
    _ORIGIN_SEQ,
)

CANCEL_FIELDS: tuple[Field, ...] = (
    _INSTRUMENT,
    _EXCHANGE,
    _ORDER_REF,
    _ORDER_SYS_ID,
    Field("account", "S16", "investor account of the order"),
    _ORIGIN_SEQ,
)

RTN_ORDER_FIELDS: tuple[Field, ...] = (
    _INSTRUMENT,
    _EXCHANGE,
    _ORDER_REF,
    _ORDER_SYS_ID,
    Field("price", "<f8", "the order's limit price; NaN for a market order"),
    Field("volume", "<i4", "the order's original volume, lots"),
    Field("volume_traded", "<i4", "lots filled so far"),
    _DIRECTION,
    _OFFSET,
    Field("status", "u1", "OrderStatus"),
    Field("error_id", "<i4", "CTP ErrorID of a rejection; 0 = none"),
    Field("exchange_ts_ns", "<i8", "exchange insert/update time, ns since epoch (UTC); 0 = unknown"),
    Field("message", "S96", "status or error message, UTF-8 (converted from CTP's GB18030)"),
    Field("account", "S16", "investor account of the order"),
)

RTN_TRADE_FIELDS: tuple[Field, ...] = (
    _INSTRUMENT,
    _EXCHANGE,
    _ORDER_REF,
    _ORDER_SYS_ID,
    Field("trade_id", "S24", "exchange TradeID"),
    Field("price", "<f8", "fill price"),
    Field("volume", "<i4", "lots filled by this trade"),
    _DIRECTION,
    _OFFSET,
    Field("exchange_ts_ns", "<i8", "exchange trade time, ns since epoch (UTC)"),
    Field("account", "S16", "investor account of the trade"),
)

POS_FIELDS: tuple[Field, ...] = (
    _INSTRUMENT,
    _EXCHANGE,
    Field("account", "S16", "investor account"),
    Field("direction", "u1", "PosDirection: 0 long, 1 short (one record per direction)"),
    Field("position", "<i4", "lots held: today_position + yd_position"),
    Field("today_position", "<i4", "lots opened this trading day and still held"),
    Field("yd_position", "<i4", "lots from earlier trading days still held (CTP's YdPosition "
          "keeps the start-of-day figure instead)"),
    Field("frozen", "<i4", "lots reserved by working close orders"),
    Field("open_cost", "<f8", "held lots at their open prices x multiplier, CNY"),
    Field("position_cost", "<f8", "today's lots at open price + yesterday's at the previous "
          "settlement, x multiplier, CNY"),
    Field("close_profit_by_date", "<f8", "this trading day's close profit, mark-to-market "
          "(逐日盯市): yesterday's lots against the previous settlement, CNY"),
    Field("close_profit_by_trade", "<f8", "this trading day's close profit against each lot's "
          "open price (逐笔对冲), CNY"),
    Field("position_profit", "<f8", "held lots at mark_price - position_cost (negated for "
          "short), CNY"),
    Field("position_profit_by_trade", "<f8", "held lots at mark_price - open_cost (negated for "
          "short), CNY"),
    Field("commission", "<f8", "this trading day's commission, CNY"),
    Field("margin", "<f8", "margin rate of the product x position_cost, CNY"),
    Field("pre_settlement_price", "<f8", "settlement price yesterday's lots are valued at; NaN = "
          "none yet"),
    Field("mark_price", "<f8", "price the position profits are marked at (last or settlement); "
          "NaN = none yet"),
)

REJECT_FIELDS: tuple[Field, ...] = (
    _INSTRUMENT,
    _EXCHANGE,
    _ORDER_REF,
    Field("rule", "S24", "name of the risk rule that refused, e.g. b'order_rate'"),
    Field("reason", "S128", "why, UTF-8, with the figures that broke the limit"),
    Field("account", "S16", "investor account of the order"),
    _ORIGIN_SEQ,
)

BAR_FIELDS: tuple[Field, ...] = (
    _INSTRUMENT,
    _EXCHANGE,
    Field("period_s", "<i4", "bar length in seconds; 86400 = one trading day"),
    Field("start_ns", "<i8", "bar start (its label), ns since epoch (UTC)"),
    Field("open", "<f8", "first LastPrice in the bar"),
    Field("high", "<f8", "highest traded price in the bar (see DESIGN bar conventions)"),
    Field("low", "<f8", "lowest traded price in the bar"),
    Field("close", "<f8", "last LastPrice in the bar"),
    Field("volume", "<i8", "lots traded in the bar (delta of cumulative Volume)"),
    Field("turnover", "<f8", "CNY traded in the bar (delta of cumulative Turnover)"),
    Field("open_interest", "<f8", "OpenInterest at the bar's last tick"),
)

FACTOR_FIELDS: tuple[Field, ...] = (
    _INSTRUMENT,
    Field("name", "S32", "factor name, e.g. b'ema_20'"),
    Field("value", "<f8", "factor value; NaN while warming up"),
)

TIMER_FIELDS: tuple[Field, ...] = (
    Field("timer_id", "<u4", "id returned when the timer was added"),
    Field("interval_ns", "<i8", "the timer's period, ns"),
)

ALERT_FIELDS: tuple[Field, ...] = (
    Field("level", "u1", "AlertLevel: 0 info, 1 warning, 2 critical"),
    Field("origin", "S32", "what raised it: daemon or plugin name"),
    Field("code", "S32", "machine-readable kind, e.g. b'feed_gap', b'daemon_restarted'"),
    Field("message", "S128", "human-readable text, UTF-8"),
)

FEED_GAP_FIELDS: tuple[Field, ...] = (
    Field("feed", "S16", "which feed: the md source plugin's name"),
    Field("reason", "S64", "why, e.g. b'front disconnected', b'hft_md restarted'"),
    Field("last_ns", "<i8", "receive time of the feed's last record before the gap; 0 = unknown"),
)

BODIES: dict[EventType, tuple[Field, ...]] = {
    EventType.MARKET_DATA: TICK_FIELDS,
    EventType.ORDER_REQ: ORDER_FIELDS,
    EventType.ORDER_SEND: ORDER_FIELDS,
    EventType.CANCEL_REQ: CANCEL_FIELDS,
    EventType.RTN_ORDER: RTN_ORDER_FIELDS,
    EventType.RTN_TRADE: RTN_TRADE_FIELDS,
    EventType.POS_UPDATE: POS_FIELDS,
    EventType.RISK_REJECT: REJECT_FIELDS,
    EventType.BAR: BAR_FIELDS,
    EventType.FACTOR: FACTOR_FIELDS,
    EventType.TIMER: TIMER_FIELDS,
    EventType.ALERT: ALERT_FIELDS,
    EventType.FEED_GAP: FEED_GAP_FIELDS,
}


def _shape(field: Field, body: tuple[Field, ...]) -> tuple[int, ...]:
    return (DEPTH,) if body is TICK_FIELDS and field.name in _DEPTH_FIELDS else ()


def _make_dtype(body: tuple[Field, ...]) -> np.dtype[np.void]:
    """Header + body, naturally aligned, padded to RECORD_SIZE."""
    names: list[str] = []
    formats: list[object] = []
    offsets: list[int] = []
    offset = 0
    for field in (*HEADER, *body):
        item = np.dtype((field.format, _shape(field, body)))
        align = min(np.dtype(field.format).alignment, 8)
        offset = -(-offset // align) * align
        names.append(field.name)
        formats.append(item)
        offsets.append(offset)
        offset += item.itemsize
    if offset > RECORD_SIZE:
        raise ValueError(f"record body needs {offset} bytes, more than RECORD_SIZE={RECORD_SIZE}")
    return np.dtype(
        {"names": names, "formats": formats, "offsets": offsets, "itemsize": RECORD_SIZE}
    )


DTYPES: dict[EventType, np.dtype[np.void]] = {t: _make_dtype(b) for t, b in BODIES.items()}
HEADER_DTYPE: np.dtype[np.void] = _make_dtype(())

TICK_DTYPE = DTYPES[EventType.MARKET_DATA]
ORDER_DTYPE = DTYPES[EventType.ORDER_REQ]
CANCEL_DTYPE = DTYPES[EventType.CANCEL_REQ]
RTN_ORDER_DTYPE = DTYPES[EventType.RTN_ORDER]
RTN_TRADE_DTYPE = DTYPES[EventType.RTN_TRADE]
POS_DTYPE = DTYPES[EventType.POS_UPDATE]
REJECT_DTYPE = DTYPES[EventType.RISK_REJECT]
BAR_DTYPE = DTYPES[EventType.BAR]
FACTOR_DTYPE = DTYPES[EventType.FACTOR]
TIMER_DTYPE = DTYPES[EventType.TIMER]
ALERT_DTYPE = DTYPES[EventType.ALERT]


_STRUCT_CODES = {"u1": "B", "u2": "H", "u4": "I", "u8": "Q", "i1": "b", "i2": "h", "i4": "i",
                 "i8": "q", "f8": "d"}


def fields_struct(dtype: np.dtype[np.void], names: Iterable[str] | None = None, *,
                  size: int | None = None, start: int = 0,
                  raw_spans: Iterable[tuple[str, str]] = ()) -> struct.Struct:
    """A ``struct.Struct`` for the named fields of ``dtype`` (all when None) at their offsets,
    in offset order, subarrays flattened, padded to ``size`` bytes when given; ``start`` is
    the offset it begins at (to append its format to another). One ``unpack_from`` or
    ``pack_into`` call then reads or writes them all: several times cheaper than numpy field
    access on a single record. Each ``(first, last)`` of ``raw_spans`` is read as one bytes
    value, from the start of field ``first`` to the end of ``last``: one object instead of
    several, for a hot path that only compares them (and decodes them when they differ)."""
    fields = dtype.fields
    assert fields is not None and dtype.names is not None
    items = []  # (offset, end, struct code)
    for name in dtype.names if names is None else names:
        field_dtype, offset = fields[name][0], fields[name][1]
        base, count = field_dtype.base, int(np.prod(field_dtype.shape or (1,)))
        code = f"{base.itemsize}s" if base.kind == "S" else _STRUCT_CODES[f"{base.kind}{base.itemsize}"]
        items.append((offset, offset + field_dtype.itemsize, f"{count}{code}" if count > 1 else code))
    for first, last in raw_spans:
        offset, end = fields[first][1], fields[last][1] + fields[last][0].itemsize
        items.append((offset, end, f"{end - offset}s"))
    parts, position = ["<"], start
    for offset, end, code in sorted(items):
        if offset < position:
            raise ValueError(f"fields overlap at offset {offset} in {dtype}")
        parts += ["x" * (offset - position), code]
        position = end
    if size is not None:
        parts.append("x" * (size - position))
    return struct.Struct("".join(parts))


def record_struct(event_type: EventType) -> struct.Struct:
    """A ``struct.Struct`` laid out exactly like the type's whole record: ``pack_into`` fills
    every field (in dtype order, arrays flattened) in one C call."""
    packer = fields_struct(DTYPES[event_type], size=RECORD_SIZE)
    assert packer.size == RECORD_SIZE
    return packer


def layout_hash() -> int:
    """A 64-bit fingerprint of every record layout; journals refuse a file made with another."""
    text = repr([(int(t), DTYPES[t].descr) for t in sorted(DTYPES)]) + f"/{RECORD_SIZE}"
    return int.from_bytes(hashlib.sha256(text.encode()).digest()[:8], "little")


LAYOUT_HASH = layout_hash()


def empty(event_type: EventType, count: int = 1) -> np.ndarray:
    """Zeroed records of one type with ``type`` set and the NaN sentinels in every price."""
    records = np.zeros(count, dtype=DTYPES[event_type])
    records["type"] = event_type
    records["instrument_index"] = -1
    for field in BODIES[event_type]:
        if field.format == "<f8" and "NaN" in field.doc:
            records[field.name] = np.nan
    return records


def concatenate(parts: Iterable[np.ndarray], event_type: EventType) -> np.ndarray:
    """Records of one type joined into one array. np.concatenate would promote the padded
    record dtype to a packed one (itemsize below RECORD_SIZE), which journals cannot take."""
    parts = list(parts)
    out = np.zeros(sum(len(part) for part in parts), dtype=DTYPES[event_type])
    position = 0
    for part in parts:
        out[position:position + len(part)] = part
        position += len(part)
    return out


def describe() -> str:
    """The protocol as a Markdown table per event type (``hftctl events``)."""
    lines: list[str] = []
    sections = (("header (every record)", HEADER, HEADER_DTYPE),
                *((t.name, BODIES[t], DTYPES[t]) for t in EventType))
    for title, body, dtype in sections:
        lines += [f"### {title}", "", "| field | type | offset | meaning |", "|---|---|---|---|"]
        for field in body:
            shape = _shape(field, body)
            fmt = field.format + (f"[{shape[0]}]" if shape else "")
            lines.append(f"| {field.name} | {fmt} | {dtype.fields[field.name][1]} | {field.doc} |")  # type: ignore[index]
        lines.append("")
    return "\n".join(lines)
