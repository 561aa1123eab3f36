"""``bench engine``: a tick committed to the md journal, to the ORDER_REQ it causes, through a
real engine daemon.

Ours: this process writes the real IF day's ticks, one every ``interval``, to an md journal,
noting ``time.monotonic_ns()`` just before each commit (paced as ``bench ipc`` paces). An
engine daemon (``python -m hft.daemons engine``, its own process) runs the default engine's
plugins on it: replay (live tail), kline (six periods), the factor engine (EMA, VWAP, book
imbalance) and a strategy container whose child (``engine_plugins.FlipStrategy``) changes
its target on every tick, so every tick makes one ORDER_REQ. ``engine_plugins.OrderProbe``
stamps each tick's arrival on the engine's bus and each ORDER_REQ with ``monotonic_ns()``
(CLOCK_MONOTONIC is one clock for every process here) and fills the order on the next loop
iteration. One result per daemon wait mode: ``p50_us`` ... from commit to ORDER_REQ, split
into ``seen_p50_us`` (commit to the tick on the engine's bus: DESIGN's "engine reader sees
it") and ``work_p50_us`` (bus to ORDER_REQ: replay, bars, factors, strategy). The journal
commit of the ORDER_REQ (the engine journal, not built yet) is not included.
``engine_cpu_pct`` is the daemon's CPU time over the wall time of the tick stream: what the
wait mode costs while ticks come every ``interval``.

The peer is vn.py doing the same job in one process, as its CTA strategies do: a gateway
thread (here, this one, paced the same) puts ``Event(EVENT_TICK, TickData)`` into its
EventEngine; the engine thread runs a BarGenerator (1-minute bars, 5-minute windows) and the
same flip decision, and stamps where it would call ``send_order``. ``ratio`` is the peer's
p50 over ours.
"""

from __future__ import annotations

import os
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any, NamedTuple

import numpy as np
import psutil
from vnpy.event import Event, EventEngine
from vnpy.trader.event import EVENT_TICK
from vnpy.trader.utility import BarGenerator

from hft.bench.bars import vnpy_ticks
from hft.bench.common import (
    SPIN_TAIL_NS,
    BenchError,
    Result,
    percentiles,
    result,
    temp_dir,
    ticks_file,
    wait_until,
)
from hft.ctl.client import DaemonClient
from hft.ctl.launcher import log_tail, serving_within
from hft.daemons.md.csvfile import read_ticks
from hft.daemons.refdata.instruments import InstrumentTable, ProductTable
from hft.daemons.runtime.config import HOME_ENV
from hft.daemons.runtime.journal import JournalWriter, WaitMode

PEER = ("vn.py in one process: EventEngine.put(Event(EVENT_TICK, TickData)) from the feed's "
        "thread; its thread runs BarGenerator.update_tick (1m, window 5) and the flip decision, "
        "stamped where send_order would be called")
MODES = (WaitMode.BLOCK, WaitMode.YIELD)
"""The engine's default (spin, yield ``yield_us``, then sleep on the journal's futex) and
spin-then-yield."""
JOURNAL = "md-bench"
START_TIMEOUT_S = 60.0
STOP_TIMEOUT_S = 30.0
_DRAIN_S = 0.5
"""After the last tick, before the daemon is asked to stop: it takes a tick in microseconds."""
_PEER_TIMEOUT_S = 10.0


class TickStream(NamedTuple):
    """The ticks a daemon benchmark commits, how, and the vn.py peer's figures on them."""

    ticks: np.ndarray
    n: int
    """Ticks measured, after the ``warmup`` first ones."""
    warmup: int
    interval_ns: int
    peer: dict[str, float]


def tick_stream(quick: bool) -> TickStream:
    """The real IF day's first ticks, one every 500 µs, and vn.py's latency over them."""
    n, warmup, interval_ns = (2_000 if quick else 20_000), 200, 500_000
    ticks = read_ticks(ticks_file(), InstrumentTable(ProductTable.load()))[:n + warmup]
    if len(ticks) < n + warmup:
        raise BenchError(f"the ticks file has {len(ticks)} ticks, {n + warmup} are needed")
    peer = percentiles(vnpy_latency(ticks, interval_ns)[warmup:])
    return TickStream(ticks, n, warmup, interval_ns, peer)


def risk_section(directory: Path, gateway_samples: Path, mode: WaitMode, *,
                 cpus: list[int] | None = None) -> str:
    """A risk daemon's config table: the order desk, and the gateway probe in the gateway's
    place (it stamps each ORDER_SEND's arrival in ``gateway_samples`` and fills it); on
    ``cpus`` when given."""
    return f"""
[daemons.risk]
metrics_port = 0
grpc_socket = "{directory / 'risk.sock'}"
wait_mode = "{mode.value}"
{_affinity(cpus)}
[daemons.risk.plugins.desk]
spec = "order_desk"

[daemons.risk.plugins.gateway]
spec = "hft.bench.engine_plugins:GatewayProbe"
config = {{ samples_path = "{gateway_samples}" }}
"""


