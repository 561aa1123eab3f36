"""Plugins that exit, fail on every event or never return, in real daemon processes: the
plugin fails, degrades or is named as stuck; the daemon serves on or stops within its bound."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from support.daemons import Daemon, running_daemon, spawn_daemon, wait_for, write_config
from test_daemon import sample, scrape

from hft.ctl.client import ControlError, PluginNotFound
from hft.daemons.runtime.host import EXIT_STOP_TIMED_OUT
from hft.protos import control_pb2

StartDaemon = Callable[[str, Path], Daemon]

PLUGIN = "from hft.daemons.runtime.plugins import Plugin\nimport sys\n"
EXITS = {
    "import": ("raise SystemExit(7)\n", "load failed: SystemExit: 7"),
    "init": ("class P(Plugin):\n    def init(self, ctx):\n        raise KeyboardInterrupt\n",
             "init failed: KeyboardInterrupt"),
    "start": ("class P(Plugin):\n    def start(self):\n        sys.exit('bye')\n",
              "start failed: SystemExit: bye"),
}

# A handler, a poller, a timer and a command that each end in an exit.
EXITING_CALLBACKS = """
import sys
from hft.daemons.runtime.events import EventType, empty
from hft.daemons.runtime.plugins import Plugin

class Exiting(Plugin):
    def start(self):
        self.ctx.subscribe(EventType.ALERT, self.on_alert)
        self.ctx.add_poller(self.poll)
        self.ctx.call_every(0.01, self.tick)
        self.ctx.bus.publish(EventType.ALERT, empty(EventType.ALERT)[0])

    def on_alert(self, record):
        raise KeyboardInterrupt

    def poll(self):
        sys.exit(1)

    def tick(self):
        raise KeyboardInterrupt

    def command(self, name, args):
        sys.exit("command exit")
"""

# Publishes an ALERT every 10 ms to its own handler, which raises while config["fail"] exists.
FLAKY_HANDLER = """
from pathlib import Path
from hft.daemons.runtime.events import EventType, empty
from hft.daemons.runtime.plugins import Plugin

class Flaky(Plugin):
    def start(self):
        self.record = empty(EventType.ALERT)[0]
        self.ctx.subscribe(EventType.ALERT, self.on_alert)
        self.ctx.call_every(0.01, lambda: self.ctx.bus.publish(EventType.ALERT, self.record))

    def on_alert(self, record):
        if Path(self.ctx.config["fail"]).exists():
            raise RuntimeError("still broken")
"""

# Touches config["entered"], then never returns from its timer callback.
STUCK = """
from pathlib import Path
from hft.daemons.runtime.plugins import Plugin

class Stuck(Plugin):
    def start(self):
        self.ctx.call_every(0.01, self.spin)

    def spin(self):
        Path(self.ctx.config["entered"]).touch()
        while True:
            pass
