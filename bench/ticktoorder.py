"""``bench tick-to-order``: a tick committed to the md journal, to the gateway call its order
causes in the risk daemon, through real engine and risk daemons.

Ours: this process commits the real IF day's ticks, one every ``interval``, to an md journal
(stamping ``time.monotonic_ns()`` just before each commit, as ``bench engine`` does). The
engine daemon runs ``bench engine``'s plugins (replay, kline, factors, a container whose
child flips its target on every tick) plus ``order_link``, which commits each ORDER_REQ to the
engine journal. The risk daemon's ``order_desk`` follows that journal, commits the ORDER_SEND
to the risk journal and publishes it; ``engine_plugins.GatewayProbe``, in the gateway's place,
stamps its arrival and fills it at once. The fill travels back through the risk journal to
the engine's container, which frees the instrument for a later tick. The engine's probe pairs
each tick with its order's ``order_ref``, the gateway probe each ``order_ref`` with the gateway
call; CLOCK_MONOTONIC is one clock for every process here. Both daemons run the default wait
mode (block: spin, yield ``yield_us``, then sleep).

The peer is vn.py's in-process path as ``bench engine`` measures it: ``EventEngine.put`` of the
tick to the strategy's handler (BarGenerator and the decision), one hop inside one process.
``ratio`` is the peer's p99 over ours: above 1, our three-process p99 is below its one-hop p99.

Two results: ``tick-to-order`` with the daemons where the kernel puts them (the default), and
``tick-to-order.pinned`` in the layout the README recommends for 2 cores (``cpu_affinity``):
the engine alone on the second-to-last CPU this process may use, the risk daemon on the last,
and this process, the feed in hft_md's place, pinned beside the risk daemon. The engine is
then never interrupted by the feed, and the risk daemon has nothing to do while the feed
works (an order comes only after the tick is committed). ``params.cpu_affinity`` says which
ran.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import numpy as np
import psutil

from hft.bench.common import BenchError, Result, percentiles, result, temp_dir
from hft.bench.engine import (
    JOURNAL,
    PEER,
    TickStream,
    check_orders,
    daemon_process,
    engine_section,
    paced_commits,
    risk_section,
    tick_stream,
)
from hft.daemons.runtime.journal import JournalWriter, WaitMode

MODE = WaitMode.BLOCK
Pinning = dict[str, list[int]]
"""daemon name (or ``feed``, this process while it commits) -> its CPUs; one not named runs
where the kernel puts it."""


def pinnings() -> dict[str, Pinning]:
    """Result name -> the CPUs: unpinned, and the engine alone on the second-to-last CPU this
    process may use, the risk daemon and the feed on the last (all on one where it may use
    only one)."""
    usable = sorted(os.sched_getaffinity(0))
    engine, risk = usable[-2:] if len(usable) > 1 else usable * 2
    return {"tick-to-order": {},
            "tick-to-order.pinned": {"engine": [engine], "risk": [risk], "feed": [risk]}}


def run(quick: bool) -> list[Result]:
    stream = tick_stream(quick)
    return [_measure(name, pinning, stream, quick) for name, pinning in pinnings().items()]


def _measure(name: str, pinning: Pinning, stream: TickStream, quick: bool) -> Result:
    ticks, n, warmup, interval_ns, peer = stream
    with temp_dir(name) as directory:
        total, seen, cpu_pct = _round_trip(directory, ticks, interval_ns, pinning)
    total, seen = total[warmup:], seen[warmup:]
    figures = {**percentiles(total), "daemons_cpu_pct": cpu_pct,
               **percentiles(seen, prefix="engine_"),
               **percentiles(total - seen, prefix="risk_")}
    return result(
        name, figures, quick=quick,
        params={"n": n, "orders": len(total), "warmup_dropped": warmup, "mode": MODE.value,
                "cpu_affinity": pinning or "none (where the kernel puts them)",
                "interval_us": interval_ns / 1000,
                "input": "IF2101 2021-01-04 (real CTP snapshots)",
                "path": "md journal -> engine (replay, kline, factors, container, order_link) "
                        "-> engine journal -> risk (order_desk) -> risk journal -> gateway",
                "clock": "monotonic_ns: before the tick's commit / at ORDER_REQ on the "
                         "engine's bus (engine_) / at the gateway's ORDER_SEND handler",
                "split": "engine_: commit to ORDER_REQ published; risk_: ORDER_REQ to gateway "
                         "(the engine journal commit, the desk's read, decision and commit)"},
        baseline=(PEER, peer),
        ratio=peer["p99_us"] / figures["p99_us"],
        target={"p50_us_max": 40.0, "ratio_min": 1.0},
    )


def _round_trip(directory: Path, ticks: np.ndarray, interval_ns: int,
                pinning: Pinning) -> tuple[np.ndarray, np.ndarray, float]:
    """Per order that reached the gateway: ns from its tick's commit to the gateway call, and
    to the ORDER_REQ in the engine; and both daemons' CPU % meanwhile."""
    engine_samples, gateway_samples = directory / "orders.npy", directory / "gateway.npy"
    config_path = directory / "hft.toml"
    config_path.write_text(_config(directory, engine_samples, gateway_samples, pinning))
    trading_day = int(ticks["trading_day"][0])
    with JournalWriter(directory, JOURNAL, trading_day=trading_day) as writer, \
            daemon_process("risk", config_path, directory / "risk.sock",
                           [gateway_samples]) as risk, \
            daemon_process("engine", config_path, directory / "engine.sock",
                           [engine_samples]) as engine:
        _check_pinning({"engine": engine, "risk": risk}, pinning)
        with _feed_on(pinning.get("feed")):
            committed, cpu_pct = paced_commits(writer, ticks, interval_ns, [engine, risk])
    orders = np.load(engine_samples)  # (tick seq, tick ns, order ns, order_ref)
    check_orders(orders, len(ticks), share=0.2)
    calls = np.load(gateway_samples)  # (order_ref, gateway ns)
    gateway_ns = dict(zip(calls[:, 0].tolist(), calls[:, 1].tolist(), strict=True))
    reached = np.array([ref in gateway_ns for ref in orders[:, 3].tolist()])
    if reached.sum() < len(orders) * 0.99:
        raise BenchError(f"{int(reached.sum())} of the engine's {len(orders)} orders reached "
                         "the gateway")
    orders = orders[reached]
    commits = committed[orders[:, 0]]
    at_gateway = np.array([gateway_ns[ref] for ref in orders[:, 3].tolist()], np.int64)
    return at_gateway - commits, orders[:, 2] - commits, cpu_pct


@contextmanager
def _feed_on(cpus: list[int] | None) -> Iterator[None]:
    """This process on ``cpus`` (when given) for the block, then back where it was."""
    if cpus is None:
        yield
        return
    before = os.sched_getaffinity(0)
    os.sched_setaffinity(0, cpus)
    try:
        yield
    finally:
        os.sched_setaffinity(0, before)


def _check_pinning(daemons: dict[str, psutil.Process], pinning: Pinning) -> None:
    """The params must say where the daemons really ran."""
    for name, process in daemons.items():
        expected = pinning.get(name, sorted(os.sched_getaffinity(0)))
        if process.cpu_affinity() != expected:
            raise BenchError(f"the {name} daemon runs on CPUs {process.cpu_affinity()}, "
                             f"not {expected}")


def _config(directory: Path, engine_samples: Path, gateway_samples: Path,
            pinning: Pinning) -> str:
    return f"""
[paths]
home = "{directory / 'home'}"
{engine_section(directory, directory / 'engine.sock', MODE, engine_samples, fill=False,
                cpus=pinning.get("engine"))}
[daemons.engine.plugins.link]
spec = "order_link"
{risk_section(directory, gateway_samples, MODE, cpus=pinning.get("risk"))}"""
