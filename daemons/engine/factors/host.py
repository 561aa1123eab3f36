"""Factor plugins: run factor definitions on every instrument seen and publish FACTOR events.

:class:`FactorHost` is the machinery: it subscribes to the event types its factors read,
keeps one :class:`~hft.daemons.engine.factors.base.Factor` state per (factor, instrument),
and publishes each new value as a FACTOR record (instrument, name, value; header ``ts_ns``,
``trading_day`` and ``instrument_index`` copied from the record that produced it, so a replay
gives the same records as live trading). :class:`FactorPlugin` is one factor as its own
plugin; :class:`~hft.daemons.engine.factors.engine.FactorEngine` hosts several under one
subscription.

Ticks that do not count (``events.UNCOUNTED``: stale, volume going backwards, out of session)
are skipped, as the bar builder skips them: they produce no factor value and leave every
factor's state alone (``FactorDef.reads`` is the same choice over arrays).

Per record: one ``struct`` read of the header, one dict lookup of the instrument, then per
factor its ``update`` and one ``pack_into`` of a preallocated FACTOR record. Nothing is
allocated after an instrument's first record besides Python's own numbers and tuples.
"""

from __future__ import annotations

import zlib
from collections.abc import Iterable, Sequence
from typing import Any

import numpy as np
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric

from hft.daemons.engine.factors.base import Factor, FactorDef, field_reader
from hft.daemons.engine.products import product_of
from hft.daemons.runtime.events import (
    BAR_DTYPE,
    TICK_DTYPE,
    UNCOUNTED,
    EventType,
    empty,
    record_struct,
)
from hft.daemons.runtime.plugins import Plugin, PluginContext

_FACTOR = int(EventType.FACTOR)
_HEADER = ("ts_ns", "trading_day", "instrument_index", "instrument")
_TICK_HEADER = field_reader(TICK_DTYPE, "flags", *_HEADER)
_BAR_HEADER = field_reader(BAR_DTYPE, *_HEADER, "period_s")


def source_id(plugin_name: str) -> int:
    """A stable u32 producer id for record headers, from the plugin's name."""
    return zlib.crc32(plugin_name.encode())


class _Stream:
    """One factor on one instrument: its state and what metrics show of it."""

    __slots__ = ("factor", "instrument", "name", "period_s", "updates", "value")

    def __init__(self, definition: FactorDef, factor: Factor, instrument: str) -> None:
        self.factor = factor
        self.name = definition.name.encode()
        self.period_s = definition.period_s
        self.instrument = instrument
        self.updates = 0
        self.value = float("nan")


class FactorHost(Plugin):
    """Hosts factor definitions (see the module docstring); subclasses say which."""

    def definitions(self, config: Any) -> list[FactorDef]:
        """The factors to host, from the validated config."""
        raise NotImplementedError

    def init(self, ctx: PluginContext) -> None:
        super().init(ctx)
        self.factors = self.definitions(ctx.config)
        names = [d.name for d in self.factors]
        duplicated = sorted({n for n in names if names.count(n) > 1})
        if duplicated:
            raise ValueError(f"factor names {duplicated} are used twice; set a distinct 'name'")
        self._source = source_id(ctx.name)
        record = empty(EventType.FACTOR)
        self._view = record.view(np.uint8).data
        self._out = record[0]  # a view of the buffer packed into, published as is
        self._pack = record_struct(EventType.FACTOR).pack_into
        self._publish = ctx.bus.publish
        self._tick_streams: dict[bytes, tuple[_Stream, ...]] = {}
        self._bar_streams: dict[bytes, tuple[_Stream, ...]] = {}
        for event_type, handler in ((EventType.MARKET_DATA, self._on_tick),
                                    (EventType.BAR, self._on_bar)):
            if any(d.event_type is event_type for d in self.factors):
                ctx.subscribe(event_type, handler)

    def streams(self) -> list[_Stream]:
        """Every (factor, instrument) state so far (a copy: safe from the metrics thread)."""
        return [s for by_instrument in (self._tick_streams, self._bar_streams)
                for streams in list(by_instrument.values()) for s in streams]

    def metrics(self) -> Iterable[Metric]:
        return _families([self])

    def _on_tick(self, record: Any) -> None:
        ts_ns, flags, day, index, instrument = _TICK_HEADER(record)
        if flags & UNCOUNTED:  # the one rule for which ticks count (FactorDef.reads)
            return
        streams = self._tick_streams.get(instrument)
        if streams is None:
            streams = self._add(EventType.MARKET_DATA, instrument, self._tick_streams)
        self._run(streams, record, ts_ns, day, index, instrument, 0)

    def _on_bar(self, record: Any) -> None:
        ts_ns, day, index, instrument, period_s = _BAR_HEADER(record)
        streams = self._bar_streams.get(instrument)
        if streams is None:
            streams = self._add(EventType.BAR, instrument, self._bar_streams)
        self._run(streams, record, ts_ns, day, index, instrument, period_s)

    def _run(self, streams: tuple[_Stream, ...], record: Any, ts_ns: int, day: int, index: int,
             instrument: bytes, period_s: int) -> None:
        pack, view, out, source, publish = (self._pack, self._view, self._out, self._source,
                                            self._publish)
        for stream in streams:
            if stream.period_s != period_s:
                continue
            value = stream.factor.update(record)
            stream.updates += 1
            stream.value = value
            pack(view, 0, 0, ts_ns, _FACTOR, 0, day, index, source, instrument, stream.name, value)
            publish(_FACTOR, out)

    def _add(self, event_type: EventType, instrument: bytes,
             streams_of: dict[bytes, tuple[_Stream, ...]]) -> tuple[_Stream, ...]:
        """An instrument's first record: make its factor states. A factor that cannot run
        on it (e.g. VWAP without a known multiplier) is left out, with a warning."""
        instrument_id = instrument.rstrip(b"\0").decode(errors="replace")
        product = product_of(instrument_id)
        streams = []
        for definition in self.factors:
            if definition.event_type is not event_type:
                continue
            try:
                streams.append(_Stream(definition, definition.make(product), instrument_id))
            except ValueError as exc:
                self.ctx.log.warning("factor left out for an instrument", extra={
                    "factor": definition.name, "instrument": instrument_id, "error": str(exc)})
        streams_of[instrument] = result = tuple(streams)
        return result


class FactorPlugin(FactorHost):
    """One factor as its own plugin: a subclass sets ``Config`` and ``define``."""

    @classmethod
    def define(cls, config: Any) -> FactorDef:
        """The factor this plugin runs, from its validated config."""
        raise NotImplementedError

    def definitions(self, config: Any) -> list[FactorDef]:
        return [self.define(config)]


def _families(hosts: Sequence[FactorHost]) -> Iterable[Metric]:
    labels = ["plugin", "factor", "instrument"]
    value = GaugeMetricFamily("hft_factor_value", "Last value of each factor (NaN while warming "
                              "up)", labels=labels)
    updates = CounterMetricFamily("hft_factor_updates", "Factor updates (records read)",
                                  labels=labels)
    for host in hosts:
        for stream in host.streams():
            key = [host.ctx.name, stream.name.decode(), stream.instrument]
            value.add_metric(key, stream.value)
            updates.add_metric(key, stream.updates)
    return (value, updates)


