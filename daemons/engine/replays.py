"""The two replays behind the ``replay`` plugin: live (follow the journals' writers) and
historical (from a time to an end, as fast as possible or paced).

Each has one reference path, :meth:`JournalReplay.reference_poll`: the journals' next
records on a heap, published one at a time in ``ts_ns`` order (ties: the journal listed
first), the instrument filter, the clock and the stop rule applied record by record. Each
declares at construction the fast path its ``poll`` runs when the configuration allows one;
a fast path publishes exactly the reference path's events (tests/test_replay.py):

- live, one journal and no filter: straight from the reader to the bus, the journal's own
  record views, the clock anchored once per batch;
- historical, unpaced (any number of journals, any filter): a batch of each journal at a
  time, merged with numpy (a heap merge equals a stable sort on each journal's running
  maximum of ``ts_ns``, then the journal's place in the list), the ``until`` cut and the
  TIMER boundaries found with numpy, then a plain publish loop over the records.
"""

from __future__ import annotations

import heapq
import time
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np

from hft.daemons.runtime.events import (
    DTYPES,
    HEADER_DTYPE,
    MAX_EVENT_TYPE,
    RECORD_SIZE,
    EventType,
    empty,
)
from hft.daemons.runtime.journal import JournalLapped, JournalReader
from hft.daemons.runtime.plugins import PluginContext

_MARKET_DATA = int(EventType.MARKET_DATA)
_TIMER = int(EventType.TIMER)
_DTYPE_OF = {int(event_type): dtype for event_type, dtype in DTYPES.items()}
"""Each event type's dtype by type number; others are bare headers, as the reader types them."""


class TimerPublisher:
    """Publishes TIMER events from one reusable record: ``ts_ns`` is the data's clock."""

    def __init__(self, ctx: PluginContext, interval_ms: int) -> None:
        self.interval_ns = interval_ms * 1_000_000
        self._publish = ctx.bus.publish
        self._record = empty(EventType.TIMER)[0]
        self._record["interval_ns"] = self.interval_ns

    def __call__(self, now_ns: int) -> None:
        self._record["ts_ns"] = now_ns
        self._publish(_TIMER, self._record)


class JournalReplay:
    """What both replays share: the readers, the instrument filter, the reference path,
    laps, TIMER records and the counters the plugin's metrics show."""

    poll: Callable[[], int]
    """The path this replay runs, declared at construction: a fast one or the reference."""

    def __init__(self, ctx: PluginContext, readers: Sequence[JournalReader], *,
                 instruments: Sequence[str], batch: int, timer: TimerPublisher) -> None:
        self.ctx = ctx
        self.readers = list(readers)
        self.instruments = {name.encode() for name in instruments}
        self.batch = batch
        self.publish_timer = timer
        self.published = 0
        self.lapped = 0
        self._publish = ctx.bus.publish
        self._front: list[tuple[int, int, Any, int]] = []
        """The reference path's merge front: (ts_ns, journal index, record, type) per journal."""

    def reference_poll(self) -> int:
        """The reference path: up to ``batch`` records in merge order, one at a time."""
        front, publish, wanted = self._front, self._publish, self.instruments
        self._refill()
        count = 0
        while front and count < self.batch:
            ts_ns, index, record, event_type = front[0]
            if not self._admit(ts_ns):
                break
            heapq.heappop(front)
            self._clock(ts_ns)
            if not (wanted and event_type == _MARKET_DATA
                    and bytes(record["instrument"]) not in wanted):
                publish(event_type, record)
                count += 1
            self._refill_one(index)
        if not front:
            self._drained()
        self.published += count
        return count

    def _admit(self, ts_ns: int) -> bool:
        """Whether the record at the merge front may go out now."""
        return True

    def _clock(self, ts_ns: int) -> None:
        """The data's clock reached ``ts_ns`` (before the record is published)."""

    def _drained(self) -> None:
        """The reference path found no record to publish in any journal."""

    def _refill(self) -> None:
        waiting = {index for _, index, _, _ in self._front}
        for index in range(len(self.readers)):
            if index not in waiting:
                self._refill_one(index)

    def _refill_one(self, index: int) -> None:
        reader = self.readers[index]
        while True:
            try:
                record = reader.read()
            except JournalLapped as lapped:
                self._report_lap(lapped)
                continue
            break
        if record is not None:
            heapq.heappush(self._front, (int(record["ts_ns"]), index, record, reader.last_type))

    def _report_lap(self, lapped: JournalLapped) -> None:
        self.lapped += lapped.missed
        self.ctx.log.warning("replay lapped: records lost to journal retention",
                             extra={"error": str(lapped)})



