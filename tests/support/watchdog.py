"""A supervised suite for the tests: a config with short intervals, hftctl run as a real
process, a local HTTP server standing in for a generic webhook, and a scan for every process
that belongs to a test's home."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import psutil

from hft.ctl.client import WatchdogClient
from hft.daemons.runtime.config import WATCHDOG, load_config
from hft.protos import watchdog_pb2

FAST_WATCHDOG = """
[watchdog]
metrics_port = 0
check_interval_s = 0.1
health_timeout_s = 1.0
heartbeat_timeout_s = 1.5
unhealthy_after = 2
start_timeout_s = 20.0
kill_timeout_s = 3.0
stop_timeout_s = 10.0
backoff_initial_s = 0.1
backoff_max_s = 1.0
start_limit_burst = 3
start_limit_interval_s = 60.0
"""
"""Checks every 0.1 s, a restart 0.1 s after a failure, FATAL after 3 failures."""


def daemon_table(name: str, enabled: bool = True, extra: str = "") -> str:
    if not enabled:
        return f"[daemons.{name}]\nenabled = false\n"
    return (f"[daemons.{name}]\nmetrics_port = 0\nheartbeat_interval_s = 0.1\n"
            f"stop_timeout_s = 1.0\n{extra}")


def suite_config(directory: Path, tables: str, watchdog: str = FAST_WATCHDOG) -> Path:
    """A config in ``directory`` (home ``directory/home``) with these daemon tables."""
    path = directory / "suite.toml"
    path.write_text(f'[paths]\nhome = "{directory / "home"}"\n\n{tables}\n{watchdog}')
    return path


def hftctl(config: Path, *args: str) -> subprocess.CompletedProcess[str]:
    """The real command line: ``python -m hft.ctl ARGS --config FILE``."""
    return subprocess.run([sys.executable, "-m", "hft.ctl", *args, "--config", str(config)],
                          capture_output=True, text=True, timeout=120, check=False)


def watchdog_client(config: Path, timeout_s: float = 5.0) -> WatchdogClient:
    return WatchdogClient(load_config(config).socket_path(WATCHDOG), timeout_s=timeout_s)


def daemon_status(config: Path) -> dict[str, watchdog_pb2.DaemonStatus]:
    with watchdog_client(config) as client:
        return {status.name: status for status in client.daemons()}


def state(status: watchdog_pb2.DaemonStatus) -> str:
    return watchdog_pb2.SupervisedState.Name(status.state).removeprefix(
        "SUPERVISED_STATE_").lower()


def processes_of(config: Path) -> list[psutil.Process]:
    """Every live process started with this config (the watchdog and its daemons)."""
    found = []
    for process in psutil.process_iter(["cmdline", "status"]):
        if str(config) in (process.info["cmdline"] or ()) \
                and process.info["status"] != psutil.STATUS_ZOMBIE and process.pid != os.getpid():
            found.append(process)
    return found


def kill_all(config: Path) -> None:
    """Leave nothing behind, whatever a failed test left running."""
    for process in processes_of(config):
        try:
            os.killpg(process.pid, signal.SIGKILL)
        except (ProcessLookupError, PermissionError):
            process.kill()


class Webhook:
    """A generic webhook on 127.0.0.1: every JSON body POSTed to it, in arrival order."""

    def __init__(self) -> None:
        self.alerts: list[dict[str, Any]] = []
        received = self.alerts

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers["Content-Length"]))
                received.append(json.loads(body))
                self.send_response(200)
                self.end_headers()

            def log_message(self, *args: object) -> None:
                pass

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self._server.server_address[1]}/hook"
        threading.Thread(target=self._server.serve_forever, daemon=True).start()

    def kinds(self, daemon: str | None = None) -> list[str]:
        return [alert["kind"] for alert in list(self.alerts)
                if daemon is None or alert["daemon"] == daemon]

    def toml(self) -> str:
        return f'[[watchdog.webhooks]]\nkind = "generic"\nurl = "{self.url}"\nmin_level = "info"\n'

    def close(self) -> None:
        self._server.shutdown()
        self._server.server_close()


@contextmanager
def webhook() -> Iterator[Webhook]:
    hook = Webhook()
    try:
        yield hook
    finally:
        hook.close()
