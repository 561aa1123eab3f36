"""``hftctl start``, ``stop`` and ``restart``: the watchdog runs the daemons; hftctl starts the
watchdog when it is not running and tells it what to do.

The watchdog is started detached (its own session, stdin closed, output appended to
``<home>/log/watchdog.log``) with ``--no-autostart``, so it adopts what an earlier watchdog
left running and starts only what it is asked to. ``start`` returns once every named daemon
runs and answers SERVING, or fails naming the daemon, the watchdog's reason and the end of
the daemon's log.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import psutil

from hft.ctl.client import ControlError, DaemonClient, WatchdogClient
from hft.ctl.logs import last_lines
from hft.daemons.runtime.config import WATCHDOG, SuiteConfig
from hft.daemons.runtime.socketlock import PROBE_TIMEOUT_S
from hft.protos import watchdog_pb2
from hft.watchdog import statefile
from hft.watchdog.metrics import is_up, state_name
from hft.watchdog.process import adopt

POLL_INTERVAL_S = 0.05
LOG_TAIL_LINES = 20
_FAILED = frozenset({watchdog_pb2.SUPERVISED_STATE_BACKOFF, watchdog_pb2.SUPERVISED_STATE_FATAL,
                     watchdog_pb2.SUPERVISED_STATE_STOPPED, watchdog_pb2.SUPERVISED_STATE_FOREIGN})
"""States that, after a Start, mean the start failed (the watchdog's reason says why)."""


class WatchdogUnreachable(Exception):
    """Nothing answers on the watchdog's socket."""


@dataclass(frozen=True)
class Outcome:
    """What happened to one daemon: ``ok`` and a one-line message for the user (a failure
    adds the end of its log below)."""

    name: str
    ok: bool
    message: str


def watchdog(suite: SuiteConfig, timeout_s: float = PROBE_TIMEOUT_S) -> WatchdogClient:
    return WatchdogClient(suite.socket_path(WATCHDOG), timeout_s=timeout_s)


def watchdog_pid(suite: SuiteConfig) -> int | None:
    """The pid of the watchdog answering on its socket, None if nothing answers."""
    try:
        with watchdog(suite) as client:
            return client.status().pid
    except ControlError:
        return None


def daemons(suite: SuiteConfig) -> list[watchdog_pb2.DaemonStatus]:
    """The watchdog's view of every daemon; WatchdogUnreachable when it does not answer."""
    try:
        with watchdog(suite) as client:
            return client.daemons()
    except ControlError as exc:
        raise WatchdogUnreachable(f"the watchdog is not running (nothing answers on "
                                  f"{suite.socket_path(WATCHDOG)}: {exc.code}); hftctl start "
                                  "starts it") from None


def ensure_watchdog(suite: SuiteConfig, timeout_s: float) -> Outcome | None:
    """Start the watchdog unless it runs; None if it was running, else how its start went."""
    if watchdog_pid(suite) is not None:
        return None
    log_path = suite.output_log_path(WATCHDOG)
    log_path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    command = [sys.executable, "-m", "hft.watchdog", "--no-autostart"]
    if suite.source is not None:
        command += ["--config", str(suite.source)]
    log_fd = os.open(log_path, os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_CLOEXEC, 0o600)
    try:
        process = subprocess.Popen(command, stdin=subprocess.DEVNULL, stdout=log_fd,
                                   stderr=subprocess.STDOUT, start_new_session=True)
    finally:
        os.close(log_fd)
    failure = serving_within(suite.socket_path(WATCHDOG), process, timeout_s)
    if failure is not None:
        return _failed(suite, WATCHDOG, failure)
    return Outcome(WATCHDOG, True, f"started (pid {process.pid}, log {log_path})")


def serving_within(socket_path: Path, process: subprocess.Popen[bytes],
                   timeout_s: float) -> str | None:
    """None once ``process`` answers SERVING on ``socket_path``; else why not (it exited, or
    it did not within ``timeout_s`` and was terminated). For daemons run outside the
    watchdog (the benchmarks)."""
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


def orphans(suite: SuiteConfig) -> list[int]:
    """Daemons an earlier watchdog started that still run while no watchdog does (it was
    killed): the pids its state file names, checked like an adoption (pid, create time and
    command line), so a stranger is never counted."""
    saved = statefile.load(statefile.state_path(suite.run_dir))
    found = []
    for name, record in saved.daemons.items():
        process = adopt(name, record.pid, record.create_time) if record.pid else None
        if process is not None:
            found.append(process.pid)
            process.close()
    return found


def start(suite: SuiteConfig, names: list[str], timeout_s: float) -> list[Outcome]:
    """Have the watchdog start ``names`` (every enabled one if empty) and wait until each
    runs healthy or has failed."""
    with watchdog(suite) as client:
        before = {status.name: status for status in client.daemons()}
        started = client.start_daemons(names)
    return wait_healthy(suite, [status.name for status in started], before, timeout_s)


def restart(suite: SuiteConfig, name: str, timeout_s: float) -> list[Outcome]:
    with watchdog(suite) as client:
        client.restart_daemon(name)
    return wait_healthy(suite, [name], {}, timeout_s)


def wait_healthy(suite: SuiteConfig, names: Sequence[str],
                 before: dict[str, watchdog_pb2.DaemonStatus], timeout_s: float) -> list[Outcome]:
    """Poll the watchdog until every one of ``names`` is up or failed; ``before`` tells which
    ran already (reported as such)."""
    outcomes: dict[str, Outcome] = {}
    running_before = {name: status.pid for name, status in before.items()
                      if status.state == watchdog_pb2.SUPERVISED_STATE_RUNNING and status.pid}
    deadline = time.monotonic() + timeout_s
    while len(outcomes) < len(names):
        current = {status.name: status for status in daemons(suite)}
        for name in names:
            status = current[name]
            if name in outcomes:
                continue
            if is_up(status):
                outcomes[name] = Outcome(name, True, (
                    "already running" if running_before.get(name) == status.pid else "started")
                    + f" (pid {status.pid})")
            elif status.state in _FAILED:
                outcomes[name] = _failed(suite, name, f"{state_name(status.state)}: "
                                                      f"{status.reason}")
            elif time.monotonic() >= deadline:
                outcomes[name] = _failed(suite, name, f"not healthy within {timeout_s:g}s "
                                         f"(state {state_name(status.state)}, health "
                                         f"{status.health or 'none yet'}): {status.reason}")
        time.sleep(0 if len(outcomes) == len(names) else POLL_INTERVAL_S)
    return [outcomes[name] for name in names]


def stop(suite: SuiteConfig, names: list[str], timeout_s: float) -> list[Outcome]:
    """Stop ``names`` through the watchdog (they stay stopped until started), or with no
    names every daemon and then the watchdog itself; waits for the processes to exit."""
    try:
        with watchdog(suite, timeout_s) as client:
            before = {status.name: status for status in client.daemons()}
            if names:
                after = {status.name: status for status in client.stop_daemons(names, timeout_s)}
                return [_stopped(name, before[name], after[name]) for name in names]
            pid = client.stop()
    except ControlError:
        return [Outcome(WATCHDOG, True, "not running")]
    outcomes = [_stopped(name, status, None) for name, status in before.items()]
    if _exited(pid, time.monotonic() + timeout_s):
        return [*outcomes, Outcome(WATCHDOG, True, f"stopped (pid {pid})")]
    return [*outcomes, Outcome(WATCHDOG, False, f"asked to stop but pid {pid} still runs after "
                                                f"{timeout_s:g}s")]


def _stopped(name: str, before: watchdog_pb2.DaemonStatus,
             after: watchdog_pb2.DaemonStatus | None) -> Outcome:
    if not before.pid:
        return Outcome(name, True, "not running")
    if after is not None and after.pid:
        return Outcome(name, False, f"still {state_name(after.state)} (pid {after.pid})")
    return Outcome(name, True, f"stopped (pid {before.pid})")


def _exited(pid: int, deadline: float) -> bool:
    """Wait until ``pid`` exits or the monotonic ``deadline``. A zombie has exited: a
    detached process's new parent (or a container's init) may reap it late."""
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
    """The last ``lines`` lines of the log at ``path``, read from its end (none if it does
    not exist)."""
    try:
        with path.open("rb") as file:
            complete, partial = last_lines(file, lines)
    except FileNotFoundError:
        return []
    return [line.decode("utf-8", "replace") for line in ([*complete, partial] if partial
                                                         else complete)]


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
