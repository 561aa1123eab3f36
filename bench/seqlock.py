"""``bench seqlock``: the SHM snapshot's write and read cost, and its safety under a live writer.

Single process: ns per ``SnapshotWriter.update`` and per ``SnapshotReader.read_into`` of a
tick, against the obvious alternative, a ``multiprocessing.Lock`` around a copy in
``multiprocessing.shared_memory`` (``ratio``: its read cost over ours).

Concurrent: a spawned child rewrites the slot without pause, each time with every 8-byte
word of the record holding the same counter, while the parent reads it. A returned record
whose words differ is torn: ``torn_returned`` must be 0. A second pass reads into a buffer
that counts the copies ``read_into`` makes: every copy beyond one per read is a torn copy the
SeqLock caught and retried (``torn_detected``), which shows the race was really exercised.
"""

from __future__ import annotations

import time
from multiprocessing.connection import Connection
from multiprocessing.shared_memory import SharedMemory
from multiprocessing.synchronize import Event
from pathlib import Path
from typing import Any

import numpy as np

from hft.bench.common import (
    SPAWN,
    BenchError,
    Result,
    child,
    median_ns_per_op,
    percentiles,
    receive,
    result,
    sample_tick,
    temp_dir,
    wait_ready,
)
from hft.daemons.runtime.events import RECORD_SIZE
from hft.daemons.runtime.snapshot import SnapshotReader, SnapshotWriter

PEER = "multiprocessing.Lock around a copy in multiprocessing.shared_memory"
INSTRUMENT = b"IF2101"
_WORDS = RECORD_SIZE // 8
_WRITER_MAX_S = 60.0  # the concurrent writer stops by itself after this, whatever happens


def run(quick: bool) -> list[Result]:
    """Uncontended costs of both, then the concurrent run against a writer child."""
    n = 20_000 if quick else 200_000
    n_concurrent = 20_000 if quick else 200_000
    repeats = 3 if quick else 5
    tick = sample_tick()
    with temp_dir("seqlock", shared_memory=True) as directory:
        path = directory / "bench.snap"
        writer = SnapshotWriter(path, capacity=16)
        try:
            index = writer.index_of(INSTRUMENT)
            figures = {"write_ns_per_op": median_ns_per_op(
                lambda: _updates(writer, index, tick, n), n, repeats)}
        finally:
            writer.close()
        reader = SnapshotReader(path)
        try:
            out = np.zeros_like(tick)
            figures["read_ns_per_op"] = median_ns_per_op(
                lambda: _reads(reader, index, out, n), n, repeats)
            figures.update(_concurrent(path, index, reader, n_concurrent))
        finally:
            reader.close()
    peer = _locked_copy(tick, n, repeats)
    return [result(
        "seqlock", figures, quick=quick,
        params={"n": n, "n_concurrent": n_concurrent, "repeats": repeats,
                "record_bytes": RECORD_SIZE, "dir": str(directory.parent),
                "mode": "single process, then a writer child rewriting without pause"},
        baseline=(PEER, peer),
        ratio=peer["read_ns_per_op"] / figures["read_ns_per_op"],
    )]


def _updates(writer: SnapshotWriter, index: int, record: np.ndarray, n: int) -> int:
    update = writer.update
    start = time.perf_counter_ns()
    for _ in range(n):
        update(index, record)
    return time.perf_counter_ns() - start


def _reads(reader: SnapshotReader, index: int, out: np.ndarray, n: int) -> int:
    read_into = reader.read_into
    start = time.perf_counter_ns()
    for _ in range(n):
        read_into(index, out)
    return time.perf_counter_ns() - start


