"""The journal under attack: racing creators, readers started before retention's horizon,
holes left by a power failure, and the per-commit msync option."""

from __future__ import annotations

import mmap
import multiprocessing
import os
import time
from multiprocessing.synchronize import Barrier
from pathlib import Path

import numpy as np
import pytest
from support.pagecache import page_is_dirty

from hft.daemons.runtime.events import RECORD_SIZE, EventType, empty
from hft.daemons.runtime.journal import (
    JournalError,
    JournalHole,
    JournalLapped,
    JournalReader,
    JournalWriter,
)
from hft.daemons.runtime.journal.format import PAGE, segment_indices, segment_path
from hft.daemons.runtime.journal.writer import ALLOCATE_EVERY

RACERS = 4
RACES = 25
RECORDS_PER_WINNER = 40


def _race_for_the_journal(directory: Path, started: Barrier, tried: Barrier,
                          results: multiprocessing.Queue[tuple[str, int]]) -> None:
    """One racer: open the new journal as its writer at the same moment as the others; the
    winner stamps its pid into every record and holds the journal until all have tried."""
    record = empty(EventType.MARKET_DATA)
    record["volume"] = os.getpid()
    started.wait(timeout=30)
    try:
        writer = JournalWriter(directory, "j", segment_records=16)
    except JournalError:
        results.put(("refused", os.getpid()))
        tried.wait(timeout=30)
        return
    for _ in range(RECORDS_PER_WINNER):
        writer.append(record)
    results.put(("wrote", os.getpid()))
    tried.wait(timeout=30)  # a racer that failed otherwise breaks the barrier: all exit
    writer.close()


def test_racing_creators_of_a_new_journal_make_exactly_one_writer(tmp_path: Path) -> None:
    context = multiprocessing.get_context("fork")
    for race in range(RACES):
        directory = tmp_path / f"race{race}"
        directory.mkdir()
        started, tried = context.Barrier(RACERS), context.Barrier(RACERS)
        results: multiprocessing.Queue[tuple[str, int]] = context.Queue()
        racers = [context.Process(target=_race_for_the_journal,
                                  args=(directory, started, tried, results))
                  for _ in range(RACERS)]
        for racer in racers:
            racer.start()
        for racer in racers:
            racer.join(60)
            if racer.exitcode is None:
                racer.kill()
            assert racer.exitcode == 0, f"race {race}: a racer failed ({racer.exitcode})"
        outcomes = [results.get(timeout=5) for _ in racers]
        winners = [pid for outcome, pid in outcomes if outcome == "wrote"]
        assert len(winners) == 1, f"race {race}: {len(winners)} writers on one journal"
        with JournalReader(directory, "j") as reader:
            written = []
            while (record := reader.read()) is not None:
                written.append((int(record["seq"]), int(record["volume"])))
        assert written == [(seq, winners[0]) for seq in range(1, RECORDS_PER_WINNER + 1)]


# --- a start older than retention keeps ---------------------------------------------------

def journal_with_retention(directory: Path) -> int:
    """Segments of 100 records, 2 kept, 650 written: the oldest kept seq (returned) is 501.

    Each record also holds, in a payload word, the seq a reader started 50 records before
    retention's horizon asks for, as real prices or volumes can: a reader that wraps its slot
    index round the segment's end would take that word for its slot's seq and hand out
    another record (the defect: asked 451, got 551)."""
    with JournalWriter(directory, "j", segment_records=100, keep_segments=2) as writer:
        batch = empty(EventType.MARKET_DATA, 650)
        seqs = np.arange(1, 651, dtype=np.uint64)
        batch["volume"] = seqs
        batch["ask_price"][:, 1] = (seqs - 110).view(np.float64)
        writer.append_batch(batch)
    assert segment_indices(directory, "j") == [5, 6]
    return 501


@pytest.mark.parametrize("start", [1, 451, 500], ids=["large-gap", "small-gap", "one-record"])
@pytest.mark.parametrize("batched", [False, True], ids=["read", "read_batch"])
def test_a_start_before_retention_is_reported_as_a_lap(
        tmp_path: Path, start: int, batched: bool) -> None:
    oldest = journal_with_retention(tmp_path)
    with JournalReader(tmp_path, "j", start=start) as reader:
        with pytest.raises(JournalLapped, match=rf"records {start}\.\.{oldest - 1} "
                                                rf"\({oldest - start}\) were removed") as lap:
            reader.read_batch() if batched else reader.read()
        assert (lap.value.expected_seq, lap.value.resumed_seq) == (start, oldest)
        # then it goes on from the oldest record kept, each record the one asked for
        if batched:
            seqs: list[int] = []
            while len(batch := reader.read_batch(1000, EventType.MARKET_DATA)):
                assert list(batch["seq"]) == list(batch["volume"])
                seqs += [int(seq) for seq in batch["seq"]]
            assert seqs == list(range(oldest, 651))
        else:
            for seq in range(oldest, 651):
                record = reader.read()
                assert record is not None
                assert (record["seq"], record["volume"]) == (seq, seq)
            assert reader.read() is None


