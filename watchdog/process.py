"""The supervised daemons' processes: spawn one, recognise one this watchdog started, signal
its process group, notice its exit at once.

Each daemon runs ``python -m hft.daemons NAME --config FILE`` in its own session (so its
process group id is its pid and a signal to the group reaches whatever it spawned), stdin
closed, stdout and stderr appended to ``<home>/log/NAME.log`` (0600). A process is known by
its pid *and* its create time, so a recycled pid is never mistaken for it. Its exit is seen
through a pidfd (readable the moment it exits, our child or not), which the supervisor waits
on with its wake-up pipe.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import select
import signal
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import psutil

from hft.daemons.runtime.config import SuiteConfig

DAEMON_MODULE = "hft.daemons"
CREATE_TIME_TOLERANCE_S = 0.01
"""psutil's create time is derived from clock ticks; the same process reads the same value,
but round-tripping it through JSON may lose the last digits."""


def daemon_command(suite: SuiteConfig, name: str) -> list[str]:
    command = [sys.executable, "-m", DAEMON_MODULE, name]
    if suite.source is not None:
        command += ["--config", str(suite.source)]
    return command


@dataclass
class DaemonProcess:
    """One running daemon process: ours (``child`` set) or adopted from an earlier watchdog."""

    name: str
    pid: int
    create_time: float
    pidfd: int
    psutil: psutil.Process
    child: subprocess.Popen[bytes] | None = None

    def exited(self) -> bool:
        """Whether it has exited (its pidfd is readable); never reaps it, so its pid and
        process group id stay ours until :meth:`close`."""
        return bool(select.select([self.pidfd], [], [], 0)[0])

    def exit_status(self) -> str:
        """How it ended, for the reason shown in status and alerts (reaps our child)."""
        code = None if self.child is None else self.child.poll()
        if code is None:
            return "exited (status unknown: not this watchdog's child)"
        if code < 0:
            return f"killed by {signal.Signals(-code).name}"
        return f"exited with status {code}"

    def signal_group(self, signum: signal.Signals) -> None:
        """Send ``signum`` to its process group (the daemon and anything it spawned). The
        supervisor does so only until it has seen the exit, and reaps its child only after
        that, so the group id cannot belong to anyone else."""
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.pid, signum)

    def kill_leftovers(self) -> None:
        """SIGKILL what is left of its process group once the daemon itself has exited (call
        before :meth:`exit_status` reaps it): members that started after it did."""
        for process in psutil.process_iter(["pid"]):
            with contextlib.suppress(psutil.Error, ProcessLookupError):
                if (process.pid != self.pid and os.getpgid(process.pid) == self.pid
                        and process.create_time() >= self.create_time):
                    process.kill()

    def close(self) -> None:
        """Reap it (our child) and release the pidfd."""
        if self.child is not None:
            self.child.poll()
        os.close(self.pidfd)


def spawn(suite: SuiteConfig, name: str) -> DaemonProcess:
    """Start ``name`` detached in its own session, output appended to its log file."""
    log_path = suite.output_log_path(name)
    log_path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    log_fd = os.open(log_path, os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_CLOEXEC, 0o600)
    try:
        child = subprocess.Popen(daemon_command(suite, name), stdin=subprocess.DEVNULL,
                                 stdout=log_fd, stderr=subprocess.STDOUT, start_new_session=True)
    finally:
        os.close(log_fd)
    process = psutil.Process(child.pid)
    return DaemonProcess(name, child.pid, process.create_time(), os.pidfd_open(child.pid),
                         process, child)


def adopt(name: str, pid: int, create_time: float) -> DaemonProcess | None:
    """The daemon an earlier watchdog started as ``pid`` at ``create_time``, if that very
    process still runs ``hft.daemons NAME`` as its own group leader; else None."""
    try:
        process = psutil.Process(pid)
        if (abs(process.create_time() - create_time) > CREATE_TIME_TOLERANCE_S
                or process.cmdline()[1:4] != ["-m", DAEMON_MODULE, name]
                or os.getpgid(pid) != pid or process.status() == psutil.STATUS_ZOMBIE):
            return None
        pidfd = os.pidfd_open(pid)
    except (psutil.Error, ProcessLookupError, PermissionError):
        return None
    return DaemonProcess(name, pid, process.create_time(), pidfd, process)


def socket_holder(socket_path: Path) -> int | None:
    """The pid of a process holding the daemon's socket lock (``<socket>.lock``, which every
    hft daemon takes before it serves), None when nobody does."""
    lock_path = socket_path.with_name(socket_path.name + ".lock")
    try:
        fd = os.open(lock_path, os.O_RDONLY | os.O_CLOEXEC)
    except FileNotFoundError:
        return None
    try:
        fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
    except BlockingIOError:
        text = os.pread(fd, 32, 0).decode(errors="replace").strip()
        return int(text) if text.isdigit() else -1
    else:
        fcntl.flock(fd, fcntl.LOCK_UN)
        return None
    finally:
        os.close(fd)
