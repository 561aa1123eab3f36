"""What every benchmark shares: the sample record, timing, percentiles, result dicts, children.

Kept in one place so that every benchmark measures, summarises and reports the same way:
a figure named ``p99_us`` means the same thing in every result.
"""

from __future__ import annotations

import math
import multiprocessing
import os
import shutil
import tempfile
import threading
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from multiprocessing.connection import Connection
from multiprocessing.context import SpawnProcess
from pathlib import Path
from typing import Any, Protocol

import numpy as np
import psutil

from hft.daemons.runtime.events import EventType, empty

Result = dict[str, Any]
"""One benchmark's figures, as ``hftctl bench --json`` prints them (JSON-serializable)."""

RESERVED_KEYS = frozenset({"name", "params", "baseline", "ratio", "target"})
"""Keys of a result that are not figures."""

SPAWN = multiprocessing.get_context("spawn")
"""Children start from a fresh interpreter: no forked locks or threads (the caller may be a
daemon with gRPC threads), the same start-up a real reader daemon has."""

CHILD_START_TIMEOUT_S = 60.0
"""Spawning imports numpy in the child: seconds on a loaded 2-core machine, not minutes."""


class BenchError(RuntimeError):
    """A benchmark that could not produce its figures (a child that died or hung)."""


def sample_tick() -> np.ndarray:
    """One realistic MARKET_DATA record (an IF future, five price levels), as a 1-record array."""
    tick = empty(EventType.MARKET_DATA)
    tick["ts_ns"] = time.time_ns()
    tick["trading_day"] = 20210104
    tick["instrument_index"] = 0
    tick["instrument"] = b"IF2101"
    tick["exchange"] = b"CFFEX"
    tick["action_day"] = 20210104
    tick["update_ms"] = (9 * 3600 + 30 * 60) * 1000 + 500
    tick["last_price"] = 5298.0
    tick["volume"] = 1234
    tick["turnover"] = 1.9e9
    tick["open_interest"] = 150_000.0
    tick["bid_price"] = [[5297.8, 5297.6, 5297.4, 5297.2, 5297.0]]
    tick["ask_price"] = [[5298.2, 5298.4, 5298.6, 5298.8, 5299.0]]
    tick["bid_volume"] = [[3, 5, 7, 9, 11]]
    tick["ask_volume"] = [[2, 4, 6, 8, 10]]
    return tick


def field_offset(dtype: np.dtype[np.void], name: str) -> int:
    """Byte offset of a record field, for reading it straight out of raw bytes."""
    fields = dtype.fields
    assert fields is not None
    return int(fields[name][1])


# --- timing and summaries ---------------------------------------------------------------------

def median_rate(loop: Callable[[], int], count: int, repeats: int) -> float:
    """Items per second: ``loop()`` handles ``count`` items and returns the ns it took; the
    median of ``repeats`` runs, so one noisy run on a shared machine does not decide it."""
    return float(np.median([count * 1e9 / max(loop(), 1) for _ in range(repeats)]))


def median_ns_per_op(loop: Callable[[], int], count: int, repeats: int) -> float:
    """Nanoseconds per operation, the median over ``repeats`` runs of ``loop()``."""
    return float(np.median([loop() / count for _ in range(repeats)]))


def percentiles(samples_ns: Sequence[int] | np.ndarray, unit: str = "us",
                prefix: str = "") -> dict[str, float]:
    """p50, p99 and p99.9 of nanosecond samples, in ``unit`` ("us" or "ns"), named like
    ``{prefix}p99_us``; means hide the tail a trading system is judged by."""
    scale = {"us": 1e-3, "ns": 1.0}[unit]
    values = np.asarray(samples_ns, dtype=np.float64)
    if values.size == 0:
        raise BenchError("no latency samples were taken")
    p50, p99, p999 = np.percentile(values, [50.0, 99.0, 99.9]) * scale
    return {f"{prefix}p50_{unit}": float(p50), f"{prefix}p99_{unit}": float(p99),
            f"{prefix}p999_{unit}": float(p999)}


# --- result dicts -----------------------------------------------------------------------------

