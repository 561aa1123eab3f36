"""A reader of a journal, in any process, with its own cursor.

``read()`` hands out the committed record itself (a numpy view into the mapped slot, typed
by its ``type`` field): no copy. The view stays valid while the reader is open, but a handler
that keeps data should copy the fields it needs.

Wait modes, and what each costs (see ``hftctl bench ipc`` for the figures on this machine):

- ``busy``: spin on the commit counter. Lowest latency; burns a whole core while idle, and on
  a 2-core machine two busy readers starve everything else.
- ``yield``: spin ``spin_s``, then ``sched_yield()`` in a loop. Gives the core to any runnable
  thread but still shows 100% CPU while idle; latency rises only when the core is contended.
- ``block`` (default): spin ``spin_s``, then sleep on the journal's futex word until the
  writer's wake-up. About zero CPU while idle; the wake-up costs the writer one syscall and
  the reader a scheduler wake (tens of microseconds).

Holes: a slot below ``last_seq`` that stays empty (records lost to a power failure, see the
durability model in docs/ARCHITECTURE.md) raises JournalHole after ``hole_wait_s``, instead
of a reader waiting for it forever. ``read()`` checks every record's seq, ``read_batch()`` the
seqs at the two ends of each batch (a per-record check would cost more than the batch).

Memory: the reader maps one segment at a time and gives consumed pages back to the kernel
(``MADV_DONTNEED``), so its resident size does not grow with the journal.
"""

from __future__ import annotations

import fcntl
import logging
import os
import struct
import time
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any, TypeVar

import numpy as np

from hft.daemons.runtime.events import MAX_EVENT_TYPE, RECORD_SIZE
from hft.daemons.runtime.journal.format import (
    MAX_BLOCKING_READERS,
    PAGE,
    JournalError,
    JournalFormatError,
    JournalHole,
    JournalLapped,
    JournalNotFound,
    meta_path,
    segment_indices,
    segment_path,
)
from hft.daemons.runtime.journal.futex import FutexWord, full_fence
from hft.daemons.runtime.journal.futex import wait_any as wait_any_word
from hft.daemons.runtime.journal.mapped import (
    _HEADER_WORDS,
    META_LAST_SEQ_WORD,
    META_SLEEPERS_SLICE,
    META_WAKE_HALF,
    RELEASE_EVERY,
    WORDS_PER_RECORD,
    MappedMeta,
    MappedSegment,
)
from hft.daemons.runtime.waitmode import WaitMode

T = TypeVar("T")
ATTACH_INTERVAL_S = 0.5
"""How often a follower looks again for a journal another daemon has not made yet."""

_TYPE_HALF = 16 // 2  # the record header's ``type`` field, in 16-bit words
_HALVES_PER_RECORD = RECORD_SIZE // 2
_MAX_SLEEP_S = 0.02  # bound on one futex sleep: a safety net, not the wake-up path


