"""``bench journal``: write and read throughput of the mmap journal, and a reader's memory.

Writes go to fresh journals in the default temp dir (on disk, like production journals), so
first-touch page faults of new slots are part of the cost, as they are for hft_md. The peer
is the naive way to log records: a buffered ``file.write(record.tobytes())`` per record and
one flush at the end; it is not readable by another process until that flush, ours is
readable at each commit.

Memory: a reader follows a long journal and uses every record, once with ``read()`` and
once with ``read_batch()`` (``batch_*`` figures); its RSS is sampled at 10% and at 100% of
the read. ``rss_growth_mb`` is the growth between the two: flat means the reader's memory
does not grow with the journal's length. ``writer_rss_growth_mb`` is the writer's, from
before it opened the journal to after it wrote the long one; ``writer_open_ms`` is what
opening a new journal costs.

Durability: ``durable_append_*`` times appends of a ``durable=True`` writer, which msyncs each
commit's slot pages before announcing it (a power failure then loses nothing committed),
beside the default's ``append_*``: the price of the option on this machine's disk.

Read rates are the cost of the API per record: ``read()`` hands out a view, ``read_batch()``
one view per batch, and neither figure includes what a consumer does with the records.
"""

from __future__ import annotations

import itertools
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import numpy as np

from hft.bench.common import (
    BenchError,
    Result,
    median_rate,
    percentiles,
    result,
    rss_mb,
    sample_tick,
    temp_dir,
)
from hft.daemons.runtime.events import EventType
from hft.daemons.runtime.journal import JournalReader, JournalWriter
from hft.daemons.runtime.journal.format import segment_indices

PEER = "plain file: buffered file.write(record.tobytes()) per record, one flush at the end"
BATCH = 1000
READ_BATCH = 4096
_names = itertools.count()


def run(quick: bool) -> list[Result]:
    """Every write and read path, the peer, then the long read for memory."""
    n = 20_000 if quick else 300_000
    n_long = 200_000 if quick else 2_000_000
    n_durable = 200 if quick else 1000  # each one waits for the disk
    repeats = 3 if quick else 5
    tick = sample_tick()  # a 1-record array, as a producer preallocates it
    with temp_dir("journal") as directory:
        figures = {
            "append_records_per_s": median_rate(
                lambda: _append(directory, tick, n), n, repeats),
            "claim_commit_records_per_s": median_rate(
                lambda: _claim_commit(directory, n), n, repeats),
            "batch_records_per_s": median_rate(
                lambda: _batches(directory, np.repeat(tick, BATCH), n), n, repeats),
            **percentiles(_append_samples(directory, tick, n), prefix="append_"),
        }
        durable = _append_samples(directory, tick, n_durable, durable=True)
        figures["durable_append_records_per_s"] = n_durable / (durable.sum() / 1e9)
        figures.update(percentiles(durable, prefix="durable_append_"))
        with _journal(directory) as (writer, name):
            _fill(writer, tick, n)
            figures["read_records_per_s"] = median_rate(
                lambda: _read(directory, name, n), n, repeats)
            figures["read_batch_records_per_s"] = median_rate(
                lambda: _read_batches(directory, name, n), n, repeats)
        figures.update(_long_read(directory, tick, n_long))
        naive = median_rate(lambda: _naive(directory / "naive.dat", tick, n), n, repeats)
    return [result(
        "journal", figures, quick=quick,
        params={"n": n, "n_long": n_long, "n_durable": n_durable, "repeats": repeats, "batch": BATCH,
                "read_batch": READ_BATCH, "record_bytes": tick.itemsize,
                "record": "1-record MARKET_DATA array", "claim_fields_set": 2,
                "mode": "single process, reader busy (never waits)",
                "dir": str(directory.parent)},
        baseline=(PEER, {"records_per_s": naive}),
        ratio=figures["append_records_per_s"] / naive,
        target={"append_records_per_s_min": 300_000.0, "batch_records_per_s_min": 1_000_000.0},
    )]


@contextmanager
def _journal(directory: Path, *, durable: bool = False) -> Iterator[tuple[JournalWriter, str]]:
    """A fresh journal for one measurement, deleted afterwards (they are hundreds of MB)."""
    name = f"bench{next(_names)}"
    writer = JournalWriter(directory, name, durable=durable)
    try:
        yield writer, name
    finally:
        writer.close()
        for path in directory.glob(f"{name}.*"):
            path.unlink()


def _append(directory: Path, record: np.ndarray, n: int) -> int:
    with _journal(directory) as (writer, _):
        append = writer.append
        start = time.perf_counter_ns()
        for _ in range(n):
            append(record)
        return time.perf_counter_ns() - start


