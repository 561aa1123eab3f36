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

from hft.daemons.runtime.config import SuiteConfig
from hft.daemons.runtime.events import EventType, empty
from hft.daemons.runtime.host import DaemonHost
from hft.daemons.runtime.journal import JournalWriter
from hft.daemons.runtime.plugins import PluginState

SECOND = 1_000_000_000
T0 = 1609723800 * SECOND  # 2021-01-04 09:30:00 +08:00


def write_ticks(directory: Path, name: str, instrument: bytes, times_ns: list[int]) -> None:
    ticks = empty(EventType.MARKET_DATA, len(times_ns))
    ticks["ts_ns"] = ticks["exchange_ts_ns"] = times_ns
    ticks["instrument"] = instrument
    ticks["volume"] = np.arange(1, len(times_ns) + 1)
    with JournalWriter(directory, name) as writer:
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
    assert plugin._attach() and host.pollers == (plugin.poll,)
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
