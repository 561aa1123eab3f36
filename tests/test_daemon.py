"""Real daemon processes over their real Unix sockets: control plane, metrics, heartbeat,
plugins at run time, failure isolation and graceful shutdown."""

from __future__ import annotations

import signal
import socket
import stat
import subprocess
import sys
import time
import urllib.request
from collections.abc import Callable, Iterator
from pathlib import Path

import grpc
import psutil
import pytest
from grpc_reflection.v1alpha.proto_reflection_descriptor_database import (
    ProtoReflectionDescriptorDatabase,
)
from prometheus_client.parser import text_string_to_metric_families
from support.daemons import Daemon, running_daemon, serving, spawn_daemon, wait_for, write_config

import hft
from hft.ctl.client import ControlError
from hft.daemons.runtime.heartbeat import DaemonState, read_heartbeat
from hft.daemons.runtime.waitmode import IdleStep, WaitMode, idle_step
from hft.protos import control_pb2, control_pb2_grpc

StartDaemon = Callable[[str, Path], Daemon]

PUBLISHER = """
from hft.daemons.runtime.events import EventType, empty
from hft.daemons.runtime.plugins import Plugin

class Publisher(Plugin):
    def start(self):
        record = empty(EventType.ALERT)[0]
        for _ in range(self.ctx.config["count"]):
            self.ctx.bus.publish(EventType.ALERT, record)
"""

# Writes "VERSION beats" to config["marker"] every 10 ms, and "stopped NAME" lines to
# config["stops"] when stopped.
TICKER = """
from pathlib import Path
from hft.daemons.runtime.plugins import Plugin

VERSION = {version!r}

class Ticker(Plugin):
    def start(self):
        self.beats = 0
        self.ctx.call_every(0.01, self.beat)

    def beat(self):
        self.beats += 1
        Path(self.ctx.config["marker"]).write_text(f"{{VERSION}} {{self.beats}}")

    def stop(self):
        if "stops" in self.ctx.config:
            with open(self.ctx.config["stops"], "a") as stops:
                stops.write(self.ctx.name + "\\n")
"""

BROKEN = {
    "import": "import module_that_does_not_exist\n",
    "init": "from hft.daemons.runtime.plugins import Plugin\n"
            "class P(Plugin):\n    def init(self, ctx):\n        raise RuntimeError('boom')\n",
    "start": "from hft.daemons.runtime.plugins import Plugin\n"
             "class P(Plugin):\n    def start(self):\n        raise RuntimeError('boom')\n",
}

RAISING_HANDLER = """
from hft.daemons.runtime.events import EventType, empty
from hft.daemons.runtime.plugins import Plugin

class Faulty(Plugin):
    def init(self, ctx):
        super().init(ctx)
        ctx.subscribe(EventType.BAR, self.on_bar)

    def start(self):
        record = empty(EventType.BAR)[0]
        for _ in range(4):
            self.ctx.bus.publish(EventType.BAR, record)

    def on_bar(self, record):
        raise ValueError("bad bar")
"""

FAULTY_LOOP_CALLBACKS = """
from hft.daemons.runtime.plugins import Plugin

class Flaky(Plugin):
    def start(self):
        self.ctx.add_poller(self.poll)
        self.ctx.call_every(0.01, self.tick)

    def poll(self):
        raise RuntimeError("poller bug")

    def tick(self):
        raise RuntimeError("timer bug")
"""

# Stops only once config["release"] exists (or after 10 s), to observe a daemon mid-shutdown.
SLOW_STOP = """
import time
from pathlib import Path
from hft.daemons.runtime.plugins import Plugin

class SlowStop(Plugin):
    def stop(self):
        release, deadline = Path(self.ctx.config["release"]), time.monotonic() + 10
        while not release.exists() and time.monotonic() < deadline:
            time.sleep(0.01)
"""

IDLE_POLLER = """
from hft.daemons.runtime.plugins import Plugin

class Idle(Plugin):
    def start(self):
        self.ctx.add_poller(lambda: 0)
"""


def ticker(path: Path, version: str) -> Path:
    path.write_text(TICKER.format(version=version))
    return path


def marker(path: Path) -> tuple[str, int] | None:
    try:
        version, beats = path.read_text().split()
    except (FileNotFoundError, ValueError):
        return None
    return version, int(beats)


def scrape(port: int) -> dict[tuple[str, frozenset[tuple[str, str]]], float]:
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as response:
        text = response.read().decode()
    return {(s.name, frozenset(s.labels.items())): s.value
            for family in text_string_to_metric_families(text) for s in family.samples}