class LiveReplay(JournalReplay):
    """Follows the journals from their end; TIMERs come from the plugin's wall-clock timer,
    on the feed's clock (:meth:`data_now`)."""

    def __init__(self, ctx: PluginContext, readers: Sequence[JournalReader], *,
                 instruments: Sequence[str], batch: int, timer: TimerPublisher) -> None:
        super().__init__(ctx, readers, instruments=instruments, batch=batch, timer=timer)
        self._clock_data_ns = self._clock_wall_ns = 0
        self.poll = (self._follow if len(self.readers) == 1 and not self.instruments
                     else self.reference_poll)

    def data_now(self, wall_ns: int) -> int:
        """The feed's clock at wall time ``wall_ns``: the last record's ts_ns plus the wall
        time since it was read (the wall clock itself before any record). For a real feed
        that is the wall clock; for a simulated one, whose clock skips closed hours, the
        simulation's, so bars close on the data's time."""
        if not self._clock_data_ns:
            return wall_ns
        return self._clock_data_ns + wall_ns - self._clock_wall_ns

    def _clock(self, ts_ns: int) -> None:
        self._clock_data_ns, self._clock_wall_ns = ts_ns, time.time_ns()

    def _follow(self) -> int:
        """The fast path: one journal, no filter, straight from the reader to the bus."""
        reader = self.readers[0]
        publish, read = self._publish, reader.read
        count, last = 0, None
        for _ in range(self.batch):
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
            self._clock(int(last["ts_ns"]))
        self.published += count
        return count


