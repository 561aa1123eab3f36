"""The single writer of a journal: append records, roll segments, survive SIGKILL.

Commit protocol for each record: copy the record into its slot except the first 8 bytes,
then store ``seq`` into them (one aligned 8-byte store), then store the journal's
``last_seq`` hint and bump the futex ``wake_word``. A reader trusts a slot only once it
sees the seq it expects, so a record is visible only when complete, and a writer killed at
any instruction leaves at most one torn, uncommitted slot that the next writer overwrites.
Ordering relies on x86-64 TSO (stores become visible in program order); see
docs/ARCHITECTURE.md for the assumption and what would be needed elsewhere.

Exclusivity: the writer holds ``flock(LOCK_EX)`` on the meta file for its lifetime; the kernel
drops it when the process dies, so a restarted writer can take over at once. The meta file is
created whole and never replaced (see ``files.create_exclusively``), so two processes racing to
create a journal lock the same inode and only one of them becomes its writer.

Disk space: slots are written through a shared mapping, where a store into a hole the
filesystem cannot fill is a SIGBUS. So the writer only ever writes into allocated blocks: it
allocates a segment ``ALLOCATE_EVERY`` records at a time, ahead of the slots it fills, and
keeps the next segment ready (``NAME.spare``, sized and its first blocks allocated, made when
the writer opens the journal and after each roll), so a roll only renames a file. When an
allocation fails, the write raises ``JournalFull`` before touching the slot; committed
records are intact and a later write retries.

Durability (``durable=True``): each commit's slot pages are written out (``msync``) before
``last_seq`` announces it, so a committed record survives a power failure and the journal
never holds a hole below ``last_seq``. Without it, a commit survives any crash of the process
(the page cache holds it) but not a power failure.
"""

from __future__ import annotations

import contextlib
import fcntl
import logging
import os
from pathlib import Path

import numpy as np

from hft.daemons.runtime.events import DTYPES, RECORD_SIZE, EventType
from hft.daemons.runtime.files import NoSpace, allocate, sync_directory
from hft.daemons.runtime.journal.format import (
    MAX_BLOCKING_READERS,
    PAGE,
    JournalError,
    JournalFull,
    meta_path,
    segment_bytes,
    segment_indices,
    segment_path,
    spare_path,
)
from hft.daemons.runtime.journal.futex import FutexWord
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

log = logging.getLogger(__name__)

DEFAULT_SEGMENT_RECORDS = 1 << 20  # 384 MiB a segment, allocated as it fills
DEFAULT_KEEP_SEGMENTS = 8
ALLOCATE_EVERY = 4096
"""Records allocated at a time (1.5 MiB): what a journal holds in reserve, twice (the
current segment's next slots and the spare's first)."""
_NO_SLEEPERS = bytes(MAX_BLOCKING_READERS)


