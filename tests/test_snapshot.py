"""The SeqLock snapshot: O(1) latest tick per instrument, torn reads never returned."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from hft.daemons.runtime.events import HEADER_DTYPE, TICK_DTYPE, EventType, empty
from hft.daemons.runtime.snapshot import (
    SnapshotBusy,
    SnapshotError,
    SnapshotReader,
    SnapshotWriter,
)


def tick(instrument: bytes, price: float) -> np.ndarray:
    record = empty(EventType.MARKET_DATA)
    record["instrument"] = instrument
    record["last_price"] = price
    return record


def test_latest_tick_per_instrument(tmp_path: Path) -> None:
    path = tmp_path / "md.snap"
    writer = SnapshotWriter(path, capacity=8)
    reader = SnapshotReader(path)
    assert reader.read(b"IF2101") is None
    if_index = writer.index_of(b"IF2101")
    writer.update(if_index, tick(b"IF2101", 5230.0))
    writer.update(if_index, tick(b"IF2101", 5231.2))
    writer.update(writer.index_of(b"rb2105"), tick(b"rb2105", 4300.0))
    latest = reader.read(b"IF2101")
    assert latest is not None and latest.dtype == TICK_DTYPE
    assert (latest["instrument"], latest["last_price"]) == (b"IF2101", 5231.2)
    assert reader.read(b"rb2105")["last_price"] == 4300.0  # type: ignore[index]
    assert reader.instruments() == [b"IF2101", b"rb2105"]
    assert writer.index_of(b"IF2101") == if_index == reader.index_of(b"IF2101")
    writer.close()
    reader.close()


def test_registered_but_never_written_reads_as_none(tmp_path: Path) -> None:
    writer = SnapshotWriter(tmp_path / "s", capacity=4)
    writer.index_of(b"au2106")
    assert SnapshotReader(tmp_path / "s").read(b"au2106") is None


def test_capacity_is_enforced_with_a_clear_error(tmp_path: Path) -> None:
    writer = SnapshotWriter(tmp_path / "s", capacity=2)
    writer.index_of(b"a")
    writer.index_of(b"b")
    with pytest.raises(SnapshotError, match="all 2 instrument slots are used"):
        writer.index_of(b"c")


def test_a_second_writer_is_refused(tmp_path: Path) -> None:
    first = SnapshotWriter(tmp_path / "s", capacity=4)
    with pytest.raises(SnapshotError, match="already writing"):
        SnapshotWriter(tmp_path / "s")
    first.close()
    SnapshotWriter(tmp_path / "s").close()


def test_a_restarted_writer_keeps_the_directory(tmp_path: Path) -> None:
    path = tmp_path / "s"
    first = SnapshotWriter(path, capacity=4)
    first.update(first.index_of(b"cu2102"), tick(b"cu2102", 58000.0))
    first.close()
    second = SnapshotWriter(path)
    assert second.index_of(b"cu2102") == 0
    assert SnapshotReader(path).read(b"cu2102")["last_price"] == 58000.0  # type: ignore[index]


def test_a_padded_id_finds_its_slot_again_after_a_restart(tmp_path: Path) -> None:
    """CTP structs carry the id NUL-padded to 81 bytes; the directory holds it unpadded."""
    path = tmp_path / "s"
    padded = b"IF2101".ljust(81, b"\0")
    for price in (5298.0, 5299.0):  # two runs of the writer
        writer = SnapshotWriter(path, capacity=4)
        writer.update(writer.index_of(padded), tick(b"IF2101", price))
        writer.close()
    reader = SnapshotReader(path)
    assert reader.instruments() == [b"IF2101"]
    assert reader.index_of(padded) == reader.index_of(b"IF2101") == 0
    assert reader.read(b"IF2101")["last_price"] == 5299.0  # type: ignore[index]


@pytest.mark.parametrize("bad", [b"", b"\0" * 8, b"x" * 33, b"IF\x002101"])
def test_a_bad_id_is_refused_by_name(tmp_path: Path, bad: bytes) -> None:
    writer = SnapshotWriter(tmp_path / "s", capacity=4)
    with pytest.raises(SnapshotError, match="is not 1 to 32 bytes"):
        writer.index_of(bad)
    writer.close()


def test_writer_killed_mid_update_blocks_readers_until_restart_repairs(tmp_path: Path) -> None:
    path = tmp_path / "s"
    writer = SnapshotWriter(path, capacity=4)
    index = writer.index_of(b"IF2101")
    writer.update(index, tick(b"IF2101", 1.0))
    word = writer._map.version_word(index)
    writer._map.words[word] += 1  # odd: what a writer killed between its two stores leaves
    writer.close()
    reader = SnapshotReader(path, max_wait_s=0.05)
    with pytest.raises(SnapshotBusy, match="stayed mid-write"):
        reader.read(b"IF2101")
    SnapshotWriter(path).close()
    assert reader.read(b"IF2101")["last_price"] == 1.0  # type: ignore[index]


def test_foreign_and_truncated_files_are_refused(tmp_path: Path) -> None:
    foreign = tmp_path / "foreign"
    foreign.write_bytes(b"x" * 8192)
    with pytest.raises(SnapshotError, match="not a snapshot of this build"):
        SnapshotReader(foreign)
    tiny = tmp_path / "tiny"
    tiny.write_bytes(b"x" * 10)
    with pytest.raises(SnapshotError, match="truncated"):
        SnapshotReader(tiny)
    with pytest.raises(SnapshotError, match="no snapshot file"):
        SnapshotReader(tmp_path / "absent")
    good = tmp_path / "good"
    SnapshotWriter(good, capacity=16).close()
    data = good.read_bytes()
    good.write_bytes(data[: len(data) // 2])
    with pytest.raises(SnapshotError, match="truncated to"):
        SnapshotReader(good)


WRITER = """
import sys
import numpy as np
from hft.daemons.runtime.events import EventType, empty
from hft.daemons.runtime.snapshot import SnapshotWriter
w = SnapshotWriter(sys.argv[1], capacity=4)
index = w.index_of(b'IF2101')
record = empty(EventType.MARKET_DATA)


