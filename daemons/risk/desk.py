"""The order desk: the risk daemon's single path from a strategy's request to the gateway.

For each request the engine journaled (ORDER_REQ, CANCEL_REQ), in journal order:

1. the check chain decides;
2. the decision is committed to the risk journal (ORDER_SEND or CANCEL_REQ when accepted,
   RISK_REJECT with the rule and the reason when not), carrying the request's engine-journal
   seq as ``origin_seq``;
3. only then is an accepted request published on the daemon's bus, where the gateway plugin
   (simulated exchange, CTP) sends it.

Everything the gateway returns (RTN_ORDER, RTN_TRADE) and every ALERT published on the bus
is committed to the same journal the moment it is published, so the risk journal is the
whole story in the order it happened: the engine follows it for its returns, the monitor
for everything. Each fill moves the exact position book (``daemons/trade/book.py``) the desk
keeps beside the gateway, whose POS_UPDATE for the side it moved follows the fill into the
journal; ticks mark the book, and the first tick of a new trading day rolls it (every lot
becomes yesterday's, at the last settlement price seen, else the last price).

Restart: the desk reads its own journal first. Requests up to the highest ``origin_seq`` in
it were decided already and are not decided again; the engine journal is followed from the
next one. An ORDER_SEND with no return after it may never have reached the gateway (the
daemon died between the commit and the call): it is published once more, flagged
``RECOVERED``, and the gateway answers with what it knows of it, or LOST. A fresh risk
journal does not decide the engine's whole history: it starts ``max_request_age_s`` back.
"""

from __future__ import annotations

import struct
import time
from collections.abc import Iterable, Mapping
from decimal import Decimal
from typing import Any, NamedTuple, Protocol

import numpy as np
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from pydantic import BaseModel, ConfigDict, Field

from hft.daemons.refdata.instruments import ProductTable
from hft.daemons.runtime.events import (
    DTYPES,
    EventType,
    OrderFlag,
    OrderStatus,
    empty,
    fields_struct,
)
from hft.daemons.runtime.journal import (
    JournalError,
    JournalFormatError,
    JournalLapped,
    JournalNotFound,
    JournalReader,
    JournalWriter,
    seq_at_time,
)
from hft.daemons.runtime.plugins import Plugin, PluginContext
from hft.daemons.runtime.waitmode import WaitMode
from hft.daemons.trade.book import BookError, PositionBook, PositionEntry, pack_pos_update

ATTACH_INTERVAL_S = 0.5
"""How often the desk looks for an engine journal that does not exist yet."""

_ORDER_REQ, _CANCEL_REQ = int(EventType.ORDER_REQ), int(EventType.CANCEL_REQ)
_ORDER_SEND, _REJECT = int(EventType.ORDER_SEND), int(EventType.RISK_REJECT)
_RTN_ORDER, _RTN_TRADE = int(EventType.RTN_ORDER), int(EventType.RTN_TRADE)
_POS_UPDATE = int(EventType.POS_UPDATE)
_HEAD = struct.Struct("<QqH")  # seq, ts_ns, type: the first three header fields
_ORIGIN = {t: DTYPES[t].fields["origin_seq"][1]  # type: ignore[index]
           for t in (EventType.ORDER_SEND, EventType.CANCEL_REQ, EventType.RISK_REJECT)}
_KEY = {t: fields_struct(DTYPES[t], ("source", "order_ref", "account"))
        for t in (EventType.ORDER_REQ, EventType.CANCEL_REQ, EventType.RTN_ORDER,
                  EventType.RTN_TRADE, EventType.RISK_REJECT)}
_REJECT_BODY = fields_struct(DTYPES[EventType.RISK_REJECT],
                             ("ts_ns", "trading_day", "instrument_index", "source", "instrument",
                              "exchange", "order_ref", "rule", "reason", "account", "origin_seq"))
_REQUEST_HEAD = fields_struct(DTYPES[EventType.ORDER_REQ],
                              ("trading_day", "instrument_index", "source", "instrument",
                               "exchange", "order_ref", "account"))
_STATUS = fields_struct(DTYPES[EventType.RTN_ORDER], ("status",))
_FILL = fields_struct(DTYPES[EventType.RTN_TRADE],
                      ("trading_day", "instrument", "price", "volume",
                       "direction", "offset", "account")).unpack_from
