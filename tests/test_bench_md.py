"""``hftctl bench import|replay|recorder``: each runs (quick) and reports well-formed figures;
the replay fast path they measure publishes exactly what the general merge path does.

No timing is asserted: the machine is shared and noisy.
"""

from __future__ import annotations

import json
import math
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from hft import bench
from hft.bench import common, md
from hft.bench.common import RESERVED_KEYS, BenchError
from hft.daemons.engine.replay import Replay
from hft.daemons.runtime.config import SuiteConfig
from hft.daemons.runtime.events import HEADER_DTYPE, EventType, empty
from hft.daemons.runtime.host import DaemonHost
from hft.daemons.runtime.journal import JournalWriter
from hft.daemons.runtime.plugins import PluginState

NAMES = {"import", "replay.raw", "replay.subscriber", "recorder.callback", "recorder.visible"}
WITH_PEER = {"replay.subscriber", "recorder.callback"}
WITH_TARGET = {"replay.raw", "replay.subscriber", "recorder.callback"}


@pytest.fixture(scope="module")
def results() -> dict[str, dict[str, Any]]:
    return {result["name"]: result for result in bench.run(["import", "replay", "recorder"],
                                                           quick=True)}


def test_every_result_is_reported(results: dict[str, dict[str, Any]]) -> None:
    assert set(results) == NAMES
    assert {"import", "replay", "recorder"} <= set(bench.BENCHMARKS)


def test_figures_are_positive_finite_numbers(results: dict[str, dict[str, Any]]) -> None:
    for name, result in results.items():
        figures = {k: v for k, v in result.items() if k not in RESERVED_KEYS}
        assert figures, name
        for key, value in figures.items():
            assert isinstance(value, int | float) and not isinstance(value, bool), (name, key)
            assert math.isfinite(value) and value > 0, (name, key, value)


def test_results_are_json_with_params(results: dict[str, dict[str, Any]]) -> None:
    for result in results.values():
        assert json.loads(json.dumps(result)) == result
        assert result["params"]["quick"] is True and result["params"]["n"] > 0


def test_peers_have_baseline_and_ratio(results: dict[str, dict[str, Any]]) -> None:
    for name, result in results.items():
        assert ("baseline" in result) == (name in WITH_PEER), name
        assert ("ratio" in result) == (name in WITH_PEER), name
        if name in WITH_PEER:
            peer = {k: v for k, v in result["baseline"].items() if k != "what"}
            assert result["baseline"]["what"] and peer and all(v > 0 for v in peer.values())
            assert result["ratio"] > 0


def test_targets_say_whether_met(results: dict[str, dict[str, Any]]) -> None:
    for name, result in results.items():
        assert ("target" in result) == (name in WITH_TARGET), name
        if name in WITH_TARGET:
            assert isinstance(result["target"]["met"], bool) and len(result["target"]) > 1
    assert results["replay.raw"]["target"]["ticks_per_s_min"] == 1_000_000
    assert results["replay.subscriber"]["target"]["ticks_per_s_min"] == 300_000
    assert results["recorder.callback"]["target"]["p50_us_max"] == 5


def test_a_missing_tick_file_is_a_clear_error(tmp_path: Path,
                                              monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(common.TICKS_ENV, str(tmp_path / "absent.csv"))
    with pytest.raises(BenchError, match=common.TICKS_ENV):
        md.run_import(quick=True)


# --- the replay fast path (single journal, no filter, unpaced) against the merge path ----------

SECOND = 1_000_000_000
T0 = 1609723800 * SECOND  # 2021-01-04 09:30:00 +08:00


def _mixed_journal(directory: Path) -> None:
    """Ticks with quiet stretches (several TIMERs at once), a clock step back, FEED_GAPs and
    a record of an unknown type in between."""
    times = [T0 + ms * 1_000_000 for ms in
             (0, 30, 99, 100, 101, 250, 250, 180, 900, 2_500, 2_501, 2_499, 7_000, 7_050)]
    with JournalWriter(directory, "md") as writer:
        for i, ts in enumerate(times * 3):
            tick = empty(EventType.MARKET_DATA)
            tick["ts_ns"] = ts + (i // len(times)) * 10 * SECOND
            tick["volume"] = i
            writer.append(tick)
            if i % 9 == 4:
                gap = empty(EventType.FEED_GAP)
                gap["ts_ns"] = tick["ts_ns"]
                writer.append(gap)
            if i == 20:
                unknown = np.zeros(1, HEADER_DTYPE)
                unknown["type"], unknown["ts_ns"] = 99, tick["ts_ns"]
                writer.append(unknown)


def _replayed(directory: Path, config: dict[str, Any], *, merge: bool) -> tuple[list[Any], Any]:
    host = DaemonHost("engine", SuiteConfig())
    seen: list[tuple[int, int, int, np.dtype[np.void]]] = []

    def collector(event_type: int) -> Callable[[np.void], None]:
        return lambda r: seen.append((event_type, int(r["seq"]), int(r["ts_ns"]), r.dtype))

    for event_type in EventType:
        host.bus.subscribe(event_type, collector(int(event_type)))
    entry = host.plugins.load("replay", "replay", {
        "journals": ["md"], "directory": str(directory), "mode": "historical", **config})
    plugin = entry.instance
    assert entry.state is PluginState.RUNNING and isinstance(plugin, Replay), entry.error
    poll = plugin._merge if merge else plugin.poll
    for _ in range(10_000):
        if plugin.finished:
            break
        poll()
    assert plugin.finished
    host.plugins.stop_all()
    return seen, (plugin.published, host.bus.published)


@pytest.mark.parametrize("config", [
    {},
    {"batch": 4},
    {"batch": 1, "timer_interval_ms": 7},
    {"until": "2021-01-04T09:30:12.2+08:00", "batch": 5},
    {"start": "2021-01-04T09:30:10.1+08:00", "until": "2021-01-04T09:30:27+08:00"},
    {"timer_interval_ms": 1000},
])
def test_replay_fast_path_publishes_what_the_merge_path_does(tmp_path: Path,
                                                             config: dict[str, Any]) -> None:
    _mixed_journal(tmp_path)
    fast, fast_counts = _replayed(tmp_path, config, merge=False)
    merged, merged_counts = _replayed(tmp_path, config, merge=True)
    assert fast == merged
    assert fast_counts == merged_counts
    assert any(t == EventType.TIMER for t, *_ in fast)
    assert any(t == EventType.FEED_GAP for t, *_ in fast)
