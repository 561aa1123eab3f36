"""Latency histograms folded at scrape time (runtime/latency.py): the buckets a ring of samples
gives, a lapped ring, and hft_md's tick-to-journal histogram on a real daemon's /metrics."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest
from support.daemons import Daemon, wait_for, write_config
from test_md_daemon import SIM_CONFIG
from test_strategy_daemon import metrics

from hft.daemons.runtime.latency import BUCKETS_S, LatencySamples


def buckets(samples: LatencySamples) -> dict[str, float]:
    """le -> cumulative count, plus "count" and "sum", of the family the samples give."""
    family = samples.family("x_seconds", "test")
    named = {"x_seconds_count": "count", "x_seconds_sum": "sum"}
    return {sample.labels.get("le") or named[sample.name]: sample.value
            for sample in family.samples}


def test_samples_fold_into_cumulative_buckets_from_one_microsecond() -> None:
    samples = LatencySamples(capacity=8)
    for ns in (999, 1_000, 1_001, 4_000, 3_000_000_000):
        samples.add(ns)
    folded = buckets(samples)
    assert BUCKETS_S[0] == 1e-6 and BUCKETS_S[-1] == 1.0
    assert (folded["1e-06"], folded["2e-06"], folded["5e-06"], folded["1.0"]) == (2, 3, 4, 4)
    assert folded["+Inf"] == folded["count"] == 5
    assert folded["sum"] == pytest.approx(3.000007)

    samples.add(1_500)  # a second scrape adds only what came since the first
    assert buckets(samples)["2e-06"] == 4
    assert buckets(samples)["count"] == 6


def test_a_lapped_ring_keeps_the_newest_samples_and_counts_the_lost() -> None:
    samples = LatencySamples(capacity=4)
    for ns in (10_000_000, 10_000_000, 10_000_000, 500, 500, 500, 500):
        samples.add(ns)
    folded = buckets(samples)
    assert (folded["1e-06"], folded["count"], samples.lost) == (4, 4, 3)


def test_the_capacity_must_be_a_power_of_two() -> None:
    with pytest.raises(ValueError, match="power of two"):
        LatencySamples(capacity=1000)


def test_hft_md_exports_its_tick_to_journal_latency(
        tmp_path: Path, start_daemon: Callable[[str, Path], Daemon]) -> None:
    daemon = start_daemon("hft_md", write_config(tmp_path, SIM_CONFIG))

    def recorded() -> dict[tuple[str, frozenset[tuple[str, str]]], float]:
        scraped = metrics(daemon)
        return scraped if scraped[("hft_md_ticks_total", frozenset({("feed", "sim")}))] else {}

    scraped = wait_for(recorded, "ticks recorded")
    feed = ("feed", "sim")
    count = scraped[("hft_md_tick_to_journal_seconds_count", frozenset({feed}))]
    assert count > 0
    assert scraped[("hft_md_tick_to_journal_seconds_bucket",
                    frozenset({feed, ("le", "+Inf")}))] == count
    assert ("hft_md_tick_to_journal_seconds_bucket", frozenset({feed, ("le", "1e-06")})) in scraped
    assert 0 < scraped[("hft_md_tick_to_journal_seconds_sum", frozenset({feed}))] < count
