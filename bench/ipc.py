"""``bench ipc``: a record committed in one process, in the hands of a reader in another.

The parent commits a tick every ``interval`` (so each record is a separate wake-up for the
reader, as ticks are), stamping ``exchange_ts_ns`` with ``time.monotonic_ns()`` just before
the commit. Between records it sleeps, then spins only the last stretch: a writer spinning
the whole interval would hold one of the two cores, and any third runnable process (other
work on a shared machine) would then take the reader's core in 4 ms slices. A spawned child
reads with one wait mode (busy, yield, block) and takes ``monotonic_ns() - exchange_ts_ns``
as soon as ``next()`` returns; CLOCK_MONOTONIC is one clock for every process here.

The peer is the same measurement through a ``multiprocessing.Pipe`` (``send_bytes`` of the
record, ``recv_bytes`` blocking in the child): ``ratio`` is pipe p50 over the mode's p50.
"""

from __future__ import annotations

import time
from multiprocessing.connection import Connection
from pathlib import Path

import numpy as np

from hft.bench.common import (
    SPAWN,
    SPIN_TAIL_NS,
    Result,
    check_complete,
    child,
    field_offset,
    percentiles,
    receive,
    result,
    sample_tick,
    temp_dir,
    wait_ready,
    wait_until,
)
from hft.daemons.runtime.events import TICK_DTYPE, EventType
from hft.daemons.runtime.journal import JournalReader, JournalWriter, WaitMode

PEER = "multiprocessing.Pipe: send_bytes(record) / blocking recv_bytes in the child"
MODES = (WaitMode.BUSY, WaitMode.YIELD, WaitMode.BLOCK)
_TS_OFFSET = field_offset(TICK_DTYPE, "exchange_ts_ns")
SPIN_S = 50e-6
"""The yield and block readers' spin before they yield or sleep (the reader's default)."""
_RECORD_TIMEOUT_S = 10.0  # a reader that waits this long for one record has lost the writer


def run(quick: bool) -> list[Result]:
    """One child per wait mode, then one for the pipe; one result per mode."""
    n = 2_000 if quick else 20_000
    interval_ns = 200_000
    warmup = 50
    with temp_dir("ipc") as directory:
        ours = {mode: _journal_latency(directory, mode, n, interval_ns)[warmup:]
                for mode in MODES}
    pipe = percentiles(_pipe_latency(n, interval_ns)[warmup:])
    results = []
    for mode, samples in ours.items():
        figures = percentiles(samples)
        results.append(result(
            f"ipc.{mode.value}", figures, quick=quick,
            params={"n": n, "warmup_dropped": warmup, "mode": mode.value,
                    "interval_us": interval_ns / 1000,
                    "pacing": f"sleep, then spin the last {SPIN_TAIL_NS // 1000} us",
                    **({} if mode is WaitMode.BUSY else {"spin_us": SPIN_S * 1e6}),
                    "clock": "monotonic_ns, stamped before commit / send",
                    "peer_mode": "blocking recv"},
            baseline=(PEER, pipe),
            ratio=pipe["p50_us"] / figures["p50_us"],
            target={"p50_us_max": 5.0} if mode is WaitMode.BUSY else None,
        ))
    return results


def _journal_latency(directory: Path, mode: WaitMode, n: int, interval_ns: int) -> np.ndarray:
    name = f"ipc-{mode.value}"
    ready_in, ready_out = SPAWN.Pipe(duplex=False)
    results_in, results_out = SPAWN.Pipe(duplex=False)
    with JournalWriter(directory, name) as writer, \
            child(_journal_reader, str(directory), name, mode.value, n, ready_out,
                  results_out) as process:
        wait_ready(ready_in, process, f"ipc {mode.value} reader")
        claim, commit, clock = writer.claim, writer.commit, time.monotonic_ns
        tick_type = EventType.MARKET_DATA
        due = clock()
        for _ in range(n):
            due += interval_ns
            wait_until(due)
            slot = claim(tick_type)
            slot["exchange_ts_ns"] = clock()
            commit()
        samples: np.ndarray = receive(results_in, process, f"ipc {mode.value} reader",
                                      _RECORD_TIMEOUT_S + 10.0)
    check_complete(samples, n, f"journal reader ({mode.value})")
    return samples


def _journal_reader(directory: str, name: str, mode: str, n: int, ready: Connection,
                    results: Connection) -> None:
    """Child: read ``n`` records with ``mode``, send back each one's latency in ns."""
    samples = np.zeros(n, np.int64)
    clock = time.monotonic_ns
    with JournalReader(directory, name, start="end", wait_mode=mode, spin_s=SPIN_S) as reader:
        ready.send(True)
        next_record = reader.next
        for i in range(n):
            record = next_record(_RECORD_TIMEOUT_S)
            now = clock()
            if record is None:
                samples = samples[:i]
                break
            samples[i] = now - int(record["exchange_ts_ns"])
    results.send(samples)


def _pipe_latency(n: int, interval_ns: int) -> np.ndarray:
    ready_in, ready_out = SPAWN.Pipe(duplex=False)
    results_in, results_out = SPAWN.Pipe(duplex=False)
    data_in, data_out = SPAWN.Pipe(duplex=False)
    try:
        with child(_pipe_reader, data_in, n, ready_out, results_out) as process:
            wait_ready(ready_in, process, "ipc pipe reader")
            tick = sample_tick()
            record, send, clock = tick[0], data_out.send_bytes, time.monotonic_ns
            due = clock()
            for _ in range(n):
                due += interval_ns
                wait_until(due)
                record["exchange_ts_ns"] = clock()
                send(tick.tobytes())
            samples: np.ndarray = receive(results_in, process, "ipc pipe reader",
                                          _RECORD_TIMEOUT_S + 10.0)
    finally:
        data_out.close()
    check_complete(samples, n, "pipe reader")
    return samples


def _pipe_reader(data: Connection, n: int, ready: Connection, results: Connection) -> None:
    """Child: receive ``n`` records from the pipe, send back each one's latency in ns."""
    samples = np.zeros(n, np.int64)
    clock, recv, received = time.monotonic_ns, data.recv_bytes, 0
    ready.send(True)
    try:
        for received in range(n):
            raw = recv()  # blocks like a real pipe consumer; EOF when the parent gives up
            now = clock()
            samples[received] = now - int.from_bytes(raw[_TS_OFFSET:_TS_OFFSET + 8], "little",
                                                     signed=True)
        received = n
    except EOFError:
        pass
    results.send(samples[:received])


