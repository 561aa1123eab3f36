"""The engine's end of the order path: requests out to the engine journal, returns back in.

Out: every ORDER_REQ and CANCEL_REQ published on the engine's bus is appended to the engine
journal (this plugin is its only writer) while the publish is still in progress, so a request
is on disk before the publishing strategy goes on; the risk daemon follows that journal.

In: the risk daemon's journal is followed live and its returns (RTN_ORDER, RTN_TRADE,
RISK_REJECT, POS_UPDATE, ALERT) are published on the bus. The risk journal also holds the
decisions themselves (ORDER_SEND, CANCEL_REQ): those are not republished, so a request can
never loop back into the engine journal.

Attaching (at start, or when the risk journal appears): the link reads the risk journal to
its end, publishing its POS_UPDATEs and the returns of requests this run journaled, but not
the fills of orders an earlier run sent (a restarted engine learns its positions, and no
strategy sees fills it never asked for); then every ORDER_REQ an earlier run journaled that
has no final answer (a terminal RTN_ORDER or a RISK_REJECT) is published again with
``OrderFlag.RECOVERED``: its container takes it up as in flight, so the same change is not
sent twice. Returns are followed live from there.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from pydantic import BaseModel, ConfigDict, Field

from hft.daemons.runtime.events import (
    DTYPES,
    FINAL_STATUSES,
    EventType,
    OrderFlag,
    fields_struct,
)
from hft.daemons.runtime.journal import (
    ATTACH_INTERVAL_S,
    JournalLapped,
    JournalReader,
    JournalWriter,
    if_there,
)
from hft.daemons.runtime.plugins import Plugin, PluginContext
from hft.daemons.runtime.waitmode import WaitMode

RETURNED_TYPES = frozenset({EventType.RTN_ORDER, EventType.RTN_TRADE, EventType.RISK_REJECT,
                            EventType.POS_UPDATE, EventType.ALERT})
"""What the engine takes from the risk journal; the rest (decisions) stays there."""
_POS_UPDATE, _ORDER_REQ = int(EventType.POS_UPDATE), int(EventType.ORDER_REQ)
_REJECT, _RTN_ORDER, _RTN_TRADE = (int(EventType.RISK_REJECT), int(EventType.RTN_ORDER),
                                   int(EventType.RTN_TRADE))
_RECOVERED = int(OrderFlag.RECOVERED)
_ANSWERS = frozenset({_RTN_ORDER, _RTN_TRADE, _REJECT})
_KEY = {t: fields_struct(DTYPES[EventType(t)], ("source", "order_ref", "account")).unpack_from
        for t in (_ORDER_REQ, _REJECT, _RTN_ORDER, _RTN_TRADE)}
_STATUS = fields_struct(DTYPES[EventType.RTN_ORDER], ("status",)).unpack_from
_TYPE_FLAGS = fields_struct(DTYPES[EventType.ORDER_REQ], ("type", "flags")).unpack_from

OrderKey = tuple[int, int, bytes]
"""(source, order_ref, account): a request and every answer to it."""


class OrderLinkConfig(BaseModel):
    model_config = ConfigDict(extra="forbid")

    journal: str = Field(default="engine", min_length=1)
    """The engine journal: ORDER_REQ and CANCEL_REQ, written by this plugin only."""
    returns: str = Field(default="risk", min_length=1)
    """The risk daemon's journal, followed for returns (it may appear later)."""
    batch: int = Field(default=256, ge=1)
    """Returns published per poll at most."""
    durable: bool = False
    """msync each request before the strategy goes on: it survives a power loss, at about
    100 µs a request (``hftctl bench journal``: durable_append)."""