def tidy(value: float) -> float | int:
    """Round a figure for reading: whole numbers from 1000 up, four significant digits below
    (so a small but real figure never rounds to zero)."""
    if isinstance(value, int | np.integer):
        return int(value)
    value = float(value)
    if not math.isfinite(value):
        raise BenchError(f"a benchmark figure is not finite: {value}")
    return round(value) if abs(value) >= 1000 else float(f"{value:.4g}")


def result(name: str, figures: Mapping[str, float], *, params: Mapping[str, Any], quick: bool,
           baseline: tuple[str, Mapping[str, float]] | None = None, ratio: float | None = None,
           target: Mapping[str, float] | None = None) -> Result:
    """Build one result dict.

    ``baseline`` is (what the peer is, its figures); ``ratio`` is our speed over the peer's
    (> 1: we are faster). ``target`` holds bounds named after a figure (or ``ratio``) with a
    ``_min`` or ``_max`` suffix, e.g. ``{"p99_us_max": 5}``; ``met`` says whether all hold.
    """
    clash = RESERVED_KEYS & figures.keys()
    if clash:
        raise ValueError(f"figure names clash with result keys: {sorted(clash)}")
    out: Result = {"name": name, **{key: tidy(value) for key, value in figures.items()}}
    out["params"] = {**params, "quick": quick, "cpus": os.cpu_count(),
                     "load_avg_1m": round(os.getloadavg()[0], 2)}
    if baseline is not None:
        what, peer_figures = baseline
        out["baseline"] = {"what": what, **{k: tidy(v) for k, v in peer_figures.items()}}
    if ratio is not None:
        out["ratio"] = tidy(ratio)
    if target is not None:
        out["target"] = {**{k: tidy(v) for k, v in target.items()},
                         "met": _target_met(target, {**figures, "ratio": ratio})}
    return out


def _target_met(target: Mapping[str, float], figures: Mapping[str, float | None]) -> bool:
    met = True
    for bound_name, bound in target.items():
        key, _, kind = bound_name.rpartition("_")
        value = figures.get(key)
        if value is None or kind not in ("min", "max"):
            raise ValueError(f"target {bound_name!r} names no figure of this result")
        met = met and (value >= bound if kind == "min" else value <= bound)
    return met



def format_text(result: Result) -> str:
    """One result as a few readable lines (``hftctl bench`` without --json): figures, peer,
    ratio, target."""
    def pairs(values: Mapping[str, Any]) -> str:
        return "  ".join(f"{key}={value}" for key, value in values.items()
                         if not isinstance(value, Mapping))

    lines = [f"{result['name']}: {pairs({k: v for k, v in result.items() if k not in RESERVED_KEYS})}"]
    baseline = result.get("baseline")
    if baseline:
        peer = {k: v for k, v in baseline.items() if k != "what"}
        lines.append(f"  peer ({baseline.get('what', '?')}): {pairs(peer)}")
    if "ratio" in result:
        lines.append(f"  ratio (ours / peer's, > 1 is faster): {result['ratio']}")
    if result.get("target"):
        lines.append(f"  target: {pairs(result['target'])}")
    return "\n".join(lines)

# --- files and children -----------------------------------------------------------------------

@contextmanager
def temp_dir(prefix: str, *, shared_memory: bool = False) -> Iterator[Path]:
    """A scratch directory removed afterwards, whatever happens; under /dev/shm when the
    thing measured lives there in production (the snapshot), else the default temp dir
    (journals live on disk)."""
    base = "/dev/shm" if shared_memory and os.path.isdir("/dev/shm") else None  # noqa: S108
    path = Path(tempfile.mkdtemp(prefix=f"hft-bench-{prefix}-", dir=base))
    try:
        yield path
    finally:
        shutil.rmtree(path, ignore_errors=True)


@contextmanager
def child(target: Callable[..., None], *args: Any) -> Iterator[SpawnProcess]:
    """Run ``target(*args)`` in a spawned child process and always reap it: on the way out
    it gets a few seconds to finish (none if the parent is failing), then SIGTERM, then
    SIGKILL.

    As with any spawned child, a script that calls the benchmarks must keep its own work
    under ``if __name__ == "__main__":`` (the child imports the main module)."""
    process = SPAWN.Process(target=target, args=args, daemon=True)
    process.start()
    try:
        yield process
    except BaseException:
        _reap(process, grace_s=0.0)
        raise
    _reap(process, grace_s=5.0)


