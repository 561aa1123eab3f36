"""The ops files as installed: the systemd unit passes systemd-analyze (verify and its
security audit), and logrotate with ops/logrotate/hft rotates the log of a running daemon
without losing a line, while ``hftctl logs -f`` follows it."""

from __future__ import annotations

import configparser
import gzip
import json
import re
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path

import psutil
import pytest
from click.testing import CliRunner
from support.daemons import wait_for
from support.follow import Follow

from hft.ctl import launcher
from hft.ctl.cli import main
from hft.daemons.runtime.config import DAEMON_NAMES, WatchdogConfig, load_config
from hft.daemons.runtime.heartbeat import read_heartbeat

OPS = Path(__file__).resolve().parent.parent / "ops"
UNIT = OPS / "systemd" / "hft-watchdog.service"
LOGROTATE = OPS / "logrotate" / "hft"
INSTALLED_HOME = "/var/lib/hft"
SYSTEM_UNITS = Path("/usr/lib/systemd/system")
RUNTIME_SYSCALLS = ("mmap", "munmap", "msync", "madvise", "futex", "futex_waitv", "fsync",
                    "fdatasync", "ftruncate", "fallocate", "pipe2", "select", "sched_yield",
                    "epoll_wait", "socket", "bind", "listen", "accept4", "clock_nanosleep")
"""What the daemons do to share journals and wait on them (mmap, futex, futex_waitv, the
self-pipe's select, the yield mode's sched_yield), keep them durable (msync, fsync), reserve
their blocks (fallocate) and serve gRPC and /metrics."""


def unit_service() -> configparser.SectionProxy:
    parser = configparser.ConfigParser(strict=False, interpolation=None, delimiters=("=",))
    parser.optionxform = str  # type: ignore[assignment,method-assign]  # keys are CamelCase
    parser.read_string(UNIT.read_text())
    return parser["Service"]


@pytest.fixture
def unit_root(tmp_path: Path) -> Path:
    """A file-system root for ``systemd-analyze --root``: the system's unit files (the
    targets the unit's default dependencies name), the unit where an admin installs it,
    and an executable where its ExecStart points (the repo's console script lives in a venv
    elsewhere)."""
    root = tmp_path / "root"
    units = root / SYSTEM_UNITS.relative_to("/")
    units.mkdir(parents=True)
    for unit in SYSTEM_UNITS.iterdir():
        if unit.is_file() and not unit.is_symlink():
            shutil.copy(unit, units)
    installed = root / "etc" / "systemd" / "system"
    installed.mkdir(parents=True)
    shutil.copy(UNIT, installed)
    command = root / unit_service()["ExecStart"].split()[0].lstrip("/")
    command.parent.mkdir(parents=True)
    command.write_text("#!/bin/sh\n")
    command.chmod(0o755)
    return root


def test_the_unit_passes_systemd_analyze_verify(unit_root: Path) -> None:
    done = subprocess.run(["systemd-analyze", "verify", f"--root={unit_root}", UNIT.name],
                          capture_output=True, text=True)
    assert (done.returncode, done.stderr, done.stdout) == (0, "", "")  # no warning either


def test_the_unit_is_hardened(unit_root: Path) -> None:
    """systemd's own audit: exposure at most 2.0 of 10 ("OK")."""
    done = subprocess.run(["systemd-analyze", "security", "--offline=true", "--threshold=20",
                           f"--root={unit_root}", UNIT.name], capture_output=True, text=True)
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr
    assert re.search(r"Overall exposure level for hft-watchdog\.service: [01]\.\d OK",
                     done.stdout), done.stdout[-300:]


def syscalls(group: str) -> set[str]:
    """The system calls a SystemCallFilter group allows, the groups it names expanded."""
    listing = subprocess.run(["systemd-analyze", "syscall-filter", group],
                             capture_output=True, text=True, check=True).stdout
    names = {line.strip() for line in listing.splitlines()[1:] if line.startswith("    ")}
    calls = {name for name in names if not name.startswith(("@", "#"))}
    for inner in names - calls:
        if inner.startswith("@"):
            calls |= syscalls(inner)
    return calls


def test_the_units_system_call_filter_lets_the_runtime_work() -> None:
    allowed = set().union(*map(syscalls, unit_service()["SystemCallFilter"].split()))
    assert sorted(set(RUNTIME_SYSCALLS) - allowed) == []


def test_the_unit_stops_the_suite_in_time_and_leaves_nothing() -> None:
    service = unit_service()
    assert service["ExecStart"].split()[1:] == ["--config", "/etc/hft/hft.toml"]
    assert service["KillMode"] == "mixed"  # SIGTERM to the watchdog, SIGKILL to the rest
    kill_timeout_s = WatchdogConfig().kill_timeout_s
    assert int(service["TimeoutStopSec"]) > len(DAEMON_NAMES) * kill_timeout_s
    assert (service["Restart"], service["User"], service["UMask"]) == ("on-failure", "hft",
                                                                       "0077")
    assert service["ReadWritePaths"] == INSTALLED_HOME
    assert (service["ProtectSystem"], service["NoNewPrivileges"]) == ("strict", "yes")
    assert service["EnvironmentFile"].lstrip("-") == "/etc/hft/ctp.env"
    assert int(service["LimitNOFILE"]) >= 65536