class HistoricalReplay(JournalReplay):
    """From each reader's position to ``until_ns`` or the journals' end, paced at ``speed``
    x real time (0: as fast as possible); a TIMER at every ``timer_interval_ms`` boundary the
    replayed clock crosses, before the record that crosses it."""

    def __init__(self, ctx: PluginContext, readers: Sequence[JournalReader], *,
                 instruments: Sequence[str], batch: int, timer: TimerPublisher,
                 until_ns: int | None, speed: float) -> None:
        super().__init__(ctx, readers, instruments=instruments, batch=batch, timer=timer)
        self.until_ns = until_ns
        self.speed = speed
        self.interval_ns = timer.interval_ns
        self.finished = False
        self._next_timer_ns = 0
        self._data_start_ns = self._wall_start_ns = 0
        self._pending = [empty(EventType.MARKET_DATA, 0) for _ in self.readers]
        """The fast path's records read but not yet safe to publish, per journal (copies)."""
        self.poll = self._fast_poll if speed == 0 else self.reference_poll

    def reference_poll(self) -> int:
        return 0 if self.finished else super().reference_poll()

    # --- the reference path's rules -------------------------------------------------------

    def _admit(self, ts_ns: int) -> bool:
        if self.until_ns is not None and ts_ns >= self.until_ns:
            self._finish()
            return False
        if self.speed == 0:
            return True
        # at speed N a record is due when N x the wall time since the first record has
        # passed its distance from the first record's time
        now = time.monotonic_ns()
        if not self._wall_start_ns:
            self._wall_start_ns, self._data_start_ns = now, ts_ns
        return (ts_ns - self._data_start_ns) <= (now - self._wall_start_ns) * self.speed

    def _clock(self, ts_ns: int) -> None:
        interval = self.interval_ns
        if not self._next_timer_ns:
            self._next_timer_ns = (ts_ns // interval + 1) * interval
        while ts_ns >= self._next_timer_ns:
            self.publish_timer(self._next_timer_ns)
            self._next_timer_ns += interval

    def _drained(self) -> None:
        if self._read_all():
            self._finish()

    def _read_all(self) -> bool:
        return all(reader.lag == 0 for reader in self.readers)

    def _finish(self) -> None:
        if not self.finished:
            self.finished = True
            self.ctx.log.info("historical replay finished", extra={"published": self.published})

    # --- the fast path ----------------------------------------------------------------------

    def _fast_poll(self) -> int:
        """Unpaced: up to ``batch`` records in merge order, found with numpy."""
        if self.finished:
            return 0
        records = self._merged()
        ts = records["ts_ns"]
        until_reached = False
        if self.until_ns is not None and (beyond := np.flatnonzero(ts >= self.until_ns)).size:
            until_reached = True
            records, ts = records[:int(beyond[0])], ts[:int(beyond[0])]
        count = 0
        if len(records):
            count = self._publish_with_timers(records, ts)
        self.published += count
        if until_reached or (self._read_all() and not any(len(p) for p in self._pending)):
            self._finish()
        return count

    def _read_batch(self, reader: JournalReader) -> np.ndarray:
        """The reader's next records (a view), typed as ticks; a lap is reported, then read
        past."""
        while True:
            try:
                return reader.read_batch(self.batch, _MARKET_DATA)
            except JournalLapped as lapped:
                self._report_lap(lapped)

    def _merged(self) -> np.ndarray:
        """The next records in the reference path's order, at most ``batch``: a view of the
        one journal's batch, or from several journals those that no unread record can
        precede (each journal's unread records sort after its last one read)."""
        if len(self.readers) == 1:
            return self._read_batch(self.readers[0])
        keys, sources, horizon = [], [], (np.iinfo(np.int64).max, len(self.readers))
        fresh = [not len(pending) for pending in self._pending]
        for index, reader in enumerate(self.readers):
            if fresh[index]:  # a view, valid until the reader's next read: copied if kept
                self._pending[index] = self._read_batch(reader)
            # the heap's order from here: a stable sort on each journal's running maximum of
            # ts_ns (a heap merge depends only on what is left, so the maximum starts afresh)
            key = np.maximum.accumulate(self._pending[index]["ts_ns"])
            keys.append(key)
            sources.append(np.full(len(key), index, dtype=np.int64))
            if len(key) and reader.lag:  # one at its end for now holds nothing back, as on
                horizon = min(horizon, (int(key[-1]), index))  # the reference path
        key, source = np.concatenate(keys), np.concatenate(sources)
        order = np.lexsort((source, key))  # stable: within a journal, its own order
        key, source = key[order], source[order]
        safe = (key < horizon[0]) | ((key == horizon[0]) & (source <= horizon[1]))
        count = min(int(np.count_nonzero(safe)), self.batch)
        # what is taken is a prefix of each journal's pending records: each goes to its place
        records = empty(EventType.MARKET_DATA, count)
        rows = records.view(np.uint8).reshape(count, RECORD_SIZE)
        for index, pending in enumerate(self._pending):
            places = np.flatnonzero(source[:count] == index)
            if len(places):
                rows[places] = pending[:len(places)].view(np.uint8).reshape(-1, RECORD_SIZE)
            left = pending[len(places):]
            self._pending[index] = left.copy() if fresh[index] else left
        return records

    def _publish_with_timers(self, records: np.ndarray, ts: np.ndarray) -> int:
        """Publish records (those the filter keeps), each preceded by the TIMERs of the
        interval boundaries its time is the first to reach."""
        interval = self.interval_ns
        if not self._next_timer_ns:
            self._next_timer_ns = (int(ts[0]) // interval + 1) * interval
        # the last boundary each record's time has reached; a record that reaches past the
        # one before it is preceded by the TIMERs in between (_clock, vectorized)
        timed = self._next_timer_ns // interval - 1
        reached = np.maximum.accumulate(np.maximum(ts // interval, timed))
        kept = self._kept(records)
        done = count = 0
        for index in np.flatnonzero(reached > np.r_[timed, reached[:-1]]).tolist():
            count += self._publish_records(records[done:index], kept, done)
            for boundary in range(timed + 1, int(reached[index]) + 1):
                self.publish_timer(boundary * interval)
            timed, done = int(reached[index]), index
        count += self._publish_records(records[done:], kept, done)
        self._next_timer_ns = (timed + 1) * interval
        return count

    def _kept(self, records: np.ndarray) -> np.ndarray | None:
        """Which records the instrument filter lets through (None: all of them)."""
        if not self.instruments:
            return None
        kept: np.ndarray = ((records["type"] != _MARKET_DATA)
                            | np.isin(records["instrument"], list(self.instruments)))
        return kept

    def _publish_records(self, records: np.ndarray, kept: np.ndarray | None, offset: int) -> int:
        """Publish a run of records (``kept[offset:]`` filters them), each as a view typed by
        its own ``type``: ticks in a tight loop, the rare other record one by one."""
        if kept is not None:
            records = records[kept[offset:offset + len(records)]]
        publish, done = self._publish, 0
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
        return len(records)
