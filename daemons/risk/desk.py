"""The order desk: the risk daemon's single path from a strategy's request to the gateway.

For each request the engine journaled (ORDER_REQ, CANCEL_REQ), in journal order:

1. the check chain decides;
2. the decision is committed to the risk journal (ORDER_SEND or CANCEL_REQ when accepted,
   RISK_REJECT with the rule and the reason when not), carrying the request's engine-journal
   seq as ``origin_seq``;
3. only then is an accepted request published on the daemon's bus, where the gateway plugin
   (simulated exchange, CTP) sends it.

The checks are the pre-trade chain (``chain.py``), configured by the plugin's ``limits``
table, deciding on the request's own ``ts_ns`` (a replay decides alike). Everything the gateway returns
(RTN_ORDER, RTN_TRADE) and every ALERT published on the bus is committed to the same journal
the moment it is published, so the risk journal is the whole story in the order it happened:
the engine follows it for its returns, the monitor for everything. Each fill moves the live
position book (``daemons/trade/livebook.py``) beside the gateway, whose POS_UPDATE for the
side it moved follows the fill into the journal; the checks read their positions from it.

Control (``hftctl risk`` and ``cancel``, through PluginCommand): cancel one order, the kill
switch (refuse everything new, optionally cancel every working order) and resume, show and
set limits. Each switch and limit change is journaled as an ALERT (who, what) and replayed on
restart, so it persists.

Restart: the desk reads its own journal first: decisions and returns rebuild the chain's
counters (rate windows, the day's cancels, live orders), the book and the limit changes.
Requests up to the highest ``origin_seq`` in it were decided already and are not decided
again; the engine journal is followed from the next one. An ORDER_SEND with no return after
it may never have reached the gateway (the daemon died between the commit and the call): it
is published once more, flagged ``RECOVERED``, and the gateway answers with what it knows of
it, or LOST. A fresh risk journal does not decide the engine's whole history: it starts
``max_request_age_s`` back, and an older request is refused as ``stale``.
"""

from __future__ import annotations

import json
import struct
import time
from collections import Counter
from collections.abc import Iterable, Mapping
from typing import Any

import numpy as np
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from pydantic import BaseModel, ConfigDict, Field

from hft.daemons.refdata.instruments import ProductTable
from hft.daemons.risk.book_metrics import book_families
from hft.daemons.risk.chain import Rejection, RiskChain
from hft.daemons.risk.checks import LOSS_LIMIT
from hft.daemons.risk.limits import RiskLimits
from hft.daemons.runtime.alerts import AlertPublisher
from hft.daemons.runtime.events import (
    DTYPES,
    FINAL_STATUSES,
    RECORD_SIZE,
    AlertLevel,
    EventType,
    OrderFlag,
    OrderStatus,
    empty,
    fields_struct,
)
from hft.daemons.runtime.journal import (
    ATTACH_INTERVAL_S,
    JournalLapped,
    JournalReader,
    JournalWriter,
    if_there,
    seq_at_time,
)
from hft.daemons.runtime.latency import LatencySamples
from hft.daemons.runtime.plugins import Plugin, PluginContext
from hft.daemons.runtime.waitmode import WaitMode
from hft.daemons.trade.book import BookError, PositionEntry
from hft.daemons.trade.fees import Fees
from hft.daemons.trade.livebook import LiveBook

_ORDER_REQ, _CANCEL_REQ = int(EventType.ORDER_REQ), int(EventType.CANCEL_REQ)
_ORDER_SEND, _REJECT = int(EventType.ORDER_SEND), int(EventType.RISK_REJECT)
_RTN_ORDER, _RTN_TRADE = int(EventType.RTN_ORDER), int(EventType.RTN_TRADE)
_POS_UPDATE = int(EventType.POS_UPDATE)
_TS_TYPE = struct.Struct("<qH")  # ts_ns, type: the header fields after the seq
_SEQ = struct.Struct("<Q")
_TS = fields_struct(DTYPES[EventType.ORDER_REQ], ("ts_ns",)).unpack_from
"""A request's ts_ns (the header's, the same in every type)."""
_ORIGIN = {t: DTYPES[t].fields["origin_seq"][1]  # type: ignore[index]
           for t in (EventType.ORDER_SEND, EventType.CANCEL_REQ, EventType.RISK_REJECT)}