def put(n):
    # every numeric field carries the same counter: a torn copy mixes two counters
    record['volume'] = n
    record['last_price'] = n
    record['bid_price'] = n
    record['ask_volume'] = n % 1_000_000
    record['exchange_ts_ns'] = n
    w.update(index, record)


put(0)
print('ready', flush=True)
n = 0
while True:
    n += 1
    put(n)
"""


def test_reads_under_a_concurrent_writer_process_are_never_torn(tmp_path: Path) -> None:
    path = tmp_path / "s"
    proc = subprocess.Popen([sys.executable, "-c", WRITER, str(path)], stdout=subprocess.PIPE,
                            text=True)
    try:
        assert proc.stdout is not None and proc.stdout.readline().strip() == "ready"
        reader = SnapshotReader(path)
        index = reader.index_of(b"IF2101")
        assert index is not None
        out = np.zeros(1, HEADER_DTYPE)
        ticks = out.view(TICK_DTYPE)
        distinct = set()
        for _ in range(100_000):
            assert reader.read_into(index, out)
            n = int(ticks["volume"][0])
            assert ticks["last_price"][0] == n and ticks["exchange_ts_ns"][0] == n
            assert (ticks["bid_price"][0] == n).all()
            assert (ticks["ask_volume"][0] == n % 1_000_000).all()
            distinct.add(n)
        assert len(distinct) > 100, "the writer was not writing while we read"
        assert reader.retries > 0, "no read ever raced the writer: the test proves nothing"
    finally:
        proc.kill()
        proc.wait()


def test_the_snapshot_file_is_readable_by_its_owner_only(tmp_path: Path) -> None:
    SnapshotWriter(tmp_path / "s", capacity=4).close()
    assert (tmp_path / "s").stat().st_mode & 0o777 == 0o600
