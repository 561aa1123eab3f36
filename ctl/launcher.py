"""Starting daemons in the background and stopping them, for ``hftctl start`` and ``stop``.

A started daemon is detached (its own session, stdin closed, stdout and stderr appended to
``<home>/log/NAME.log``) so it outlives the shell. ``start`` only reports success once the
daemon's health service says SERVING; a daemon that exits or never gets there is reported
with the tail of its log, and one that hangs is terminated, so a failed start leaves no
half-started process behind.
"""

from __future__ import annotations

import subprocess
import sys
import time
from collections import deque
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

import psutil

from hft.ctl.client import ControlError, DaemonClient
from hft.daemons.runtime.config import SuiteConfig
from hft.daemons.runtime.socketlock import PROBE_TIMEOUT_S

POLL_INTERVAL_S = 0.05
LOG_TAIL_LINES = 20


@dataclass(frozen=True)
class Outcome:
    """What happened to one daemon: ``ok`` and a one-line message for the user."""

    name: str
    ok: bool
    message: str


def running_pid(socket_path: Path) -> int | None:
    """The pid of the daemon answering on ``socket_path``, None if nothing answers."""
    try:
        with DaemonClient(socket_path, timeout_s=PROBE_TIMEOUT_S) as client:
            return client.status().pid
    except ControlError:
        return None


def spawn(suite: SuiteConfig, name: str, config_file: Path | None) -> subprocess.Popen[bytes]:
    """Start ``name`` in the background with the same config file (None: the built-in one)."""
    log_path = suite.output_log_path(name)
    log_path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    log_path.touch(mode=0o600, exist_ok=True)
    command = [sys.executable, "-m", "hft.daemons", name]
    if config_file is not None:
        command += ["--config", str(config_file.absolute())]
    with log_path.open("ab") as log:
        return subprocess.Popen(command, stdin=subprocess.DEVNULL, stdout=log,
                                stderr=subprocess.STDOUT, start_new_session=True)


def wait_serving(suite: SuiteConfig, name: str, process: subprocess.Popen[bytes],
                 timeout_s: float) -> Outcome:
    """Wait until ``process`` reports SERVING; on failure, say why and show its log tail."""
    socket_path = suite.socket_path(name)
    failure = serving_within(socket_path, process, timeout_s)
    if failure is not None:
        return _failed(suite, name, failure)
    with DaemonClient(socket_path, timeout_s=PROBE_TIMEOUT_S) as client:
        status = client.status()
    return Outcome(name, True, f"started (pid {status.pid}, socket {socket_path}, metrics port "
                               f"{status.metrics_port})")


def serving_within(socket_path: Path, process: subprocess.Popen[bytes],
                   timeout_s: float) -> str | None:
    """None once ``process`` answers SERVING on ``socket_path``; else why not (it exited, or
    it did not within ``timeout_s`` and was terminated)."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if process.poll() is not None:
            return f"exited with status {process.returncode}"
        try:
            with DaemonClient(socket_path, timeout_s=PROBE_TIMEOUT_S) as client:
                if client.health() == "SERVING":
                    return None
        except ControlError:
            pass  # not listening yet
        time.sleep(POLL_INTERVAL_S)
    _terminate(process)
    return f"not SERVING within {timeout_s:g}s, terminated"


def stop(suite: SuiteConfig, names: Iterable[str], timeout_s: float) -> list[Outcome]:
    """Control.Stop to every daemon at once, then wait (up to ``timeout_s``) for each
    process to exit."""
    pids = {name: _request_stop(suite.socket_path(name)) for name in names}
    deadline = time.monotonic() + timeout_s
    outcomes = []
    for name, pid in pids.items():
        if pid is None:
            outcomes.append(Outcome(name, True, "not running"))
        elif _exited(pid, deadline):
            outcomes.append(Outcome(name, True, f"stopped (pid {pid})"))
        else:
            outcomes.append(Outcome(name, False, f"asked to stop but pid {pid} still runs "
                                                 f"after {timeout_s:g}s (kill -9 {pid} if it "
                                                 "is hung)"))
    return outcomes


def _request_stop(socket_path: Path) -> int | None:
    """The pid of the daemon asked to stop, None if nothing answers."""
    try:
        with DaemonClient(socket_path, timeout_s=PROBE_TIMEOUT_S) as client:
            return client.stop()
    except ControlError:
        return None


def _exited(pid: int, deadline: float) -> bool:
    """Wait until ``pid`` exits or the monotonic ``deadline``. A zombie has exited: a
    detached daemon's new parent (or a container's init) may reap it late, so psutil's own
    wait would lag behind."""
    try:
        process = psutil.Process(pid)
        while process.status() != psutil.STATUS_ZOMBIE:
            if time.monotonic() >= deadline:
                return False
            time.sleep(POLL_INTERVAL_S)
    except psutil.NoSuchProcess:
        pass
    return True


def log_tail(path: Path, lines: int = LOG_TAIL_LINES) -> list[str]:
    try:
        with path.open(encoding="utf-8", errors="replace") as file:
            return [line.rstrip("\n") for line in deque(file, maxlen=lines)]
    except FileNotFoundError:
        return []


def _failed(suite: SuiteConfig, name: str, reason: str) -> Outcome:
    log_path = suite.output_log_path(name)
    tail = "\n".join(f"    {line}" for line in log_tail(log_path))
    return Outcome(name, False, f"failed to start: {reason}; last lines of {log_path}:\n{tail}")


def _terminate(process: subprocess.Popen[bytes]) -> None:
    process.terminate()
    try:
        process.wait(timeout=5)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()