_MARK = fields_struct(DTYPES[EventType.MARKET_DATA],
                      ("trading_day", "instrument", "last_price", "settlement_price")).unpack_from
_TERMINAL = frozenset({OrderStatus.ALL_TRADED, OrderStatus.CANCELLED, OrderStatus.REJECTED,
                       OrderStatus.LOST})


class Rejection(NamedTuple):
    """Why a request is refused: a reason code (``rule`` in RISK_REJECT) and a text."""

    code: str
    text: str


class CheckChain(Protocol):
    """What the desk asks before it lets a request through, and tells after."""

    def decide_insert(self, order: Any, now_ns: int) -> Rejection | None: ...

    def decide_cancel(self, cancel: Any, now_ns: int) -> Rejection | None: ...

    def on_order(self, rtn: Any) -> None: ...

    def on_trade(self, trade: Any) -> None: ...


class DeskConfig(BaseModel):
    model_config = ConfigDict(extra="forbid")

    orders: str = Field(default="engine", min_length=1)
    """The engine journal followed for ORDER_REQ and CANCEL_REQ."""
    journal: str = Field(default="risk", min_length=1)
    """This daemon's journal: decisions, returns, positions (the desk is its only writer)."""
    max_request_age_s: float = Field(default=10.0, gt=0, allow_inf_nan=False)
    """A request older than this when the desk reads it is refused (``stale``), so a risk
    daemon that was down does not send what strategies asked for long ago."""
    batch: int = Field(default=256, ge=1)
    """Requests decided per poll at most."""
    margin_rates: dict[str, Decimal] = {}
    """Product code -> margin rate of the position book (0.12 = 12%)."""
    default_margin_rate: Decimal = Field(default=Decimal(0), ge=0, le=1)


OrderKey = tuple[int, int, bytes]
"""(source, order_ref, account) of an order: the engine's id for it."""


class WorkingOrder:
    """An order sent and not finished: its ORDER_SEND (a copy) and what the returns said."""

    __slots__ = ("order_sys_id", "record", "status")

    def __init__(self, record: Any) -> None:
        self.record = record
        self.status = int(OrderStatus.SUBMITTING)
        self.order_sys_id = b""


class _CancelCommand(BaseModel):
    model_config = ConfigDict(extra="forbid")

    order_ref: int
    account: str | None = Field(default=None, min_length=1, max_length=16)


