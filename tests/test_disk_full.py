"""A full disk: the journal writer refuses with JournalFull (never SIGBUS), its readers and
hft_md stay alive, and writing resumes once space is freed. Each test mounts a small tmpfs of
its own (root only, as CI runs)."""

from __future__ import annotations

import re
import subprocess
import sys
import urllib.request
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from support.daemons import Daemon, wait_for, write_config

from hft.daemons.runtime.events import EventType
from hft.daemons.runtime.journal import JournalReader

FILLER_PROC = Path(__file__).parent / "procs" / "journal_filler.py"


@pytest.fixture
def small_disk(tmp_path: Path) -> Iterator[Callable[[str], Path]]:
    """Factory: mount a tmpfs of the given size (``2m``) for the test; unmounted afterwards."""
    mounted: list[Path] = []

    def mount(size: str) -> Path:
        point = tmp_path / f"disk{len(mounted)}"
        point.mkdir(mode=0o700)
        subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size},mode=0700", "tmpfs",
                        str(point)], check=True)
        mounted.append(point)
        return point

    yield mount
    for point in mounted:
        subprocess.run(["umount", "--lazy", str(point)], check=True)


def ballast(directory: Path, mib: int) -> Path:
    """A file taking ``mib`` MiB, deleted later to free space."""
    path = directory / "ballast"
    path.write_bytes(bytes(mib << 20))
    return path


def ask(filler: subprocess.Popen[str], command: str | None = None) -> list[str]:
    """Send ``command`` (if any) to the filler process and return its next line's words."""
    assert filler.stdin is not None and filler.stdout is not None
    if command is not None:
        filler.stdin.write(command + "\n")
        filler.stdin.flush()
    return filler.stdout.readline().split(maxsplit=2)


@pytest.mark.parametrize("mode", ["single", "batch"])
def test_a_full_disk_refuses_appends_keeps_every_committed_record_and_resumes(
        small_disk: Callable[[str], Path], mode: str) -> None:
    disk = small_disk("2m")
    freed_later = ballast(disk, 1)
    filler = subprocess.Popen([sys.executable, str(FILLER_PROC), str(disk), "j", "500", mode],
                              stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    try:
        report = ask(filler)
        assert report and report[0] == "full", f"the writer died ({filler.wait()})"
        last_seq, message = int(report[1]), report[2]
        assert str(disk) in message and re.search(r"next \d+ bytes", message)
        assert last_seq >= 500  # it rolled segments before the disk filled

        with JournalReader(disk, "j", wait_mode="block") as reader:  # maps, flags a sleeper
            assert reader.lag == last_seq  # every record that fitted is announced
            for seq in range(1, last_seq + 1):
                record = reader.read()
                assert record is not None
                assert (record["seq"], record["volume"], record["last_price"]) == (
                    seq, seq, seq * 0.5)
            assert reader.read() is None and not reader.wait(0.05)
            assert ask(filler, "retry")[:2] == ["full", str(last_seq)]

            freed_later.unlink()
            assert ask(filler, "retry") == ["appended", str(last_seq + 1)]
            assert reader.wait(5.0)
            record = reader.read()
            assert record is not None and record["volume"] == last_seq + 1
        assert ask(filler, "exit") == [] and filler.wait(10) == 0
    finally:
        if filler.poll() is None:
            filler.kill()
            filler.wait()


SIM_ON_SMALL_DISK = """
[daemons.hft_md]
metrics_port = 0
[daemons.hft_md.plugins.sim]
spec = "sim_feed"
config = { interval_ms = 1, start = "2021-01-11T09:35:00+08:00", snapshot = false }
[daemons.engine]
enabled = false
[daemons.risk]
enabled = false
[daemons.monitor]
enabled = false
"""


def metric(port: int, name: str) -> float:
    text = urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5).read().decode()
    match = re.search(rf'^{name}\{{feed="sim"\}} (\S+)$', text, re.MULTILINE)
    assert match, f"{name} not in /metrics"
    return float(match.group(1))


def logged(daemon: Daemon, text: str) -> dict[str, Any] | None:
    """The daemon's first log line whose message holds ``text``."""
    return next((line for line in daemon.logs() if text in line["message"]), None)


def test_hft_md_stays_alive_on_a_full_disk_and_says_why(
        tmp_path: Path, small_disk: Callable[[str], Path],
        start_daemon: Callable[[str, Path], Daemon]) -> None:
    home = small_disk("8m")
    freed_later = ballast(home, 2)
    daemon = start_daemon("hft_md", write_config(tmp_path, SIM_ON_SMALL_DISK, home=home))
    error = wait_for(lambda: logged(daemon, "md journal full"), "the disk-full error in the log",
                     60)
    assert error is not None and error["level"] == "ERROR" and "no space left in" in error["error"]
    with daemon.client() as client:
        port = client.status().metrics_port
        assert client.health() == "SERVING"
    assert metric(port, "hft_md_journal_full") == 1
    wait_for(lambda: metric(port, "hft_md_journal_full_refused_total") > 0, "refused ticks")

    freed_later.unlink()
    wait_for(lambda: logged(daemon, "disk space again"), "recording to resume", 30)
    assert daemon.process.poll() is None
    with JournalReader(daemon.suite.journal_dir, "md-sim") as reader:
        kinds = []
        while (record := reader.read()) is not None:
            kinds.append((int(record["seq"]), bytes(record["reason"])
                          if record["type"] == EventType.FEED_GAP else b""))
    assert [seq for seq, _ in kinds] == list(range(1, len(kinds) + 1))
    assert b"journal was full" in [reason for _, reason in kinds]
    assert daemon.stop() == 0
