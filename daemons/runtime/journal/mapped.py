"""Memory-mapped views of a journal's meta file and segments, shared by writer and readers.

Hot-path accesses go through ``memoryview.cast`` word views (a Python int in, a single aligned
8-byte store or load out), which cost a fraction of a numpy scalar access.
"""

from __future__ import annotations

import bisect
import contextlib
import mmap
import os
import time
from pathlib import Path

import numpy as np

from hft.daemons.runtime.events import DTYPES, HEADER_DTYPE, MAX_EVENT_TYPE, RECORD_SIZE
from hft.daemons.runtime.files import FileTooSmall, NoSpace, create_exclusively, map_whole
from hft.daemons.runtime.journal.format import (
    MAX_BLOCKING_READERS,
    META_DTYPE,
    META_LAST_SEQ,
    META_MAGIC,
    META_SLEEPERS,
    META_WAKE_WORD,
    PAGE,
    SEGMENT_DTYPE,
    SEGMENT_MAGIC,
    JournalError,
    JournalFormatError,
    JournalFull,
    JournalNotFound,
    check_identity,
    check_size,
    new_header,
    segment_bytes,
)

WORDS_PER_RECORD = RECORD_SIZE // 8
RELEASE_EVERY = 4096
"""Records between two page releases (1.5 MiB), for readers and the writer alike."""
_HEADER_WORDS = PAGE // 8
_COUNT_WORD = SEGMENT_DTYPE.fields["count"][1] // 8  # type: ignore[index]
_SEALED_HALF = SEGMENT_DTYPE.fields["sealed"][1] // 4  # type: ignore[index]


def _map(path: Path, *, writable: bool) -> tuple[int, mmap.mmap]:
    try:
        return map_whole(path, writable=writable, min_size=PAGE)
    except FileNotFoundError:
        raise JournalNotFound(f"{path}: no such journal file") from None
    except FileTooSmall as exc:
        raise JournalFormatError(str(exc)) from None


