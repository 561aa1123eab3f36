"""The heartbeat file: round trip, age, and readers that never return a torn or foreign beat."""

from __future__ import annotations

import os
import struct
import time
from pathlib import Path

import pytest

from hft.daemons.runtime.heartbeat import (
    SIZE,
    DaemonState,
    HeartbeatError,
    HeartbeatWriter,
    read_heartbeat,
)


def test_round_trip(tmp_path: Path) -> None:
    path = tmp_path / "run" / "engine.hb"
    start_ns = time.time_ns()
    writer = HeartbeatWriter(path, start_ns)
    writer.beat(DaemonState.RUNNING, 42)
    beat = read_heartbeat(path)
    assert (beat.pid, beat.state, beat.start_ns, beat.iterations) == (
        os.getpid(), DaemonState.RUNNING, start_ns, 42)
    assert beat.beat_ns == writer.last_beat_ns
    assert 0 <= beat.age_s() < 5
    assert beat.age_s(now_ns=beat.beat_ns + 2_500_000_000) == 2.5
    writer.beat(DaemonState.STOPPED, 43)
    assert read_heartbeat(path).state is DaemonState.STOPPED
    writer.close()
    assert path.stat().st_size == SIZE
    assert path.stat().st_mode & 0o777 == 0o600


def test_a_beat_being_written_is_never_returned(tmp_path: Path) -> None:
    path = tmp_path / "engine.hb"
    HeartbeatWriter(path, 1).beat(DaemonState.RUNNING, 1)
    data = bytearray(path.read_bytes())
    struct.pack_into("<Q", data, 8, 3)  # odd sequence: a writer is mid-update
    path.write_bytes(data)
    with pytest.raises(HeartbeatError, match="being written"):
        read_heartbeat(path)


@pytest.mark.parametrize("content", [b"", b"HFHB", b"XXXX" + bytes(SIZE - 4)])
def test_foreign_or_short_files_are_refused(tmp_path: Path, content: bytes) -> None:
    path = tmp_path / "x.hb"
    path.write_bytes(content)
    with pytest.raises(HeartbeatError):
        read_heartbeat(path)


def test_missing_file(tmp_path: Path) -> None:
    with pytest.raises(HeartbeatError, match="cannot read heartbeat"):
        read_heartbeat(tmp_path / "none.hb")
