"""The built-in suite (daemons/default.toml, what ``bash ops/start.sh`` runs) trades: the sim
feed's ticks reach both accounts' strategy containers, their orders pass the order desk and
fill on the simulated exchange, and positions come back."""

from __future__ import annotations

import json
import re
import subprocess
import sys
from collections.abc import Iterator
from importlib import resources
from pathlib import Path
from typing import Any

import pytest
from support.daemons import wait_for
from support.watchdog import kill_all, processes_of

from hft.ctl import launcher
from hft.daemons.runtime.config import load_config


@pytest.fixture
def suite(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    """The built-in config as shipped, its /metrics on free ports, HFT_HOME in tmp_path."""
    monkeypatch.setenv("HFT_HOME", str(tmp_path / "home"))
    shipped = resources.files("hft.daemons").joinpath("default.toml").read_text("utf-8")
    path = tmp_path / "default.toml"
    path.write_text(re.sub(r"metrics_port = \d+", "metrics_port = 0", shipped))
    yield path
    launcher.stop(load_config(path), [], timeout_s=30)
    kill_all(path)


def hftctl(config: Path, *args: str) -> list[dict[str, Any]]:
    done = subprocess.run([sys.executable, "-m", "hft.ctl", *args, "--config", str(config)],
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    return [json.loads(line) for line in done.stdout.splitlines() if line.startswith("{")]


def test_the_built_in_suite_trades_both_simulated_accounts(suite: Path) -> None:
    started = subprocess.run([sys.executable, "-m", "hft.ctl", "start", "--config", str(suite)],
                             capture_output=True, text=True, timeout=120)
    assert started.returncode == 0, started.stdout + started.stderr

    def filled_accounts() -> set[str]:
        return {row["account"] for row in hftctl(suite, "trades", "--json")}

    wait_for(lambda: filled_accounts() == {"sim-a", "sim-b"}, "fills in both accounts", 90)
    orders = hftctl(suite, "orders", "--json")
    assert {row["status"] for row in orders} & {"all_traded", "part_traded"}
    positions = hftctl(suite, "positions", "--json")
    assert {row["account"] for row in positions} == {"sim-a", "sim-b"}
    assert all(row["position"] >= 0 for row in positions)
    status = subprocess.run([sys.executable, "-m", "hft.ctl", "status", "--config", str(suite)],
                            capture_output=True, text=True, timeout=120)
    assert status.returncode == 0, status.stdout  # every daemon runs healthy
    stopped = subprocess.run([sys.executable, "-m", "hft.ctl", "stop", "--config", str(suite)],
                             capture_output=True, text=True, timeout=120)
    assert stopped.returncode == 0, stopped.stderr
    assert processes_of(suite) == []