class OrderDesk(Plugin):
    """Risk daemon plugin: engine journal -> checks -> risk journal -> gateway (bus)."""

    Config = DeskConfig

    def __init__(self, chain: CheckChain | None = None) -> None:
        self.chain: CheckChain = chain if chain is not None else _PassAll()

    def init(self, ctx: PluginContext) -> None:
        super().init(ctx)
        self.config: DeskConfig = ctx.config
        self.decided = self.sent = self.rejected = self.returns = self.lapped = 0
        self.working: dict[OrderKey, WorkingOrder] = {}
        """Orders sent and not finished, by key."""
        self._writer: JournalWriter | None = None
        self._reader: JournalReader | None = None
        self._resume_seq = 0
        self._last_rejection = Rejection("", "")
        self._max_age_ns = int(self.config.max_request_age_s * 1e9)
        buffers = {t: empty(t) for t in (EventType.ORDER_SEND, EventType.CANCEL_REQ,
                                         EventType.RISK_REJECT)}
        self._out = {t: records[0] for t, records in buffers.items()}
        self._out_bytes = {t: records.view(np.uint8).data for t, records in buffers.items()}
        self.book = PositionBook(ProductTable.load(), self.config.margin_rates,
                                 self.config.default_margin_rate)
        self._book_day = 0
        self._held: dict[bytes, str] = {}
        """Instruments the book has entries in: their id as the book spells it."""
        self._settlements: dict[bytes, float] = {}
        position = empty(EventType.POS_UPDATE)
        self._position, self._position_bytes = position[0], position.view(np.uint8).data
        for event_type in (EventType.RTN_ORDER, EventType.RTN_TRADE, EventType.ALERT,
                           EventType.POS_UPDATE):
            ctx.subscribe(event_type, self._journal_return)
        ctx.subscribe(EventType.MARKET_DATA, self._mark)

    def start(self) -> None:
        self._writer = JournalWriter(self.ctx.host.journal_dir, self.config.journal)
        in_flight = self._recover()
        for record in in_flight:
            record["flags"] = int(OrderFlag.RECOVERED)
            self.ctx.bus.publish(_ORDER_SEND, record)
        if not self._attach():
            self.ctx.log.info("waiting for the engine journal to appear",
                              extra={"journal": self.config.orders})
            self.ctx.call_every(ATTACH_INTERVAL_S, self._attach)

    def stop(self) -> None:
        if self._reader is not None:
            self._reader.close()
            self._reader = None
        if self._writer is not None:
            self._writer.close()
            self._writer = None

    # --- the request path -------------------------------------------------------------

    def poll(self) -> int:
        reader = self._reader
        if reader is None:
            return 0
        count = 0
        for _ in range(self.config.batch):
            try:
                record = reader.read()
            except JournalLapped as lapped:
                self.lapped += lapped.missed
                self.ctx.log.error("requests lost to engine journal retention before they were "
                                   "decided", extra={"error": str(lapped)})
                continue
            if record is None:
                break
            event_type = reader.last_type
            if event_type == _ORDER_REQ:
                self._decide_insert(record, reader.next_seq - 1)
            elif event_type == _CANCEL_REQ:
                self._decide_cancel(record, reader.next_seq - 1)
            else:
                continue
            count += 1
        self.decided += count
        return count

    def _decide_insert(self, order: Any, origin_seq: int) -> None:
        now = time.time_ns()
        rejection = self._stale(order, now) or self.chain.decide_insert(order, now)
        if rejection is not None:
            self._reject(EventType.ORDER_REQ, order, origin_seq, rejection, now)
            return
        record = self._decision(EventType.ORDER_SEND, order, origin_seq, now)
        self.working[_KEY[EventType.ORDER_REQ].unpack_from(record)] = WorkingOrder(record.copy())
        self.sent += 1
        self.ctx.bus.publish(_ORDER_SEND, record)

    def _decide_cancel(self, cancel: Any, origin_seq: int) -> None:
        now = time.time_ns()
        rejection = self._stale(cancel, now) or self.chain.decide_cancel(cancel, now)
        if rejection is not None:
            self._reject(EventType.CANCEL_REQ, cancel, origin_seq, rejection, now)
            return
        record = self._decision(EventType.CANCEL_REQ, cancel, origin_seq, now)
        self.ctx.bus.publish(_CANCEL_REQ, record)

    def _stale(self, request: Any, now_ns: int) -> Rejection | None:
        age_ns = now_ns - int(request["ts_ns"])
        if age_ns <= self._max_age_ns:
            return None
        return Rejection("stale", f"request is {age_ns / 1e9:.1f} s old, more than "
                                  f"max_request_age_s {self.config.max_request_age_s:g}")

    def _decision(self, event_type: EventType, request: Any, origin_seq: int,
                  now_ns: int) -> Any:
        """The accepted request as ``event_type``, committed; returns the desk's copy."""
        assert self._writer is not None
        out, raw = self._out[event_type], self._out_bytes[event_type]
        raw[:] = request.tobytes()
        _HEAD.pack_into(raw, 0, 0, now_ns, int(event_type))
        struct.pack_into("<Q", raw, _ORIGIN[event_type], origin_seq)
        out["seq"] = self._writer.append(out)
        return out

    def _reject(self, kind: EventType, request: Any, origin_seq: int, rejection: Rejection,
                now_ns: int) -> None:
        assert self._writer is not None
        day, index, source, instrument, exchange, ref, account = _REQUEST_HEAD.unpack_from(
            request)
        raw = self._out_bytes[EventType.RISK_REJECT]
        _REJECT_BODY.pack_into(raw, 0, now_ns, day, index, source, instrument, exchange, ref,
                               rejection.code.encode(), rejection.text.encode()[:128], account,
                               origin_seq)
        out = self._out[EventType.RISK_REJECT]
        out["seq"] = self._writer.append(out)
        self.rejected += 1
        self._last_rejection = rejection
        self.ctx.bus.publish(_REJECT, out)

    # --- the return path --------------------------------------------------------------

    def _journal_return(self, record: Any) -> None:
        """Bus handler: a return is committed the moment it is published."""
        assert self._writer is not None
        self._writer.append(record)
        self.returns += 1
        event_type = int(record["type"])
        if event_type == _RTN_ORDER:
            self._track(record)
            self.chain.on_order(record)
        elif event_type == _RTN_TRADE:
            self.chain.on_trade(record)
            entry = self._book_fill(record)
            if entry is not None:
                self._publish_position(entry, int(record["instrument_index"]))

    def _book_fill(self, trade: Any) -> PositionEntry | None:
        """Move the book by one fill; a fill the book cannot take (a close of lots it does not
        hold: the position predates this journal) is reported, not booked."""
        day, key, price, volume, direction, offset, account = _FILL(trade)
        self._roll_to(day)
        instrument = self._held.get(key) or key.rstrip(b"\0").decode()
        try:
            contract = self.book.contract(instrument)
            entry = self.book.trade(account.rstrip(b"\0").decode(), instrument, direction, offset,
                                    contract.ticks(price), volume)
        except BookError as exc:
            self.ctx.log.error("a fill the position book cannot take",
                               extra={"instrument": instrument, "error": str(exc)})
            return None
        self._held[key] = instrument
        return entry

    def _publish_position(self, entry: PositionEntry, instrument_index: int) -> None:
        """POS_UPDATE of one side, on the bus (the desk journals it there, like any return)."""
        pack_pos_update(self._position_bytes, 0, entry, ts_ns=time.time_ns(),
                        trading_day=self._book_day, instrument_index=instrument_index, source=0)
        self.ctx.bus.publish(_POS_UPDATE, self._position)

    def _mark(self, tick: Any) -> None:
        """Bus handler: mark the held instruments at their latest price."""
        day, key, last, settlement = _MARK(tick)
        if day > self._book_day:
            self._roll_to(day)
        instrument = self._held.get(key)
        if instrument is None:
            return
        if settlement == settlement:
            self._settlements[key] = settlement
        if last == last:
            self.book.mark(instrument, self.book.contract(instrument).ticks(last))

    def _roll_to(self, day: int) -> None:
        """A new trading day: mark at the settlements seen, then every lot is yesterday's."""
        if day <= self._book_day:
            return
        if self._book_day:
            for key, settlement in self._settlements.items():
                instrument = self._held[key]
                self.book.mark(instrument, self.book.contract(instrument).ticks(settlement))
            self.book.roll()
            self._settlements.clear()
        self._book_day = day

    def _track(self, rtn: Any) -> None:
        key = _KEY[EventType.RTN_ORDER].unpack_from(rtn)
        (status,) = _STATUS.unpack_from(rtn)
        if status in _TERMINAL:
            self.working.pop(key, None)
        elif (order := self.working.get(key)) is not None:
            order.status = status
            order.order_sys_id = bytes(rtn["order_sys_id"])

    # --- restart ----------------------------------------------------------------------

    def _recover(self) -> list[Any]:
        """Read the desk's own journal: where to resume, what is working, what is in flight."""
        directory, name = self.ctx.host.journal_dir, self.config.journal
        reader = JournalReader(directory, name, start="begin", wait_mode=WaitMode.BUSY)
        in_flight: dict[OrderKey, Any] = {}
        try:
            while True:
                record: Any
                try:
                    record = reader.read()
                except JournalLapped:
                    continue
                if record is None:
                    break
                event_type = reader.last_type
                if event_type in (_ORDER_SEND, _CANCEL_REQ, _REJECT):
                    self._resume_seq = max(self._resume_seq, int(record["origin_seq"]))
                if event_type == _ORDER_SEND:
                    key = _KEY[EventType.ORDER_REQ].unpack_from(record)
                    self.working[key] = WorkingOrder(record.copy())
                    in_flight[key] = self.working[key].record
                elif event_type in (_RTN_ORDER, _RTN_TRADE):
                    key = _KEY[EventType(event_type)].unpack_from(record)
                    in_flight.pop(key, None)
                    if event_type == _RTN_ORDER:
                        self._track(record)
                        self.chain.on_order(record)
                    else:
                        self.chain.on_trade(record)
                        self._book_fill(record)
        finally:
            reader.close()
        if self._resume_seq or in_flight:
            self.ctx.log.info("risk journal recovered", extra={
                "decided_up_to": self._resume_seq, "working": len(self.working),
                "in_flight": len(in_flight)})
        return list(in_flight.values())

    def _attach(self) -> bool:
        if self._reader is not None:
            return True
        directory, name = self.ctx.host.journal_dir, self.config.orders
        try:
            start: int = (self._resume_seq + 1 if self._resume_seq
                          else seq_at_time(directory, name, time.time_ns() - self._max_age_ns))
            self._reader = JournalReader(directory, name, start=start, wait_mode=WaitMode.BLOCK)
        except JournalFormatError as exc:
            self.ctx.log.error("the engine journal cannot be read", extra={"error": str(exc)})
            return False
        except (JournalNotFound, JournalError):
            return False
        self.ctx.add_poller(self.poll)
        self.ctx.set_idle_waiter(self._reader.wait)
        self.ctx.log.info("following the engine journal",
                          extra={"journal": name, "from_seq": self._reader.next_seq})
        return True

    # --- control --------------------------------------------------------------------------

    def command(self, name: str, args: Mapping[str, Any]) -> Any:
        """``cancel``: {"order_ref": N[, "account": A]}: cancel a working order by hand. The
        cancel is decided and journaled like a strategy's (``origin_seq`` 0: no request)."""
        if name != "cancel":
            raise ValueError(f"unknown command {name!r}; known: cancel")
        request = _CancelCommand.model_validate(args)
        matches = [order for (_, ref, account), order in self.working.items()
                   if ref == request.order_ref
                   and (request.account is None or account.rstrip(b"\0") == request.account.encode())]
        if not matches:
            raise ValueError(f"no working order with order_ref {request.order_ref}"
                             + (f" in account {request.account!r}" if request.account else ""))
        if len(matches) > 1:
            accounts = sorted(bytes(o.record["account"]).rstrip(b"\0").decode() for o in matches)
            raise ValueError(f"order_ref {request.order_ref} is working in accounts {accounts}; "
                             "name the account")
        order = matches[0]
        cancel = empty(EventType.CANCEL_REQ)[0]
        for field in ("trading_day", "instrument_index", "source", "instrument", "exchange",
                      "order_ref", "account"):
            cancel[field] = order.record[field]
        cancel["order_sys_id"] = order.order_sys_id
        cancel["ts_ns"] = time.time_ns()
        before = self.rejected
        self._decide_cancel(cancel, 0)
        if self.rejected != before:
            raise ValueError(f"the cancel was refused: {self._last_rejection}")
        return {"cancelled": request.order_ref, "account": bytes(cancel["account"]).rstrip(
            b"\0").decode(), "instrument": bytes(cancel["instrument"]).rstrip(b"\0").decode()}

    def metrics(self) -> Iterable[Metric]:
        families: list[Metric] = []
        for name, doc, value in (
                ("hft_risk_decisions", "Requests decided (ORDER_REQ and CANCEL_REQ)", self.decided),
                ("hft_risk_orders_sent", "ORDER_SENDs committed and passed to the gateway",
                 self.sent),
                ("hft_risk_rejects", "Requests refused (RISK_REJECT)", self.rejected),
                ("hft_risk_returns", "Returns committed to the risk journal", self.returns)):
            family = CounterMetricFamily(name, doc)
            family.add_metric([], value)
            families.append(family)
        working = GaugeMetricFamily("hft_risk_working_orders", "Orders sent and not finished")
        working.add_metric([], len(self.working))
        families.append(working)
        return families


class _PassAll:
    """The chain before any check is configured: every request passes."""

    def decide_insert(self, order: Any, now_ns: int) -> Rejection | None:
        return None

    def decide_cancel(self, cancel: Any, now_ns: int) -> Rejection | None:
        return None

    def on_order(self, rtn: Any) -> None:
        return None

    def on_trade(self, trade: Any) -> None:
        return None