BEAT = '''
from hft.daemons.runtime.plugins import Plugin


class Beat(Plugin):
    """A numbered log line every 50 ms: a daemon that keeps appending to its log."""

    def start(self):
        self.count = 0
        self.ctx.call_every(0.05, self.beat)

    def beat(self):
        self.count += 1
        self.ctx.log.info("beat", extra={"beat": self.count})
'''


def beats(text: str) -> list[int]:
    """The beat numbers of a log's complete lines (the last may be half written)."""
    lines = text.split("\n")[:-1]
    records = (json.loads(line) for line in lines if line.startswith("{"))
    return [record["beat"] for record in records if record.get("message") == "beat"]


@pytest.fixture
def suite(tmp_path: Path) -> Iterator[Path]:
    """An engine that logs beats, home in tmp_path; it and its watchdog stopped afterwards."""
    (tmp_path / "beat.py").write_text(BEAT)
    path = tmp_path / "hft.toml"
    path.write_text(f'''[paths]
home = "{tmp_path / "home"}"
[daemons.engine]
metrics_port = 0
[daemons.engine.plugins.beat]
spec = "{tmp_path / "beat.py"}"
[daemons.hft_md]
enabled = false
[daemons.risk]
enabled = false
[daemons.monitor]
enabled = false
''')
    yield path
    launcher.stop(load_config(path), [], timeout_s=10)  # every daemon, then the watchdog


def installed_logrotate(tmp_path: Path, home: Path) -> Path:
    """ops/logrotate/hft as installed for ``home``, rotating as root (no hft user here)."""
    text = LOGROTATE.read_text()
    assert text.count(f"{INSTALLED_HOME}/log/") == 2 and text.count("su hft hft") == 1
    path = tmp_path / "logrotate.conf"
    path.write_text(text.replace(INSTALLED_HOME, str(home)).replace("su hft hft", "su root root"))
    return path


def test_logrotate_rotates_a_running_daemons_log_without_losing_a_line(
        suite: Path, tmp_path: Path) -> None:
    """Two rotations (the first copy stays uncompressed for a rotation: delaycompress): the
    daemon's lines go on in the emptied log, every line is in exactly one of the three files,
    the oldest compressed, and ``hftctl logs -f`` shows every line once across both. The
    daemon is paused (SIGSTOP) while logrotate runs: a line written between copytruncate's
    copy and its truncation is lost, the price the README and ops/logrotate/hft state, and a
    test that let the beats fall in that window would fail by chance (it did, once in CI)."""
    started = CliRunner().invoke(main, ["start", "--config", str(suite), "engine"])
    assert started.exit_code == 0, started.output
    log = tmp_path / "home" / "log" / "engine.log"
    logrotate = ["logrotate", "--force", "--state", str(tmp_path / "state"),
                 str(installed_logrotate(tmp_path, tmp_path / "home"))]
    wait_for(lambda: len(beats(log.read_text())) >= 10, "10 beats in the log")
    follower = Follow("engine", "--config", str(suite), "-n", "0")
    try:
        wait_for(lambda: len(follower.lines) >= 3, "hftctl logs -f to show new lines")
        engine = psutil.Process(read_heartbeat(load_config(suite).heartbeat_path("engine")).pid)
        for _ in range(2):
            engine.suspend()
            try:
                rotated = subprocess.run(logrotate, capture_output=True, text=True)
            finally:
                engine.resume()
            assert (rotated.returncode, rotated.stderr) == (0, "")
            wait_for(lambda: len(beats(log.read_text())) >= 10, "10 beats in the emptied log")
        shown = len(follower.lines)
        wait_for(lambda: len(follower.lines) >= shown + 3, "hftctl logs -f to go on")
    finally:
        status, stderr = follower.interrupt()
    stopped = CliRunner().invoke(main, ["stop", "--config", str(suite)])
    assert stopped.exit_code == 0, stopped.output

    oldest, newest = log.with_name("engine.log.2.gz"), log.with_name("engine.log.1")
    assert not log.with_name("engine.log.2").exists() and not log.with_name(
        "engine.log.1.gz").exists()
    assert {path.stat().st_mode & 0o777 for path in (oldest, newest, log)} == {0o600}
    first = beats(gzip.decompress(oldest.read_bytes()).decode())
    second = beats(newest.read_text())
    fresh = log.read_bytes()
    assert b"\0" not in fresh  # the daemon's next line went to the new end, not its old offset
    last = beats(fresh.decode())
    assert min(len(first), len(second), len(last)) >= 10
    assert first + second + last == list(range(1, last[-1] + 1))  # every line, once, in order
    shown_beat = re.compile(r"INFO     hft\.daemon\.engine\.plugin\.beat\[\d+\]: beat beat=(\d+)$")
    followed = [int(m.group(1)) for line in follower.lines if (m := shown_beat.search(line))]
    assert (status, stderr) == (0, "")
    assert len(followed) == len(follower.lines)
    assert followed == list(range(followed[0], followed[-1] + 1))
    assert followed[0] <= first[-1] < second[-1] < followed[-1]  # it followed across both