class JournalReader:
    """Follows ``DIRECTORY/NAME.*`` from ``start``: ``"begin"``, ``"end"`` or a seq."""

    # the current segment and its views, set by _use()
    _segment: MappedSegment
    _first_seq: int
    _capacity: int
    _words: memoryview
    _halves: memoryview
    _typed: list[np.ndarray]
    _released: int
    _release_at: int

    def __init__(self, directory: Path | str, name: str, *, start: int | str = "begin",
                 wait_mode: WaitMode | str = WaitMode.BLOCK, spin_s: float = 50e-6,
                 hole_wait_s: float = 2.0) -> None:
        self.directory = Path(directory)
        self.name = name
        self.wait_mode = WaitMode(wait_mode)
        self.spin_s = spin_s
        self.hole_wait_s = hole_wait_s
        """How long a slot below ``last_seq`` may stay empty before it is reported as a hole
        (a writer restarting after a crash rewrites ``last_seq`` meanwhile)."""
        self._hole_seq = 0
        self._hole_since = 0.0
        self._meta = MappedMeta(meta_path(self.directory, name))
        self._meta_words = self._meta.words
        self._meta_halves = self._meta.bytes.cast("I")
        self._sleepers = self._meta.bytes[META_SLEEPERS_SLICE]
        self._sleeper_slot = -1
        self._wake: FutexWord | None = None
        self.last_type = 0
        """The event type of the record the last read() returned."""
        first_seq = self._start_seq(start)
        self._open_segment_for(first_seq)
        self._next_seq = first_seq or self._first_seq
        if self._next_seq < self._first_seq:
            # retention removed the start: no slot matches until the slow path reports the lap
            self._first_seq, self._capacity = self._next_seq, 0

    @property
    def next_seq(self) -> int:
        """The seq the next read returns."""
        return self._next_seq

    @property
    def lag(self) -> int:
        """Records committed but not yet read."""
        return max(0, int(self._meta_words[META_LAST_SEQ_WORD]) - self._next_seq + 1)

    def committed(self) -> Iterator[tuple[int, Any]]:
        """(type, record) of every record committed by now, from the cursor on: a catch-up or
        recovery read. Records lost to retention are skipped (the lap raises nothing here);
        the cursor is left after the last one."""
        while True:
            try:
                record = self.read()
            except JournalLapped:
                continue
            if record is None:
                return
            yield self.last_type, record

    def read(self) -> np.void | None:
        """The next committed record, or None if the writer has not committed it yet.
        Raises JournalLapped once if records were removed before this reader got to them."""
        seq = self._next_seq
        slot = seq - self._first_seq
        if slot >= self._capacity or self._words[_HEADER_WORDS + slot * WORDS_PER_RECORD] != seq:
            if self._follow_seal(slot):
                return self.read()
            if self._meta_words[META_LAST_SEQ_WORD] >= seq:
                if slot < self._capacity and self._words[_HEADER_WORDS + slot * WORDS_PER_RECORD] == seq:
                    return self.read()  # committed between the two looks (the usual case)
                self._check_hole(seq)
            return None
        self._next_seq = seq + 1
        if slot >= self._release_at:
            self._release_pages(slot)
        event_type = self._halves[self._type_half0 + slot * _HALVES_PER_RECORD]
        if event_type >= MAX_EVENT_TYPE:
            event_type = 0
        self.last_type = event_type
        return self._typed[event_type][slot]  # type: ignore[no-any-return]

    def read_batch(self, max_records: int = 4096, event_type: int = 0) -> np.ndarray:
        """Up to ``max_records`` committed records as one view (typed as ``event_type``, or
        the bare header when 0). Empty when nothing new is committed."""
        seq = self._next_seq
        slot = seq - self._first_seq
        last = int(self._meta_words[META_LAST_SEQ_WORD])
        end = self._capacity
        if self._segment.sealed:
            end = min(end, self._segment.count)
        count = min(max_records, last - seq + 1, end - slot)
        if count <= 0:
            if self._follow_seal(slot):
                return self.read_batch(max_records, event_type)
            return self._typed[event_type][:0]
        if self._segment.seq_at(slot) != seq:
            self._check_hole(seq)
            return self._typed[event_type][:0]
        if self._segment.seq_at(slot + count - 1) != seq + count - 1:
            self._check_hole(seq + count - 1)
            return self._typed[event_type][:0]
        self._next_seq = seq + count
        if slot >= self._release_at:  # the batch handed out now stays mapped until next call
            self._release_pages(slot)
        return self._typed[event_type][slot:slot + count]

    def wait(self, timeout_s: float | None = None) -> bool:
        """Wait, as the wait mode says, until a record is readable; False on timeout."""
        words, target = self._meta_words, self._next_seq
        if words[META_LAST_SEQ_WORD] >= target:
            return True
        now = time.monotonic()
        deadline = now + timeout_s if timeout_s is not None else float("inf")
        spin_until = deadline if self.wait_mode is WaitMode.BUSY else min(deadline, now + self.spin_s)
        while words[META_LAST_SEQ_WORD] < target:
            if time.monotonic() >= spin_until:
                break
        else:
            return True
        if self.wait_mode is WaitMode.BUSY:
            return False
        if self.wait_mode is WaitMode.YIELD:
            while words[META_LAST_SEQ_WORD] < target:
                os.sched_yield()
                if time.monotonic() >= deadline:
                    return False
            return True
        return self._sleep_until(target, deadline)

    def next(self, timeout_s: float | None = None) -> np.void | None:
        """Wait for and read the next record; None on timeout."""
        record = self.read()
        if record is None and self.wait(timeout_s):
            record = self.read()
        return record

    def close(self) -> None:
        if self._wake is not None:
            self._wake.release()
        self._typed = []
        self._halves.release()
        self._segment.close()
        self._sleepers.release()
        self._meta_halves.release()
        self._meta.close()  # closing the fd drops the sleeper-slot lock

    def __enter__(self) -> JournalReader:
        return self

    def __exit__(self, *_: object) -> None:
        self.close()

    def _sleep_until(self, target: int, deadline: float) -> bool:
        """Raise our sleeper flag, make it visible, re-check, then sleep on the futex word.
        The writer bumps the word before it looks at the flags, and the kernel compares the
        word atomically, so a commit between our check and the sleep cannot be missed."""
        words = self._meta_words
        while True:
            seen = self._raise_sleeper_flag()
            full_fence()
            if words[META_LAST_SEQ_WORD] >= target:
                self._lower_sleeper_flag()
                return True
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                self._lower_sleeper_flag()
                return False
            assert self._wake is not None
            self._wake.wait(seen, min(remaining, _MAX_SLEEP_S))
            self._lower_sleeper_flag()
            if words[META_LAST_SEQ_WORD] >= target:
                return True

    def _raise_sleeper_flag(self) -> int:
        """Ask the writer to wake us (claiming a sleeper slot on first use); the wake word as
        it was before the flag went up."""
        if self._wake is None:
            self._claim_sleeper_slot()
        seen = int(self._meta_halves[META_WAKE_HALF])
        self._sleepers[self._sleeper_slot] = 1
        return seen

    def _lower_sleeper_flag(self) -> None:
        self._sleepers[self._sleeper_slot] = 0

    def _claim_sleeper_slot(self) -> None:
        """Own one sleeper byte with an open-file-description lock; the kernel frees it when
        this reader's fd closes or its process dies, so slots are never leaked."""
        for slot in range(MAX_BLOCKING_READERS):
            lock = struct.pack("hhqqi4x", fcntl.F_WRLCK, os.SEEK_SET,
                               META_SLEEPERS_SLICE.start + slot, 1, 0)
            try:
                fcntl.fcntl(self._meta.fd, fcntl.F_OFD_SETLK, lock)
            except OSError:
                continue
            self._sleeper_slot = slot
            self._sleepers[slot] = 0
            self._wake = FutexWord(self._meta.mm, META_WAKE_HALF * 4)
            return
        raise JournalError(f"journal {self.name}: all {MAX_BLOCKING_READERS} blocking-reader "
                           "slots are taken; use wait_mode 'yield' for more readers")

    def _start_seq(self, start: int | str) -> int:
        if start == "begin":
            return 0  # the oldest record still kept
        if start == "end":
            return self._meta.last_seq + 1
        if isinstance(start, int) and start >= 1:
            return start
        raise ValueError(f"start must be 'begin', 'end' or a seq >= 1, not {start!r}")


    def _open_segment_for(self, seq: int) -> None:
        """Map the segment holding ``seq`` (or the oldest one, if it is older than them all)."""
        for _ in range(100):  # retention may delete a segment between listing and opening
            indices = segment_indices(self.directory, self.name)
            if not indices:
                raise JournalError(f"journal {self.directory / self.name}: no segments yet")
            try:
                for index in reversed(indices):
                    segment = MappedSegment(segment_path(self.directory, self.name, index),
                                            writable=False)
                    if (seq and segment.first_seq <= seq) or index == indices[0]:
                        self._use(segment)
                        return
                    segment.close()
            except JournalNotFound:
                continue
        raise JournalError(f"journal {self.directory / self.name}: segments keep vanishing")

    def _use(self, segment: MappedSegment) -> None:
        self._segment = segment
        self._first_seq = segment.first_seq
        self._capacity = segment.capacity
        self._words = segment.words
        self._halves = memoryview(segment.mm).cast("H")
        self._type_half0 = PAGE // 2 + _TYPE_HALF
        self._typed = segment.typed_views()
        self._released = 0
        self._release_at = RELEASE_EVERY

    def _follow_seal(self, slot: int) -> bool:
        """At the end of a sealed segment, move to the next one; True if we moved."""
        segment = self._segment
        if self._next_seq < segment.first_seq:
            expected, self._next_seq = self._next_seq, segment.first_seq
            self._first_seq, self._capacity = segment.first_seq, segment.capacity
            raise JournalLapped(self.name, expected, segment.first_seq)
        if not (slot >= self._capacity or (segment.sealed and slot >= segment.count)):
            return False
        later = [i for i in segment_indices(self.directory, self.name) if i > segment.index]
        if not later:
            return False
        try:
            successor = MappedSegment(segment_path(self.directory, self.name, later[0]),
                                      writable=False)
        except JournalNotFound:
            return False  # removed meanwhile: the next call looks again
        self._use(successor)
        segment.close()
        if successor.first_seq > self._next_seq:
            expected, self._next_seq = self._next_seq, successor.first_seq
            raise JournalLapped(self.name, expected, successor.first_seq)
        return True

    def _release_pages(self, slot: int) -> None:
        self._segment.release(self._released, slot)
        self._released = slot
        self._release_at = slot + RELEASE_EVERY

    def _check_hole(self, seq: int) -> None:
        """``last_seq`` says ``seq`` is committed but its slot does not hold it: a commit stores
        the slot before ``last_seq``, so this lasts only while a restarted writer recovers,
        unless the record was lost. Raise JournalHole once it has lasted ``hole_wait_s``."""
        now = time.monotonic()
        if self._hole_seq != seq:
            self._hole_seq, self._hole_since = seq, now
        elif now - self._hole_since >= self.hole_wait_s:
            raise JournalHole(self.name, seq, int(self._meta_words[META_LAST_SEQ_WORD]),
                              now - self._hole_since)