def sample(samples: dict[tuple[str, frozenset[tuple[str, str]]], float], name: str,
           **labels: str) -> float:
    return samples[(name, frozenset(labels.items()))]


@pytest.fixture(scope="module")
def engine(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Daemon]:
    """One engine shared by the tests that only add uniquely named plugins to it."""
    directory = tmp_path_factory.mktemp("engine")
    (directory / "publisher.py").write_text(PUBLISHER)
    config = write_config(directory, f"""
[daemons.engine]
metrics_port = 0
heartbeat_interval_s = 0.05

[daemons.engine.plugins.publisher]
spec = "{directory / 'publisher.py'}"
config = {{ count = 3 }}
""")
    with running_daemon("engine", config) as daemon:
        yield daemon


def test_status_reports_the_daemon_and_its_config_plugins(engine: Daemon) -> None:
    with engine.client() as client:
        assert client.health() == "SERVING"
        status = client.status()
    assert (status.daemon, status.pid, status.version) == ("engine", engine.process.pid,
                                                           hft.__version__)
    assert status.state == control_pb2.DAEMON_STATE_RUNNING
    assert status.config_path == str(engine.suite.source)
    assert status.uptime_s > 0 and status.loop_iterations > 0
    assert status.metrics_port > 0
    publisher = next(p for p in status.plugins if p.name == "publisher")
    assert (publisher.state, publisher.error) == (control_pb2.PLUGIN_STATE_RUNNING, "")


def test_socket_is_private(engine: Daemon) -> None:
    mode = engine.socket_path.stat().st_mode
    assert stat.S_ISSOCK(mode) and stat.S_IMODE(mode) == 0o600
    assert stat.S_IMODE(engine.socket_path.parent.stat().st_mode) == 0o700


def test_health_reflection_lists_the_services(engine: Daemon) -> None:
    with grpc.insecure_channel(f"unix:{engine.socket_path}") as channel:
        services = set(ProtoReflectionDescriptorDatabase(channel).get_services())
    assert {"hft.control.v1.Control", "grpc.health.v1.Health"} <= services


def test_metrics_serve_bus_counters_on_localhost_only(engine: Daemon) -> None:
    with engine.client() as client:
        port = client.status().metrics_port
    samples = scrape(port)
    assert sample(samples, "hft_bus_events_published_total", type="ALERT") >= 3
    assert sample(samples, "hft_bus_events_published_total", type="MARKET_DATA") == 0
    assert sample(samples, "hft_plugin_state", plugin="publisher", state="running") == 1
    assert sample(samples, "hft_plugin_state", plugin="publisher", state="failed") == 0
    assert sample(samples, "hft_main_loop_iterations_total") > 0
    assert sample(samples, "hft_uptime_seconds") > 0
    assert 0 <= sample(samples, "hft_heartbeat_age_seconds") < 5
    listening = [c.laddr for c in psutil.Process(engine.process.pid).net_connections("inet")
                 if c.status == psutil.CONN_LISTEN]
    assert [(a.ip, a.port) for a in listening] == [("127.0.0.1", port)]


def test_metrics_carry_the_process_memory_cpu_and_descriptors(engine: Daemon) -> None:
    with engine.client() as client:
        samples = scrape(client.status().metrics_port)
    process = psutil.Process(engine.process.pid)
    assert sample(samples, "process_resident_memory_bytes") > 10e6
    assert sample(samples, "process_cpu_seconds_total") > 0
    assert 10 < sample(samples, "process_open_fds") < sample(samples, "process_max_fds")
    assert sample(samples, "process_start_time_seconds") == pytest.approx(process.create_time(),
                                                                          abs=1)


def test_home_and_the_directories_below_it_are_private(start_daemon: StartDaemon,
                                                       tmp_path: Path) -> None:
    home = tmp_path / "home"
    (home / "journal").mkdir(parents=True, mode=0o755)
    home.chmod(0o755)  # as an older version or a mkdir -p left them
    daemon = start_daemon("risk", write_config(tmp_path, "[daemons.risk]\nmetrics_port = 0\n"))
    suite = daemon.suite
    for directory in (suite.home, suite.run_dir, suite.journal_dir, suite.log_dir):
        assert stat.S_IMODE(directory.stat().st_mode) == 0o700, directory
    [tightened] = [line for line in daemon.logs() if line["message"].startswith("directories")]
    assert sorted(tightened["directories"]) == sorted([str(home), str(home / "journal")])


