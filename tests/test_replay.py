"""Replay: live tail and historical replay of md journals onto the bus."""

from __future__ import annotations

import re
import time
import urllib.request
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from support.daemons import Daemon, wait_for, write_config
from support.sample_data import IF_DAY

from hft.daemons.engine.replay import Replay
from hft.daemons.engine.replays import HistoricalReplay, LiveReplay
from hft.daemons.md.importer import import_files
from hft.daemons.refdata.instruments import InstrumentTable, ProductTable
from hft.daemons.runtime.config import SuiteConfig
from hft.daemons.runtime.events import HEADER_DTYPE, EventType, concatenate, empty
from hft.daemons.runtime.host import DaemonHost
from hft.daemons.runtime.journal import JournalReader, JournalWriter
from hft.daemons.runtime.plugins import PluginState

SECOND = 1_000_000_000
T0 = 1609723800 * SECOND  # 2021-01-04 09:30:00 +08:00


def write_ticks(directory: Path, name: str, instrument: bytes, times_ns: list[int],
                **writer_options: int) -> None:
    ticks = empty(EventType.MARKET_DATA, len(times_ns))
    ticks["ts_ns"] = ticks["exchange_ts_ns"] = times_ns
    ticks["instrument"] = instrument
    ticks["volume"] = np.arange(1, len(times_ns) + 1)
    with JournalWriter(directory, name, **writer_options) as writer:
        writer.append_batch(ticks)


class Collector:
    """Subscribes to the host's bus and keeps (type, instrument, ts_ns) of what it sees."""

    def __init__(self, host: DaemonHost) -> None:
        self.seen: list[tuple[int, bytes, int]] = []
        for event_type in (EventType.MARKET_DATA, EventType.TIMER, EventType.FEED_GAP):
            host.bus.subscribe(event_type, lambda r, t=int(event_type): self.seen.append(
                (t, bytes(r["instrument"]) if t == EventType.MARKET_DATA else b"", int(r["ts_ns"]))))

    def of(self, event_type: EventType) -> list[tuple[int, bytes, int]]:
        return [s for s in self.seen if s[0] == event_type]


def replay_host(config: dict[str, Any]) -> tuple[DaemonHost, Collector, Any]:
    host = DaemonHost("engine", SuiteConfig())
    collector = Collector(host)
    entry = host.plugins.load("replay", "replay", config)
    assert entry.state is PluginState.RUNNING, entry.error
    return host, collector, entry.instance


def drain(plugin: Any, polls: int = 1000) -> None:
    for _ in range(polls):
        if not plugin.poll() and (plugin.finished or plugin.config.mode == "live"):
            return


def test_historical_replay_merges_journals_in_time_order_with_data_clock_timers(tmp_path: Path) -> None:
    write_ticks(tmp_path, "md-a", b"IF2101", [T0 + i * SECOND for i in range(0, 10, 2)])
    write_ticks(tmp_path, "md-b", b"rb2105", [T0 + i * SECOND for i in range(1, 10, 2)])
    host, seen, plugin = replay_host({"journals": ["md-a", "md-b"], "directory": str(tmp_path),
                                      "mode": "historical", "timer_interval_ms": 1000})
    drain(plugin)
    ticks = seen.of(EventType.MARKET_DATA)
    assert [t[2] for t in ticks] == [T0 + i * SECOND for i in range(10)]
    assert [t[1] for t in ticks[:2]] == [b"IF2101", b"rb2105"]
    # one TIMER per crossed second of the data's clock, published before the tick that crossed it
    timers = seen.of(EventType.TIMER)
    assert [t[2] for t in timers] == [T0 + i * SECOND for i in range(1, 10)]
    assert seen.seen.index(timers[0]) == seen.seen.index(ticks[1]) - 1
    assert plugin.finished
    host.plugins.stop_all()


def test_historical_window_and_instrument_filter(tmp_path: Path) -> None:
    write_ticks(tmp_path, "md-a", b"IF2101", [T0 + i * SECOND for i in range(10)])
    write_ticks(tmp_path, "md-b", b"rb2105", [T0 + i * SECOND for i in range(10)])
    host, seen, plugin = replay_host({
        "journals": ["md-a", "md-b"], "directory": str(tmp_path), "mode": "historical",
        "start": "2021-01-04T09:30:03+08:00", "until": "2021-01-04T09:30:07+08:00",
        "instruments": ["rb2105"]})
    drain(plugin)
    ticks = seen.of(EventType.MARKET_DATA)
    assert [(t[1], t[2]) for t in ticks] == [(b"rb2105", T0 + i * SECOND) for i in range(3, 7)]
    assert plugin.finished
    host.plugins.stop_all()


