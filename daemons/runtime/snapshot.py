"""The latest tick of every instrument in shared memory, O(1) by instrument, under a SeqLock.

One writer (hft_md) and any number of lock-free readers in other processes. The file (the
feeds put it at ``<home>/run/<journal>.snap``) holds a header page, a directory of
instrument ids and one slot per instrument::

    slot = [version u64][56 bytes padding][record, RECORD_SIZE bytes]

SeqLock protocol. Writer: version += 1 (odd: write in progress), copy the record, version
+= 1 (even). Reader: v1 = version; if odd, retry; copy the record; v2 = version; if v1 != v2
the copy may be torn, retry.

Memory ordering: this is correct when the writer's three stores become visible in program
order and the reader's three loads are performed in program order. x86-64 (TSO) guarantees
both for ordinary loads and stores, and each step here is a separate C call from the
interpreter, which the C compiler cannot reorder across. It is not guaranteed on weakly
ordered CPUs (aarch64), which need release/acquire fences that pure Python cannot issue;
``SnapshotWriter`` refuses to start there.

A writer preempted between its two version stores holds readers of that slot until it runs
again: readers spin briefly, then yield the CPU (on 2 cores the writer may need theirs). A
writer killed there leaves an odd version: readers give up on that slot after ``max_wait_s``
(raising SnapshotBusy) and a restarted writer repairs it.
"""

from __future__ import annotations

import fcntl
import os
import platform
import time
from pathlib import Path

import numpy as np

from hft.daemons.runtime.events import DTYPES, HEADER_DTYPE, LAYOUT_HASH, RECORD_SIZE
from hft.daemons.runtime.files import (
    FileTooSmall,
    create_exclusively,
    identity_problem,
    map_whole,
    size_problem,
)

MAGIC = b"HFTSNAP1"
VERSION = 1
PAGE = 4096
ID_SIZE = 32
SLOT_SIZE = 64 + RECORD_SIZE
DEFAULT_CAPACITY = 4096
_HEADER = np.dtype({"names": ["magic", "version", "record_size", "layout_hash", "capacity", "count"],
                    "formats": ["S8", "<u4", "<u4", "<u8", "<u8", "<u8"],
                    "offsets": [0, 8, 12, 16, 24, 32], "itemsize": PAGE})
_COUNT_WORD = 32 // 8
_SPINS = 200  # tries before a reader starts yielding the CPU to a preempted writer


class SnapshotError(Exception):
    """A snapshot file that cannot be used as asked."""


class SnapshotBusy(SnapshotError):
    """A slot stayed mid-write for every retry (its writer died in the middle of an update)."""