class OrderLink(Plugin):
    """Engine plugin: ORDER_REQ/CANCEL_REQ -> engine journal; risk journal -> returns."""

    Config = OrderLinkConfig

    def init(self, ctx: PluginContext) -> None:
        super().init(ctx)
        self.config: OrderLinkConfig = ctx.config
        self.journaled = self.returned = self.lapped = 0
        self._writer: JournalWriter | None = None
        self._reader: JournalReader | None = None
        self._earlier_runs_last_seq = 0
        self._sent: set[OrderKey] = set()
        """Requests this run journaled before the risk journal was attached."""
        ctx.subscribe(EventType.ORDER_REQ, self._journal)
        ctx.subscribe(EventType.CANCEL_REQ, self._journal)

    def start(self) -> None:
        directory = self.ctx.host.journal_dir
        self._writer = JournalWriter(directory, self.config.journal, durable=self.config.durable)
        self._earlier_runs_last_seq = self._writer.last_seq
        if not self.ctx.call_until(ATTACH_INTERVAL_S, self._attach):
            self.ctx.log.info("waiting for the risk journal to appear",
                              extra={"journal": self.config.returns})

    def stop(self) -> None:
        for journal in (self._reader, self._writer):
            if journal is not None:
                journal.close()
        self._reader = self._writer = None

    def _journal(self, record: Any) -> None:
        """Bus handler: the request is committed before the publish returns (a recovered
        one is in the journal already)."""
        event_type, flags = _TYPE_FLAGS(record)
        if flags & _RECOVERED:
            return
        if self._writer is None:
            raise RuntimeError("the order link is not started: the request is not journaled")
        self._writer.append(record)
        self.journaled += 1
        if self._reader is None and event_type == _ORDER_REQ:  # for the catch-up
            self._sent.add(_KEY[_ORDER_REQ](record))

    def _attach(self) -> bool:
        if self._reader is not None:
            return True
        reader = if_there(lambda: JournalReader(self.ctx.host.journal_dir, self.config.returns,
                                                start="begin", wait_mode=WaitMode.BLOCK),
                          self.ctx.log)
        if reader is None:
            return False
        self._reader = reader
        settled = self._catch_up(reader)
        self._sent.clear()
        recovered = self._recover_requests(settled)
        self.ctx.add_poller(self.poll)
        self.ctx.wake_on(reader)  # a return wakes the engine as a tick does
        self.ctx.log.info("following the risk journal", extra={
            "journal": self.config.returns, "from_seq": reader.next_seq,
            "recovered_requests": recovered})
        return True

    def _catch_up(self, reader: JournalReader) -> set[OrderKey]:
        """Read the risk journal to its end, publishing positions and the returns of this
        run's requests; the keys of the requests it answered for good."""
        settled: set[OrderKey] = set()
        publish = self.ctx.bus.publish
        for event_type, record in reader.committed():
            if event_type == _POS_UPDATE:
                publish(_POS_UPDATE, record)
            elif event_type in _ANSWERS:
                key = _KEY[event_type](record)
                if key in self._sent:
                    publish(event_type, record)
                if event_type == _REJECT or (event_type == _RTN_ORDER
                                             and _STATUS(record)[0] in FINAL_STATUSES):
                    settled.add(key)
        return settled

    def _recover_requests(self, settled: set[OrderKey]) -> int:
        """Publish again every journaled ORDER_REQ without a final answer (RECOVERED)."""
        if not self._earlier_runs_last_seq:
            return 0
        reader = JournalReader(self.ctx.host.journal_dir, self.config.journal, start="begin",
                               wait_mode=WaitMode.BUSY)
        pending: dict[OrderKey, Any] = {}
        try:
            for event_type, record in reader.committed():
                if int(record["seq"]) > self._earlier_runs_last_seq:
                    break  # this run's requests: the catch-up published their answers
                if event_type == _ORDER_REQ:
                    key = _KEY[_ORDER_REQ](record)
                    if key not in settled:
                        pending[key] = record.copy()
        finally:
            reader.close()
        for record in pending.values():
            record["flags"] = _RECOVERED
            self.ctx.bus.publish(_ORDER_REQ, record)
        return len(pending)

    def poll(self) -> int:
        reader = self._reader
        if reader is None:
            return 0
        publish, count = self.ctx.bus.publish, 0
        for _ in range(self.config.batch):
            try:
                record = reader.read()
            except JournalLapped as lapped:
                self.lapped += lapped.missed
                self.ctx.log.warning("returns lost to retention", extra={"error": str(lapped)})
                continue
            if record is None:
                break
            event_type = reader.last_type
            if event_type not in RETURNED_TYPES:
                continue
            publish(event_type, record)
            count += 1
        self.returned += count
        return count

    def metrics(self) -> Iterable[Metric]:
        journaled = CounterMetricFamily("hft_order_link_requests",
                                        "ORDER_REQ and CANCEL_REQ written to the engine journal")
        journaled.add_metric([], self.journaled)
        returned = CounterMetricFamily("hft_order_link_returns",
                                       "Returns from the risk journal published on the bus")
        returned.add_metric([], self.returned)
        lag = GaugeMetricFamily("hft_order_link_lag_records",
                                "Risk journal records committed but not read yet")
        reader = self._reader
        lag.add_metric([], reader.lag if reader is not None else 0)
        return (journaled, returned, lag)
