"""The mmap journal: commit visibility, rollover, retention and laps, format checks, recovery."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from hft.daemons.runtime.events import (
    HEADER_DTYPE,
    RECORD_SIZE,
    TICK_DTYPE,
    EventType,
    empty,
)
from hft.daemons.runtime.journal import (
    JournalError,
    JournalFormatError,
    JournalLapped,
    JournalReader,
    JournalWriter,
)
from hft.daemons.runtime.journal.format import PAGE, segment_path
from hft.daemons.runtime.journal.mapped import MappedSegment

WRITER_PROC = Path(__file__).parent / "procs" / "journal_writer.py"


def tick(n: int) -> np.ndarray:
    record = empty(EventType.MARKET_DATA)
    record["volume"] = n
    record["last_price"] = n * 0.5
    record["instrument"] = b"IF2101"
    return record


def ticks(first: int, count: int) -> np.ndarray:
    records = empty(EventType.MARKET_DATA, count)
    records["volume"] = np.arange(first, first + count)
    records["last_price"] = records["volume"] * 0.5
    return records


def read_all(reader: JournalReader, limit: int | None = None) -> list[int]:
    """The ``volume`` of every readable record (at most ``limit``), checking each is whole."""
    volumes: list[int] = []
    while len(volumes) != limit and (record := reader.read()) is not None:
        assert record["last_price"] == record["volume"] * 0.5, "torn record"
        volumes.append(int(record["volume"]))
    return volumes


def test_records_round_trip_typed_with_gapless_seqs(tmp_path: Path) -> None:
    with JournalWriter(tmp_path, "j") as writer, JournalReader(tmp_path, "j") as reader:
        assert reader.read() is None
        assert writer.append(tick(7)) == 1
        order = empty(EventType.ORDER_REQ)
        order["price"] = 5230.2
        assert writer.append(order) == 2
        first = reader.read()
        assert first is not None and first.dtype == TICK_DTYPE
        assert (first["seq"], first["volume"], first["instrument"]) == (1, 7, b"IF2101")
        second = reader.read()
        assert second is not None and second["type"] == EventType.ORDER_REQ
        assert second["price"] == 5230.2 and second["seq"] == 2
        assert reader.read() is None


def test_append_ignores_and_keeps_the_callers_seq(tmp_path: Path) -> None:
    record = tick(1)
    record["seq"] = 99
    with JournalWriter(tmp_path, "j") as writer, JournalReader(tmp_path, "j") as reader:
        writer.append(record)
        got = reader.read()
        assert got is not None and got["seq"] == 1
        assert record["seq"][0] == 99


def test_claim_commit_writes_in_place(tmp_path: Path) -> None:
    with JournalWriter(tmp_path, "j") as writer, JournalReader(tmp_path, "j") as reader:
        slot = writer.claim(EventType.MARKET_DATA)
        slot["volume"] = 5
        assert reader.read() is None, "a claimed slot must stay invisible until commit"
        assert writer.commit() == 1
        got = reader.read()
        assert got is not None and got["volume"] == 5 and got["type"] == EventType.MARKET_DATA


def test_batches_span_segments_and_readers_follow(tmp_path: Path) -> None:
    with JournalWriter(tmp_path, "j", segment_records=100) as writer:
        assert writer.append_batch(ticks(1, 250)) == 250
        writer.append(tick(251))
        with JournalReader(tmp_path, "j") as reader:
            batches = []
            while (batch := reader.read_batch(64, EventType.MARKET_DATA)).size:
                assert batch.dtype == TICK_DTYPE
                batches.append(batch["volume"].copy())
            assert np.concatenate(batches).tolist() == list(range(1, 252))
            assert max(len(b) for b in batches) <= 64


def test_batch_of_wrong_records_is_refused(tmp_path: Path) -> None:
    with JournalWriter(tmp_path, "j") as writer:
        with pytest.raises(ValueError, match="384-byte records"):
            writer.append_batch(np.zeros(3, dtype=np.float64))
        with pytest.raises(ValueError, match="384 bytes"):
            writer.append(np.zeros(1, dtype=np.float64))
        assert writer.last_seq == 0


def test_roll_by_trading_day(tmp_path: Path) -> None:
    with JournalWriter(tmp_path, "j", trading_day=20210104) as writer:
        writer.roll(20210105)  # nothing written yet: relabels the empty segment
        assert not segment_path(tmp_path, "j", 1).exists()
        writer.append(tick(1))
        writer.roll(20210106)
        writer.append(tick(2))
        assert writer.trading_day == 20210106
    days = [MappedSegment(segment_path(tmp_path, "j", i), writable=False).trading_day
            for i in (0, 1)]
    assert days == [20210105, 20210106]
    with JournalReader(tmp_path, "j") as reader:
        assert read_all(reader) == [1, 2]


def test_reopened_writer_with_another_trading_day_rolls(tmp_path: Path) -> None:
    with JournalWriter(tmp_path, "j", trading_day=20210104) as writer:
        writer.append(tick(1))
    with JournalWriter(tmp_path, "j", trading_day=20210105) as writer:
        assert writer.trading_day == 20210105 and writer.last_seq == 1
        writer.append(tick(2))
    assert segment_path(tmp_path, "j", 1).exists()


def test_retention_bounds_disk_and_a_slow_reader_is_told_it_was_lapped(tmp_path: Path) -> None:
    with JournalWriter(tmp_path, "j", segment_records=10, keep_segments=2) as writer:
        reader = JournalReader(tmp_path, "j")
        writer.append_batch(ticks(1, 5))
        assert read_all(reader) == [1, 2, 3, 4, 5]
        writer.append_batch(ticks(6, 60))  # segments 0..6 made, only 5 and 6 kept
        assert len(list(tmp_path.glob("j.*.dat"))) == 2
        # The reader still maps segment 0, so it finishes it, then finds 1..4 gone.
        volumes = []
        with pytest.raises(JournalLapped) as lapped:
            while (record := reader.read()) is not None:
                volumes.append(int(record["volume"]))
        assert volumes == [6, 7, 8, 9, 10]
        assert (lapped.value.expected_seq, lapped.value.resumed_seq, lapped.value.missed) == (11, 51, 40)
        assert read_all(reader) == list(range(51, 66))
        reader.close()


def test_start_positions(tmp_path: Path) -> None:
    with JournalWriter(tmp_path, "j", segment_records=10, keep_segments=2) as writer:
        writer.append_batch(ticks(1, 35))  # segments 2 (21..30) and 3 (31..) kept
        with JournalReader(tmp_path, "j", start="begin") as reader:
            assert read_all(reader)[0] == 21, "begin means the oldest record still kept"
        with JournalReader(tmp_path, "j", start="end") as reader:
            assert reader.read() is None
            writer.append(tick(36))
            assert read_all(reader) == [36]
        with JournalReader(tmp_path, "j", start=33) as reader:
            assert read_all(reader) == [33, 34, 35, 36]
        with JournalReader(tmp_path, "j", start=5) as reader:
            with pytest.raises(JournalLapped, match=r"records 5\.\.20"):
                reader.read()
            assert read_all(reader)[0] == 21
        with JournalReader(tmp_path, "j", start=5) as reader:
            with pytest.raises(JournalLapped, match=r"records 5\.\.20"):
                reader.read_batch(100)
            assert reader.read_batch(100, EventType.MARKET_DATA)["volume"][0] == 21
        with pytest.raises(ValueError, match="start must be"):
            JournalReader(tmp_path, "j", start="middle")


def test_a_second_writer_is_refused_while_the_first_lives(tmp_path: Path) -> None:
    refused = pytest.raises(JournalError, match=f"already being written by pid {os.getpid()}")
    with JournalWriter(tmp_path, "j"), refused:
        JournalWriter(tmp_path, "j")
    JournalWriter(tmp_path, "j").close()  # free again once the first has gone


def test_reader_of_a_missing_journal_says_so(tmp_path: Path) -> None:
    with pytest.raises(JournalError, match="no such journal file"):
        JournalReader(tmp_path, "absent")


@pytest.mark.parametrize(
    ("offset", "patch", "message"),
    [
        (0, b"NOTOURS!", "not an hft journal file"),
        (8, (99).to_bytes(4, "little"), "format version 99"),
        (16, (1234).to_bytes(8, "little"), "another record layout"),
    ],
    ids=["foreign", "version", "layout"],
)
def test_damaged_headers_are_refused(tmp_path: Path, offset: int, patch: bytes, message: str) -> None:
    with JournalWriter(tmp_path, "j") as writer:
        writer.append(tick(1))
    for path in (tmp_path / "j.meta", segment_path(tmp_path, "j", 0)):
        original = path.read_bytes()
        path.write_bytes(original[:offset] + patch + original[offset + len(patch):])
        with pytest.raises(JournalFormatError, match=message):
            JournalWriter(tmp_path, "j")
        with pytest.raises(JournalFormatError, match=message):
            JournalReader(tmp_path, "j")
        path.write_bytes(original)


def test_truncated_and_tiny_files_are_refused(tmp_path: Path) -> None:
    with JournalWriter(tmp_path, "j", segment_records=100) as writer:
        writer.append(tick(1))
    segment = segment_path(tmp_path, "j", 0)
    os.truncate(segment, PAGE + 10 * RECORD_SIZE)
    with pytest.raises(JournalFormatError, match="truncated to"):
        JournalReader(tmp_path, "j")
    os.truncate(segment, 100)
    with pytest.raises(JournalFormatError, match="truncated to 100 bytes"):
        JournalWriter(tmp_path, "j")


def test_a_gap_between_segments_is_reported_as_corruption(tmp_path: Path) -> None:
    with JournalWriter(tmp_path, "j", segment_records=10) as writer:
        writer.append_batch(ticks(1, 15))
    segment = MappedSegment(segment_path(tmp_path, "j", 1), writable=True)
    segment.header["first_seq"] = 14
    segment.close()
    with pytest.raises(JournalError, match="starts at seq 14 but the segment before it ends at 10"):
        JournalWriter(tmp_path, "j")


# --- crashes: torn tails and interrupted batches ------------------------------------------

def tear_next_slot(directory: Path, writer: JournalWriter, garbage_seq: int = 0) -> None:
    """What a writer killed mid-copy leaves: payload bytes in the next slot, its seq unset."""
    segment = MappedSegment(writer._segment.path, writable=True)
    slot = writer.last_seq + 1 - segment.first_seq
    if slot < segment.capacity:
        raw = np.frombuffer(segment.mm, np.uint8, count=RECORD_SIZE, offset=PAGE + slot * RECORD_SIZE)
        raw[8:200] = 0xAB
        raw[:8] = np.frombuffer(np.uint64(garbage_seq).tobytes(), np.uint8)
        del raw
    segment.close()


def interrupt_batch(writer: JournalWriter, first: int, count: int, committed: int) -> None:
    """A batch whose payload was copied but whose seq stores stopped after ``committed``."""
    segment = MappedSegment(writer._segment.path, writable=True)
    slot = writer.last_seq + 1 - segment.first_seq
    count = min(count, segment.capacity - slot)
    records = ticks(first, count)
    view = np.frombuffer(segment.mm, HEADER_DTYPE, count=segment.capacity, offset=PAGE)
    raw = view[slot:slot + count].view(np.uint8).reshape(-1, RECORD_SIZE)
    raw[:, 8:] = records.view(np.uint8).reshape(-1, RECORD_SIZE)[:, 8:]
    done = min(committed, count)
    segment.seqs[slot:slot + done] = np.arange(first, first + done, dtype=np.uint64)
    del view, raw
    segment.close()


def test_a_torn_tail_is_invisible_and_overwritten_after_restart(tmp_path: Path) -> None:
    writer = JournalWriter(tmp_path, "j", segment_records=8)
    writer.append_batch(ticks(1, 3))
    tear_next_slot(tmp_path, writer)
    writer.close()  # nothing is finalised on close: the same state a SIGKILL leaves
    reader = JournalReader(tmp_path, "j")
    assert read_all(reader) == [1, 2, 3]
    with JournalWriter(tmp_path, "j", segment_records=8) as restarted:
        assert restarted.last_seq == 3
        restarted.append(tick(4))
    assert read_all(reader) == [4]
    reader.close()


@settings(max_examples=60, deadline=None)
@given(st.lists(st.one_of(
    st.tuples(st.just("append"), st.integers(1, 5)),
    st.tuples(st.just("batch"), st.integers(1, 30)),
    st.tuples(st.just("roll"), st.integers(20210104, 20210110)),
    st.tuples(st.just("torn"), st.booleans()),
    st.tuples(st.just("interrupted_batch"), st.integers(1, 20), st.integers(0, 20)),
    st.tuples(st.just("read"), st.integers(1, 50)),
), max_size=25))
def test_any_sequence_of_writes_and_crashes_loses_nothing_committed(
        tmp_path_factory: pytest.TempPathFactory, ops: list[tuple]) -> None:  # type: ignore[type-arg]
    """Property: whatever the writes, rolls and crash points, a reader gets exactly the
    committed records, in order, each whole, with gapless seqs; restarts continue the seq."""
    directory = tmp_path_factory.mktemp("journal")
    writer = JournalWriter(directory, "j", segment_records=16, keep_segments=1000)
    reader = JournalReader(directory, "j")
    committed: list[int] = []
    seen: list[int] = []
    for op in ops:
        kind = op[0]
        if kind == "append":
            for _ in range(op[1]):
                writer.append(tick(len(committed) + 1))
                committed.append(len(committed) + 1)
        elif kind == "batch":
            first = len(committed) + 1
            writer.append_batch(ticks(first, op[1]))
            committed += list(range(first, first + op[1]))
        elif kind == "roll":
            writer.roll(op[1])
        elif kind in ("torn", "interrupted_batch"):
            if kind == "torn":
                # A torn slot may even hold a stale non-zero seq word, as long as it is wrong.
                tear_next_slot(directory, writer, garbage_seq=999_999 if op[1] else 0)
            else:
                first = len(committed) + 1
                before = writer.last_seq
                interrupt_batch(writer, first, op[1], op[2])
            writer.close()
            writer = JournalWriter(directory, "j", segment_records=16, keep_segments=1000)
            if kind == "interrupted_batch":
                # seqs stored before the crash are committed: the restarted writer keeps them
                kept = writer.last_seq - before
                committed += list(range(first, first + kept))
        else:
            for _ in range(op[1]):
                record = reader.read()
                if record is None:
                    break
                assert record["seq"] == len(seen) + 1
                seen.append(int(record["volume"]))
        assert writer.last_seq == len(committed)
    seen += read_all(reader)
    assert seen == committed
    writer.close()
    reader.close()


# --- real processes --------------------------------------------------------------------------

def start_writer(directory: Path, mode: str) -> tuple[subprocess.Popen[str], int]:
    """A writer process that appends up to 2M records (about 4 s) unless killed first."""
    proc = subprocess.Popen([sys.executable, str(WRITER_PROC), str(directory), "j", "5000", mode,
                             "2000000"], stdout=subprocess.PIPE, text=True)
    assert proc.stdout is not None
    first = int(proc.stdout.readline())
    return proc, first


@pytest.mark.parametrize("mode", ["single", "batch", "claim"])
def test_sigkill_mid_stream_loses_nothing_committed_and_the_restart_continues(
        tmp_path: Path, mode: str) -> None:
    """A writer process is killed with SIGKILL at random points while another reader follows
    it live. Everything the reader saw (committed) is still in the journal, every record is
    whole, and each restarted writer continues exactly at the next seq."""
    rng = np.random.default_rng(7)
    JournalWriter(tmp_path, "j", segment_records=5000).close()
    reader = JournalReader(tmp_path, "j")
    seen: list[int] = []
    for run in range(4):
        proc, first = start_writer(tmp_path, mode)
        assert first == len(seen) + 1
        deadline = time.monotonic() + float(rng.uniform(0.02, 0.2))
        while time.monotonic() < deadline:
            seen += read_all(reader, limit=1000)
        assert proc.poll() is None, "the writer finished before the kill: not mid-stream"
        proc.send_signal(signal.SIGKILL)
        proc.wait()
        seen += read_all(reader)
        assert seen == list(range(1, len(seen) + 1)), f"gap or reorder after kill {run}"
        # the next writer must start right after the last committed record
        proc, first = start_writer(tmp_path, mode)
        assert first == len(seen) + 1, "records committed before the kill were lost or duplicated"
        proc.send_signal(signal.SIGKILL)
        proc.wait()
        seen += read_all(reader)
    reader.close()
    with JournalReader(tmp_path, "j") as fresh:
        assert read_all(fresh) == seen
    assert len(seen) > 1000


def test_blocking_reader_in_another_process_is_woken(tmp_path: Path) -> None:
    """A reader process sleeping in 'block' mode receives records written with pauses
    (it must be woken by the writer, not by polling a file)."""
    writer = JournalWriter(tmp_path, "j")
    code = (
        "import sys\n"
        "from hft.daemons.runtime.journal import JournalReader\n"
        f"r = JournalReader({str(tmp_path)!r}, 'j', wait_mode='block', spin_s=0)\n"
        "print('ready', flush=True)\n"
        "got = []\n"
        "while len(got) < 20:\n"
        "    rec = r.next(timeout_s=10)\n"
        "    if rec is None: sys.exit('timed out')\n"
        "    got.append(int(rec['volume']))\n"
        "print(got, flush=True)\n"
    )
    proc = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, text=True)
    try:
        assert proc.stdout is not None and proc.stdout.readline().strip() == "ready"
        for n in range(1, 21):
            writer.append(tick(n))
            time.sleep(0.005)
        out, _ = proc.communicate(timeout=30)
        assert proc.returncode == 0
        assert out.strip() == str(list(range(1, 21)))
    finally:
        proc.kill()
        writer.close()


def test_journal_files_are_readable_by_their_owner_only(tmp_path: Path) -> None:
    directory = tmp_path / "journal"
    with JournalWriter(directory, "j", segment_records=4) as writer:
        writer.append_batch(ticks(1, 6))  # a rolled segment too
    files = [directory / "j.meta", directory / "j.spare", *sorted(directory.glob("j.*.dat"))]
    assert len(files) == 4
    assert [oct(path.stat().st_mode & 0o777) for path in files] == ["0o600"] * 4
    assert oct(directory.stat().st_mode & 0o777) == "0o700"  # names and sizes are private too