# --- holes: last_seq past a slot that never fills -------------------------------------------

def punch_hole(directory: Path, seq: int) -> None:
    """What a power failure can leave: the meta's last_seq (written out) past a slot whose
    page was not written out, so it reads as zeros."""
    path = segment_path(directory, "j", 0)
    offset = PAGE + (seq - 1) * RECORD_SIZE
    with path.open("r+b") as file:
        file.seek(offset)
        file.write(bytes(RECORD_SIZE))


@pytest.mark.parametrize("batched", [False, True], ids=["read", "read_batch"])
def test_a_hole_below_last_seq_is_reported_not_waited_on_forever(
        tmp_path: Path, batched: bool) -> None:
    with JournalWriter(tmp_path, "j") as writer:
        for volume in range(1, 11):
            record = empty(EventType.MARKET_DATA)
            record["volume"] = volume
            writer.append(record)
    punch_hole(tmp_path, 6)
    with JournalReader(tmp_path, "j", hole_wait_s=0.2) as reader:
        if batched:  # a batch checks the seqs at its ends: this one ends before the hole
            assert list(reader.read_batch(5)["seq"]) == [1, 2, 3, 4, 5]
        else:
            assert [int(reader.read()["seq"]) for _ in range(5)] == [1, 2, 3, 4, 5]  # type: ignore[index]
        assert reader.wait(0.0), "last_seq says seq 6 is committed"
        deadline = time.monotonic() + 30
        with pytest.raises(JournalHole, match=r"journal j: seq 6 is missing .*last_seq is 10"):
            while time.monotonic() < deadline:
                nothing = len(reader.read_batch()) == 0 if batched else reader.read() is None
                assert nothing
        assert reader.next_seq == 6


def test_a_slot_filled_within_the_wait_is_no_hole(tmp_path: Path) -> None:
    """A restarted writer rewrites the slot: the reader then reads it, nothing is reported."""
    with JournalWriter(tmp_path, "j") as writer:
        writer.append_batch(empty(EventType.MARKET_DATA, 3))
    punch_hole(tmp_path, 3)
    with JournalReader(tmp_path, "j", hole_wait_s=3600) as reader:
        assert reader.read() is not None and reader.read() is not None
        assert reader.read() is None
        with JournalWriter(tmp_path, "j") as restarted:
            assert restarted.last_seq == 2
            restarted.append(empty(EventType.MARKET_DATA))
        record = reader.read()
        assert record is not None and record["seq"] == 3


# --- durable=True: each commit written out before it is announced -------------------------

@pytest.mark.parametrize("durable", [True, False])
def test_durable_commits_are_written_out_before_append_returns(
        tmp_path: Path, durable: bool) -> None:
    """On a disk filesystem, a durable writer's slots are clean once append returns (msync
    wrote them out); a default writer's stay dirty in the page cache."""
    directory = Path("/var/tmp") / f"hft-durable-{os.getpid()}-{tmp_path.name}"
    try:
        with JournalWriter(directory, "j", durable=durable) as writer:
            fd = os.open(segment_path(directory, "j", 0), os.O_RDONLY)
            view = mmap.mmap(fd, PAGE * 4, access=mmap.ACCESS_READ)
            dirty = []
            for seq in range(1, 6):
                assert writer.append(empty(EventType.MARKET_DATA)) == seq
                dirty.append(page_is_dirty(view, PAGE + (seq - 1) * RECORD_SIZE))
            view.close()
            os.close(fd)
        assert not any(dirty) if durable else any(dirty)
    finally:
        for path in directory.iterdir():
            path.unlink()
        directory.rmdir()


# --- what a journal reserves on disk -----------------------------------------------------

def test_a_journal_reserves_a_few_mb_whatever_its_segment_size(tmp_path: Path) -> None:
    """Blocks are allocated ALLOCATE_EVERY slots ahead, for the current segment and the
    spare: a default (384 MiB) segment holding a few records takes about 3 MiB of disk."""
    with JournalWriter(tmp_path, "j") as writer:
        for _ in range(ALLOCATE_EVERY + 10):  # past the first step: the spare is made too
            writer.append(empty(EventType.MARKET_DATA))
        used = sum(path.stat().st_blocks * 512 for path in tmp_path.iterdir())
        assert (tmp_path / "j.spare").exists()
    chunk = ALLOCATE_EVERY * RECORD_SIZE
    assert 3 * chunk <= used <= 3 * chunk + 4 * PAGE + (1 << 20)