def test_handler_errors_are_counted_per_type_and_handler(engine: Daemon,
                                                         tmp_path: Path) -> None:
    (tmp_path / "faulty.py").write_text(RAISING_HANDLER)
    with engine.client() as client:
        info = client.load_plugin("faulty", str(tmp_path / "faulty.py"))
        assert info.state == control_pb2.PLUGIN_STATE_RUNNING
        samples = scrape(client.status().metrics_port)
        client.unload_plugin("faulty")
    handler = next(dict(labels)["handler"] for name, labels in samples
                   if name == "hft_bus_handler_errors_total")
    assert handler.endswith("Faulty.on_bar")
    assert sample(samples, "hft_bus_handler_errors_total", type="BAR", handler=handler) == 4


def test_raising_pollers_and_timers_are_counted_and_the_loop_goes_on(
        engine: Daemon, tmp_path: Path) -> None:
    (tmp_path / "flaky.py").write_text(FAULTY_LOOP_CALLBACKS)
    with engine.client() as client:
        client.load_plugin("flaky", str(tmp_path / "flaky.py"))
        port = client.status().metrics_port

        def errors() -> dict[str, float]:
            return {dict(labels)["kind"]: value for (name, labels), value in scrape(port).items()
                    if name == "hft_loop_callback_errors_total"
                    and dict(labels)["callback"].split(".")[-1] in ("poll", "tick")}

        counted = wait_for(lambda: (e := errors()) and e.get("timer", 0) >= 2 and e,
                           "timer errors to be counted")
        assert counted["poller"] >= counted["timer"]
        client.unload_plugin("flaky")
        assert client.health() == "SERVING"


def test_heartbeat_file_advances(engine: Daemon) -> None:
    path = engine.suite.heartbeat_path("engine")
    first = read_heartbeat(path)
    assert (first.pid, first.state) == (engine.process.pid, DaemonState.RUNNING)
    later = wait_for(lambda: (hb := read_heartbeat(path)).beat_ns > first.beat_ns and hb,
                     "a newer heartbeat")
    assert later.iterations > first.iterations
    assert later.start_ns == first.start_ns


def test_load_list_unload_via_grpc(engine: Daemon, tmp_path: Path) -> None:
    (tmp_path / "pub.py").write_text(PUBLISHER)
    with engine.client() as client:
        before = sample(scrape(client.status().metrics_port), "hft_bus_events_published_total",
                        type="ALERT")
        info = client.load_plugin("pub5", str(tmp_path / "pub.py"), {"count": 5})
        assert (info.name, info.state, info.error) == ("pub5", control_pb2.PLUGIN_STATE_RUNNING,
                                                       "")
        after = sample(scrape(client.status().metrics_port), "hft_bus_events_published_total",
                       type="ALERT")
        assert after - before == 5
        assert "pub5" in [p.name for p in client.list_plugins()]
        unloaded = client.unload_plugin("pub5")
        assert unloaded.state == control_pb2.PLUGIN_STATE_STOPPED
        assert "pub5" not in [p.name for p in client.list_plugins()]
        with pytest.raises(ControlError) as caught:
            client.unload_plugin("pub5")
    assert caught.value.code == "NOT_FOUND" and "no plugin named 'pub5'" in caught.value.details


@pytest.mark.parametrize("step", sorted(BROKEN))
def test_a_broken_plugin_is_failed_and_the_daemon_keeps_serving(
        engine: Daemon, tmp_path: Path, step: str) -> None:
    path = tmp_path / f"broken_{step}.py"
    path.write_text(BROKEN[step])
    with engine.client() as client:
        info = client.load_plugin(f"broken_{step}", str(path))
        assert info.state == control_pb2.PLUGIN_STATE_FAILED
        expected = {"import": "load failed: ModuleNotFoundError",
                    "init": "init failed: RuntimeError: boom",
                    "start": "start failed: RuntimeError: boom"}[step]
        assert info.error.startswith(expected)
        assert client.health() == "SERVING"
        listed = {p.name: p for p in client.status().plugins}
        assert listed[f"broken_{step}"].state == control_pb2.PLUGIN_STATE_FAILED
        assert listed["publisher"].state == control_pb2.PLUGIN_STATE_RUNNING
        client.unload_plugin(f"broken_{step}")


def test_reload_runs_new_code_and_a_broken_version_leaves_the_old_running(
        engine: Daemon, tmp_path: Path) -> None:
    beats = tmp_path / "beats"
    path = ticker(tmp_path / "ticker.py", "v1")
    with engine.client() as client:
        client.load_plugin("ticker", str(path), {"marker": str(beats)})
        wait_for(lambda: (m := marker(beats)) and m[0] == "v1", "v1 to beat")
        ticker(path, "v2")
        assert client.reload_plugin("ticker").error == ""
        wait_for(lambda: (m := marker(beats)) and m[0] == "v2", "v2 to beat")
        path.write_text("def broken(:\n")
        refused = client.reload_plugin("ticker")
        assert refused.state == control_pb2.PLUGIN_STATE_RUNNING
        assert refused.error.startswith("reload failed: SyntaxError")
        seen = wait_for(lambda: marker(beats), "a beat")  # None while a beat is being written
        wait_for(lambda: (m := marker(beats)) and m[0] == "v2" and m[1] > seen[1] + 2,
                 "the old version to keep beating")
        client.unload_plugin("ticker")


