"""Replay: one read interface over md journals, for every process that consumes ticks.

It publishes each journal record on the bus as the record itself (a view into the mapped
journal: no copy), in one of two modes:

- ``live``: follow the writers from their current end with the lowest latency the wait mode
  allows. With one journal and the ``block`` wait mode the host's idle loop sleeps on the
  journal's futex, so a commit wakes the engine at once.
- ``historical``: from ``start`` (a time; default the oldest record kept) to ``until`` or the
  end, as fast as possible (``speed`` 0) or paced at ``speed`` x real time.

Several journals are merged in ``ts_ns`` order (each journal is already in that order). TIMER
events carry the data's clock so consumers close bars on time: in live mode from the host's
timer (wall clock), in historical mode whenever the replayed time crosses a
``timer_interval_ms`` boundary, so a backtest closes bars exactly as live trading would.
"""

from __future__ import annotations

import datetime as dt
import heapq
import time
from collections.abc import Iterable
from pathlib import Path
from typing import Any, Literal

import numpy as np
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from pydantic import BaseModel, ConfigDict, Field

from hft.daemons.refdata.clock import CHINA
from hft.daemons.runtime.events import DTYPES, HEADER_DTYPE, MAX_EVENT_TYPE, EventType, empty
from hft.daemons.runtime.journal import (
    JournalError,
    JournalFormatError,
    JournalLapped,
    JournalReader,
    seq_at_time,
)
from hft.daemons.runtime.plugins import Plugin, PluginContext
from hft.daemons.runtime.waitmode import WaitMode

ATTACH_INTERVAL_S = 0.5
"""How often a live replay looks for md journals that do not exist yet."""
_MARKET_DATA = int(EventType.MARKET_DATA)
_TIMER = int(EventType.TIMER)
_DTYPE_OF = {int(event_type): dtype for event_type, dtype in DTYPES.items()}
"""Each event type's dtype by type number; others are bare headers, as the reader types them."""


class ReplayConfig(BaseModel):
    model_config = ConfigDict(extra="forbid")

    journals: list[str] = Field(default=["md-sim"], min_length=1)
    """md journal names, in ``directory`` (default: the suite's journal directory)."""
    directory: Path | None = None
    mode: Literal["live", "historical"] = "live"
    start: dt.datetime | None = None
    """historical: the first record time (default: the oldest record kept)."""
    until: dt.datetime | None = None
    """historical: stop before this time (default: at the end of the journals)."""
    speed: float = Field(default=0.0, ge=0.0)
    """historical: 0 = as fast as possible, N = N x real time."""
    instruments: list[str] = []
    """Only ticks of these instruments (default: all)."""
    batch: int = Field(default=4096, ge=1)
    """Records per poll at most, so control commands and timers stay responsive."""
    timer_interval_ms: int = Field(default=100, ge=1)
    wait_mode: WaitMode = WaitMode.BLOCK