def test_paced_replay_holds_records_until_they_are_due(tmp_path: Path) -> None:
    write_ticks(tmp_path, "md", b"IF2101", [T0 + i * 60 * SECOND for i in range(5)])
    host, seen, plugin = replay_host({"journals": ["md"], "directory": str(tmp_path),
                                      "mode": "historical", "speed": 1.0})
    plugin.poll()
    plugin.poll()
    # at 1x, the record one simulated minute later is a real minute away
    assert len(seen.of(EventType.MARKET_DATA)) == 1 and not plugin.finished
    host.plugins.stop_all()


def test_live_replay_starts_at_the_end_and_follows_the_writer(tmp_path: Path) -> None:
    write_ticks(tmp_path, "md", b"IF2101", [T0, T0 + SECOND])
    host, seen, plugin = replay_host({"journals": ["md"], "directory": str(tmp_path)})
    drain(plugin)
    assert not seen.of(EventType.MARKET_DATA), "live mode must not replay history"
    write_ticks(tmp_path, "md", b"IF2101", [T0 + 2 * SECOND])
    drain(plugin)
    assert [t[2] for t in seen.of(EventType.MARKET_DATA)] == [T0 + 2 * SECOND]
    assert plugin.published == 1
    host.plugins.stop_all()


def test_bad_replay_config_is_refused_naming_the_key(tmp_path: Path) -> None:
    host = DaemonHost("engine", SuiteConfig())
    entry = host.plugins.load("replay", "replay", {"mode": "sideways"})
    assert entry.state is PluginState.FAILED and "mode" in entry.error
    entry = host.plugins.load("replay2", "replay", {"journals": ["absent"], "mode": "historical",
                                                    "directory": str(tmp_path)})
    assert entry.state is PluginState.FAILED and "no such journal file" in entry.error


def test_live_replay_waits_for_a_journal_that_does_not_exist_yet(tmp_path: Path) -> None:
    host, seen, plugin = replay_host({"journals": ["md"], "directory": str(tmp_path)})
    assert host.pollers == () and not plugin._attach()
    write_ticks(tmp_path, "md", b"IF2101", [T0])  # hft_md starts: its history is not replayed
    assert plugin._attach() and host.pollers == (plugin.replay.poll,)
    write_ticks(tmp_path, "md", b"IF2101", [T0 + SECOND])
    drain(plugin)
    assert [t[2] for t in seen.of(EventType.MARKET_DATA)] == [T0 + SECOND]
    host.plugins.stop_all()


TWO_DAEMONS = """
[daemons.hft_md]
metrics_port = 0
[daemons.hft_md.plugins.sim]
spec = "sim_feed"
config = { instruments = ["IF2101"], start = "2021-01-04T09:29:00+08:00", speed = 20 }
[daemons.engine]
metrics_port = 0
[daemons.engine.plugins.replay]
spec = "replay"
config = { journals = ["md-sim"] }
[daemons.risk]
enabled = false
[daemons.monitor]
enabled = false
"""


def published_ticks(daemon: Daemon) -> float:
    with daemon.client() as client:
        port = client.status().metrics_port
    text = urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5).read().decode()
    match = re.search(r'^hft_bus_events_published_total\{type="MARKET_DATA"\} (\S+)$', text, re.M)
    return float(match.group(1)) if match else 0.0


@pytest.mark.timeout(120)
def test_ticks_from_a_hft_md_process_reach_the_engine_process_bus(
        tmp_path: Path, start_daemon: Callable[[str, Path], Daemon]) -> None:
    config = write_config(tmp_path, TWO_DAEMONS)
    hft_md = start_daemon("hft_md", config)  # creates the journal the engine follows
    engine = start_daemon("engine", config)
    wait_for(lambda: published_ticks(engine) >= 20, "20 ticks on the engine's bus", 60)
    assert published_ticks(hft_md) == 0, "hft_md publishes nothing on its own bus"