class JournalWriter:
    """Appends records to ``DIRECTORY/NAME.*``; the only process allowed to."""

    # the current segment and its views, set by _use()
    _segment: MappedSegment
    _capacity: int
    """Slots of the segment with blocks allocated: the writer makes room at this one."""
    _slot: int
    _next_seq: int
    _bytes: memoryview
    _words: memoryview
    _raw: np.ndarray
    _typed: dict[int, np.ndarray]
    _released: int
    _release_at: int

    def __init__(self, directory: Path | str, name: str, *,
                 segment_records: int = DEFAULT_SEGMENT_RECORDS,
                 keep_segments: int = DEFAULT_KEEP_SEGMENTS, trading_day: int = 0,
                 durable: bool = False) -> None:
        if segment_records < 1 or keep_segments < 1:
            raise ValueError("segment_records and keep_segments must be >= 1")
        self.directory = Path(directory)
        self.name = name
        self.keep_segments = keep_segments
        self.durable = durable
        """msync each commit's slots before announcing it (survives a power failure)."""
        self.directory.mkdir(mode=0o700, parents=True, exist_ok=True)
        path = meta_path(self.directory, name)
        if not path.exists():  # a racing creator's file is kept: creation never replaces
            MappedMeta.create(path, name, segment_records)
        self._meta = MappedMeta(path)
        try:
            fcntl.flock(self._meta.fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            pid = int(self._meta.header["writer_pid"])
            self._meta.close()
            raise JournalError(f"journal {path} is already being written by pid {pid}") from None
        self._segment_records = self._meta.segment_records
        self._spare_ready = False
        self._synced = 0
        self._wake = FutexWord(self._meta.mm, META_WAKE_HALF * 4)
        self._wake_value = self._meta.bytes.cast("I")[META_WAKE_HALF]
        self._meta_words = self._meta.words
        self._meta_halves = self._meta.bytes.cast("I")
        self._meta.header["writer_pid"] = os.getpid()
        try:
            self._segment = self._recover()
        except BaseException:
            self._wake.release()
            self._meta_halves.release()
            self._meta.close()  # and with it the lock
            raise
        if trading_day and trading_day != self._segment.trading_day:
            try:
                self.roll(trading_day)
            except BaseException:
                self.close()
                raise

    @property
    def last_seq(self) -> int:
        """The highest committed sequence number (0 for an empty journal)."""
        return self._next_seq - 1

    @property
    def trading_day(self) -> int:
        return self._segment.trading_day

    def append(self, record: np.void | np.ndarray) -> int:
        """Commit one record (any event dtype) and return its seq. The caller's record is
        not modified; its ``seq`` field is ignored."""
        if self._slot == self._capacity:
            self._make_room()
        data = record.tobytes()
        if len(data) != RECORD_SIZE:
            raise ValueError(f"a record is {RECORD_SIZE} bytes, got {len(data)}")
        offset = PAGE + self._slot * RECORD_SIZE
        self._bytes[offset + 8:offset + RECORD_SIZE] = data[8:]
        return self._commit_one()

    def claim(self, event_type: EventType) -> np.void:
        """The next slot itself, typed, for a producer that fills fields in place (no copy).
        Every field must be set (the slot is zeroed); then call :meth:`commit`."""
        if self._slot == self._capacity:
            self._make_room()
        record: np.void = self._typed[event_type][self._slot]
        record["type"] = int(event_type)
        return record

    def next_slot(self) -> tuple[memoryview, int]:
        """The next slot as (buffer, byte offset), for a producer that packs a whole record in
        place (``struct.pack_into``); then :meth:`commit`, or simply don't to drop it."""
        if self._slot == self._capacity:
            self._make_room()
        return self._bytes, PAGE + self._slot * RECORD_SIZE

    def commit(self) -> int:
        """Publish the slot returned by :meth:`claim` or :meth:`next_slot`; returns its seq."""
        return self._commit_one()

    def append_batch(self, records: np.ndarray) -> int:
        """Commit many records with one seq store pass and one wake-up; returns the last seq.
        On a full disk, the records that fitted are committed (``last_seq`` says how many)
        and JournalFull is raised for the rest."""
        if records.dtype.itemsize != RECORD_SIZE or records.ndim != 1:
            raise ValueError(f"expected a 1-d array of {RECORD_SIZE}-byte records, "
                             f"got {records.dtype.itemsize}-byte records of shape {records.shape}")
        source = np.ascontiguousarray(records).view(np.uint8).reshape(-1, RECORD_SIZE)
        done = 0
        while done < len(source):
            if self._slot == self._capacity:
                try:
                    self._make_room()
                except JournalFull:
                    if done:
                        self._announce(self._next_seq - 1)
                    raise
            take = min(len(source) - done, self._capacity - self._slot)
            raw = self._raw[self._slot:self._slot + take]
            raw[:, 8:] = source[done:done + take, 8:]
            first = self._next_seq
            self._segment.seqs[self._slot:self._slot + take] = np.arange(
                first, first + take, dtype=np.uint64)
            self._slot += take
            self._next_seq += take
            done += take
        self._announce(self._next_seq - 1)
        return self._next_seq - 1

    def roll(self, trading_day: int) -> None:
        """Start the segment of a new trading day (an empty current segment is relabelled)."""
        if self._slot == 0:
            self._segment.header["trading_day"] = trading_day
            self._segment.trading_day = trading_day
        else:
            self._roll_segment(trading_day)

    def close(self) -> None:
        self._typed.clear()
        self._raw = np.empty((0, RECORD_SIZE), np.uint8)
        self._bytes.release()
        self._segment.close()
        self._wake.release()
        self._meta_halves.release()
        self._meta.close()  # closing the fd drops the flock

    def __enter__(self) -> JournalWriter:
        return self

    def __exit__(self, *_: object) -> None:
        self.close()

    def _commit_one(self) -> int:
        seq = self._next_seq
        self._words[_HEADER_WORDS + self._slot * WORDS_PER_RECORD] = seq
        self._slot += 1
        self._next_seq = seq + 1
        self._announce(seq)
        return seq

    def _announce(self, seq: int) -> None:
        if self.durable:
            self._sync_slots()
        self._meta_words[META_LAST_SEQ_WORD] = seq
        self._wake_value = (self._wake_value + 1) & 0xFFFFFFFF
        self._meta_halves[META_WAKE_HALF] = self._wake_value
        if self._meta.mm[META_SLEEPERS_SLICE] != _NO_SLEEPERS:  # a 64-byte copy: cheapest check
            self._wake.wake_all()
        if self._slot >= self._release_at:  # hand written pages back to the kernel
            self._segment.release(self._released, self._slot)
            self._released = self._slot
            self._release_at = self._slot + RELEASE_EVERY

    def _sync_slots(self) -> None:
        """Write the slots committed since the last sync out to the disk (msync)."""
        start = (PAGE + self._synced * RECORD_SIZE) // PAGE * PAGE
        self._segment.mm.flush(start, PAGE + self._slot * RECORD_SIZE - start)
        self._synced = self._slot

    def _recover(self) -> MappedSegment:
        """Find where the last writer stopped: seal segments it left open, count the committed
        prefix of the newest one."""
        indices = segment_indices(self.directory, self.name)
        if not indices:
            last = self._meta.last_seq
            index = int(self._meta.header["head_segment"]) + 1 if last else 0
            self._install_spare(index, last + 1, trading_day=0).close()
            indices = [index]
        expected_first = 0
        for index in indices[:-1]:
            segment = MappedSegment(segment_path(self.directory, self.name, index), writable=True)
            try:
                _check_continuity(segment, expected_first)
                if not segment.sealed:
                    segment.seal(segment.committed_count())
                expected_first = segment.first_seq + segment.count
            finally:
                segment.close()
        segment = MappedSegment(segment_path(self.directory, self.name, indices[-1]), writable=True)
        _check_continuity(segment, expected_first)
        self._use(segment, segment.committed_count())
        self._meta_words[META_LAST_SEQ_WORD] = self._next_seq - 1
        self._meta.header["head_segment"] = segment.index
        if self._next_seq > 1:
            log.info("journal recovered", extra={"journal": str(segment.path),
                                                 "last_seq": self._next_seq - 1})
        return segment

    def _use(self, segment: MappedSegment, committed: int) -> None:
        self._segment = segment
        self._capacity = committed
        self._slot = committed
        self._next_seq = segment.first_seq + committed
        self._bytes = memoryview(segment.mm)
        self._words = segment.words
        self._raw = np.frombuffer(segment.mm, np.uint8, count=segment.capacity * RECORD_SIZE,
                                  offset=PAGE).reshape(-1, RECORD_SIZE)
        self._typed = {t: np.frombuffer(segment.mm, d, count=segment.capacity, offset=PAGE)
                       for t, d in DTYPES.items()}
        self._released = committed
        self._release_at = committed + RELEASE_EVERY
        self._synced = committed
        with contextlib.suppress(JournalFull):  # no room yet: the first write tries again
            self._allocate_slots()
        if not self._spare_ready:  # the next roll then only renames a file
            self._spare_ready = self._prepare_spare()

    def _make_room(self) -> None:
        """The writer is at the end of its allocated slots: allocate the segment's next ones,
        or roll to the next segment when this one is full. Raises JournalFull (nothing
        written) when the disk has no room."""
        if self._capacity < self._segment.capacity:
            self._allocate_slots()
        else:
            self._roll_segment(self._segment.trading_day)

    def _allocate_slots(self) -> None:
        """Give the next ALLOCATE_EVERY slots of the segment real blocks."""
        segment, first = self._segment, self._capacity
        end = min(segment.capacity, first + ALLOCATE_EVERY)
        try:
            allocate(segment.fd, segment.path, PAGE + first * RECORD_SIZE,
                     (end - first) * RECORD_SIZE)
        except NoSpace as exc:
            raise JournalFull(self.directory, self.name, exc.needed) from None
        self._capacity = end

    def _prepare_spare(self) -> bool:
        """Make the next segment's file ahead of need: full size, its first slots allocated,
        all zero. False if the disk has no room for it (yet)."""
        path = spare_path(self.directory, self.name)
        fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o600)
        try:
            os.ftruncate(fd, segment_bytes(self._segment_records))
            allocate(fd, path, 0, PAGE + min(self._segment_records, ALLOCATE_EVERY) * RECORD_SIZE)
        except NoSpace:
            return False
        finally:
            os.close(fd)
        return True

    def _install_spare(self, index: int, first_seq: int, trading_day: int) -> MappedSegment:
        """Turn the spare into segment ``index`` (header written, then renamed into place, so
        a reader never sees a segment without its header)."""
        if not self._spare_ready and not self._prepare_spare():
            raise JournalFull(self.directory, self.name,
                              PAGE + min(self._segment_records, ALLOCATE_EVERY) * RECORD_SIZE)
        spare, path = spare_path(self.directory, self.name), segment_path(self.directory,
                                                                           self.name, index)
        fd = os.open(spare, os.O_RDWR)
        try:
            os.pwrite(fd, MappedSegment.header_bytes(
                index=index, first_seq=first_seq, capacity=self._segment_records,
                trading_day=trading_day), 0)
            if self.durable:
                os.fsync(fd)
        finally:
            os.close(fd)
        os.rename(spare, path)
        self._spare_ready = False
        if self.durable:
            sync_directory(self.directory)
        return MappedSegment(path, writable=True)

    def _roll_segment(self, trading_day: int) -> None:
        """Create the next segment before sealing this one, so a reader that sees the seal
        always finds its successor; then apply retention."""
        old = self._segment
        index = old.index + 1
        new = self._install_spare(index, self._next_seq, trading_day)
        self._meta.header["head_segment"] = index
        if self.durable:
            self._sync_slots()
        old.seal(self._slot)
        if self.durable:
            old.mm.flush(0, PAGE)
        self._use(new, 0)
        old.close()
        for stale in segment_indices(self.directory, self.name):
            if stale <= index - self.keep_segments:
                segment_path(self.directory, self.name, stale).unlink(missing_ok=True)



def _check_continuity(segment: MappedSegment, expected_first: int) -> None:
    if expected_first and segment.first_seq != expected_first:
        raise JournalError(f"{segment.path}: starts at seq {segment.first_seq} but the segment "
                           f"before it ends at {expected_first - 1}; the journal is corrupted")