class MappedMeta:
    """The ``NAME.meta`` file: identity, commit hint and wake-up words."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.fd, self.mm = _map(path, writable=True)
        _checked_header(self, META_DTYPE, META_MAGIC)
        self.header = np.frombuffer(self.mm, META_DTYPE, count=1)[0]
        self.words = memoryview(self.mm).cast("Q")
        self.bytes = memoryview(self.mm)

    @staticmethod
    def create(path: Path, name: str, segment_records: int) -> None:
        """Write a new meta file, whole; one made meanwhile by another process is kept."""
        header = new_header(META_DTYPE, META_MAGIC)
        header["segment_records"] = segment_records
        header["created_ns"] = time.time_ns()
        try:
            create_exclusively(path, header.tobytes(), PAGE)
        except NoSpace as exc:
            raise JournalFull(path.parent, name, exc.needed) from None

    @property
    def last_seq(self) -> int:
        return int(self.words[META_LAST_SEQ // 8])

    @property
    def segment_records(self) -> int:
        return int(self.header["segment_records"])

    def close(self) -> None:
        del self.header
        self.words.release()
        self.bytes.release()
        self.mm.close()
        os.close(self.fd)


class MappedSegment:
    """One ``.dat`` segment: header page plus ``capacity`` record slots."""

    def __init__(self, path: Path, *, writable: bool) -> None:
        self.path = path
        self.fd, self.mm = _map(path, writable=writable)
        header = _checked_header(self, SEGMENT_DTYPE, SEGMENT_MAGIC)
        self.index = int(header["index"])
        self.first_seq = int(header["first_seq"])
        self.capacity = int(header["capacity"])
        self.trading_day = int(header["trading_day"])
        try:
            check_size(path, len(self.mm), segment_bytes(self.capacity))
            if self.first_seq < 1:
                raise JournalError(f"{path}: corrupted header (first_seq {self.first_seq})")
        except JournalError:
            self.mm.close()
            os.close(self.fd)
            raise
        self.header = np.frombuffer(self.mm, SEGMENT_DTYPE, count=1)[0]
        self.words = memoryview(self.mm).cast("Q")
        self.halves = memoryview(self.mm).cast("I")
        self.slots = np.frombuffer(self.mm, HEADER_DTYPE, count=self.capacity, offset=PAGE)
        self.seqs = np.ndarray(self.capacity, "<u8", buffer=self.mm, offset=PAGE,
                               strides=(RECORD_SIZE,))
        """Every slot's seq field, as one strided view (recovery scans, batch commits)."""

    @staticmethod
    def header_bytes(*, index: int, first_seq: int, capacity: int, trading_day: int) -> bytes:
        """The header page of a new segment."""
        header = new_header(SEGMENT_DTYPE, SEGMENT_MAGIC)
        header["index"] = index
        header["first_seq"] = first_seq
        header["capacity"] = capacity
        header["trading_day"] = trading_day
        header["created_ns"] = time.time_ns()
        return header.tobytes()

    def seq_at(self, slot: int) -> int:
        return self.words[_HEADER_WORDS + slot * WORDS_PER_RECORD]

    @property
    def sealed(self) -> bool:
        return bool(self.halves[_SEALED_HALF])

    @property
    def count(self) -> int:
        """Records in a sealed segment."""
        return self.words[_COUNT_WORD]

    def seal(self, count: int) -> None:
        self.words[_COUNT_WORD] = count
        self.halves[_SEALED_HALF] = 1

    def committed_count(self) -> int:
        """How many slots from the start hold their expected seq (recovery after a crash).

        Committed slots form a prefix (slots are committed in order and the seq is stored
        last, so a slot past the prefix never holds its expected seq): a binary search finds
        its end touching ~log2(capacity) pages, not the whole segment."""
        first = self.first_seq
        return bisect.bisect_left(range(self.capacity), True,
                                  key=lambda slot: self.seq_at(slot) != first + slot)

    def release(self, first_slot: int, end_slot: int) -> None:
        """Hand the whole pages of slots ``first_slot..end_slot - 1`` back to the kernel: they
        stay in the page cache (other processes map their own), but this process's resident
        memory does not grow with the segment."""
        start = (PAGE + first_slot * RECORD_SIZE) // PAGE * PAGE
        end = (PAGE + end_slot * RECORD_SIZE) // PAGE * PAGE
        if end > start:
            self.mm.madvise(mmap.MADV_DONTNEED, start, end - start)

    def typed_views(self) -> list[np.ndarray]:
        """The slots viewed as each event type, indexed by type (0: the bare header)."""
        views = [self.slots] * MAX_EVENT_TYPE
        for event_type, dtype in DTYPES.items():
            views[event_type] = np.frombuffer(self.mm, dtype, count=self.capacity, offset=PAGE)
        return views

    def close(self) -> None:
        del self.header, self.slots, self.seqs
        self.words.release()
        self.halves.release()
        with contextlib.suppress(BufferError):  # a record view handed out is still alive;
            self.mm.close()  # the mapping then goes when the last view does
        os.close(self.fd)


def _checked_header(mapped: MappedMeta | MappedSegment, dtype: np.dtype[np.void],
                    magic: bytes) -> np.void:
    """A copy of the file's header once its identity checks out; the file is closed if not."""
    header: np.void = np.frombuffer(mapped.mm[:PAGE], dtype, count=1)[0]
    try:
        check_identity(mapped.path, header, magic)
    except JournalError:
        mapped.mm.close()
        os.close(mapped.fd)
        raise
    return header


META_LAST_SEQ_WORD = META_LAST_SEQ // 8
META_WAKE_HALF = META_WAKE_WORD // 4
META_SLEEPERS_SLICE = slice(META_SLEEPERS, META_SLEEPERS + MAX_BLOCKING_READERS)
