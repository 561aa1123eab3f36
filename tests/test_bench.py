"""``hftctl bench``: every benchmark runs (quick), reports well-formed figures, and stays safe.

No timing is asserted: the machine is shared and noisy. What is checked is the shape the
CLI and the docs rely on, and the one correctness figure (no torn snapshot read returned).
"""

from __future__ import annotations

import json
import math
import multiprocessing
import os
import time
from pathlib import Path
from typing import Any

import pytest

from hft import bench
from hft.bench.common import RESERVED_KEYS, sample_tick
from hft.daemons.risk.desk import OrderDesk
from hft.daemons.runtime.config import SuiteConfig
from hft.daemons.runtime.events import Direction, EventType, empty
from hft.daemons.runtime.host import DaemonHost
from hft.daemons.runtime.journal import JournalWriter

POSITIVE_SUFFIXES = ("_per_s", "_us", "_ns", "_ns_per_op")
"""Rates, latencies and costs: a zero or negative one means the measurement is broken."""


@pytest.fixture(scope="module")
def results() -> list[dict[str, Any]]:
    return bench.run(["all"], quick=True)


def _figures(result: dict[str, Any]) -> dict[str, Any]:
    return {key: value for key, value in result.items() if key not in RESERVED_KEYS}


def test_every_benchmark_reports(results: list[dict[str, Any]]) -> None:
    names = [result["name"] for result in results]
    for name in bench.BENCHMARKS:
        assert any(n == name or n.startswith(f"{name}.") for n in names), (name, names)
    assert {"ipc.busy", "ipc.yield", "ipc.block"} <= set(names)


def test_figures_are_finite_numbers(results: list[dict[str, Any]]) -> None:
    for result in results:
        figures = _figures(result)
        assert figures, result["name"]
        for key, value in figures.items():
            assert isinstance(value, int | float) and not isinstance(value, bool), (key, value)
            assert math.isfinite(value), (result["name"], key, value)
            if key.endswith(POSITIVE_SUFFIXES):
                assert value > 0, (result["name"], key, value)


def test_results_are_json_with_params(results: list[dict[str, Any]]) -> None:
    for result in results:
        assert json.loads(json.dumps(result)) == result
        assert result["params"]["quick"] is True
        assert result["params"]["n"] > 0


def test_peers_have_baseline_and_ratio(results: list[dict[str, Any]]) -> None:
    with_peer = [r for r in results
                 if r["name"].split(".")[0] in ("bus", "journal", "ipc", "seqlock", "engine",
                                                "positions", "tick-to-order")]
    assert with_peer and all("baseline" in r for r in with_peer), "a foundation peer is missing"
    for result in (r for r in results if "baseline" in r):
        baseline = result["baseline"]
        assert isinstance(baseline["what"], str) and baseline["what"]
        peer_figures = {k: v for k, v in baseline.items() if k != "what"}
        assert peer_figures and all(v > 0 for v in peer_figures.values()), baseline
        assert result["ratio"] > 0


def test_targets_say_whether_met(results: list[dict[str, Any]]) -> None:
    by_name = {result["name"]: result for result in results}
    for name in ("bus", "journal", "ipc.busy"):
        target = by_name[name]["target"]
        assert isinstance(target["met"], bool)
        assert len(target) > 1


def test_snapshot_never_returns_a_torn_record(results: list[dict[str, Any]]) -> None:
    seqlock = next(result for result in results if result["name"] == "seqlock")
    assert seqlock["torn_returned"] == 0
    assert seqlock["values_seen"] > 1  # the writer child really wrote during the reads


def test_journal_reports_reader_memory(results: list[dict[str, Any]]) -> None:
    journal = next(result for result in results if result["name"] == "journal")
    assert {"rss_growth_mb", "rss_growth_10pct_mb", "rss_growth_100pct_mb"} <= journal.keys()


def test_journal_reports_the_cost_of_durable_commits(results: list[dict[str, Any]]) -> None:
    journal = next(result for result in results if result["name"] == "journal")
    assert journal["durable_append_records_per_s"] > 0
    assert journal["durable_append_p99_us"] > 0


def test_no_child_process_left(results: list[dict[str, Any]]) -> None:
    assert not multiprocessing.active_children()


def test_unknown_name_lists_known_ones() -> None:
    with pytest.raises(ValueError, match=r"unknown benchmark.*'nope'") as error:
        bench.run(["bus", "nope"], quick=True)
    for name in bench.BENCHMARKS:
        assert name in str(error.value)


def test_all_expands_once_in_order() -> None:
    assert bench.resolve(["seqlock", "all", "bus"]) == list(bench.BENCHMARKS)
    assert bench.resolve(["ipc", "bus", "ipc"]) == ["ipc", "bus"]