def _layout(capacity: int) -> tuple[int, int]:
    """(offset of the first slot, file size)."""
    directory = -(-capacity * ID_SIZE // PAGE) * PAGE
    return PAGE + directory, PAGE + directory + capacity * SLOT_SIZE


class _Mapped:
    """The mapped file and its word/byte views, shared by writer and reader."""

    def __init__(self, path: Path, *, writable: bool) -> None:
        self.path = path
        try:
            fd, self.mm = map_whole(path, writable=writable, min_size=PAGE)
        except FileNotFoundError:
            raise SnapshotError(f"{path}: no snapshot file (is hft_md running?)") from None
        except FileTooSmall as exc:
            raise SnapshotError(f"{exc}: not a snapshot file") from None
        os.close(fd)
        size = len(self.mm)
        header = np.frombuffer(self.mm[:PAGE], _HEADER, count=1)[0]  # a copy: close() stays possible
        problem = identity_problem(header, MAGIC, VERSION)
        if problem is not None:
            self.mm.close()
            raise SnapshotError(f"{path}: not a snapshot of this build: {problem}")
        self.capacity = int(header["capacity"])
        self.slot0, expected_size = _layout(self.capacity)
        problem = size_problem(path, size, expected_size)
        if problem is not None:
            self.mm.close()
            raise SnapshotError(problem)
        self.words = memoryview(self.mm).cast("Q")
        self.bytes = memoryview(self.mm)
        self.ids = np.frombuffer(self.mm, f"S{ID_SIZE}", count=self.capacity, offset=PAGE)

    def count(self) -> int:
        return int(self.words[_COUNT_WORD])

    def version_word(self, index: int) -> int:
        return (self.slot0 + index * SLOT_SIZE) // 8

    def close(self) -> None:
        del self.ids
        self.words.release()
        self.bytes.release()
        self.mm.close()


class SnapshotWriter:
    """The single writer: registers instruments and stores their latest record."""

    def __init__(self, path: Path | str, capacity: int = DEFAULT_CAPACITY) -> None:
        if platform.machine() not in ("x86_64", "AMD64"):
            raise SnapshotError(f"the SeqLock snapshot needs x86-64 store ordering, "
                                f"this is {platform.machine()}")
        self.path = Path(path)
        if not self.path.exists():  # a racing creator's file is kept: creation never replaces
            _create(self.path, capacity)
        self._lock_fd = _lock_single_writer(self.path)
        self._map = _Mapped(self.path, writable=True)
        self._words, self._bytes = self._map.words, self._map.bytes  # for update(), the hot path
        self._index = {bytes(i): n for n, i in enumerate(self._map.ids[: self._map.count()])}
        self._version_words = [self._map.version_word(i) for i in range(self._map.capacity)]
        """Each slot's version word, looked up rather than computed per update."""
        self._versions = [self._words[word] for word in self._version_words]
        for index, version in enumerate(self._versions):
            if version & 1:  # a writer died mid-update: the slot may be torn, mark it usable
                self._versions[index] = version + 1
                self._words[self._version_words[index]] = version + 1

    def index_of(self, instrument: bytes) -> int:
        """The instrument's slot, registering it on first use (publish the id, then the count).
        The id may come NUL-padded, as a CTP struct's char array does: the directory holds it
        without the padding, so the same instrument finds its slot again after a restart."""
        instrument = _canonical_id(instrument)
        index = self._index.get(instrument)
        if index is None:
            index = len(self._index)
            if index >= self._map.capacity:
                raise SnapshotError(f"{self.path}: all {self._map.capacity} instrument slots are "
                                    "used; raise snapshot capacity")
            self._map.ids[index] = instrument
            self._map.words[_COUNT_WORD] = index + 1
            self._index[instrument] = index
        return index

    def update(self, index: int, record: np.void | np.ndarray | memoryview) -> None:
        """Store ``record`` as the latest of instrument ``index`` (SeqLock write). A
        memoryview (a journal slot) is copied buffer to buffer, without a bytes in between."""
        data = record if isinstance(record, memoryview) else record.tobytes()
        words, word = self._words, self._version_words[index]
        version = self._versions[index] + 1
        words[word] = version
        offset = word * 8 + 64
        self._bytes[offset:offset + RECORD_SIZE] = data
        words[word] = version + 1
        self._versions[index] = version + 1

    def close(self) -> None:
        self._map.close()
        os.close(self._lock_fd)


class SnapshotReader:
    """Lock-free reads of the latest record per instrument, from any process."""

    def __init__(self, path: Path | str, max_wait_s: float = 1.0) -> None:
        self._map = _Mapped(Path(path), writable=False)
        self.max_wait_s = max_wait_s
        self.retries = 0
        """Copies thrown away because the writer changed the slot meanwhile."""
        self._index: dict[bytes, int] = {}
        self._known = 0
        self._target: tuple[np.ndarray | None, np.ndarray] = (None, np.empty(0, np.uint8))

    def instruments(self) -> list[bytes]:
        self._refresh()
        return list(self._index)

    def index_of(self, instrument: bytes) -> int | None:
        instrument = instrument.rstrip(b"\0")
        index = self._index.get(instrument)
        if index is None and self._refresh():
            index = self._index.get(instrument)
        return index

    def read_into(self, index: int, out: np.ndarray) -> bool:
        """Copy instrument ``index``'s latest record into ``out`` (one record); False if it
        was never written."""
        words, word = self._map.words, self._map.version_word(index)
        offset = word * 8 + 64
        cached_out, target = self._target
        if cached_out is not out:  # callers reuse one buffer: view it as bytes once
            target = out.view(np.uint8)
            self._target = (out, target)
        source = self._map.bytes[offset:offset + RECORD_SIZE]
        for _ in range(_SPINS):
            before = words[word]
            if not before & 1:
                target[:] = source
                if words[word] == before:
                    return before != 0
                self.retries += 1
        deadline = time.monotonic() + self.max_wait_s
        while time.monotonic() < deadline:
            os.sched_yield()
            before = words[word]
            if not before & 1:
                target[:] = source
                if words[word] == before:
                    return before != 0
        raise SnapshotBusy(f"{self._map.path}: slot {index} stayed mid-write for "
                           f"{self.max_wait_s} s (its writer died during an update?)")

    def read(self, instrument: bytes) -> np.void | None:
        """A copy of the instrument's latest record, typed by its event type; None if unknown."""
        index = self.index_of(instrument)
        if index is None:
            return None
        out = np.zeros(1, dtype=HEADER_DTYPE)
        if not self.read_into(index, out):
            return None
        return out.view(DTYPES.get(int(out["type"][0]), HEADER_DTYPE))[0]  # type: ignore[call-overload, no-any-return]

    def close(self) -> None:
        self._map.close()

    def _refresh(self) -> bool:
        count = self._map.count()
        if count == self._known:
            return False
        for index in range(self._known, count):
            self._index[bytes(self._map.ids[index])] = index
        self._known = count
        return True


def _canonical_id(instrument: bytes) -> bytes:
    """An instrument id as the directory stores it: without NUL padding, at most ID_SIZE bytes
    (a longer one would be cut, and two ids could then share a slot)."""
    canonical = instrument.rstrip(b"\0")
    if not canonical or len(canonical) > ID_SIZE or b"\0" in canonical:
        raise SnapshotError(f"instrument id {instrument!r} is not 1 to {ID_SIZE} bytes without NULs")
    return canonical


def _lock_single_writer(path: Path) -> int:
    """One writer per snapshot: an exclusive flock for the writer's lifetime (the kernel drops
    it if the process dies)."""
    fd = os.open(path, os.O_RDONLY)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        os.close(fd)
        raise SnapshotError(f"{path}: another process is already writing this snapshot") from None
    return fd


def _create(path: Path, capacity: int) -> None:
    """Create the file complete and allocated, unless it exists (then it is left alone)."""
    _, size = _layout(capacity)
    header = np.zeros(1, _HEADER)
    header["magic"], header["version"], header["record_size"] = MAGIC, VERSION, RECORD_SIZE
    header["layout_hash"], header["capacity"] = LAYOUT_HASH, capacity
    path.parent.mkdir(parents=True, exist_ok=True)
    create_exclusively(path, header.tobytes(), size)