_KEY = {t: fields_struct(DTYPES[t], ("source", "order_ref", "account"))
        for t in (EventType.ORDER_REQ, EventType.RTN_ORDER, EventType.RTN_TRADE)}
_REJECT_BODY = fields_struct(DTYPES[EventType.RISK_REJECT],
                             ("ts_ns", "type", "trading_day", "instrument_index", "source", "instrument",
                              "exchange", "order_ref", "rule", "reason", "account", "origin_seq"))
_REQUEST_HEAD = {t: fields_struct(DTYPES[t], ("trading_day", "instrument_index", "source",
                                               "instrument", "exchange", "order_ref", "account"))
                 for t in (EventType.ORDER_REQ, EventType.CANCEL_REQ)}
"""What a RISK_REJECT repeats of the request it refuses (the two layouts differ)."""
_STATUS = fields_struct(DTYPES[EventType.RTN_ORDER], ("status",))
_FILL_KEY = fields_struct(DTYPES[EventType.RTN_TRADE],
                          ("source", "order_ref", "volume", "account")).unpack_from
_DAY = fields_struct(DTYPES[EventType.ORDER_SEND], ("trading_day",)).unpack_from
"""A record's trading_day (the header's, the same in every type)."""
_INDEX = fields_struct(DTYPES[EventType.ORDER_SEND], ("instrument_index",)).unpack_from
"""A record's instrument_index (the header's, the same in every type)."""
_ALERT_TEXT = fields_struct(DTYPES[EventType.ALERT], ("code", "message")).unpack_from
_CONTROL_CODES = (b"limit_set", b"kill_switch", b"resume")
"""ALERT codes of control actions, replayed on restart so they persist."""


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
    durable: bool = False
    """msync each decision and return before going on: the risk journal survives a power
    loss, at about 100 µs a record (``hftctl bench journal``: durable_append)."""
    fees: dict[str, Fees] = {}
    """Product code (``IF``, ``rb``) -> its commissions and margin rate, for the position
    book (what the account's counter charges)."""
    default_fees: Fees = Fees()
    """For products ``fees`` does not name."""
    limits: RiskLimits = RiskLimits()
    """The pre-trade limits: ``[default]`` and ``[accounts.NAME]`` tables (limits.py names the
    keys); a check whose key is not set is off. Changes made at run time are journaled and
    win over this table until changed again."""


OrderKey = tuple[int, int, bytes]
"""(source, order_ref, account) of an order: the engine's id for it."""


class WorkingOrder:
    """An order sent and not finished: its ORDER_SEND's bytes and what the returns said."""

    __slots__ = ("filled", "order_sys_id", "raw", "status")

    def __init__(self, raw: bytes) -> None:
        self.raw = raw
        """The ORDER_SEND as bytes: a copy costs a tenth of a numpy record's on the hot path."""
        self.status = int(OrderStatus.SUBMITTING)
        self.order_sys_id = b""
        self.filled = 0
        """Lots of its RTN_TRADEs so far."""

    @property
    def record(self) -> Any:
        """The ORDER_SEND as a record (a new view, for the slow paths)."""
        return np.frombuffer(bytearray(self.raw), DTYPES[EventType.ORDER_SEND])[0]

    def cancel_request(self) -> Any:
        """A CANCEL_REQ for this order, stamped now."""
        cancel = empty(EventType.CANCEL_REQ)[0]
        for field in ("trading_day", "instrument_index", "source", "instrument", "exchange",
                      "order_ref", "account"):
            cancel[field] = self.record[field]
        cancel["order_sys_id"] = self.order_sys_id
        cancel["ts_ns"] = time.time_ns()
        return cancel


class _CancelCommand(BaseModel):
    model_config = ConfigDict(extra="forbid")

    order_ref: int
    account: str | None = Field(default=None, min_length=1, max_length=16)


class _KillCommand(BaseModel):
    model_config = ConfigDict(extra="forbid")

    cancel_all: bool = False
    by: str = Field(default="", max_length=48)
    """Who asked (``hftctl`` sends user@host): journaled with the switch."""


class _SetCommand(BaseModel):
    model_config = ConfigDict(extra="forbid")

    account: str = Field(min_length=1, max_length=16)
    """An account's table, or ``default``."""
    key: str = Field(min_length=1, max_length=32)
    value: bool | int | float | str | None
    """None unsets the key (the check goes off, or falls back to ``default``)."""
    by: str = Field(default="", max_length=48)


