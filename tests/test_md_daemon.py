"""A real hft_md process with the simulated feed: journal, snapshot, metrics, gap markers."""

from __future__ import annotations

import re
import urllib.request
from collections.abc import Callable
from pathlib import Path

from support.daemons import Daemon, wait_for, write_config

from hft.daemons.runtime.events import EventType
from hft.daemons.runtime.journal import JournalReader
from hft.daemons.runtime.snapshot import SnapshotReader

SIM_CONFIG = """
[daemons.hft_md]
metrics_port = 0
[daemons.hft_md.plugins.sim]
spec = "sim_feed"
config = { instruments = ["IF2101", "rb2105"], start = "2021-01-08T22:59:00+08:00", speed = 600 }
[daemons.engine]
enabled = false
[daemons.risk]
enabled = false
[daemons.monitor]
enabled = false
"""


def records(daemon: Daemon) -> list[tuple[int, int, bytes]]:
    """(seq, type, instrument or gap reason) of every record in the sim feed's journal."""
    with JournalReader(daemon.suite.journal_dir, "md-sim") as reader:
        found = []
        while (record := reader.read()) is not None:
            label = record["reason"] if record["type"] == EventType.FEED_GAP else record["instrument"]
            found.append((int(record["seq"]), int(record["type"]), bytes(label)))
        return found


def metric(daemon: Daemon, port: int, name: str) -> float:
    text = urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5).read().decode()
    match = re.search(rf'^{name}\{{feed="sim"\}} (\S+)$', text, re.MULTILINE)
    assert match, f"{name} not in /metrics"
    return float(match.group(1))


def test_hft_md_records_the_sim_feed_and_marks_its_gaps(
        tmp_path: Path, start_daemon: Callable[[str, Path], Daemon]) -> None:
    config = write_config(tmp_path, SIM_CONFIG)
    daemon = start_daemon("hft_md", config)
    with daemon.client() as client:
        port = client.status().metrics_port
    # Friday 22:59 at 600x: rb trades its last night minute, then the weekend takes no time,
    # rb opens on Monday at 09:00 and IF at 09:29 (under 3 s of wall time later)
    wait_for(lambda: SnapshotReader(daemon.suite.run_dir / "md-sim.snap").read(b"IF2101"),
             "Monday's IF ticks", 30)
    assert metric(daemon, port, "hft_md_ticks_total") >= 100
    snapshot = SnapshotReader(daemon.suite.run_dir / "md-sim.snap")
    latest = snapshot.read(b"rb2105")
    assert latest is not None and latest["trading_day"] == 20210111
    assert daemon.stop() == 0

    first_run = records(daemon)
    assert first_run[0][1:] == (EventType.FEED_GAP, b"recorder started")
    assert first_run[-1][1:] == (EventType.FEED_GAP, b"sim feed stopped")
    ticks = [r for r in first_run if r[1] == EventType.MARKET_DATA]
    assert len(ticks) >= 100 and {r[2] for r in ticks} == {b"rb2105", b"IF2101"}
    assert [r[0] for r in first_run] == list(range(1, len(first_run) + 1))

    restarted = start_daemon("hft_md", config)
    wait_for(lambda: len(records(restarted)) > len(first_run) + 1, "ticks after the restart", 30)
    assert restarted.stop() == 0
    second_run = records(restarted)
    assert second_run[: len(first_run)] == first_run, "the restart rewrote history"
    assert second_run[len(first_run)][1:] == (EventType.FEED_GAP, b"recorder started")
    assert [r[0] for r in second_run] == list(range(1, len(second_run) + 1))
