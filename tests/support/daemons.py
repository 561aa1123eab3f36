"""Real daemon processes for the tests: start one on a config file, talk to it over its real
Unix socket, wait for what it does."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

from hft.ctl.client import ControlError, DaemonClient
from hft.daemons.runtime.config import WATCHDOG, SuiteConfig, load_config

T = TypeVar("T")
START_TIMEOUT_S = 20.0


def wait_for(probe: Callable[[], T], what: str, timeout: float = 10.0) -> T:
    """Poll ``probe`` until it returns something truthy; fail naming ``what`` at the deadline."""
    deadline = time.monotonic() + timeout
    while True:
        value = probe()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout}s waiting for {what}")
        time.sleep(0.02)


def write_config(directory: Path, body: str, home: Path | None = None) -> Path:
    """A suite config in ``directory`` with ``paths.home`` set (default ``directory/home``)."""
    home = home or directory / "home"
    path = directory / "hft.toml"
    path.write_text(f'[paths]\nhome = "{home}"\n\n{body}')
    return path


@dataclass
class Daemon:
    """A daemon process started by a test."""

    name: str
    process: subprocess.Popen[bytes]
    suite: SuiteConfig
    stderr_path: Path

    @property
    def socket_path(self) -> Path:
        return self.suite.socket_path(self.name)

    def client(self, timeout_s: float = 10.0) -> DaemonClient:
        return DaemonClient(self.socket_path, timeout_s=timeout_s)

    def logs(self) -> list[dict[str, Any]]:
        """The daemon's JSON log lines so far."""
        lines = self.stderr_path.read_text().splitlines()
        return [json.loads(line) for line in lines if line.startswith("{")]

    def stop(self) -> int:
        """SIGTERM and wait; returns the exit status (killed after a deadline)."""
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        return self.process.returncode


def spawn_daemon(name: str, config_path: Path, stderr_path: Path | None = None) -> Daemon:
    """Start ``python -m hft.daemons NAME --config FILE``, without waiting; for the name
    ``watchdog``, ``python -m hft.watchdog --config FILE --no-autostart`` (it starts
    nothing, and only looks at daemons it did not start)."""
    suite = load_config(config_path)
    stderr_path = stderr_path or config_path.parent / f"{name}.stderr"
    command = ([sys.executable, "-m", "hft.watchdog", "--no-autostart"] if name == WATCHDOG
               else [sys.executable, "-m", "hft.daemons", name])
    with stderr_path.open("wb") as stderr:
        process = subprocess.Popen([*command, "--config", str(config_path)],
                                   stdin=subprocess.DEVNULL, stdout=stderr, stderr=stderr)
    return Daemon(name, process, suite, stderr_path)


def wait_serving(daemon: Daemon) -> Daemon:
    """``daemon`` once its health is SERVING (fails if it dies or takes too long)."""
    wait_for(lambda: serving(daemon), f"{daemon.name} to be SERVING", START_TIMEOUT_S)
    return daemon


@contextmanager
def running_daemon(name: str, config_path: Path) -> Iterator[Daemon]:
    """A daemon started and SERVING for the block, stopped after it."""
    daemon = spawn_daemon(name, config_path)
    try:
        yield wait_serving(daemon)
    finally:
        daemon.stop()


def serving(daemon: Daemon) -> bool:
    """True once the daemon's health is SERVING; fails at once if the process died."""
    if daemon.process.poll() is not None:
        raise AssertionError(f"{daemon.name} exited with {daemon.process.returncode}:\n"
                             f"{daemon.stderr_path.read_text()}")
    try:
        with daemon.client(timeout_s=1.0) as client:
            return client.health() == "SERVING"
    except ControlError:
        return False
