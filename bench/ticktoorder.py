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
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from hft.bench.common import BenchError, Result, percentiles, result, temp_dir
from hft.bench.engine import (
    JOURNAL,
    PEER,
    check_orders,
    daemon_process,
    engine_section,
    paced_commits,
    risk_section,
    tick_stream,
)
from hft.daemons.runtime.journal import JournalWriter, WaitMode

MODE = WaitMode.BLOCK


def run(quick: bool) -> list[Result]:
    ticks, n, warmup, interval_ns, peer = tick_stream(quick)
    with temp_dir("tick-to-order") as directory:
        total, seen, cpu_pct = _round_trip(directory, ticks, interval_ns)
    total, seen = total[warmup:], seen[warmup:]
    figures = {**percentiles(total), "daemons_cpu_pct": cpu_pct,
               **percentiles(seen, prefix="engine_"),
               **percentiles(total - seen, prefix="risk_")}
    return [result(
        "tick-to-order", figures, quick=quick,
        params={"n": n, "orders": len(total), "warmup_dropped": warmup, "mode": MODE.value,
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
    )]


def _round_trip(directory: Path, ticks: np.ndarray,
                interval_ns: int) -> tuple[np.ndarray, np.ndarray, float]:
    """Per order that reached the gateway: ns from its tick's commit to the gateway call, and
    to the ORDER_REQ in the engine; and both daemons' CPU % meanwhile."""
    engine_samples, gateway_samples = directory / "orders.npy", directory / "gateway.npy"
    config_path = directory / "hft.toml"
    config_path.write_text(_config(directory, engine_samples, gateway_samples))
    trading_day = int(ticks["trading_day"][0])
    with JournalWriter(directory, JOURNAL, trading_day=trading_day) as writer, \
            daemon_process("risk", config_path, directory / "risk.sock",
                           [gateway_samples]) as risk, \
            daemon_process("engine", config_path, directory / "engine.sock",
                           [engine_samples]) as engine:
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


def _config(directory: Path, engine_samples: Path, gateway_samples: Path) -> str:
    return f"""
[paths]
home = "{directory / 'home'}"
{engine_section(directory, directory / 'engine.sock', MODE, engine_samples, fill=False)}
[daemons.engine.plugins.link]
spec = "order_link"
{risk_section(directory, gateway_samples, MODE)}"""