def seq_at_time(directory: Path | str, name: str, ts_ns: int) -> int:
    """The seq of the first record whose ``ts_ns`` is at or after ``ts_ns`` (records are in
    commit order, and a journal's writer stamps them in time order); one past the last record
    if there is none. A binary search per segment: no record is read in between."""
    directory = Path(directory)
    last_seq = 0
    for index in segment_indices(directory, name):
        try:
            segment = MappedSegment(segment_path(directory, name, index), writable=False)
        except JournalNotFound:
            continue
        try:
            count = segment.count if segment.sealed else segment.committed_count()
            times = segment.slots["ts_ns"][:count]
            position = int(np.searchsorted(times, ts_ns, side="left"))
            last_seq = segment.first_seq + count - 1
            if position < count:
                return segment.first_seq + position
        finally:
            del times
            segment.close()
    return last_seq + 1


def if_there(opener: Callable[[], T], log: logging.Logger) -> T | None:
    """``opener()`` (opening readers), or None while a journal it needs does not exist yet; a
    journal that exists but cannot be read (another layout, corrupted) is logged, since waiting
    will not mend it, and is None too."""
    try:
        return opener()
    except JournalFormatError as exc:
        log.error("a journal cannot be read", extra={"error": str(exc)})
    except JournalError:
        pass
    return None


def wait_any(readers: Sequence[JournalReader], timeout_s: float,
             also: Sequence[tuple[FutexWord, int]] = ()) -> bool:
    """Sleep until one of ``readers`` has a record to read, at most ``timeout_s``: the block
    wait over several journals at once (one ``futex_waitv``), for a daemon that follows more
    than one (the risk daemon: the engine's and hft_md's; the engine: hft_md's and risk's).
    The same protocol as one reader's wait: flags up, a fence, a last look, then the sleep.
    ``also``: further (word, value seen) pairs whose change ends the sleep too (the host's
    wake word: a command or a plugin's thread)."""
    if any(reader.lag for reader in readers):
        return True
    seen = [reader._raise_sleeper_flag() for reader in readers]
    full_fence()
    try:
        if not any(reader.lag for reader in readers):
            wait_any_word([(reader._wake, value) for reader, value in zip(readers, seen, strict=True)
                           if reader._wake is not None] + list(also), timeout_s)
        return any(reader.lag for reader in readers)
    finally:
        for reader in readers:
            reader._lower_sleeper_flag()