"""


@pytest.fixture(scope="module")
def engine(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Daemon]:
    directory = tmp_path_factory.mktemp("faults")
    config = write_config(directory, "[daemons.engine]\nmetrics_port = 0\nfailing_after = 3\n")
    with running_daemon("engine", config) as daemon:
        yield daemon


@pytest.mark.parametrize("step", sorted(EXITS))
def test_an_exit_in_a_plugin_fails_the_plugin_not_the_daemon(engine: Daemon, tmp_path: Path,
                                                             step: str) -> None:
    code, reason = EXITS[step]
    path = tmp_path / f"exit_{step}.py"
    path.write_text(PLUGIN + code)
    with engine.client() as client:
        info = client.load_plugin(f"exit_{step}", str(path))
        assert (info.state, info.error) == (control_pb2.PLUGIN_STATE_FAILED, reason)
        assert client.health() == "SERVING"
        client.unload_plugin(f"exit_{step}")
    assert engine.process.poll() is None


def test_exits_in_handlers_pollers_timers_and_commands_are_isolated(engine: Daemon,
                                                                     tmp_path: Path) -> None:
    (tmp_path / "exiting.py").write_text(EXITING_CALLBACKS)
    with engine.client() as client:
        assert client.load_plugin("exiting", str(tmp_path / "exiting.py")).error == ""
        with pytest.raises(ControlError) as refused:
            client.plugin_command("exiting", "anything")
        assert (refused.value.code, refused.value.details) == (
            "INTERNAL", "exiting anything raised SystemExit: command exit")
        port = client.status().metrics_port

        def errors() -> dict[str, float]:
            return {dict(labels).get("kind", "handler"): value
                    for (name, labels), value in scrape(port).items()
                    if name in ("hft_loop_callback_errors_total", "hft_bus_handler_errors_total")
                    and "Exiting" in dict(labels).get("callback", dict(labels).get("handler", ""))}

        counted = wait_for(lambda: (e := errors()) and len(e) == 3 and e, "all three counted")
        assert set(counted) == {"handler", "poller", "timer"}
        assert client.health() == "SERVING"
        client.unload_plugin("exiting")
    assert engine.process.poll() is None


def test_a_plugin_failing_on_every_event_is_degraded_until_it_succeeds(
        engine: Daemon, tmp_path: Path) -> None:
    (tmp_path / "flaky.py").write_text(FLAKY_HANDLER)
    fail = tmp_path / "fail"
    fail.touch()

    def state() -> int:
        with engine.client() as client:
            return next(p.state for p in client.status().plugins if p.name == "flaky")

    with engine.client() as client:
        client.load_plugin("flaky", str(tmp_path / "flaky.py"), {"fail": str(fail)})
        port = client.status().metrics_port
    wait_for(lambda: state() == control_pb2.PLUGIN_STATE_DEGRADED, "flaky to be degraded")
    # a scrape reads the bus from another thread: while an ALERT is being dispatched (the
    # plugin publishes one every 10 ms) the count of its events is one ahead of the failures
    wait_for(lambda: sample(scrape(port), "hft_plugin_state", plugin="flaky",
                            state="degraded") == 1, "/metrics to show flaky degraded")
    listed = subprocess.run([sys.executable, "-m", "hft.ctl", "plugins", "list", "--json",
                             "--config", str(engine.suite.source), "engine"],
                            capture_output=True, text=True, timeout=30, check=True)
    rows = {row["name"]: row for row in map(json.loads, listed.stdout.splitlines())}
    assert rows["flaky"]["state"] == "degraded"
    fail.unlink()
    wait_for(lambda: state() == control_pb2.PLUGIN_STATE_RUNNING, "flaky to recover")
    samples = scrape(port)
    assert sample(samples, "hft_plugin_state", plugin="flaky", state="degraded") == 0
    assert sample(samples, "hft_plugin_state", plugin="flaky", state="running") == 1
    with engine.client() as client:
        client.unload_plugin("flaky")


def test_unknown_plugins_are_their_own_error_type(engine: Daemon) -> None:
    with engine.client() as client, pytest.raises(PluginNotFound) as caught:
        client.unload_plugin("never_loaded")
    assert caught.value.code == "NOT_FOUND"


@pytest.mark.parametrize("how", ["SIGTERM", "Control.Stop"])
def test_a_stuck_plugin_cannot_hold_the_stop(tmp_path: Path, how: str) -> None:
    (tmp_path / "stuck.py").write_text(STUCK)
    entered = tmp_path / "entered"
    daemon = spawn_daemon("monitor", write_config(tmp_path, f"""
[daemons.monitor]
metrics_port = 0
stop_timeout_s = 1.0
[daemons.monitor.plugins.stuck]
spec = "{tmp_path / 'stuck.py'}"
config = {{ entered = "{entered}" }}
"""))
    try:
        wait_for(entered.exists, "the plugin to get stuck", 20)
        if how == "SIGTERM":
            daemon.process.send_signal(signal.SIGTERM)
        else:
            with daemon.client() as client:
                assert client.stop() == daemon.process.pid
        assert daemon.process.wait(timeout=20) == EXIT_STOP_TIMED_OUT
    finally:
        daemon.process.kill()
        daemon.process.wait()
    [timed_out] = [line for line in daemon.logs() if line["message"].startswith("stop timed out")]
    assert timed_out["stuck_in"].startswith(f"plugin 'stuck' at {tmp_path / 'stuck.py'}:")
    assert timed_out["stuck_in"].endswith(" in spin")