def _append_samples(directory: Path, record: np.ndarray, n: int, *,
                    durable: bool = False) -> np.ndarray:
    """Each append timed on its own: the budget's "record committed" step, tail included."""
    samples = np.empty(n, np.int64)
    with _journal(directory, durable=durable) as (writer, _):
        append, clock = writer.append, time.perf_counter_ns
        for i in range(n):
            started = clock()
            append(record)
            samples[i] = clock() - started
    return samples


def _claim_commit(directory: Path, n: int) -> int:
    """A producer that fills the slot in place: two fields set, then commit."""
    with _journal(directory) as (writer, _):
        claim, commit, tick_type = writer.claim, writer.commit, EventType.MARKET_DATA
        start = time.perf_counter_ns()
        for i in range(n):
            slot = claim(tick_type)
            slot["ts_ns"] = i
            slot["last_price"] = 5298.0
            commit()
        return time.perf_counter_ns() - start


def _batches(directory: Path, batch: np.ndarray, n: int) -> int:
    with _journal(directory) as (writer, _):
        append_batch = writer.append_batch
        start = time.perf_counter_ns()
        for _ in range(n // len(batch)):
            append_batch(batch)
        return time.perf_counter_ns() - start


def _fill(writer: JournalWriter, tick: np.ndarray, n: int) -> None:
    batch = np.repeat(tick, BATCH)
    for done in range(0, n, BATCH):
        writer.append_batch(batch[:min(BATCH, n - done)])


def _read(directory: Path, name: str, n: int) -> int:
    with JournalReader(directory, name, wait_mode="busy") as reader:
        read, count = reader.read, 0
        start = time.perf_counter_ns()
        while read() is not None:
            count += 1
        elapsed = time.perf_counter_ns() - start
    _check_count(count, n)
    return elapsed


def _read_batches(directory: Path, name: str, n: int) -> int:
    with JournalReader(directory, name, wait_mode="busy") as reader:
        read_batch, count = reader.read_batch, 0
        start = time.perf_counter_ns()
        while size := len(read_batch(READ_BATCH)):
            count += size
        elapsed = time.perf_counter_ns() - start
    _check_count(count, n)
    return elapsed


def _check_count(count: int, n: int) -> None:
    if count != n:
        raise BenchError(f"the reader read {count} records of the {n} written")


def _long_read(directory: Path, tick: np.ndarray, n: int) -> dict[str, float]:
    """Write a long journal, then read it twice touching every record (one at a time, then
    in batches), sampling RSS along the way."""
    before, opening = rss_mb(), time.perf_counter_ns()
    with _journal(directory) as (writer, name):
        opened_ms = (time.perf_counter_ns() - opening) / 1e6
        _fill(writer, tick, n)
        figures = {"writer_open_ms": opened_ms, "writer_rss_growth_mb": rss_mb() - before,
                   "long_segments": len(segment_indices(directory, name))}
        for prefix, batched in (("", False), ("batch_", True)):
            with JournalReader(directory, name, wait_mode="busy") as reader:
                growth = _read_touching(reader, n, int(tick["volume"][0]), batched=batched)
            figures.update({f"{prefix}{key}": value for key, value in growth.items()})
    return figures


def _read_touching(reader: JournalReader, n: int, volume: int, *,
                   batched: bool) -> dict[str, float]:
    """Read all ``n`` records, using each one's volume; RSS growth at 10% and 100%."""
    start = rss_mb()
    at_10pct, count, checksum = start, 0, 0
    tenth = n // 10
    if batched:
        while len(batch := reader.read_batch(READ_BATCH, EventType.MARKET_DATA)):
            checksum += int(batch["volume"].sum())  # touches every record's page
            count += len(batch)
            if count - len(batch) < tenth <= count:
                at_10pct = rss_mb()
    else:
        read = reader.read
        while (record := read()) is not None:
            checksum += int(record["volume"])
            count += 1
            if count == tenth:
                at_10pct = rss_mb()
    at_100pct = rss_mb()
    _check_count(count, n)
    if checksum != n * volume:
        raise BenchError("the long read returned records that differ from those written")
    return {"rss_growth_mb": at_100pct - at_10pct, "rss_growth_10pct_mb": at_10pct - start,
            "rss_growth_100pct_mb": at_100pct - start}


def _naive(path: Path, record: np.ndarray, n: int) -> int:
    try:
        with path.open("wb") as file:
            write = file.write
            start = time.perf_counter_ns()
            for _ in range(n):
                write(record.tobytes())
            file.flush()
            return time.perf_counter_ns() - start
    finally:
        path.unlink(missing_ok=True)
