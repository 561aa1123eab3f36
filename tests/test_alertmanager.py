"""The watchdog's alerts reach a real Alertmanager (Debian's prometheus-alertmanager, installed
by the set-up): a daemon killed under the watchdog shows up in Alertmanager's own API as
HftCrash for that daemon, with its severity, and the restart that follows as HftRestart."""

from __future__ import annotations

import json
import os
import signal
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from support.daemons import wait_for
from support.servers import ServerProcess
from support.watchdog import FAST_WATCHDOG, daemon_status, daemon_table, hftctl, kill_all, suite_config

ALERTMANAGER_CONFIG = """
route:
  receiver: hold
receivers:
  - name: hold
"""
"""Alertmanager keeps what it receives and sends it nowhere: the test reads its API."""


class Alertmanager(ServerProcess):
    """An Alertmanager process on a free port, clustering off, its data in a temp directory."""

    def __init__(self, directory: Path) -> None:
        config = directory / "alertmanager.yml"
        config.write_text(ALERTMANAGER_CONFIG)
        super().__init__("alertmanager", directory, lambda port: [
            "prometheus-alertmanager", f"--config.file={config}",
            f"--storage.path={directory / 'alertmanager-data'}",
            f"--web.listen-address=127.0.0.1:{port}", "--cluster.listen-address="])
        self.url = f"http://127.0.0.1:{self.port}"
        wait_for(self.ready, "alertmanager to be ready", 30)

    def ready(self) -> bool:
        self.check_running()
        try:
            with urllib.request.urlopen(f"{self.url}/-/ready", timeout=2) as response:
                return bool(response.status == 200)
        except OSError:
            return False

    def alerts(self) -> list[dict[str, Any]]:
        with urllib.request.urlopen(f"{self.url}/api/v2/alerts", timeout=5) as response:
            return list(json.loads(response.read()))


@pytest.fixture
def alertmanager(tmp_path: Path) -> Iterator[Alertmanager]:
    server = Alertmanager(tmp_path)
    yield server
    server.stop()


def test_a_killed_daemon_reaches_a_real_alertmanager(tmp_path: Path,
                                                     alertmanager: Alertmanager) -> None:
    webhook = f'[[watchdog.webhooks]]\nkind = "alertmanager"\nurl = "{alertmanager.url}"\n'
    tables = (daemon_table("hft_md") + daemon_table("engine", enabled=False)
              + daemon_table("risk", enabled=False) + daemon_table("monitor", enabled=False))
    config = suite_config(tmp_path, tables, FAST_WATCHDOG + webhook)
    try:
        started = hftctl(config, "start")
        assert started.returncode == 0, started.stdout + started.stderr
        pid = daemon_status(config)["hft_md"].pid
        os.kill(pid, signal.SIGKILL)

        def received() -> dict[str, dict[str, Any]]:
            names = {alert["labels"]["alertname"]: alert for alert in alertmanager.alerts()}
            return names if {"HftCrash", "HftRestart"} <= set(names) else {}

        alerts = wait_for(received, "HftCrash and HftRestart in alertmanager", 30)
        crash = alerts["HftCrash"]
        assert crash["labels"]["daemon"] == "hft_md"
        assert crash["labels"]["severity"] == "critical"
        assert crash["status"]["state"] == "active"
        assert "SIGKILL" in crash["annotations"]["summary"]
        assert alerts["HftRestart"]["labels"]["severity"] == "warning"
    finally:
        hftctl(config, "stop")
        kill_all(config)
