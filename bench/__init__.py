"""``hftctl bench``: measure each step of the latency budget against a peer, on this machine.

The benchmarks are their own package (folder ``bench/``, imported as ``hft.bench``) so that
the runtime install does not carry the peers: vn.py and TA-Lib come with the ``bench`` extra
(see ``ops/setup.sh``).

Every benchmark returns result dicts (see :func:`hft.bench.common.result`): its figures
with units in their names, the parameters it ran with, and, where it measures a peer in the
same run, the peer's figures and our speed over theirs (``ratio`` > 1: we are faster).
Running the peer in the same run matters on a shared, noisy 2-core machine: both sides see
the same load, so the ratio means more than either absolute figure.
"""

from __future__ import annotations

from hft import require_namespace

require_namespace(__name__)  # first: a bare 'import bench' must not run the imports below

from collections.abc import Callable, Iterator  # noqa: E402

from hft.bench import (  # noqa: E402
    bars,
    bus,
    engine,
    factors,
    ipc,
    journal,
    md,
    positions,
    risk,
    seqlock,
    simexchange,
    ticktoorder,
)
from hft.bench.common import BenchError, Result, format_text  # noqa: E402

__all__ = ["BENCHMARKS", "BenchError", "Result", "bars", "bus", "engine", "factors", "format_text",
           "ipc", "journal", "md", "positions", "resolve", "risk", "run", "run_iter", "seqlock",
           "simexchange", "ticktoorder"]

BENCHMARKS: dict[str, Callable[[bool], list[Result]]] = {
    "bus": bus.run,
    "journal": journal.run,
    "ipc": ipc.run,
    "seqlock": seqlock.run,
    "import": md.run_import,
    "replay": md.run_replay,
    "recorder": md.run_recorder,
    "bars": bars.run,
    "factors": factors.run,
    "engine": engine.run,
    "tick-to-order": ticktoorder.run,
    "positions": positions.run,
    "sim-exchange": simexchange.run,
    "risk": risk.run,
}
"""Benchmark name -> function(quick) returning its results, in the order ``all`` runs them."""


def resolve(names: list[str]) -> list[str]:
    """The benchmarks to run, in order, without repeats; ``all`` means every one. Unknown
    names are refused before anything runs, so a typo does not cost a minute of benchmarks."""
    unknown = [name for name in names if name != "all" and name not in BENCHMARKS]
    if unknown:
        raise ValueError(f"unknown benchmark(s) {', '.join(map(repr, unknown))}; known: "
                         f"{', '.join(BENCHMARKS)} (or 'all')")
    if not names:
        raise ValueError(f"name at least one benchmark: {', '.join(BENCHMARKS)} (or 'all')")
    chosen = list(BENCHMARKS) if "all" in names else names
    return list(dict.fromkeys(chosen))


def run_iter(names: list[str], quick: bool) -> Iterator[Result]:
    """Like :func:`run`, yielding each result as soon as its benchmark finishes."""
    for name in resolve(names):
        yield from BENCHMARKS[name](quick)


def run(names: list[str], quick: bool) -> list[Result]:
    """Run the named benchmarks (``quick``: a few seconds each, for tests) and return every
    result dict; ValueError names the known benchmarks when a name is not one of them."""
    return list(run_iter(names, quick))
