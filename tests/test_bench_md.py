"""``hftctl bench import|replay|recorder``: each runs (quick) and reports well-formed figures
(that the replay fast path they measure publishes what the reference path does is
test_replay.py's).

No timing is asserted: the machine is shared and noisy.
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

import pytest

from hft import bench
from hft.bench import common, md
from hft.bench.common import RESERVED_KEYS, BenchError

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