def test_bad_requests_are_refused_with_their_reason(engine: Daemon, tmp_path: Path) -> None:
    with grpc.insecure_channel(f"unix:{engine.socket_path}") as channel:
        stub = control_pb2_grpc.ControlStub(channel)
        for request, reason in [
            (control_pb2.LoadPluginRequest(name="x", spec="a:B", config_json="[1, 2]"),
             "config_json must be a JSON object, got list"),
            (control_pb2.LoadPluginRequest(name="x", spec="a:B", config_json="{oops"),
             "config_json is not JSON"),
            (control_pb2.LoadPluginRequest(name="no spaces", spec="a:B"), "must match"),
            (control_pb2.LoadPluginRequest(name="x", spec=""), "spec must be 1 to"),
        ]:
            with pytest.raises(grpc.RpcError) as caught:
                stub.LoadPlugin(request, timeout=5)
            assert caught.value.code() == grpc.StatusCode.INVALID_ARGUMENT
            assert reason in caught.value.details()
    with engine.client() as client, pytest.raises(ControlError) as duplicate:
        client.load_plugin("publisher", "x:Y")
    assert duplicate.value.code == "ALREADY_EXISTS"


def test_an_idle_daemon_does_not_burn_a_core(engine: Daemon, tmp_path: Path) -> None:
    (tmp_path / "idle.py").write_text(IDLE_POLLER)
    process = psutil.Process(engine.process.pid)
    with engine.client() as client:
        client.load_plugin("idle", str(tmp_path / "idle.py"))
        before = process.cpu_times()
        start = time.monotonic()
        time.sleep(1.0)  # a measurement window, not a synchronisation
        after = process.cpu_times()
        elapsed = time.monotonic() - start
        client.unload_plugin("idle")
    busy = (after.user + after.system - before.user - before.system) / elapsed
    assert busy < 0.5, f"idle daemon used {busy:.0%} of a core"


@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGINT])
def test_signal_stops_gracefully(start_daemon: StartDaemon, tmp_path: Path,
                                 signum: signal.Signals) -> None:
    stops = tmp_path / "stops"
    path = ticker(tmp_path / "ticker.py", "v1")
    plugins = "".join(f"""
[daemons.risk.plugins.{name}]
spec = "{path}"
config = {{ marker = "{tmp_path / name}", stops = "{stops}" }}
""" for name in ("first", "second"))
    daemon = start_daemon("risk", write_config(tmp_path, f"[daemons.risk]\nmetrics_port = 0\n"
                                                         f"{plugins}"))
    daemon.process.send_signal(signum)
    assert daemon.process.wait(timeout=10) == 0
    assert not daemon.socket_path.exists()
    assert stops.read_text().split() == ["second", "first"]
    assert read_heartbeat(daemon.suite.heartbeat_path("risk")).state is DaemonState.STOPPED
    stopping = [line for line in daemon.logs() if line["message"] == "daemon stopping"]
    assert stopping[0]["reason"] == signum.name


def test_health_is_not_serving_and_commands_are_refused_while_stopping(
        start_daemon: StartDaemon, tmp_path: Path) -> None:
    (tmp_path / "slow.py").write_text(SLOW_STOP)
    release = tmp_path / "release"
    daemon = start_daemon("engine", write_config(tmp_path, f"""
[daemons.engine]
metrics_port = 0
[daemons.engine.plugins.slow]
spec = "{tmp_path / 'slow.py'}"
config = {{ release = "{release}" }}
"""))
    daemon.process.send_signal(signal.SIGTERM)

    def health() -> str:
        with daemon.client(timeout_s=1) as client:
            return client.health()

    wait_for(lambda: health() == "NOT_SERVING", "NOT_SERVING while the plugin stops")
    with daemon.client() as client, pytest.raises(ControlError) as refused:
        client.status()
    assert refused.value.code == "UNAVAILABLE" and "stopping" in refused.value.details
    assert read_heartbeat(daemon.suite.heartbeat_path("engine")).state is DaemonState.STOPPING
    release.touch()
    assert daemon.process.wait(timeout=10) == 0