class Replay(Plugin):
    """Engine plugin: md journals -> MARKET_DATA, FEED_GAP and TIMER events on the bus."""

    Config = ReplayConfig

    def init(self, ctx: PluginContext) -> None:
        super().init(ctx)
        self.config: ReplayConfig = ctx.config
        self.published = 0
        self.lapped = 0
        self.finished = False
        self._timer = empty(EventType.TIMER)[0]
        self._timer["interval_ns"] = self.config.timer_interval_ms * 1_000_000
        self._filter = {name.encode() for name in self.config.instruments}
        self._until_ns = _ns(self.config.until) if self.config.until else None

    def start(self) -> None:
        config, ctx = self.config, self.ctx
        self._directory = config.directory or ctx.host.journal_dir
        self._start_ns = _ns(config.start) if config.start else None
        self._readers: list[JournalReader] = []
        # one pending (ts_ns, journal index, record, type) per journal: the merge front
        self._front: list[tuple[int, int, Any, int]] = []
        self._data_start_ns = self._wall_start_ns = 0
        self._next_timer_ns = 0
        self._clock_data_ns = self._clock_wall_ns = 0
        if config.mode == "historical":  # history that is not there is an error
            self._readers = [self._open(name) for name in config.journals]
            ctx.add_poller(self.poll)
            return
        ctx.call_every(config.timer_interval_ms / 1000, self._wall_timer)
        if not self._attach():  # live: the engine may start before hft_md made its journals
            ctx.log.warning("waiting for the md journals to appear",
                            extra={"journals": config.journals, "directory": str(self._directory)})
            ctx.call_every(ATTACH_INTERVAL_S, self._attach)

    def _attach(self) -> bool:
        """Open every live journal once all exist, then start following them."""
        if self._readers:
            return True
        try:
            readers = [self._open(name) for name in self.config.journals]
        except JournalFormatError as exc:
            self.ctx.log.error("an md journal cannot be read", extra={"error": str(exc)})
            return False
        except JournalError:
            return False  # not there yet (missing, or no segment): the timer tries again
        self._readers = readers
        self.ctx.add_poller(self.poll)
        if len(readers) == 1 and self.config.wait_mode is WaitMode.BLOCK:
            self.ctx.set_idle_waiter(readers[0].wait)
        self.ctx.log.info("following the md journals", extra={"journals": self.config.journals})
        return True

    def _open(self, name: str) -> JournalReader:
        return JournalReader(self._directory, name, wait_mode=self.config.wait_mode,
                             start=self._start_seq(self._directory, name, self._start_ns))

    def stop(self) -> None:
        for reader in self._readers:
            reader.close()

    def poll(self) -> int:
        if self.finished:
            return 0
        if len(self._readers) == 1 and not self._filter:
            if self.config.mode == "live":
                return self._follow(self._readers[0])
            if self.config.speed == 0:
                return self._replay_batch(self._readers[0])
        return self._merge()

    def _follow(self, reader: JournalReader) -> int:
        """Live, one journal, no filter: the hot path, straight from the reader to the bus."""
        publish, read = self.ctx.bus.publish, reader.read
        count, last = 0, None
        for _ in range(self.config.batch):
            try:
                record = read()
            except JournalLapped as lapped:
                self._report_lap(lapped)
                continue
            if record is None:
                break
            publish(reader.last_type, record)
            count += 1
            last = record
        if last is not None:
            self._anchor_clock(int(last["ts_ns"]))
        self.published += count
        return count

    def _replay_batch(self, reader: JournalReader) -> int:
        """Historical, one journal, no filter, unpaced: what ``_merge`` does, a batch at a
        time. One ``read_batch``, the ``until`` cut and the TIMER boundaries found with numpy,
        then a plain publish loop over the batch's record views: the per-record heap, pacing
        and timer checks of ``_merge`` cost more than the publish itself."""
        batch = self._next_batch(reader)
        ts = batch["ts_ns"]
        count, until_reached = len(batch), False
        if self._until_ns is not None and (beyond := np.flatnonzero(ts >= self._until_ns)).size:
            count, until_reached = int(beyond[0]), True
            batch, ts = batch[:count], ts[:count]
        if count:
            interval = self.config.timer_interval_ms * 1_000_000
            if not self._next_timer_ns:
                self._next_timer_ns = (int(ts[0]) // interval + 1) * interval
            # the last boundary each record's time has reached; a record that reaches past the
            # one before it is preceded by the TIMERs in between (_data_timers, vectorized)
            timed = self._next_timer_ns // interval - 1
            reached = np.maximum.accumulate(np.maximum(ts // interval, timed))
            done = 0
            for index in np.flatnonzero(reached > np.r_[timed, reached[:-1]]).tolist():
                self._publish_records(batch[done:index])
                for boundary in range(timed + 1, int(reached[index]) + 1):
                    self._publish_timer(boundary * interval)
                timed, done = int(reached[index]), index
            self._publish_records(batch[done:])
            self._next_timer_ns = (timed + 1) * interval
            self.published += count
        if until_reached or reader.lag == 0:
            self._finish()
        return count

    def _next_batch(self, reader: JournalReader) -> np.ndarray:
        """The reader's next records, typed as ticks; a lap is reported, then read past."""
        while True:
            try:
                return reader.read_batch(self.config.batch, _MARKET_DATA)
            except JournalLapped as lapped:
                self._report_lap(lapped)

    def _publish_records(self, records: np.ndarray) -> None:
        """Publish a run of records, each as a view typed by its own ``type`` (ticks in a
        tight loop; the rare other record, e.g. a FEED_GAP, one by one)."""
        publish, done = self.ctx.bus.publish, 0
        for index in np.flatnonzero(records["type"] != _MARKET_DATA).tolist():
            for record in records[done:index]:
                publish(_MARKET_DATA, record)
            event_type = int(records["type"][index])
            if event_type >= MAX_EVENT_TYPE:
                event_type = 0
            dtype = _DTYPE_OF.get(event_type, HEADER_DTYPE)
            publish(event_type, records[index:index + 1].view(dtype)[0])
            done = index + 1
        for record in records[done:]:
            publish(_MARKET_DATA, record)

    def _merge(self) -> int:
        """Several journals (or a filter, or paced historical): merge by ts_ns, pace, stop."""
        publish, front = self.ctx.bus.publish, self._front
        self._refill()
        count = 0
        while front and count < self.config.batch:
            ts_ns, index, record, event_type = front[0]
            if self._until_ns is not None and ts_ns >= self._until_ns:
                self._finish()
                break
            if not self._due(ts_ns):
                break
            heapq.heappop(front)
            if self.config.mode == "historical":
                self._data_timers(ts_ns)
            else:
                self._anchor_clock(ts_ns)
            if not (self._filter and event_type == _MARKET_DATA
                    and bytes(record["instrument"]) not in self._filter):
                publish(event_type, record)
                count += 1
            self._refill_one(index)
        if not front and self.config.mode == "historical" and self._exhausted():
            self._finish()
        self.published += count
        return count

    def _refill(self) -> None:
        waiting = {index for _, index, _, _ in self._front}
        for index in range(len(self._readers)):
            if index not in waiting:
                self._refill_one(index)

    def _refill_one(self, index: int) -> None:
        reader = self._readers[index]
        while True:
            try:
                record = reader.read()
            except JournalLapped as lapped:
                self._report_lap(lapped)
                continue
            break
        if record is not None:
            heapq.heappush(self._front, (int(record["ts_ns"]), index, record, reader.last_type))

    def _due(self, ts_ns: int) -> bool:
        """Pacing: at speed N a record is due when N x the wall time since the first record
        has passed its distance from the first record's time."""
        if self.config.mode != "historical" or self.config.speed == 0:
            return True
        now = time.monotonic_ns()
        if not self._wall_start_ns:
            self._wall_start_ns, self._data_start_ns = now, ts_ns
        return (ts_ns - self._data_start_ns) <= (now - self._wall_start_ns) * self.config.speed

    def _data_timers(self, ts_ns: int) -> None:
        """Historical: a TIMER at every interval boundary the replayed clock has crossed."""
        interval = self.config.timer_interval_ms * 1_000_000
        if not self._next_timer_ns:
            self._next_timer_ns = (ts_ns // interval + 1) * interval
        while ts_ns >= self._next_timer_ns:
            self._publish_timer(self._next_timer_ns)
            self._next_timer_ns += interval

    def _anchor_clock(self, data_ns: int) -> None:
        self._clock_data_ns, self._clock_wall_ns = data_ns, time.time_ns()

    def _wall_timer(self) -> None:
        """Live TIMER on the feed's clock: the last record's ts_ns plus the wall time since it
        was read. For a real feed that is the wall clock; for a simulated one, whose clock
        skips closed hours, it is the simulation's, so bars close on the data's time."""
        now = time.time_ns()
        self._publish_timer(self._clock_data_ns + now - self._clock_wall_ns
                            if self._clock_data_ns else now)

    def _publish_timer(self, now_ns: int) -> None:
        self._timer["ts_ns"] = now_ns
        self.ctx.bus.publish(_TIMER, self._timer)

    def _exhausted(self) -> bool:
        return all(reader.lag == 0 for reader in self._readers)

    def _finish(self) -> None:
        if not self.finished:
            self.finished = True
            self.ctx.log.info("historical replay finished", extra={"published": self.published})

    def _report_lap(self, lapped: JournalLapped) -> None:
        self.lapped += lapped.missed
        self.ctx.log.warning("replay lapped: records lost to journal retention",
                             extra={"error": str(lapped)})

    def _start_seq(self, directory: Path, name: str, start_ns: int | None) -> int | str:
        if self.config.mode == "live":
            return "end"
        return seq_at_time(directory, name, start_ns) if start_ns is not None else "begin"

    def metrics(self) -> Iterable[Metric]:
        published = CounterMetricFamily("hft_replay_records", "Records replayed onto the bus")
        published.add_metric([], self.published)
        lapped = CounterMetricFamily("hft_replay_lapped_records",
                                     "Records lost because retention removed them first")
        lapped.add_metric([], self.lapped)
        lag = GaugeMetricFamily("hft_replay_lag_records", "Records committed but not replayed yet",
                                labels=["journal"])
        for name, reader in zip(self.config.journals, self._readers, strict=True):
            lag.add_metric([name], reader.lag)
        return (published, lapped, lag)


def _ns(moment: dt.datetime) -> int:
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=CHINA)
    return int(moment.timestamp() * 1e9)
