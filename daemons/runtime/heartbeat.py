"""The heartbeat file: proof of life a watchdog can read without talking to the daemon.

A daemon's main loop rewrites ``<home>/run/<name>.hb`` (mmap, no syscalls per beat) at most
every ``heartbeat_interval_s``. A hung main loop stops beating even while its gRPC threads
still answer, which is what a watchdog must notice. Layout, little endian, 48 bytes:

======  ====  =====  ===========================================================
offset  size  type   field
======  ====  =====  ===========================================================
0       4     4s     magic ``b"HFHB"``
4       2     u16    layout version (1)
6       2     u16    state: DaemonState (1 starting, 2 running, 3 stopping, 4 stopped)
8       8     u64    sequence: odd while a write is in progress (a seqlock)
16      8     i64    process start time, ns since the epoch (UTC)
24      8     i64    last beat, ns since the epoch (``time.time_ns()``)
32      8     u64    main-loop iterations so far
40      4     u32    pid
44      4            reserved (zero)
======  ====  =====  ===========================================================

A reader retries until it sees the same even sequence before and after reading the body,
so it never returns a half-written beat.
"""

from __future__ import annotations

import mmap
import os
import struct
import time
from dataclasses import dataclass
from enum import IntEnum
from pathlib import Path

MAGIC = b"HFHB"
VERSION = 1
_HEAD = struct.Struct("<4sHH")
_SEQ = struct.Struct("<Q")
_BODY = struct.Struct("<qqQI4x")
_SEQ_OFFSET = _HEAD.size
_BODY_OFFSET = _SEQ_OFFSET + _SEQ.size
SIZE = _BODY_OFFSET + _BODY.size
_READ_ATTEMPTS = 1000


class DaemonState(IntEnum):
    """Lifecycle of a daemon; the values match hft.control.v1.DaemonState."""

    STARTING = 1
    RUNNING = 2
    STOPPING = 3
    STOPPED = 4


_STATES = frozenset(int(state) for state in DaemonState)


class HeartbeatError(Exception):
    """The file is missing, too short, of another format, or never stable to read."""


@dataclass(frozen=True)
class Heartbeat:
    pid: int
    state: DaemonState
    start_ns: int
    beat_ns: int
    iterations: int

    def age_s(self, now_ns: int | None = None) -> float:
        """Seconds since the last beat (wall clock)."""
        return ((time.time_ns() if now_ns is None else now_ns) - self.beat_ns) / 1e9


class HeartbeatWriter:
    """Owns one heartbeat file; ``beat`` is cheap enough for the main loop."""

    def __init__(self, path: Path, start_ns: int) -> None:
        path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
        fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_TRUNC | os.O_CLOEXEC, 0o600)
        try:
            os.ftruncate(fd, SIZE)
            self._map = mmap.mmap(fd, SIZE)
        finally:
            os.close(fd)
        self._seq = 0
        self._start_ns = start_ns
        self._pid = os.getpid()
        self.last_beat_ns = 0

    def beat(self, state: DaemonState, iterations: int) -> None:
        self.last_beat_ns = time.time_ns()
        _SEQ.pack_into(self._map, _SEQ_OFFSET, self._seq + 1)
        _HEAD.pack_into(self._map, 0, MAGIC, VERSION, state)
        _BODY.pack_into(self._map, _BODY_OFFSET, self._start_ns, self.last_beat_ns, iterations,
                        self._pid)
        self._seq += 2
        _SEQ.pack_into(self._map, _SEQ_OFFSET, self._seq)

    def close(self) -> None:
        self._map.close()


def read_heartbeat(path: Path) -> Heartbeat:
    """The latest consistent beat in ``path``; HeartbeatError if there is none."""
    try:
        with path.open("rb") as file:
            if os.fstat(file.fileno()).st_size < SIZE:
                raise HeartbeatError(f"{path} is shorter than a heartbeat ({SIZE} bytes)")
            with mmap.mmap(file.fileno(), SIZE, access=mmap.ACCESS_READ) as view:
                data = _stable_copy(view, path)
    except OSError as exc:
        raise HeartbeatError(f"cannot read heartbeat {path}: {exc.strerror}") from None
    magic, version, state = _HEAD.unpack_from(data, 0)
    if magic != MAGIC or version != VERSION or state not in _STATES:
        raise HeartbeatError(f"{path} is not a version {VERSION} heartbeat file")
    start_ns, beat_ns, iterations, pid = _BODY.unpack_from(data, _BODY_OFFSET)
    return Heartbeat(pid=pid, state=DaemonState(state), start_ns=start_ns, beat_ns=beat_ns,
                     iterations=iterations)


def _stable_copy(view: mmap.mmap, path: Path) -> bytes:
    """The seqlock read: a copy taken between two equal, even sequence numbers."""
    for _ in range(_READ_ATTEMPTS):
        before = _SEQ.unpack_from(view, _SEQ_OFFSET)[0]
        data = view[:SIZE]
        if before % 2 == 0 and before == _SEQ.unpack_from(view, _SEQ_OFFSET)[0]:
            return data
    raise HeartbeatError(f"{path} was being written on every read")