@pytest.mark.parametrize("wait_mode", ["busy", "yield", "block"])
def test_every_wait_mode_serves_and_stops_on_control_stop(start_daemon: StartDaemon,
                                                          tmp_path: Path, wait_mode: str) -> None:
    (tmp_path / "idle.py").write_text(IDLE_POLLER)
    daemon = start_daemon("monitor", write_config(tmp_path, f"""
[daemons.monitor]
metrics_port = 0
wait_mode = "{wait_mode}"
[daemons.monitor.plugins.idle]
spec = "{tmp_path / 'idle.py'}"
"""))
    with daemon.client() as client:
        assert [p.name for p in client.list_plugins()] == ["idle"]
        assert client.stop() == daemon.process.pid
    assert daemon.process.wait(timeout=10) == 0
    assert not daemon.socket_path.exists()


def test_a_second_daemon_on_the_same_socket_is_refused(start_daemon: StartDaemon,
                                                      tmp_path: Path) -> None:
    config = write_config(tmp_path, "[daemons.hft_md]\nmetrics_port = 0\n")
    first = start_daemon("hft_md", config)
    second = spawn_daemon("hft_md", config, tmp_path / "second.stderr")
    assert second.process.wait(timeout=20) == 1
    [error] = [line for line in second.logs() if line["message"] == "cannot start"]
    assert f"belongs to a running daemon (pid {first.process.pid}" in error["error"]
    assert serving(first)


def test_a_stale_socket_is_replaced(start_daemon: StartDaemon, tmp_path: Path) -> None:
    config = write_config(tmp_path, "[daemons.engine]\nmetrics_port = 0\n")
    stale = tmp_path / "home" / "run" / "engine.sock"
    stale.parent.mkdir(parents=True)
    with socket.socket(socket.AF_UNIX) as leftover:
        leftover.bind(str(stale))  # closed without unlinking, as after a crash
    daemon = start_daemon("engine", config)
    with daemon.client() as client:
        assert client.status().pid == daemon.process.pid


def test_a_taken_metrics_port_is_a_clear_startup_error(tmp_path: Path) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        daemon = spawn_daemon("engine", write_config(tmp_path, f"[daemons.engine]\n"
                                                               f"metrics_port = {port}\n"))
        assert daemon.process.wait(timeout=20) == 1
    [error] = [line for line in daemon.logs() if line["message"] == "cannot start"]
    assert f"127.0.0.1:{port} (daemons.engine.metrics_port)" in error["error"]
    assert not daemon.socket_path.exists()
    assert read_heartbeat(daemon.suite.heartbeat_path("engine")).state is DaemonState.STOPPED


def run_daemon_command(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "hft.daemons", *args], capture_output=True,
                          text=True, timeout=30)


def test_command_line_errors(tmp_path: Path) -> None:
    help_text = run_daemon_command("--help")
    assert help_text.returncode == 0
    assert "hft_md, engine, risk, monitor" in help_text.stdout and "--config" in help_text.stdout
    bad = run_daemon_command("engine", "--config",
                             str(write_config(tmp_path, "[daemons.engine]\nport = 1\n")))
    assert bad.returncode == 2 and "daemons.engine.port: unknown key" in bad.stderr
    disabled = run_daemon_command("risk", "--config",
                                  str(write_config(tmp_path, "[daemons.risk]\nenabled = false\n")))
    assert disabled.returncode == 2 and "risk is disabled" in disabled.stderr
    unknown = run_daemon_command("gateway")
    assert unknown.returncode == 2 and "invalid choice: 'gateway'" in unknown.stderr


def test_daemon_states_match_the_proto() -> None:
    for state in DaemonState:
        assert control_pb2.DaemonState.Value(f"DAEMON_STATE_{state.name}") == state



@pytest.mark.parametrize(("mode", "idle_us", "step"), [
    (WaitMode.BUSY, 10**6, IdleStep.POLL),
    (WaitMode.YIELD, 10, IdleStep.POLL),
    (WaitMode.YIELD, 10**6, IdleStep.YIELD),
    (WaitMode.BLOCK, 10, IdleStep.POLL),
    (WaitMode.BLOCK, 500, IdleStep.YIELD),
    (WaitMode.BLOCK, 2000, IdleStep.SLEEP),
])
def test_the_loop_polls_then_yields_then_sleeps(mode: WaitMode, idle_us: int, step: IdleStep) -> None:
    """spin_us=50, yield_us=2000: block mode yields between the two, then sleeps."""
    assert idle_step(mode, idle_us * 1000, spin_ns=50_000, yield_ns=2_000_000) is step