def test_live_timers_follow_the_feeds_clock_not_the_machines(tmp_path: Path) -> None:
    """A simulated feed's clock skips closed hours: bars must close on its time."""
    write_ticks(tmp_path, "md", b"IF2101", [T0])
    host, seen, plugin = replay_host({"journals": ["md"], "directory": str(tmp_path)})
    plugin._wall_timer()
    before = seen.of(EventType.TIMER)[-1][2]
    assert abs(before - time.time_ns()) < 60 * SECOND, "no data yet: the wall clock"
    write_ticks(tmp_path, "md", b"IF2101", [T0 + SECOND])  # 2021, far from today
    drain(plugin)
    plugin._wall_timer()
    assert T0 + SECOND <= seen.of(EventType.TIMER)[-1][2] < T0 + 60 * SECOND
    host.plugins.stop_all()


# --- each replay's fast path publishes exactly its reference path's events -------------------



def _mixed_journal(directory: Path, name: str, instrument: bytes, offset_ms: int) -> None:
    """Ticks with quiet stretches (several TIMERs at once), clock steps back, FEED_GAPs and a
    record of an unknown type in between."""
    times = [T0 + (ms + offset_ms) * 1_000_000 for ms in
             (0, 30, 99, 100, 101, 250, 250, 180, 900, 2_500, 2_501, 2_499, 7_000, 7_050)]
    with JournalWriter(directory, name) as writer:
        for i, ts in enumerate(times * 3):
            tick = empty(EventType.MARKET_DATA)
            tick["ts_ns"] = ts + (i // len(times)) * 10 * SECOND
            tick["volume"], tick["instrument"] = i, instrument
            writer.append(tick)
            if i % 9 == 4:
                gap = empty(EventType.FEED_GAP)
                gap["ts_ns"] = tick["ts_ns"]
                writer.append(gap)
            if i == 20:
                unknown = np.zeros(1, HEADER_DTYPE)
                unknown["type"], unknown["ts_ns"] = 99, tick["ts_ns"]
                writer.append(unknown)


@pytest.fixture(scope="module")
def journals(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """md: the real IF day; md-even/md-odd: its ticks dealt alternately into two journals,
    md-rb: a second instrument at the same times (ties across journals); mix-a/b/c:
    synthetic journals whose clocks step back (mix-c at mix-a's times)."""
    directory = tmp_path_factory.mktemp("replay")
    import_files([IF_DAY], directory, "md", InstrumentTable(ProductTable.load()))
    ticks = _all_ticks(directory, "md")
    for name, part in (("md-even", ticks[0::2]), ("md-odd", ticks[1::2])):
        with JournalWriter(directory, name) as writer:
            writer.append_batch(part)
    other = ticks[::3].copy()
    other["instrument"] = b"rb2105"
    with JournalWriter(directory, "md-rb") as writer:
        writer.append_batch(other)
    _mixed_journal(directory, "mix-a", b"IF2101", 0)
    _mixed_journal(directory, "mix-b", b"rb2105", 60)
    _mixed_journal(directory, "mix-c", b"rb2105", 0)
    return directory


Event = tuple[int, int, int, np.dtype[np.void], bytes]


def _events(host: DaemonHost) -> list[Event]:
    """Everything the host's bus carries from now on: (type, seq, ts_ns, dtype, instrument)."""
    seen: list[Event] = []

    def collector(event_type: int) -> Callable[[np.void], None]:
        return lambda r: seen.append((event_type, int(r["seq"]), int(r["ts_ns"]), r.dtype,
                                      bytes(r["instrument"]) if event_type == EventType.MARKET_DATA
                                      else b""))

    for event_type in EventType:
        host.bus.subscribe(event_type, collector(int(event_type)))
    return seen


def _historical(directory: Path, config: dict[str, Any], *, reference: bool) -> tuple[list[Event], int]:
    host = DaemonHost("engine", SuiteConfig())
    seen = _events(host)
    entry = host.plugins.load("replay", "replay", {"directory": str(directory),
                                                   "mode": "historical", **config})
    plugin = entry.instance
    assert entry.state is PluginState.RUNNING and isinstance(plugin, Replay), entry.error
    assert isinstance(plugin.replay, HistoricalReplay)
    assert plugin.replay.poll != plugin.replay.reference_poll, "unpaced: the fast path is declared"
    poll = plugin.replay.reference_poll if reference else plugin.replay.poll
    for _ in range(100_000):
        if plugin.finished:
            break
        poll()
    assert plugin.finished
    host.plugins.stop_all()
    return seen, plugin.published


@pytest.mark.parametrize("config", [
    {"journals": ["md"]},
    {"journals": ["md"], "batch": 1000, "timer_interval_ms": 250},
    {"journals": ["md"], "start": "2021-01-04T10:00:00+08:00", "until": "2021-01-04T13:30:00+08:00"},
    {"journals": ["md-even", "md-odd"]},
    {"journals": ["md-odd", "md-even"], "batch": 333, "until": "2021-01-04T14:00:00+08:00"},
    {"journals": ["md-even", "md-rb", "md-odd"], "timer_interval_ms": 1000},
    {"journals": ["md-rb", "md"], "instruments": ["rb2105"], "batch": 100},
    {"journals": ["mix-a", "mix-b"], "batch": 4},
    {"journals": ["mix-b", "mix-a", "md-rb"], "batch": 7, "timer_interval_ms": 500},
    {"journals": ["mix-a", "mix-b"], "instruments": ["IF2101"],
     "start": "2021-01-04T09:30:10.1+08:00", "until": "2021-01-04T09:30:27+08:00"},
    {"journals": ["mix-a"], "batch": 1, "timer_interval_ms": 7},
    {"journals": ["mix-a", "mix-c"], "batch": 1},  # equal times across journals, in every batch
    {"journals": ["mix-c", "mix-a", "mix-b"], "batch": 2},
])
def test_historical_fast_path_publishes_the_reference_paths_events(
        journals: Path, config: dict[str, Any]) -> None:
    fast, fast_count = _historical(journals, config, reference=False)
    reference, reference_count = _historical(journals, config, reference=True)
    assert fast_count == reference_count > 0
    assert len(fast) == len(reference) and fast == reference
    assert any(t == EventType.TIMER for t, *_ in fast)


@pytest.mark.parametrize("seed", range(12))
def test_historical_fast_path_on_random_journals_with_ties_and_steps_back(tmp_path: Path,
                                                                         seed: int) -> None:
    """Few distinct times and small segments (a batch ends at a segment's end), so equal
    times across journals fall on batch edges."""
    rng = np.random.default_rng(seed)
    names = [f"md-{number}" for number in range(int(rng.integers(2, 5)))]
    for name in names:
        size = int(rng.integers(1, 40))
        write_ticks(tmp_path, name, b"IF2101", (T0 + rng.integers(0, 8, size) * 100_000_000).tolist(),
                    segment_records=int(rng.integers(2, 9)), keep_segments=100)
    config = {"journals": names, "batch": int(rng.integers(1, 6)),
              "timer_interval_ms": int(rng.integers(50, 300))}
    fast, fast_count = _historical(tmp_path, config, reference=False)
    reference, reference_count = _historical(tmp_path, config, reference=True)
    assert fast_count == reference_count and fast == reference


def test_merged_journals_replay_in_time_order(journals: Path) -> None:
    merged, _ = _historical(journals, {"journals": ["md-even", "md-odd"]}, reference=False)
    single, _ = _historical(journals, {"journals": ["md"]}, reference=False)
    assert [(t, ts) for t, _, ts, _, _ in merged] == [(t, ts) for t, _, ts, _, _ in single]


def test_live_fast_path_publishes_the_reference_paths_events(tmp_path: Path, journals: Path) -> None:
    ticks = _all_ticks(journals, "md")[:6000]
    gap = empty(EventType.FEED_GAP)
    gap["ts_ns"] = ticks["ts_ns"][2000]
    outcome = []
    for path in ("fast", "reference"):
        directory = tmp_path / path
        write_ticks(directory, "md", b"IF2101", [T0])  # history: a live replay starts after it
        host = DaemonHost("engine", SuiteConfig())
        seen = _events(host)
        entry = host.plugins.load("replay", "replay", {"journals": ["md"], "directory": str(directory),
                                                       "batch": 500})
        plugin = entry.instance
        assert isinstance(plugin, Replay) and isinstance(plugin.replay, LiveReplay), entry.error
        assert plugin.replay.poll != plugin.replay.reference_poll, "one journal: the fast path"
        poll = plugin.replay.reference_poll if path == "reference" else plugin.replay.poll
        with JournalWriter(directory, "md") as writer:
            writer.append_batch(ticks[:2000])
            writer.append(gap[0])
            writer.append_batch(ticks[2000:])
        while poll():
            pass
        outcome.append((seen, plugin.published, plugin.replay.data_now(time.time_ns())))
        host.plugins.stop_all()
    (fast, fast_count, fast_clock), (reference, reference_count, reference_clock) = outcome
    assert fast_count == reference_count == len(ticks) + 1
    assert fast == reference
    assert [e[2] for e in fast if e[0] == EventType.MARKET_DATA] == ticks["ts_ns"].tolist()
    for clock in (fast_clock, reference_clock):  # anchored at the last record, not the machine's
        assert 0 <= clock - int(ticks["ts_ns"][-1]) < 60 * SECOND


def _all_ticks(directory: Path, name: str) -> np.ndarray:
    parts = []
    with JournalReader(directory, name) as reader:
        while (batch := reader.read_batch(4096, EventType.MARKET_DATA)).size:
            parts.append(batch.copy())
    return concatenate(parts, EventType.MARKET_DATA)


@pytest.mark.parametrize("fast", [True, False])
def test_metrics_count_what_was_replayed_and_what_is_left(tmp_path: Path, fast: bool) -> None:
    write_ticks(tmp_path, "md-a", b"IF2101", [T0 + i * SECOND for i in range(10)])
    write_ticks(tmp_path, "md-b", b"rb2105", [T0 + i * SECOND for i in range(4)])
    host, _, plugin = replay_host({"journals": ["md-a", "md-b"], "directory": str(tmp_path),
                                   "mode": "historical", "until": "2021-01-04T09:30:06+08:00",
                                   "batch": 2})
    poll = plugin.replay.poll if fast else plugin.replay.reference_poll
    while not plugin.finished:
        poll()

    def samples() -> dict[tuple[str, str], float]:
        return {(sample.name, sample.labels.get("journal", "")): sample.value
                for family in plugin.metrics() for sample in family.samples}

    got = samples()
    assert got[("hft_replay_records_total", "")] == 10 and plugin.published == 10
    assert got[("hft_replay_lapped_records_total", "")] == 0
    # some of md-a's ticks from until on were never read, all of md-b's were
    assert 0 < got[("hft_replay_lag_records", "md-a")] <= 4
    assert got[("hft_replay_lag_records", "md-b")] == 0
    host.plugins.stop_all()
    waiting, _, live = replay_host({"journals": ["md-c"], "directory": str(tmp_path)})
    assert not any(name == "hft_replay_lag_records" for name, _ in
                   {(s.name, "") for f in live.metrics() for s in f.samples})
    waiting.plugins.stop_all()


def test_historical_replay_of_empty_journals_finishes_at_once(tmp_path: Path) -> None:
    for name in ("md-a", "md-b"):
        JournalWriter(tmp_path, name).close()
    for journals in (["md-a"], ["md-a", "md-b"]):
        host, seen, plugin = replay_host({"journals": journals, "directory": str(tmp_path),
                                          "mode": "historical"})
        assert plugin.poll() == 0 and plugin.finished and not seen.seen
        host.plugins.stop_all()


def test_live_replay_of_several_journals_runs_the_reference_path_in_time_order(tmp_path: Path) -> None:
    write_ticks(tmp_path, "md-a", b"IF2101", [T0])
    write_ticks(tmp_path, "md-b", b"rb2105", [T0])
    host, seen, plugin = replay_host({"journals": ["md-a", "md-b"], "directory": str(tmp_path),
                                      "instruments": ["IF2101", "rb2105"]})
    assert plugin.replay.poll == plugin.replay.reference_poll
    write_ticks(tmp_path, "md-a", b"IF2101", [T0 + i * SECOND for i in (1, 3, 4)])
    write_ticks(tmp_path, "md-b", b"rb2105", [T0 + i * SECOND for i in (2, 3, 5)])
    drain(plugin)
    assert [(t[1], t[2]) for t in seen.of(EventType.MARKET_DATA)] == [
        (b"IF2101", T0 + SECOND), (b"rb2105", T0 + 2 * SECOND), (b"IF2101", T0 + 3 * SECOND),
        (b"rb2105", T0 + 3 * SECOND), (b"IF2101", T0 + 4 * SECOND), (b"rb2105", T0 + 5 * SECOND)]
    assert T0 + 5 * SECOND <= plugin.replay.data_now(time.time_ns()) < T0 + 65 * SECOND
    host.plugins.stop_all()