def _locked_copy(record: np.ndarray, n: int, repeats: int) -> dict[str, float]:
    """The peer's write and read cost: lock, copy RECORD_SIZE bytes, unlock."""
    lock = SPAWN.Lock()
    shm = SharedMemory(create=True, size=RECORD_SIZE)
    try:
        buffer = shm.buf
        assert buffer is not None
        target = np.zeros_like(record).view(np.uint8)

        def writes() -> int:
            start = time.perf_counter_ns()
            for _ in range(n):
                with lock:
                    buffer[:RECORD_SIZE] = record.tobytes()
            return time.perf_counter_ns() - start

        def reads() -> int:
            source = buffer[:RECORD_SIZE]
            try:
                start = time.perf_counter_ns()
                for _ in range(n):
                    with lock:
                        target[:] = source
                return time.perf_counter_ns() - start
            finally:
                source.release()

        figures = {"write_ns_per_op": median_ns_per_op(writes, n, repeats),
                   "read_ns_per_op": median_ns_per_op(reads, n, repeats)}
    finally:
        shm.close()
        shm.unlink()
    return figures


class _CopyCounter(np.ndarray[Any, np.dtype[np.uint8]]):
    """A read buffer that counts the copies made into it (views share the count), so the
    bench sees the SeqLock's retries through the public ``read_into`` API."""

    copies: list[int]

    def __array_finalize__(self, obj: object) -> None:
        self.copies = getattr(obj, "copies", None) or [0]

    def __setitem__(self, key: Any, value: Any) -> None:
        self.copies[0] += 1
        super().__setitem__(key, value)


def _concurrent(path: Path, index: int, reader: SnapshotReader, n: int) -> dict[str, float]:
    ready_in, ready_out = SPAWN.Pipe(duplex=False)
    results_in, results_out = SPAWN.Pipe(duplex=False)
    stop = SPAWN.Event()
    with child(_writer, str(path), index, stop, ready_out, results_out) as process:
        wait_ready(ready_in, process, "seqlock writer")
        try:
            plain = np.zeros(RECORD_SIZE, np.uint8)
            samples, torn, values = _checked_reads(reader, index, plain, n, timed=True)
            counting = np.zeros(RECORD_SIZE, np.uint8).view(_CopyCounter)
            _, torn_counted, _ = _checked_reads(reader, index, counting, n, timed=False)
        finally:
            stop.set()
        writes, seconds = receive(results_in, process, "seqlock writer", 30.0)
    return {
        "torn_returned": torn + torn_counted,
        "torn_detected": counting.copies[0] - n,
        "values_seen": values,
        "concurrent_writes_per_s": writes / seconds,
        **percentiles(samples, unit="ns", prefix="concurrent_read_"),
    }


def _checked_reads(reader: SnapshotReader, index: int, out: np.ndarray, n: int, *,
                   timed: bool) -> tuple[np.ndarray, int, int]:
    """``n`` reads, each checked for tearing: (read times in ns, torn records returned,
    distinct counter values seen)."""
    samples = np.zeros(n if timed else 0, np.int64)
    read_into, clock = reader.read_into, time.perf_counter_ns
    torn, values, last = 0, 0, b""
    for i in range(n):
        started = clock()
        if not read_into(index, out):
            raise BenchError("the snapshot slot reads as never written")
        if timed:
            samples[i] = clock() - started
        raw = out.tobytes()
        word = raw[:8]
        if raw != word * _WORDS:
            torn += 1
        elif word != last:
            values, last = values + 1, word
    return samples, torn, values


def _writer(path: str, index: int, stop: Event, ready: Connection, results: Connection) -> None:
    """Child: rewrite slot ``index`` with records whose every word is the same counter,
    until told to stop (checked every 1000 writes) or ``_WRITER_MAX_S`` passes."""
    writer = SnapshotWriter(path)
    record = np.zeros(_WORDS, np.uint64)
    update, counter = writer.update, 0
    start = time.perf_counter()
    try:
        while True:
            for _ in range(1000):
                counter += 1
                record.fill(counter)
                update(index, record)
            if counter == 1000:
                ready.send(True)
            if stop.is_set() or time.perf_counter() - start > _WRITER_MAX_S:
                break
    finally:
        writer.close()
    results.send((counter, time.perf_counter() - start))
