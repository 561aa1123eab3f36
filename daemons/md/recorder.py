"""hft_md's write path: a source's raw snapshot -> normalized record in the md journal and the
latest-tick snapshot.

Each source (CTP, sim) owns one recorder, called from the source's own thread (for CTP, the
API's callback thread). The normalizer packs the record straight into the journal's next mmap
slot and the commit publishes it, so the path has no queue, no copy and no lock: the journal
is the lock-free ring the callback writes into, and the one writer per journal is the one
callback thread per source.

A gap in the feed (the source disconnected, or hft_md restarted) is journaled as a FEED_GAP
record, so readers can tell missing data from a quiet market.

A full disk (JournalFull) does not stop the daemon: the recorder logs it once, refuses
snapshots (counted in ``hft_md_journal_full_refused``, ``hft_md_journal_full`` is 1) and asks
the journal for room again every ``FULL_RETRY_S``; once there is room it journals a FEED_GAP
for what it refused and records again.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Iterator
from pathlib import Path

from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric

from hft.daemons.md.depth import DepthValues
from hft.daemons.md.normalize import TickError, TickNormalizer
from hft.daemons.refdata.instruments import InstrumentTable
from hft.daemons.runtime.events import RECORD_SIZE, EventType, empty
from hft.daemons.runtime.journal import JournalFull, JournalReader, JournalWriter
from hft.daemons.runtime.latency import LatencySamples
from hft.daemons.runtime.snapshot import SnapshotWriter

log = logging.getLogger(__name__)
FULL_RETRY_S = 1.0
"""Seconds between two attempts to find room in a full journal."""


class Recorder:
    """Normalizes one source's snapshots into its md journal and the SHM snapshot."""

    def __init__(self, feed: str, writer: JournalWriter, snapshot: SnapshotWriter | None,
                 normalizer: TickNormalizer) -> None:
        self.feed = feed
        self.writer = writer
        self.snapshot = snapshot
        self.normalizer = normalizer
        self.errors = 0
        self.gaps = 0
        self.last_lag_ns = 0
        """Receive time minus exchange time of the last tick (feed latency plus clock skew)."""
        self.latency = LatencySamples()
        """A snapshot in hand -> its record committed (normalize and write), ns."""
        self._snapshot_slots: dict[int, int] = {}
        self.full_refused = 0
        """Snapshots refused because the journal had no room on disk."""
        self._full_retry_at = 0.0
        """While the journal is full: when to ask it for room again (0.0: not full)."""
        self._full_last_ns = 0
        """The last record's stamp when the journal became full: where the gap begins."""
        self.last_received_ns = _last_ts(writer)
        """Stamp of the last record (at start: the journal's last), so markers keep time order."""
        self.gap("recorder started")

    @classmethod
    def open(cls, feed: str, journal_dir: Path, journal: str, instruments: InstrumentTable, *,
             snapshot_path: Path | None, stale_after_s: float | None = 30.0,
             drop_stale: bool = False, trading_day: int = 0) -> Recorder:
        writer = JournalWriter(journal_dir, journal, trading_day=trading_day)
        snapshot = SnapshotWriter(snapshot_path) if snapshot_path is not None else None
        normalizer = TickNormalizer(instruments, stale_after_s=stale_after_s, drop_stale=drop_stale)
        return cls(feed, writer, snapshot, normalizer)

    def on_depth(self, md: DepthValues, received_ns: int) -> bool:
        """Record one snapshot received at ``received_ns`` (the source's
        clock: the wall clock for a live feed); False if it was dropped (a duplicate, stale,
        unreadable)."""
        started = time.perf_counter_ns()
        writer, normalizer = self.writer, self.normalizer
        if self._full_retry_at and not self._room_again():
            self.full_refused += 1
            return False
        try:
            buffer, offset = writer.next_slot()
        except JournalFull as exc:
            self._journal_full(exc)
            self.full_refused += 1
            return False
        try:
            kept = normalizer.normalize(md, received_ns, buffer, offset)
        except TickError as exc:
            self.errors += 1
            log.warning("snapshot refused", extra={"feed": self.feed, "error": str(exc)})
            return False
        if not kept:
            return False
        if normalizer.last_trading_day != writer.trading_day:
            try:
                buffer, offset = self._roll(normalizer.last_trading_day, buffer, offset)
            except JournalFull as exc:
                self._journal_full(exc)
                self.full_refused += 1
                return False
        writer.commit()
        self.latency.add(time.perf_counter_ns() - started)
        self.last_received_ns = received_ns
        self.last_lag_ns = received_ns - normalizer.last_exchange_ts
        if self.snapshot is not None:
            slot = self._snapshot_slots.get(normalizer.last_instrument_index)
            if slot is None:
                slot = self._new_snapshot_slot(md.InstrumentID, normalizer.last_instrument_index)
            self.snapshot.update(slot, buffer[offset:offset + RECORD_SIZE])
        return True

    def gap(self, reason: str, last_ns: int | None = None) -> None:
        """Journal that data may be missing from ``last_ns`` (default: the last tick) on. The
        marker is stamped no earlier than the last record: a journal stays in time order
        even when the source's clock (a simulation's) runs ahead of the wall clock."""
        marker = empty(EventType.FEED_GAP)
        marker["ts_ns"] = max(time.time_ns(), self.last_received_ns)
        marker["feed"] = self.feed.encode()[:16]
        marker["reason"] = reason.encode()[:64]
        marker["last_ns"] = self.last_received_ns if last_ns is None else last_ns
        try:
            self.writer.append(marker)
        except JournalFull as exc:
            self._journal_full(exc)
            return
        self.gaps += 1
        log.info("feed gap recorded", extra={"feed": self.feed, "reason": reason})

    def close(self) -> None:
        self.writer.close()
        if self.snapshot is not None:
            self.snapshot.close()

    def metrics(self) -> Iterator[Metric]:
        """The feed's counters as metric families (read at scrape time)."""
        stats, labels = self.normalizer.stats, [self.feed]
        for name, help_text, value in (
            ("hft_md_ticks", "Ticks recorded", stats.ticks),
            ("hft_md_duplicates_dropped", "Exact duplicate snapshots dropped", stats.duplicates),
            ("hft_md_stale", "Stale snapshots (flagged, or dropped when configured)", stats.stale),
            ("hft_md_stale_dropped", "Stale snapshots dropped", stats.stale_dropped),
            ("hft_md_volume_backwards", "Ticks whose cumulative volume fell", stats.volume_backwards),
            ("hft_md_days_derived", "Ticks whose TradingDay or ActionDay was wrong or missing and "
             "was derived", stats.days_derived),
            ("hft_md_refused", "Snapshots refused as unreadable", self.errors),
            ("hft_md_gaps", "Feed gaps recorded", self.gaps),
            ("hft_md_journal_full_refused", "Snapshots refused: no disk space for the journal",
             self.full_refused),
        ):
            counter = CounterMetricFamily(name, help_text, labels=["feed"])
            counter.add_metric(labels, value)
            yield counter
        lag = GaugeMetricFamily("hft_md_lag_seconds", "Receive time minus exchange time of the "
                                "last tick (feed latency plus clock skew)", labels=["feed"])
        lag.add_metric(labels, self.last_lag_ns / 1e9)
        yield lag
        yield self.latency.family("hft_md_tick_to_journal_seconds", "A snapshot in the "
                                  "recorder's hands -> its record committed to the md journal",
                                  ["feed"], labels)
        full = GaugeMetricFamily("hft_md_journal_full", "1 while the md journal has no disk "
                                 "space and snapshots are refused", labels=["feed"])
        full.add_metric(labels, 1.0 if self._full_retry_at else 0.0)
        yield full
        seq = GaugeMetricFamily("hft_md_journal_last_seq", "Last seq committed to the md journal",
                                labels=["feed"])
        seq.add_metric(labels, self.writer.last_seq)
        yield seq

    def _journal_full(self, error: JournalFull) -> None:
        """Enter the refusing state (logged once), to ask for room again in FULL_RETRY_S."""
        if not self._full_retry_at:
            self._full_last_ns = self.last_received_ns
            log.error("md journal full: snapshots are refused until disk space is freed",
                      extra={"feed": self.feed, "error": str(error)})
        self._full_retry_at = time.monotonic() + FULL_RETRY_S

    def _room_again(self) -> bool:
        """While full: True once the journal has room again (then a FEED_GAP marks what was
        refused); False until then, asking at most every FULL_RETRY_S."""
        if time.monotonic() < self._full_retry_at:
            return False
        try:
            self.writer.next_slot()
        except JournalFull:
            self._full_retry_at = time.monotonic() + FULL_RETRY_S
            return False
        self._full_retry_at = 0.0
        log.warning("md journal has disk space again: recording resumes",
                    extra={"feed": self.feed, "refused": self.full_refused})
        self.gap("journal was full", self._full_last_ns)
        return not self._full_retry_at

    def _roll(self, trading_day: int, buffer: memoryview, offset: int) -> tuple[memoryview, int]:
        """A new trading day starts a new segment: move the packed record over to it."""
        record = bytes(buffer[offset:offset + RECORD_SIZE])
        self.writer.roll(trading_day)
        buffer, offset = self.writer.next_slot()
        buffer[offset:offset + RECORD_SIZE] = record
        return buffer, offset

    def _new_snapshot_slot(self, instrument: bytes, index: int) -> int:
        """Register instrument ``index`` (spelt ``instrument`` by the feed) in the snapshot on
        its first tick; later ticks find its slot by the index alone."""
        assert self.snapshot is not None
        slot = self._snapshot_slots[index] = self.snapshot.index_of(instrument)
        return slot


def _last_ts(writer: JournalWriter) -> int:
    """Creation time of the journal's last record, 0 if empty: where a restart's gap begins."""
    if writer.last_seq == 0:
        return 0
    with JournalReader(writer.directory, writer.name, start=writer.last_seq) as reader:
        record = reader.read()
        return int(record["ts_ns"]) if record is not None else 0