class _By(BaseModel):
    model_config = ConfigDict(extra="forbid")

    by: str = Field(default="", max_length=48)


class OrderDesk(Plugin):
    """Risk daemon plugin: engine journal -> checks -> risk journal -> gateway (bus)."""

    Config = DeskConfig

    def init(self, ctx: PluginContext) -> None:
        super().init(ctx)
        self.config: DeskConfig = ctx.config
        self.decided = self.sent = self.rejected = self.returns = self.lapped = 0
        self.rejects: Counter[str] = Counter()
        """Refusals by reason code (the chain's codes, and ``stale``)."""
        self.working: dict[OrderKey, WorkingOrder] = {}
        """Orders sent and not finished, by key."""
        self.decision_latency = LatencySamples()
        """ORDER_REQ read -> its ORDER_SEND committed, ns."""
        self.request_latency = LatencySamples()
        """ORDER_REQ stamped by the engine -> its ORDER_SEND committed, ns."""
        self._writer: JournalWriter | None = None
        self._reader: JournalReader | None = None
        self._resume_seq = 0
        self._last_rejection = Rejection("", "")
        self._max_age_ns = int(self.config.max_request_age_s * 1e9)
        buffers = {t: empty(t) for t in (EventType.ORDER_SEND, EventType.CANCEL_REQ,
                                         EventType.RISK_REJECT)}
        self._out = {t: records[0] for t, records in buffers.items()}
        self._out_bytes = {t: records.view(np.uint8).data for t, records in buffers.items()}
        products = ProductTable.load()
        self.positions = LiveBook(products, self.config.fees, self.config.default_fees)
        self.chain = RiskChain(self.config.limits, products, alert=self._chain_alert)
        self.chain.set_position_view(self.positions)
        self._alerts = AlertPublisher(ctx.bus, ctx.name)
        for event_type in (EventType.RTN_ORDER, EventType.RTN_TRADE, EventType.ALERT,
                           EventType.POS_UPDATE):
            ctx.subscribe(event_type, self._journal_return)
        ctx.subscribe(EventType.MARKET_DATA, self._on_tick)

    def start(self) -> None:
        self._writer = JournalWriter(self.ctx.host.journal_dir, self.config.journal,
                                     durable=self.config.durable)
        in_flight = self._recover()
        for record in in_flight:
            record["flags"] = int(OrderFlag.RECOVERED)
            self.ctx.bus.publish(_ORDER_SEND, record)
        if not self.ctx.call_until(ATTACH_INTERVAL_S, self._attach):
            self.ctx.log.info("waiting for the engine journal to appear",
                              extra={"journal": self.config.orders})

    def stop(self) -> None:
        for journal in (self._reader, self._writer):
            if journal is not None:
                journal.close()
        self._reader = self._writer = None

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
        requested = _TS(order)[0]
        rejection = (self._stale(requested, now)
                     or self.chain.decide_insert(order, requested))
        if rejection is not None:
            self._reject(EventType.ORDER_REQ, order, origin_seq, rejection, now)
            return
        for resting in self.chain.cancel_first:  # self_trade = "cancel_resting"
            self._cancel_working(resting.account, resting.order_ref, origin_seq)
        record = self._decision(EventType.ORDER_SEND, order, origin_seq, now)
        committed = time.time_ns()
        self.decision_latency.add(committed - now)
        self.request_latency.add(committed - requested)
        key = _KEY[EventType.ORDER_REQ].unpack_from(record)
        self.working[key] = WorkingOrder(record.tobytes())
        self.sent += 1
        self.ctx.bus.publish(_ORDER_SEND, record)
        working = self.working.get(key)
        if working is not None:  # still working after the gateway call: freeze what is left
            self._roll_to(_DAY(working.raw)[0])
            frozen = self.positions.freeze(working.raw, working.filled)
            if frozen is not None:
                self._publish_position(frozen, _INDEX(working.raw)[0])

    def _decide_cancel(self, cancel: Any, origin_seq: int) -> None:
        now = time.time_ns()
        requested = _TS(cancel)[0]
        rejection = (self._stale(requested, now)
                     or self.chain.decide_cancel(cancel, requested))
        if rejection is not None:
            self._reject(EventType.CANCEL_REQ, cancel, origin_seq, rejection, now)
            return
        self._send_cancel(cancel, origin_seq)

    def _send_cancel(self, cancel: Any, origin_seq: int) -> None:
        record = self._decision(EventType.CANCEL_REQ, cancel, origin_seq, time.time_ns())
        self.ctx.bus.publish(_CANCEL_REQ, record)

    def _cancel_working(self, account: str, order_ref: int, origin_seq: int) -> None:
        """Send the cancel of a working order the chain decided already (kill switch,
        cancel_resting): journaled, never refused."""
        order = self._working(order_ref, account)
        self._send_cancel(order.cancel_request(), origin_seq)

    def _stale(self, requested_ns: int, now_ns: int) -> Rejection | None:
        age_ns = now_ns - requested_ns
        if age_ns <= self._max_age_ns:
            return None
        return Rejection("stale", f"request is {age_ns / 1e9:.1f} s old, more than "
                                  f"max_request_age_s {self.config.max_request_age_s:g}")

    def _decision(self, event_type: EventType, request: Any, origin_seq: int,
                  now_ns: int) -> Any:
        """The accepted request as ``event_type``, packed straight into the risk journal's
        next slot (one copy of the request, not two) and committed; returns the desk's copy
        of it, for the bus: a gateway never holds the journal's slot, so nothing it does can
        change a committed record."""
        assert self._writer is not None
        buffer, start = self._writer.next_slot()
        end = start + RECORD_SIZE
        buffer[start + 8:end] = request.tobytes()[8:]  # the seq is the commit's to write
        _TS_TYPE.pack_into(buffer, start + 8, now_ns, event_type)
        _SEQ.pack_into(buffer, start + _ORIGIN[event_type], origin_seq)
        self._writer.commit()
        self._out_bytes[event_type][:] = buffer[start:end]
        return self._out[event_type]

    def _reject(self, kind: EventType, request: Any, origin_seq: int, rejection: Rejection,
                now_ns: int) -> None:
        assert self._writer is not None
        day, index, source, instrument, exchange, ref, account = _REQUEST_HEAD[kind].unpack_from(
            request)
        raw = self._out_bytes[EventType.RISK_REJECT]
        _REJECT_BODY.pack_into(raw, 0, now_ns, _REJECT, day, index, source, instrument, exchange, ref,
                               rejection.code.encode(), rejection.text.encode()[:128], account,
                               origin_seq)
        out = self._out[EventType.RISK_REJECT]
        _SEQ.pack_into(raw, 0, self._writer.append(out))
        self.rejected += 1
        self.rejects[rejection.code] += 1
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
            released = self.positions.settle(record)
            if released is not None:
                self._publish_position(released, _INDEX(record)[0])
        elif event_type == _RTN_TRADE:
            self.chain.on_trade(record)
            source, ref, volume, account = _FILL_KEY(record)
            working = self.working.get((source, ref, account))
            if working is not None:
                working.filled += volume
            self._book_fill(record, publish=True)

    def _book_fill(self, trade: Any, *, publish: bool) -> None:
        """Move the book by one fill and publish the side's POS_UPDATE; a fill the book cannot
        take is reported (log and ALERT), not booked."""
        if publish:
            self._roll_to(_DAY(trade)[0])
        try:
            entry = self.positions.fill(trade)
        except BookError as exc:
            self.ctx.log.error("a fill the position book cannot take", extra={"error": str(exc)})
            if publish:
                self._alerts.publish(AlertLevel.CRITICAL, b"position_mismatch", str(exc))
            return
        if publish:
            self._publish_position(entry, _INDEX(trade)[0])

    def _publish_position(self, entry: PositionEntry, instrument_index: int) -> None:
        self.ctx.bus.publish(_POS_UPDATE, self.positions.record(
            entry, ts_ns=time.time_ns(), instrument_index=instrument_index))

    def _on_tick(self, tick: Any) -> None:
        """Bus handler: the book's marks (its day roll on the first tick of a trading day)
        and the checks' prices."""
        self._roll_to(_DAY(tick)[0])
        self.positions.mark(tick)
        self.chain.on_tick(tick)

    def _roll_to(self, day: int) -> None:
        """Publish the POS_UPDATE of every side a new trading day moves (today's lots become
        yesterday's, the day's profits and commission start again): without it the engine,
        ``hftctl positions`` and the CTP gateway's reconciliation would see yesterday's."""
        if day > self.positions.trading_day:
            for entry in self.positions.roll_to(day):
                self._publish_position(entry, -1)

    def _chain_alert(self, code: str, text: str) -> None:
        """The chain's alarms as journaled ALERTs: the loss limit reached is critical (the
        account can only reduce), the cancel ratio and daily cancels are warnings."""
        level = AlertLevel.CRITICAL if code == LOSS_LIMIT else AlertLevel.WARNING
        self._alerts.publish(level, code.encode(), text)

    def _track(self, rtn: Any) -> None:
        key = _KEY[EventType.RTN_ORDER].unpack_from(rtn)
        (status,) = _STATUS.unpack_from(rtn)
        if status in FINAL_STATUSES:
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
            for event_type, record in reader.committed():
                if event_type in (_ORDER_SEND, _CANCEL_REQ, _REJECT):
                    self._resume_seq = max(self._resume_seq, int(record["origin_seq"]))
                if event_type == _ORDER_SEND:
                    key = _KEY[EventType.ORDER_REQ].unpack_from(record)
                    self.working[key] = WorkingOrder(record.tobytes())
                    in_flight[key] = self.working[key].record
                    self.chain.restore_insert(record, int(record["ts_ns"]))
                    self.positions.freeze(record)
                elif event_type == _CANCEL_REQ:
                    self.chain.restore_cancel(record, int(record["ts_ns"]))
                elif event_type in (_RTN_ORDER, _RTN_TRADE):
                    key = _KEY[EventType(event_type)].unpack_from(record)
                    in_flight.pop(key, None)
                    if event_type == _RTN_ORDER:
                        self._track(record)
                        self.chain.on_order(record)
                        self.positions.settle(record)
                    else:
                        self.chain.on_trade(record)
                        if (working := self.working.get(key)) is not None:
                            working.filled += int(record["volume"])
                        self._book_fill(record, publish=False)
                elif event_type == int(EventType.ALERT):
                    self._replay_control(record)
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

        def follow() -> JournalReader:
            start = (self._resume_seq + 1 if self._resume_seq
                     else seq_at_time(directory, name, time.time_ns() - self._max_age_ns))
            return JournalReader(directory, name, start=start, wait_mode=WaitMode.BLOCK)

        self._reader = if_there(follow, self.ctx.log)
        if self._reader is None:
            return False
        self.ctx.add_poller(self.poll)
        self.ctx.wake_on(self._reader)
        self.ctx.log.info("following the engine journal",
                          extra={"journal": name, "from_seq": self._reader.next_seq})
        return True

    # --- control --------------------------------------------------------------------------

    def command(self, name: str, args: Mapping[str, Any]) -> Any:
        """``cancel`` {order_ref[, account]}: cancel a working order by hand, decided and
        journaled like a strategy's (``origin_seq`` 0: no request). ``kill`` {cancel_all}:
        refuse everything new (and cancel every working order); ``resume``. ``show``: the
        limits; ``set`` {account, key, value}: change one. Every switch and change is
        journaled as an ALERT naming who asked (``by``) and replayed on restart."""
        commands = {"cancel": self._cancel_command, "kill": self._kill, "resume": self._resume,
                    "show": self._show,
                    "set": self._set}
        handler = commands.get(name)
        if handler is None:
            raise ValueError(f"unknown command {name!r}; known: {', '.join(commands)}")
        return handler(args)

    def _cancel_command(self, args: Mapping[str, Any]) -> dict[str, Any]:
        request = _CancelCommand.model_validate(args)
        order = self._working(request.order_ref, request.account)
        cancel = order.cancel_request()
        before = self.rejected
        self._decide_cancel(cancel, 0)
        if self.rejected != before:
            raise ValueError(f"the cancel was refused: {self._last_rejection.code}: "
                             f"{self._last_rejection.text}")
        return {"cancelled": request.order_ref, "account": _text(cancel["account"]),
                "instrument": _text(cancel["instrument"])}

    def _show(self, args: Mapping[str, Any]) -> dict[str, Any]:
        _By.model_validate(args)
        return {"killed": self.chain.killed, "limits": self.chain.show()}

    def _kill(self, args: Mapping[str, Any]) -> dict[str, Any]:
        request = _KillCommand.model_validate(args)
        working = self.chain.kill(request.cancel_all, time.time_ns())
        self._alerts.publish(AlertLevel.CRITICAL, b"kill_switch", json.dumps(
            {"cancel_all": request.cancel_all, "by": request.by}))
        for order in working:
            self._cancel_working(order.account, order.order_ref, 0)
        return {"killed": True, "cancelled": len(working)}

    def _resume(self, args: Mapping[str, Any]) -> dict[str, Any]:
        by = _By.model_validate(args).by
        self.chain.resume()
        self._alerts.publish(AlertLevel.WARNING, b"resume", json.dumps({"by": by}))
        return {"killed": False}

    def _set(self, args: Mapping[str, Any]) -> dict[str, Any]:
        request = _SetCommand.model_validate(args)
        table = self.chain.set(request.account, request.key, request.value)
        change = json.dumps({"account": request.account, "key": request.key,
                             "value": request.value, "by": request.by})
        if len(change.encode()) > 128:
            raise ValueError("the change does not fit the journal's ALERT message (128 bytes); "
                             "use shorter names")
        self._alerts.publish(AlertLevel.WARNING, b"limit_set", change)
        return table

    def _replay_control(self, alert: Any) -> None:
        """A switch or limit change journaled before the restart, applied again."""
        code, message = _ALERT_TEXT(alert)
        code = code.rstrip(b"\0")
        if code not in _CONTROL_CODES:
            return
        change = json.loads(message.rstrip(b"\0"))
        if code == b"kill_switch":
            self.chain.kill(False)
        elif code == b"resume":
            self.chain.resume()
        else:
            self.chain.set(change["account"], change["key"], change["value"])

    def _working(self, order_ref: int, account: str | None) -> WorkingOrder:
        """The working order ``order_ref`` (of ``account``, when two accounts use the ref)."""
        matches = [order for (_, ref, owner), order in self.working.items()
                   if ref == order_ref and (account is None or owner.rstrip(b"\0") == account.encode())]
        if not matches:
            raise ValueError(f"no working order with order_ref {order_ref}"
                             + (f" in account {account!r}" if account else ""))
        if len(matches) > 1:
            accounts = sorted(_text(order.record["account"]) for order in matches)
            raise ValueError(f"order_ref {order_ref} is working in accounts {accounts}; "
                             "name the account")
        return matches[0]

    def metrics(self) -> Iterable[Metric]:
        families: list[Metric] = []
        for name, doc, value in (
                ("hft_risk_decisions", "Requests decided (ORDER_REQ and CANCEL_REQ)", self.decided),
                ("hft_risk_orders_sent", "ORDER_SENDs committed and passed to the gateway",
                 self.sent),
                ("hft_risk_returns", "Returns committed to the risk journal", self.returns)):
            family = CounterMetricFamily(name, doc)
            family.add_metric([], value)
            families.append(family)
        rejects = CounterMetricFamily("hft_risk_rejects", "Requests refused (RISK_REJECT), by "
                                      "reason code", labels=["reason"])
        for reason, count in list(self.rejects.items()):
            rejects.add_metric([reason], count)
        working = GaugeMetricFamily("hft_risk_working_orders", "Orders sent and not finished")
        working.add_metric([], len(self.working))
        killed = GaugeMetricFamily("hft_risk_kill_switch", "1 while the kill switch is on")
        killed.add_metric([], int(self.chain.killed))
        lag = GaugeMetricFamily("hft_risk_request_lag_records", "Requests committed to the "
                                "engine journal and not read yet", labels=["journal"])
        if (reader := self._reader) is not None:
            lag.add_metric([self.config.orders], reader.lag)
        latencies = (
            self.decision_latency.family("hft_risk_decision_latency_seconds",
                                         "An ORDER_REQ read -> its ORDER_SEND committed"),
            self.request_latency.family("hft_risk_request_to_send_seconds",
                                        "An ORDER_REQ stamped by the engine -> its ORDER_SEND "
                                        "committed here (the engine journal's transit, the "
                                        "wait for the desk and the decision)"))
        return [*families, rejects, working, killed, lag, *latencies,
                *book_families(self.positions, self.chain.limits)]


def _text(value: bytes) -> str:
    return bytes(value).rstrip(b"\0").decode()