def _reap(process: SpawnProcess, grace_s: float) -> None:
    process.join(timeout=grace_s)
    for stop in (process.terminate, process.kill):
        if not process.is_alive():
            break
        stop()
        process.join(timeout=2.0)
    if not process.is_alive():
        process.close()


def wait_ready(ready: Connection, process: SpawnProcess, what: str,
               timeout_s: float = CHILD_START_TIMEOUT_S) -> None:
    """Block until the child says it is ready (one message on ``ready``), or fail clearly."""
    deadline = time.monotonic() + timeout_s
    while not ready.poll(0.05):
        if not process.is_alive():
            raise BenchError(f"{what} child exited with code {process.exitcode} before it was "
                             "ready (if its stderr shows it re-running your script, guard the "
                             "script with if __name__ == '__main__')")
        if time.monotonic() > deadline:
            raise BenchError(f"{what} child was not ready after {timeout_s:.0f} s")
    ready.recv()


def receive(conn: Connection, process: SpawnProcess, what: str, timeout_s: float) -> Any:
    """The child's one result message, or BenchError if it dies or takes too long."""
    deadline = time.monotonic() + timeout_s
    while not conn.poll(0.05):
        if not process.is_alive() and not conn.poll(0):
            raise BenchError(f"{what} child exited with code {process.exitcode} without a "
                             "result")
        if time.monotonic() > deadline:
            raise BenchError(f"{what} child sent no result within {timeout_s:.0f} s")
    return conn.recv()


def rss_mb() -> float:
    """This process's resident set size in MiB."""
    return float(psutil.Process().memory_info().rss) / 2**20


TICKS_ENV = "HFT_BENCH_TICKS"
TICKS_FILE = "IF2101_20210104_ticks.csv"


def ticks_file() -> Path:
    """The IF day CSV: ``TICKS_ENV`` if set, else the copy in the repository's ``tests/data``."""
    configured = os.environ.get(TICKS_ENV)
    if configured:
        candidates = [Path(configured)]
    else:
        here = Path(__file__).resolve()
        candidates = [parent / "tests" / "data" / TICKS_FILE for parent in here.parents]
    for candidate in candidates:
        if candidate.is_file():
            return candidate
    raise BenchError(f"{TICKS_FILE} not found (looked for {candidates[0]}"
                     f"{' and in the parents' if len(candidates) > 1 else ''}); set "
                     f"{TICKS_ENV} to its path")


SPIN_TAIL_NS = 60_000  # more than a sleep's usual overshoot (50 us timer slack)


def wait_until(due_ns: int) -> None:
    """Sleep until shortly before ``due_ns``, then spin to it, so the writer is running (not
    waking up) when it stamps and commits."""
    rest_ns = due_ns - time.monotonic_ns() - SPIN_TAIL_NS
    if rest_ns > 0:
        time.sleep(rest_ns / 1e9)
    while time.monotonic_ns() < due_ns:
        pass


def check_complete(samples: np.ndarray, n: int, what: str) -> None:
    if len(samples) != n:
        raise BenchError(f"{what} got {len(samples)} of {n} records before it timed out")
    if (samples <= 0).any():
        raise BenchError(f"{what}: a record was seen before it was stamped; the clock is "
                         "not monotonic across processes here")


class Drained(Protocol):
    """A peer-side handler that counts what it got and sets ``done`` at the last expected."""

    count: int
    done: threading.Event


def vnpy_burst(engine: Any, event_type: str, event: Any, handler: Callable[[Any], None],
               sink: Drained, n: int, timeout_s: float = 120.0) -> int:
    """ns for vn.py's EventEngine to take ``n`` puts of ``event`` and have its thread run
    ``handler`` on each (``sink`` counts them): the peer side of the bus and replay benches."""
    engine.register(event_type, handler)
    try:
        put = engine.put
        start = time.perf_counter_ns()
        for _ in range(n):
            put(event)
        if not sink.done.wait(timeout_s):
            raise BenchError(f"vn.py EventEngine handled {sink.count} of {n} events in "
                             f"{timeout_s:.0f} s")
        return time.perf_counter_ns() - start
    finally:
        engine.unregister(event_type, handler)