def run(quick: bool) -> list[Result]:
    ticks, n, warmup, interval_ns, peer = tick_stream(quick)
    results = []
    for mode in MODES:
        with temp_dir(f"engine-{mode.value}") as directory:
            total, seen, cpu_pct = _engine_latency(directory, ticks, mode, interval_ns)
        total, seen = total[warmup:], seen[warmup:]
        figures = {**percentiles(total), "engine_cpu_pct": cpu_pct,
                   **{f"seen_{key}": value for key, value in percentiles(seen).items()},
                   **{f"work_{key}": value for key, value in percentiles(total - seen).items()}}
        results.append(result(
            f"engine.{mode.value}", figures, quick=quick,
            params={"n": n, "orders": len(total), "warmup_dropped": warmup, "mode": mode.value,
                    "interval_us": interval_ns / 1000,
                    "pacing": f"sleep, then spin the last {SPIN_TAIL_NS // 1000} us",
                    "input": "IF2101 2021-01-04 (real CTP snapshots)",
                    "engine": "replay (live) -> kline (1m..1d) + factor_engine (ema_20, vwap, "
                              "obi_5) + strategy_container (one child, a flip per tick)",
                    "clock": "monotonic_ns: before the tick's commit / at ORDER_REQ",
                    "excluded": "the ORDER_REQ's commit to an engine journal"},
            baseline=(PEER, peer),
            ratio=peer["p50_us"] / figures["p50_us"],
            target={"p50_us_max": 35.0},
        ))
    return results


# --- ours: a real engine daemon ---------------------------------------------------------------

def _engine_latency(directory: Path, ticks: np.ndarray, mode: WaitMode,
                    interval_ns: int) -> tuple[np.ndarray, np.ndarray, float]:
    """Per tick that made an order (every one the engine read before it was stopped), ns from
    just before its commit to its ORDER_REQ, and to its arrival on the engine's bus; and the
    daemon's CPU % meanwhile."""
    samples_path = directory / "orders.npy"
    with JournalWriter(directory, JOURNAL, trading_day=int(ticks["trading_day"][0])) as writer, \
            _engine_daemon(directory, mode, samples_path) as engine:
        committed, cpu_pct = paced_commits(writer, ticks, interval_ns, [engine])
    orders = np.load(samples_path)
    check_orders(orders, len(ticks))
    commits = committed[orders[:, 0]]
    seen, total = orders[:, 1] - commits, orders[:, 2] - commits
    if (seen <= 0).any():
        raise BenchError("a tick reached the engine before it was committed: the clock is not "
                         "monotonic across processes here")
    return total, seen, cpu_pct


def paced_commits(writer: JournalWriter, ticks: np.ndarray, interval_ns: int,
                  daemons: list[psutil.Process]) -> tuple[np.ndarray, float]:
    """Commit ``ticks`` one every ``interval_ns``; returns each one's monotonic stamp just
    before its commit, by seq (seqs start at 1), and the CPU % ``daemons`` used meanwhile
    (the sum); then lets them drain."""
    committed = np.zeros(len(ticks) + 1, np.int64)
    clock, append = time.monotonic_ns, writer.append
    cpu_before, start = sum(map(_cpu_s, daemons)), clock()
    due = start
    for tick in ticks:
        due += interval_ns
        wait_until(due)
        stamp = clock()
        committed[append(tick)] = stamp
    cpu_pct = (sum(map(_cpu_s, daemons)) - cpu_before) / ((clock() - start) / 1e9) * 100
    time.sleep(_DRAIN_S)
    return committed, cpu_pct


def check_orders(orders: np.ndarray, ticks: int, share: float = 0.5) -> None:
    """At least ``share`` of the ticks must have made an order, or the engine is not working
    (a tick that comes while the order of an earlier one is still in flight makes none: on a
    quiet machine nearly every tick makes one, on a loaded one far fewer)."""
    if len(orders) < ticks * share:
        raise BenchError(f"the engine sent {len(orders)} orders for {ticks} ticks; at least "
                         f"{share:.0%} of them should make one")


def _cpu_s(process: psutil.Process) -> float:
    times = process.cpu_times()
    return float(times.user + times.system)


@contextmanager
def _engine_daemon(directory: Path, mode: WaitMode,
                   samples_path: Path) -> Iterator[psutil.Process]:
    """An engine daemon on ``directory``'s journal, SERVING, stopped (and its samples file
    written) when the block ends."""
    config_path = directory / "hft.toml"
    config_path.write_text(_config(directory, directory / "engine.sock", mode, samples_path))
    with daemon_process("engine", config_path, directory / "engine.sock",
                        [samples_path]) as process:
        yield process