def test_engine_bench_runs_a_real_engine_that_orders_on_every_tick(
        results: list[dict[str, Any]]) -> None:
    engine = {r["name"]: r for r in results if r["name"].startswith("engine.")}
    assert set(engine) == {"engine.block", "engine.yield"}
    for result in engine.values():
        assert result["params"]["orders"] >= 0.5 * result["params"]["n"]  # nearly all when quiet
        assert result["p50_us"] <= result["p99_us"] <= result["p999_us"]
        assert "vn.py" in result["baseline"]["what"]


def test_tick_to_order_goes_through_real_engine_and_risk_daemons(
        results: list[dict[str, Any]]) -> None:
    [result] = [r for r in results if r["name"] == "tick-to-order"]
    assert result["params"]["orders"] > 0  # orders reached the risk daemon's gateway
    assert result["engine_p50_us"] < result["p50_us"]  # the engine's part is a part of it
    assert result["p50_us"] <= result["p99_us"] <= result["p999_us"]
    assert "vn.py" in result["baseline"]["what"] and result["ratio"] > 0


def test_tick_to_order_reports_a_pinned_variant(results: list[dict[str, Any]]) -> None:
    by_name = {r["name"]: r for r in results if r["name"].startswith("tick-to-order")}
    assert set(by_name) == {"tick-to-order", "tick-to-order.pinned"}
    assert by_name["tick-to-order"]["params"]["cpu_affinity"].startswith("none")
    usable = sorted(os.sched_getaffinity(0))
    assert by_name["tick-to-order.pinned"]["params"]["cpu_affinity"] == {  # checked by the bench
        "engine": [usable[-2] if len(usable) > 1 else usable[0]], "risk": [usable[-1]],
        "feed": [usable[-1]]}  # the feed (hft_md's stand-in) beside the risk daemon
    assert by_name["tick-to-order.pinned"]["params"]["orders"] > 0


def test_the_engine_probe_fills_between_ticks_read_in_one_poll(tmp_path: Path) -> None:
    """A loaded engine reads several ticks in one poll, before the probe's poller runs: each
    tick must still find the order of the one before filled, so every tick makes its order."""
    host = DaemonHost("engine", SuiteConfig())
    try:
        host.plugins.load("probe", "hft.bench.engine_plugins:OrderProbe",
                          {"samples_path": str(tmp_path / "samples.npy")})
        host.plugins.load("strategies", "strategy_container", {
            "children": {"flip": {"spec": "hft.bench.engine_plugins:FlipStrategy"}}})
        directions: list[Direction] = []
        host.bus.subscribe(EventType.ORDER_REQ,
                           lambda record: directions.append(Direction(int(record["direction"]))))
        tick = sample_tick()
        for seq in (1, 2, 3):  # one poll's worth: the host's loop (and the poller) does not run
            tick["seq"] = seq
            host.bus.publish(EventType.MARKET_DATA, tick[0])
        assert directions == [Direction.BUY, Direction.SELL, Direction.BUY]
    finally:
        host.plugins.stop_all()


def test_the_gateway_probe_finishes_the_orders_it_fills(tmp_path: Path) -> None:
    """Its returns name the order's account, as a gateway's do: without it the desk could
    not match them and would keep every order working, a leak that makes the risk daemon of
    ``bench tick-to-order`` collect garbage no real one does."""
    suite = SuiteConfig.model_validate({"paths": {"home": str(tmp_path)}})
    host = DaemonHost("risk", suite)
    try:
        with JournalWriter(suite.journal_dir, "engine") as engine_journal:
            desk = host.plugins.load("desk", "order_desk").instance
            host.plugins.load("gateway", "hft.bench.engine_plugins:GatewayProbe",
                              {"samples_path": str(tmp_path / "gateway.npy")})
            orders = empty(EventType.ORDER_REQ, 3)
            orders["order_ref"] = [1, 2, 3]
            orders["instrument"], orders["exchange"], orders["account"] = b"IF2101", b"CFFEX", b"a"
            orders["price"], orders["volume"], orders["ts_ns"] = 5000.0, 1, time.time_ns()
            for order in orders:
                engine_journal.append(order)
            assert isinstance(desk, OrderDesk) and desk.poll() == 3
        assert desk.sent == 3
        assert desk.working == {}
    finally:
        host.plugins.stop_all()


def test_risk_across_processes_goes_through_a_real_order_desk(
        results: list[dict[str, Any]]) -> None:
    [result] = [r for r in results if r["name"] == "risk.across"]
    assert result["params"]["n"] > 0 and result["p50_us"] <= result["p99_us"]
    assert "check_allowed" in result["baseline"]["what"] and result["ratio"] > 0
