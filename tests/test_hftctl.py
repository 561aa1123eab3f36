"""hftctl end to end: real daemons started in the background, HFT_HOME in a temp dir."""

from __future__ import annotations

import json
import socket
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import psutil
import pytest
from click.testing import CliRunner, Result
from support.daemons import wait_for
from support.watchdog import kill_all

from hft.ctl import launcher
from hft.ctl.cli import main
from hft.daemons.runtime.config import DAEMON_NAMES, load_config
from hft.daemons.runtime.heartbeat import DaemonState, read_heartbeat

TWO_DAEMONS = """
[daemons.hft_md]
metrics_port = 0
[daemons.engine]
metrics_port = 0
[daemons.risk]
enabled = false
[daemons.monitor]
enabled = false
[watchdog]
metrics_port = 0
check_interval_s = 0.1
backoff_initial_s = 0.1
"""

TICKER = """
from hft.daemons.runtime.plugins import Plugin

class Ticker(Plugin):
    def start(self):
        self.ctx.call_every(0.5, lambda: None)
"""


@pytest.fixture
def config(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    """A two-daemon suite config with HFT_HOME in tmp_path; stops whatever a test started."""
    monkeypatch.setenv("HFT_HOME", str(tmp_path / "home"))
    path = tmp_path / "suite.toml"
    path.write_text(TWO_DAEMONS)
    yield path
    launcher.stop(load_config(path), [], timeout_s=20)
    kill_all(path)


def hftctl(*args: str) -> Result:
    return CliRunner().invoke(main, list(args))


def status_rows(config: Path, exit_code: int = 0) -> dict[str, dict[str, object]]:
    result = hftctl("status", "--json", "--config", str(config))
    assert result.exit_code == exit_code, result.output
    return {row["daemon"]: row for row in map(json.loads, result.output.splitlines())}


def exited(pid: int) -> bool:
    try:
        return psutil.Process(pid).status() == psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return True


def test_status_when_nothing_runs(config: Path) -> None:
    result = hftctl("status", "--json", "--config", str(config))
    assert result.exit_code == 4
    assert result.output.startswith("Error: the watchdog is not running (nothing answers on ")


def test_start_status_plugins_stop(config: Path, tmp_path: Path) -> None:
    started = hftctl("start", "--config", str(config))
    assert started.exit_code == 0, started.output
    assert [line.split(":")[0] for line in started.output.splitlines()] == [
        "watchdog", "hft_md", "engine"]
    rows = status_rows(config)
    assert list(rows) == ["watchdog", *DAEMON_NAMES]
    assert rows["hft_md"]["state"] == rows["engine"]["state"] == "running"
    assert rows["risk"]["state"] == "stopped" and not rows["risk"]["enabled"]
    pids = {name: rows[name]["pid"] for name in ("watchdog", "hft_md", "engine")}
    assert all(isinstance(pid, int) and psutil.pid_exists(pid) for pid in pids.values())
    home = tmp_path / "home"
    assert (home / "log" / "engine.log").is_file()
    assert (home / "run" / "engine.sock").is_socket()

    again = hftctl("start", "--config", str(config), "engine")
    assert again.exit_code == 0
    assert again.output.strip() == f"engine: already running (pid {pids['engine']})"

    (tmp_path / "ticker.py").write_text(TICKER)
    loaded = hftctl("plugins", "load", "--config", str(config), "engine", "tick",
                    str(tmp_path / "ticker.py"), "--plugin-config", '{"password": "hunter2"}')
    assert loaded.exit_code == 0, loaded.output
    assert loaded.output.strip() == "engine: plugin tick running"
    listed = hftctl("plugins", "list", "--json", "--config", str(config), "engine")
    assert [json.loads(line) for line in listed.output.splitlines()] == [
        {"name": "tick", "spec": str(tmp_path / "ticker.py"), "state": "running", "error": ""}]
    assert hftctl("plugins", "reload", "--config", str(config), "engine", "tick").exit_code == 0
    assert hftctl("plugins", "unload", "--config", str(config), "engine", "tick").exit_code == 0
    log_text = (home / "log" / "engine.log").read_text()
    assert '"plugin": "tick"' in log_text and "hunter2" not in log_text

    stopped = hftctl("stop", "--config", str(config))
    assert stopped.exit_code == 0, stopped.output
    assert stopped.output.splitlines() == [
        f"hft_md: stopped (pid {pids['hft_md']})", f"engine: stopped (pid {pids['engine']})",
        "risk: not running", "monitor: not running", f"watchdog: stopped (pid {pids['watchdog']})"]
    assert all(exited(pid) for pid in pids.values())
    assert hftctl("status", "--config", str(config)).exit_code == 4
    assert read_heartbeat(home / "run" / "engine.hb").state is DaemonState.STOPPED


def test_a_daemon_that_cannot_start_is_reported_with_its_log(config: Path) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        config.write_text(TWO_DAEMONS.replace("[daemons.engine]\nmetrics_port = 0",
                                              f"[daemons.engine]\nmetrics_port = {port}"))
        result = hftctl("start", "--config", str(config))
    assert result.exit_code == 1
    assert "hft_md: started" in result.output
    assert "engine: failed to start: backoff: exited with status 1 while starting" in result.output
    assert f"cannot serve /metrics on 127.0.0.1:{port}" in result.output


def test_a_plugin_that_fails_exits_nonzero_with_its_error(config: Path, tmp_path: Path) -> None:
    assert hftctl("start", "--config", str(config), "engine").exit_code == 0
    broken = tmp_path / "broken.py"
    broken.write_text("raise ImportError('no CTP library')\n")
    result = hftctl("plugins", "load", "--config", str(config), "engine", "ctp", str(broken))
    assert result.exit_code == 1
    assert "engine: plugin ctp failed: load failed: ImportError: no CTP library" in result.output
    bad_json = hftctl("plugins", "load", "--config", str(config), "engine", "x", str(broken),
                      "--plugin-config", "[1]")
    assert bad_json.exit_code == 2 and "must be a JSON object" in bad_json.output


def test_commands_against_a_daemon_that_is_not_running(config: Path) -> None:
    result = hftctl("plugins", "list", "--config", str(config), "engine")
    assert result.exit_code == 1 and "engine: UNAVAILABLE" in result.output
    disabled = hftctl("start", "--config", str(config), "risk")
    assert disabled.exit_code == 2 and "risk disabled" in disabled.output
    bad_config = config.parent / "bad.toml"
    bad_config.write_text("[daemons.engine]\nmetrics_port = -1\n")
    invalid = hftctl("status", "--config", str(bad_config))
    assert invalid.exit_code == 1 and "daemons.engine.metrics_port" in invalid.output


def test_events_and_help() -> None:
    events = hftctl("events")
    assert events.exit_code == 0, events.output
    assert "### MARKET_DATA" in events.output and "| last_price | <f8 |" in events.output
    console_script = Path(sys.executable).parent / "hftctl"
    top = subprocess.run([str(console_script), "--help"], capture_output=True, text=True,
                         timeout=30)
    assert top.returncode == 0
    for command in ("start", "stop", "restart", "status", "plugins", "events", "gen-protos",
                    "bench"):
        assert command in top.stdout
    assert "--plugin-config" in hftctl("plugins", "load", "--help").output


def test_bench_rejects_unknown_benchmarks() -> None:
    result = hftctl("bench", "no_such_benchmark")
    assert result.exit_code == 2 and "no_such_benchmark" in result.output


@pytest.mark.parametrize("peer", ["vnpy", "talib"])
def test_bench_without_its_peers_says_what_to_install(peer: str) -> None:
    """A runtime-only install (no bench extra): one line naming the missing peer, exit 1."""
    blocked = (f"import sys; sys.modules[{peer!r}] = None\n"  # what a missing package raises
               "from hft.ctl.cli import main\nmain(['bench', 'bus'], prog_name='hftctl')")
    done = subprocess.run([sys.executable, "-c", blocked], capture_output=True, text=True,
                          timeout=120)
    assert done.returncode == 1 and done.stdout == ""
    assert done.stderr.splitlines() == [
        f"Error: hftctl bench needs the benchmark peers ({peer} is not installed): run bash "
        "ops/setup.sh, or pip install 'hft[bench]' and pip install --no-deps vnpy==4.5.0"]


def test_stop_waits_for_the_process(config: Path) -> None:
    assert hftctl("start", "--config", str(config), "hft_md").exit_code == 0
    pid = status_rows(config, exit_code=3)["hft_md"]["pid"]  # engine is not running
    assert isinstance(pid, int)
    assert hftctl("stop", "--config", str(config), "hft_md").exit_code == 0
    wait_for(lambda: exited(pid), "hft_md to exit", timeout=0.5)
    assert status_rows(config, exit_code=3)["hft_md"]["state"] == "stopped"


def test_restart_replaces_the_process(config: Path) -> None:
    assert hftctl("start", "--config", str(config), "hft_md").exit_code == 0
    pid = status_rows(config, exit_code=3)["hft_md"]["pid"]
    restarted = hftctl("restart", "--config", str(config), "hft_md")
    assert restarted.exit_code == 0, restarted.output
    row = status_rows(config, exit_code=3)["hft_md"]
    assert restarted.output.strip() == f"hft_md: started (pid {row['pid']})"
    assert row["pid"] != pid and row["restarts"] == 1 and exited(pid)