@contextmanager
def daemon_process(name: str, config_path: Path, socket_path: Path,
                   outputs: list[Path]) -> Iterator[psutil.Process]:
    """Daemon ``name`` of the suite ``config_path`` describes (its gRPC socket at
    ``socket_path``), SERVING; asked to stop when the block ends, which must leave every file
    of ``outputs`` written."""
    env = {key: value for key, value in os.environ.items() if key != HOME_ENV}
    log_path = config_path.parent / f"{name}.log"
    with log_path.open("wb") as log:
        process = subprocess.Popen(
            [sys.executable, "-m", "hft.daemons", name, "--config", str(config_path)],
            stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT, env=env)
    try:
        failure = serving_within(socket_path, process, START_TIMEOUT_S)
        if failure is not None:
            raise BenchError(f"the {name} daemon {failure}; its log:\n{_tail(log_path)}")
        yield psutil.Process(process.pid)
        with DaemonClient(socket_path) as client:
            client.stop()
        process.wait(STOP_TIMEOUT_S)
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
    if process.returncode != 0 or not all(path.exists() for path in outputs):
        raise BenchError(f"the {name} daemon exited with {process.returncode} without its "
                         f"samples; its log:\n{_tail(log_path)}")


def _tail(path: Path) -> str:
    return "\n".join(log_tail(path))


def _config(directory: Path, socket_path: Path, mode: WaitMode, samples_path: Path) -> str:
    return f"""
[paths]
home = "{directory / 'home'}"
{engine_section(directory, socket_path, mode, samples_path, fill=True)}"""


def engine_section(directory: Path, socket_path: Path, mode: WaitMode, samples_path: Path, *,
                   fill: bool, cpus: list[int] | None = None) -> str:
    """The engine daemon's config table: the probe first, then the default engine's plugins
    on ``directory``'s md journal and the flip strategy's container; on ``cpus`` when given."""
    return f"""
[daemons.engine]
metrics_port = 0
grpc_socket = "{socket_path}"
wait_mode = "{mode.value}"
{_affinity(cpus)}
[daemons.engine.plugins.probe]
spec = "hft.bench.engine_plugins:OrderProbe"
config = {{ samples_path = "{samples_path}", fill = {str(fill).lower()} }}

[daemons.engine.plugins.replay]
spec = "replay"
config = {{ journals = ["{JOURNAL}"], directory = "{directory}", wait_mode = "{mode.value}" }}

[daemons.engine.plugins.kline]
spec = "kline"
config = {{ periods = ["1m", "5m", "15m", "30m", "1h", "1d"] }}

[daemons.engine.plugins.factors]
spec = "factor_engine"
config = {{ factors = [
    {{ spec = "factor_ema", config = {{ period = 20 }} }},
    {{ spec = "factor_vwap" }},
    {{ spec = "factor_book_imbalance" }},
] }}

[daemons.engine.plugins.strategies]
spec = "strategy_container"
config = {{ account = "bench", children = {{ flip = {{ spec = "hft.bench.engine_plugins:FlipStrategy" }} }} }}
"""


def _affinity(cpus: list[int] | None) -> str:
    """A daemon table's ``cpu_affinity`` line, or nothing: where the kernel puts it."""
    return "" if cpus is None else f"cpu_affinity = {cpus}\n"


# --- the peer: vn.py in one process -----------------------------------------------------------

class _VnpyFlip:
    """The peer's strategy thread work per tick: bars, the flip, the stamp."""

    def __init__(self, n: int) -> None:
        self.stamps = np.zeros(n, np.int64)
        self.count = 0
        self.done = threading.Event()
        self._long = False
        self._generator = BarGenerator(self._on_bar, 5, self._on_window_bar)

    def on_tick(self, event: Event) -> None:
        self._generator.update_tick(event.data)
        self._long = not self._long  # the decision; send_order(...) would go here
        self.stamps[self.count] = time.monotonic_ns()
        self.count += 1
        if self.count == len(self.stamps):
            self.done.set()

    def _on_bar(self, bar: Any) -> None:
        self._generator.update_bar(bar)

    def _on_window_bar(self, bar: Any) -> None:
        """The 5-minute bars: a strategy would trade on them; the bench drops them."""


def vnpy_latency(ticks: np.ndarray, interval_ns: int) -> np.ndarray:
    events = [Event(EVENT_TICK, tick) for tick in vnpy_ticks(ticks)]
    strategy = _VnpyFlip(len(events))
    engine = EventEngine()
    engine.register(EVENT_TICK, strategy.on_tick)
    engine.start()
    try:
        put, clock = engine.put, time.monotonic_ns
        sent = np.zeros(len(events), np.int64)
        due = clock()
        for i, event in enumerate(events):
            due += interval_ns
            wait_until(due)
            sent[i] = clock()
            put(event)
        if not strategy.done.wait(_PEER_TIMEOUT_S):
            raise BenchError(f"vn.py's EventEngine handled {strategy.count} of {len(events)} "
                             "ticks")
    finally:
        engine.stop()  # joins its timer thread: up to its 1 s interval, outside the timing
    return strategy.stamps - sent
