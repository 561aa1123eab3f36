"""On-disk layout of a journal: the ``NAME.meta`` file and the ``NAME.<index>.dat`` segments.

A journal is a directory entry set::

    NAME.meta            journal header: identity, the writer's commit hint, wake-up words
    NAME.00000000.dat    segment 0: header page, then `capacity` fixed-size record slots
    NAME.00000001.dat    segment 1 ...
    NAME.spare           the next segment, made ahead; renamed to its .dat name at a roll

Every header carries a magic, a format version and the record-layout hash of
:mod:`hft.daemons.runtime.events`, so a foreign, older or differently built file is refused
with a clear error instead of being read as garbage.

A slot is committed when its ``seq`` field (the first 8 bytes of every record) holds the
expected sequence number; the writer stores ``seq`` last, after the rest of the record.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from hft.daemons.runtime.events import LAYOUT_HASH, RECORD_SIZE
from hft.daemons.runtime.files import identity_problem, size_problem

FORMAT_VERSION = 1
PAGE = 4096
META_MAGIC = b"HFTJMETA"
SEGMENT_MAGIC = b"HFTJSEG1"
MAX_BLOCKING_READERS = 64

META_DTYPE = np.dtype(
    {
        "names": ["magic", "version", "record_size", "layout_hash", "segment_records",
                  "created_ns", "writer_pid", "last_seq", "head_segment", "wake_word", "sleepers"],
        "formats": ["S8", "<u4", "<u4", "<u8", "<u8", "<i8", "<i8", "<u8", "<u8", "<u4",
                    ("u1", MAX_BLOCKING_READERS)],
        "offsets": [0, 8, 12, 16, 24, 32, 40, 64, 72, 128, 192],
        "itemsize": PAGE,
    }
)
"""``last_seq``: the highest committed seq, stored after the record (a hint: every record up to
it is complete). ``wake_word``: a futex word the writer bumps on each commit. ``sleepers``: one
byte per blocking reader, non-zero while it sleeps, so the writer calls futex wake only then."""
META_LAST_SEQ = META_DTYPE.fields["last_seq"][1]  # type: ignore[index]
META_WAKE_WORD = META_DTYPE.fields["wake_word"][1]  # type: ignore[index]
META_SLEEPERS = META_DTYPE.fields["sleepers"][1]  # type: ignore[index]

SEGMENT_DTYPE = np.dtype(
    {
        "names": ["magic", "version", "record_size", "layout_hash", "index", "first_seq",
                  "capacity", "trading_day", "sealed", "count", "created_ns"],
        "formats": ["S8", "<u4", "<u4", "<u8", "<u8", "<u8", "<u8", "<i4", "<u4", "<u8", "<i8"],
        "offsets": [0, 8, 12, 16, 24, 32, 40, 48, 52, 56, 64],
        "itemsize": PAGE,
    }
)
"""``sealed`` becomes 1 (after ``count`` is stored) when the writer has moved on to the next
segment, which already exists by then; a reader at ``first_seq + count`` then follows it."""


class JournalError(Exception):
    """A journal that cannot be opened or written as asked."""


class JournalNotFound(JournalError, FileNotFoundError):
    """A journal file that does not exist (yet, or any more)."""


class JournalFormatError(JournalError):
    """A file that is not a journal of this build: foreign, corrupted, truncated or stale."""


class JournalLapped(JournalError):
    """Records this reader had not read are gone (the writer's retention removed them).

    The reader has moved on to ``resumed_seq``; reading again continues from there.
    """

    def __init__(self, journal: str, expected_seq: int, resumed_seq: int) -> None:
        self.expected_seq = expected_seq
        self.resumed_seq = resumed_seq
        self.missed = resumed_seq - expected_seq
        super().__init__(f"journal {journal}: lapped, records {expected_seq}..{resumed_seq - 1} "
                         f"({self.missed}) were removed before this reader got to them")


class JournalFull(JournalError):
    """The filesystem has no room for the journal's next blocks. Nothing committed is lost;
    the write that raised it did not happen, and a later one succeeds once space is freed."""

    def __init__(self, directory: Path, name: str, needed: int) -> None:
        self.directory = directory
        self.needed = needed
        super().__init__(f"journal {name}: no space left in {directory} for the next "
                         f"{needed} bytes; records are refused until space is freed")


class JournalHole(JournalError):
    """A slot the journal says is committed (``last_seq`` is past it) stayed empty: records
    lost to a power failure before the kernel wrote them out (see the durability model)."""

    def __init__(self, journal: str, seq: int, last_seq: int, waited_s: float) -> None:
        self.seq = seq
        self.last_seq = last_seq
        super().__init__(f"journal {journal}: seq {seq} is missing (a hole: last_seq is "
                         f"{last_seq}, the slot stayed empty for {waited_s:.1f} s); records "
                         "were lost, most likely to a power failure")


def meta_path(directory: Path, name: str) -> Path:
    return directory / f"{name}.meta"


def segment_path(directory: Path, name: str, index: int) -> Path:
    return directory / f"{name}.{index:08d}.dat"


def spare_path(directory: Path, name: str) -> Path:
    """The next segment, made ahead of need (sized, first blocks allocated, no header yet)."""
    return directory / f"{name}.spare"


def segment_indices(directory: Path, name: str) -> list[int]:
    """Indices of the segment files present, ascending."""
    found = []
    prefix, suffix = f"{name}.", ".dat"
    for entry in os.listdir(directory):
        middle = entry[len(prefix):-len(suffix)]
        if entry.startswith(prefix) and entry.endswith(suffix) and middle.isdigit():
            found.append(int(middle))
    return sorted(found)


def segment_bytes(capacity: int) -> int:
    return PAGE + capacity * RECORD_SIZE


def check_identity(path: Path, header: np.void, magic: bytes) -> None:
    """Refuse a file whose header is not ours, naming the first thing that is wrong."""
    problem = identity_problem(header, magic, FORMAT_VERSION)
    if problem is not None:
        raise JournalFormatError(f"{path}: not an hft journal file of this build: {problem}")


def new_header(dtype: np.dtype[np.void], magic: bytes) -> np.ndarray:
    header = np.zeros(1, dtype=dtype)
    header["magic"] = magic
    header["version"] = FORMAT_VERSION
    header["record_size"] = RECORD_SIZE
    header["layout_hash"] = LAYOUT_HASH
    return header


def check_size(path: Path, actual: int, expected: int) -> None:
    problem = size_problem(path, actual, expected)
    if problem is not None:
        raise JournalFormatError(problem)
