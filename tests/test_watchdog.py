"""The watchdog end to end: real daemon processes, real gRPC, real signals, a local HTTP
server as the webhook. Each test runs its own suite in tmp_path and leaves no process."""

from __future__ import annotations

import os
import signal
import socket
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
from support.daemons import spawn_daemon, wait_for
from support.watchdog import (
    FAST_WATCHDOG,
    daemon_status,
    daemon_table,
    hftctl,
    kill_all,
    processes_of,
    state,
    suite_config,
    watchdog_client,
    webhook,
)

from hft.ctl.client import CommandRejected, ControlError, DaemonClient, Unauthenticated, WatchdogClient
from hft.daemons.runtime.config import ConfigError, WatchdogConfig, load_config
from hft.daemons.runtime.events import AlertLevel, EventType
from hft.daemons.runtime.journal import JournalWriter
from hft.daemons.runtime.plugins import Plugin
from hft.watchdog import statefile
from hft.watchdog.policy import RestartPolicy
from hft.watchdog.process import adopt

LOADED_MD = daemon_table("hft_md", extra='[daemons.hft_md.plugins.sim]\nspec = "sim_feed"\n'
                                         'config = { interval_ms = 1 }\n')
"""hft_md under load: the simulated feed writing a snapshot per instrument every ms."""
ENGINE = daemon_table("engine")
OFF = daemon_table("risk", enabled=False) + daemon_table("monitor", enabled=False)

STUCK = f'''
from {Plugin.__module__} import Plugin

class Stuck(Plugin):
    def command(self, name, args):
        while True:  # a plugin stuck in its code: the main loop never comes back
            pass
'''
DIES_AT_START = f'''
import os
from {Plugin.__module__} import Plugin

class DiesAtStart(Plugin):
    def start(self):
        print("dies-at-start: giving up", flush=True)  # the last line of its log
        os._exit(1)
'''

SPAWNER = f'''
import pathlib, subprocess
from {Plugin.__module__} import Plugin

class Spawner(Plugin):
    def start(self):  # a helper process that ignores SIGTERM, in the daemon's process group
        child = subprocess.Popen(["sh", "-c", "trap '' TERM; while true; do sleep 1; done"])
        pathlib.Path(self.ctx.config["pid_file"]).write_text(str(child.pid))
'''

SuiteFactory = Callable[..., Path]


@pytest.fixture
def suite(tmp_path: Path) -> Iterator[SuiteFactory]:
    """Factory: a suite config in tmp_path; everything it started is stopped afterwards."""
    configs: list[Path] = []

    def make(tables: str, extra: str = "") -> Path:
        config = suite_config(tmp_path, tables, FAST_WATCHDOG + extra)
        configs.append(config)
        return config

    yield make
    for config in configs:
        hftctl(config, "stop")
        kill_all(config)


def started(config: Path) -> dict[str, int]:
    """``hftctl start``; the pid of each daemon it reports started."""
    done = hftctl(config, "start")
    assert done.returncode == 0, done.stdout + done.stderr
    return {name: status.pid for name, status in daemon_status(config).items() if status.pid}


def metric(config: Path, line_start: str) -> float:
    """A sample of the watchdog's /metrics (0 if absent)."""
    with watchdog_client(config) as client:
        port = client.status().metrics_port
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as response:
        text = response.read().decode()
    values = [float(line.rsplit(" ", 1)[1]) for line in text.splitlines()
              if line.startswith(line_start)]
    return values[0] if values else 0.0


def test_a_daemon_killed_under_load_is_restarted_and_the_crash_alerted(suite: SuiteFactory) -> None:
    with webhook() as hook:
        config = suite(LOADED_MD + ENGINE + OFF, hook.toml())
        pids = started(config)
        killed_at = time.monotonic()
        os.kill(pids["hft_md"], signal.SIGKILL)
        new_pid = wait_for(lambda: (daemon_status(config)["hft_md"].pid or pids["hft_md"])
                           != pids["hft_md"] and daemon_status(config)["hft_md"].pid,
                           "a new hft_md process", timeout=2.0)
        print(f"restarted as pid {new_pid} {time.monotonic() - killed_at:.3f}s after the kill")
        wait_for(lambda: state(daemon_status(config)["hft_md"]) == "running", "hft_md running")
        wait_for(lambda: "restart" in hook.kinds("hft_md"), "the restart alert")
        crash = next(alert for alert in hook.alerts if alert["kind"] == "crash")
        assert (crash["daemon"], crash["level"]) == ("hft_md", "critical")
        assert "SIGKILL" in crash["summary"]
        assert daemon_status(config)["engine"].pid == pids["engine"]  # the others untouched
        status = daemon_status(config)["hft_md"]
        assert status.restarts == 1 and status.health == "SERVING"
        assert metric(config, 'hft_watchdog_restarts_total{daemon="hft_md",reason="crash"}') == 1
        assert metric(config, 'hft_watchdog_daemon_up{daemon="hft_md"}') == 1
        assert metric(config, 'hft_watchdog_alerts_total{kind="crash",level="critical"}') == 1


def test_a_daemon_whose_main_loop_hangs_is_restarted(suite: SuiteFactory, tmp_path: Path) -> None:
    (tmp_path / "stuck.py").write_text(STUCK)
    with webhook() as hook:
        config = suite(daemon_table("hft_md", extra=f'[daemons.hft_md.plugins.stuck]\nspec = '
                                                    f'"{tmp_path / "stuck.py"}"\n')
                       + daemon_table("engine", enabled=False) + OFF, hook.toml())
        pid = started(config)["hft_md"]
        hung = hftctl(config, "plugins", "command", "hft_md", "stuck", "spin")
        assert hung.returncode == 1  # its gRPC threads answer: the call times out
        wait_for(lambda: daemon_status(config)["hft_md"].pid not in (0, pid), "a new hft_md", 30)
        wait_for(lambda: "restart" in hook.kinds("hft_md"), "the restart alert", 30)
        assert hook.kinds("hft_md")[:2] == ["heartbeat_lost", "restart"]
        assert not psutil.pid_exists(pid) or psutil.Process(pid).status() == psutil.STATUS_ZOMBIE
        assert metric(config, 'hft_watchdog_restarts_total{daemon="hft_md",reason="heartbeat"}') == 1


def test_a_crash_loop_ends_in_fatal_with_one_alert(suite: SuiteFactory, tmp_path: Path) -> None:
    (tmp_path / "dies.py").write_text(DIES_AT_START)
    with webhook() as hook:
        config = suite(daemon_table("hft_md") + daemon_table(
            "engine", extra=f'[daemons.engine.plugins.dies]\nspec = "{tmp_path / "dies.py"}"\n')
            + OFF, hook.toml())
        done = hftctl(config, "start")
        assert done.returncode == 1
        assert "engine: failed to start: backoff: exited with status 1 while starting" in done.stderr
        assert done.stderr.rstrip().endswith("dies-at-start: giving up")  # its log's end
        assert "last lines of " in done.stderr and "engine.log" in done.stderr
        assert "hft_md: started" in done.stdout
        wait_for(lambda: state(daemon_status(config)["engine"]) == "fatal", "engine FATAL", 30)
        time.sleep(0.5)  # a storm would go on; FATAL stays
        status = daemon_status(config)["engine"]
        assert state(status) == "fatal" and status.pid == 0 and status.restarts == 2
        assert "failed 3 times within 60s" in status.reason
        wait_for(lambda: hook.kinds("engine"), "the fatal alert")
        time.sleep(0.3)
        assert hook.kinds() == ["fatal"]
        assert hook.alerts[0]["level"] == "critical"
        assert hftctl(config, "status").returncode == 3
        restarted = restart_the_watchdog_as_systemd_would(config)
        try:  # FATAL is kept: a watchdog restarted by systemd does not retry a crash loop
            status = daemon_status(config)["engine"]
            assert state(status) == "fatal" and status.pid == 0
            assert "failed 3 times within 60s" in status.reason
            assert state(daemon_status(config)["hft_md"]) == "running"
            time.sleep(0.5)
            assert hook.kinds() == ["fatal"] and daemon_status(config)["engine"].pid == 0
        finally:
            restarted.terminate()  # its stop stops hft_md too
            restarted.wait(30)
        again = hftctl(config, "start", "engine")  # a start takes it out of FATAL: one more try
        assert again.returncode == 1 and "engine: failed to start" in again.stderr


def restart_the_watchdog_as_systemd_would(config: Path) -> subprocess.Popen[bytes]:
    """SIGKILL the watchdog, then start ``hft-watchdog`` as the unit does (autostart on);
    returns it once it serves."""
    with watchdog_client(config) as client:
        pid = client.status().pid
    os.kill(pid, signal.SIGKILL)
    wait_for(lambda: not psutil.pid_exists(pid)
             or psutil.Process(pid).status() == psutil.STATUS_ZOMBIE, "the watchdog gone")
    process = subprocess.Popen([sys.executable, "-m", "hft.watchdog", "--config", str(config)],
                               stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                               stderr=subprocess.DEVNULL)

    def serving() -> bool:
        try:
            with watchdog_client(config, timeout_s=1.0) as client:
                return bool(client.status().pid == process.pid)
        except ControlError:
            return False

    wait_for(serving, "the restarted watchdog")
    return process


def test_stop_leaves_no_process_behind(suite: SuiteFactory, tmp_path: Path) -> None:
    (tmp_path / "spawner.py").write_text(SPAWNER)
    config = suite(LOADED_MD + daemon_table(
        "engine", extra=f'[daemons.engine.plugins.spawner]\nspec = "{tmp_path / "spawner.py"}"\n'
                        f'config = {{ pid_file = "{tmp_path / "helper.pid"}" }}\n') + OFF)
    pids = started(config)
    helper = psutil.Process(int((tmp_path / "helper.pid").read_text()))
    assert len(processes_of(config)) == 3  # the watchdog and two daemons
    one = hftctl(config, "stop", "engine")
    assert one.returncode == 0 and one.stdout.strip() == f"engine: stopped (pid {pids['engine']})"
    wait_for(lambda: not helper.is_running() or helper.status() == psutil.STATUS_ZOMBIE,
             "the helper that ignored SIGTERM killed with its daemon")
    time.sleep(0.5)
    assert state(daemon_status(config)["engine"]) == "stopped"  # and it stays so
    everything = hftctl(config, "stop")
    assert everything.returncode == 0, everything.stderr
    assert everything.stdout.splitlines()[0] == f"hft_md: stopped (pid {pids['hft_md']})"
    assert everything.stdout.splitlines()[-1].startswith("watchdog: stopped (pid ")
    assert processes_of(config) == []
    home = load_config(config).home
    assert (home / "log" / "hft_md.log").stat().st_mode & 0o777 == 0o600
    assert (home / "run" / "watchdog.state").stat().st_mode & 0o777 == 0o600


def test_status_exit_codes(suite: SuiteFactory) -> None:
    config = suite(daemon_table("hft_md") + ENGINE + OFF)
    unreachable = hftctl(config, "status")
    assert unreachable.returncode == 4 and unreachable.stdout == ""
    assert unreachable.stderr.startswith("Error: the watchdog is not running")
    assert len(unreachable.stderr.splitlines()) == 1
    started(config)
    table = hftctl(config, "status")
    assert table.returncode == 0, table.stdout
    assert table.stdout.splitlines()[0].split() == [
        "daemon", "state", "pid", "uptime", "restarts", "health", "heartbeat", "reason"]
    assert [line.split()[:2] for line in table.stdout.splitlines()[1:4]] == [
        ["watchdog", "running"], ["hft_md", "running"], ["engine", "running"]]
    assert hftctl(config, "stop", "engine").returncode == 0
    stopped = hftctl(config, "status", "--json")
    assert stopped.returncode == 3
    assert '"daemon": "engine", "enabled": true, "state": "stopped"' in stopped.stdout


def test_a_restarted_watchdog_adopts_the_running_daemons(suite: SuiteFactory) -> None:
    config = suite(LOADED_MD + ENGINE + OFF)
    pids = started(config)
    with watchdog_client(config) as client:
        watchdog_pid = client.status().pid
    os.kill(watchdog_pid, signal.SIGKILL)
    wait_for(lambda: not psutil.pid_exists(watchdog_pid)
             or psutil.Process(watchdog_pid).status() == psutil.STATUS_ZOMBIE, "the watchdog gone")
    assert hftctl(config, "status").returncode == 4
    again = hftctl(config, "start")
    assert again.returncode == 0, again.stderr
    assert f"hft_md: already running (pid {pids['hft_md']})" in again.stdout
    after = daemon_status(config)
    assert {name: status.pid for name, status in after.items() if status.pid} == pids
    assert all(status.restarts == 0 for status in after.values())
    assert after["engine"].reason == "adopted from the previous watchdog"
    # and it supervises them: a kill is a crash it restarts
    os.kill(pids["engine"], signal.SIGKILL)
    wait_for(lambda: daemon_status(config)["engine"].pid not in (0, pids["engine"]),
             "engine restarted by the new watchdog")


def test_stop_after_the_watchdog_was_killed_stops_its_daemons(suite: SuiteFactory) -> None:
    config = suite(daemon_table("hft_md") + ENGINE + OFF)
    started(config)
    with watchdog_client(config) as client:
        os.kill(client.status().pid, signal.SIGKILL)
    done = hftctl(config, "stop")
    assert done.returncode == 0, done.stderr
    wait_for(lambda: processes_of(config) == [], "no process left")


def test_a_strangers_daemon_is_never_touched(suite: SuiteFactory) -> None:
    config = suite(daemon_table("hft_md") + ENGINE + OFF)
    stranger = spawn_daemon("engine", config)  # started by someone else, on the same socket
    try:
        wait_for(lambda: daemon_is_serving(config), "the stranger serving")
        done = hftctl(config, "start")
        assert done.returncode == 1
        assert f"engine: failed to start: foreign: pid {stranger.process.pid}" in done.stderr
        assert daemon_status(config)["hft_md"].pid  # the rest of the suite runs
        assert hftctl(config, "stop").returncode == 0
        assert stranger.process.poll() is None  # neither stopped nor killed
        assert daemon_is_serving(config)
    finally:
        stranger.stop()


def daemon_is_serving(config: Path) -> bool:
    try:
        with DaemonClient(load_config(config).socket_path("engine"), timeout_s=1) as client:
            return client.health() == "SERVING"
    except ControlError:
        return False


def kill_the_watchdog(config: Path) -> None:
    with watchdog_client(config) as client:
        watchdog_pid = client.status().pid
    os.kill(watchdog_pid, signal.SIGKILL)
    wait_for(lambda: not psutil.pid_exists(watchdog_pid)
             or psutil.Process(watchdog_pid).status() == psutil.STATUS_ZOMBIE, "the watchdog gone")


def commit_alert(journal_dir: Path, code: bytes, message: bytes) -> None:
    with JournalWriter(journal_dir, "risk") as writer:
        record = writer.claim(EventType.ALERT)
        record["ts_ns"] = time.time_ns()
        record["level"] = int(AlertLevel.CRITICAL)
        record["origin"], record["code"], record["message"] = b"desk", code, message
        writer.commit()


def test_journal_alerts_are_sent_once_across_a_watchdog_restart(suite: SuiteFactory) -> None:
    with webhook() as hook:
        config = suite(daemon_table("hft_md") + daemon_table("engine", enabled=False) + OFF,
                       hook.toml())
        journal_dir = load_config(config).journal_dir
        started(config)  # the risk journal is not there yet: it is waited for
        kill_the_watchdog(config)  # and a restarted watchdog goes on waiting for all of it
        commit_alert(journal_dir, b"order_lost", b"order 7 lost")
        assert hftctl(config, "start").returncode == 0
        wait_for(lambda: "order_lost" in hook.kinds(), "the journal's alert")
        lost = next(alert for alert in hook.alerts if alert["kind"] == "order_lost")
        assert (lost["daemon"], lost["summary"], lost["level"]) == ("risk", "order 7 lost",
                                                                    "critical")
        assert lost["details"]["origin"] == "desk"
        kill_the_watchdog(config)
        commit_alert(journal_dir, b"kill_switch", b"kill switch on")  # while no watchdog runs
        assert hftctl(config, "start").returncode == 0
        wait_for(lambda: "kill_switch" in hook.kinds(), "the alert committed meanwhile")
        time.sleep(0.5)
        assert hook.kinds() == ["order_lost", "kill_switch"]


def test_memory_above_the_limit_restarts_with_an_alert(suite: SuiteFactory) -> None:
    with webhook() as hook:
        config = suite(daemon_table("hft_md") + daemon_table("engine", enabled=False) + OFF,
                       hook.toml() + "[watchdog.max_rss_mb]\nhft_md = 1\n")
        hftctl(config, "start")
        wait_for(lambda: metric(config, 'hft_watchdog_restarts_total{daemon="hft_md",'
                                'reason="memory"}') >= 1, "a restart for memory")
        assert hook.kinds()[0] == "memory"


def test_the_state_file_is_replaced_whole(tmp_path: Path) -> None:
    path = tmp_path / "watchdog.state"
    saved = statefile.SavedState({"engine": statefile.DaemonRecord(12, 3.5, True, 2)}, {"risk": 9})
    statefile.save(path, saved)
    assert statefile.load(path) == saved
    assert path.stat().st_mode & 0o777 == 0o600 and not (tmp_path / "watchdog.state.tmp").exists()
    path.write_text("{not json")
    assert statefile.load(path) == statefile.SavedState()


def test_the_watchdogs_control_plane(tmp_path: Path, suite: SuiteFactory) -> None:
    """Its own daemon runtime: Watchdog, Control, health and reflection on the socket, the
    same behind the token on TCP, one watchdog per home, names checked."""
    token_file = tmp_path / "watchdog.token"
    token_file.write_text("t" * 32)
    token_file.chmod(0o600)
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    config = suite(daemon_table("hft_md") + ENGINE + OFF,
                   f'control_tcp = "127.0.0.1:{port}"\ncontrol_token_file = "{token_file}"\n')
    watchdog = subprocess.Popen([sys.executable, "-m", "hft.watchdog", "--no-autostart",
                                 "--config", str(config)], stderr=subprocess.DEVNULL)
    try:
        wait_for(lambda: daemon_status_or_none(config), "the watchdog answering")
        socket_path = load_config(config).socket_path("watchdog")
        with grpc.insecure_channel(f"unix:{socket_path}") as channel:
            services = set(ProtoReflectionDescriptorDatabase(channel).get_services())
        assert {"hft.watchdog.v1.Watchdog", "hft.control.v1.Control",
                "grpc.health.v1.Health"} <= services
        assert {state(status) for status in daemon_status(config).values()} == {"stopped"}
        with WatchdogClient(f"127.0.0.1:{port}", token="t" * 32) as remote:
            assert [status.name for status in remote.daemons()][:2] == ["hft_md", "engine"]
        with pytest.raises(Unauthenticated), WatchdogClient(f"127.0.0.1:{port}") as stranger:
            stranger.daemons()
        with watchdog_client(config) as client:
            with pytest.raises(CommandRejected, match="unknown daemon 'nope'"):
                client.start_daemons(["nope"])
            with pytest.raises(CommandRejected, match="risk disabled"):
                client.restart_daemon("risk")
        second = subprocess.run([sys.executable, "-m", "hft.watchdog", "--config", str(config)],
                                capture_output=True, text=True, timeout=60)
        assert second.returncode == 1 and "belongs to a running daemon" in second.stderr
    finally:
        watchdog.terminate()
        assert watchdog.wait(timeout=30) == 0


def daemon_status_or_none(config: Path) -> bool:
    try:
        return bool(daemon_status(config))
    except ControlError:
        return False


def test_a_heartbeat_timeout_shorter_than_a_heartbeat_is_refused(tmp_path: Path) -> None:
    config = suite_config(tmp_path, daemon_table("engine", extra="heartbeat_interval_s = 2.0\n")
                          .replace("heartbeat_interval_s = 0.1\n", ""))
    with pytest.raises(ConfigError, match=r"watchdog.heartbeat_timeout_s: 1.5s must be longer "
                                          r"than daemons.engine.heartbeat_interval_s \(2s\)"):
        load_config(config)


def test_cpu_above_the_limit_warns_once_per_episode(suite: SuiteFactory) -> None:
    with webhook() as hook:
        config = suite(daemon_table("hft_md", extra='wait_mode = "busy"\n')  # spins: a whole core
                       + daemon_table("engine", enabled=False) + OFF,
                       hook.toml() + "[watchdog.max_cpu_percent]\nhft_md = 10.0\n")
        pid = started(config)["hft_md"]
        wait_for(lambda: "cpu" in hook.kinds(), "the cpu alert")
        time.sleep(1.0)  # still above the limit: the same episode
        assert hook.kinds() == ["cpu"] and hook.alerts[0]["level"] == "warning"
        assert daemon_status(config)["hft_md"].pid == pid  # a warning, not a restart


def test_the_backoff_doubles_to_its_cap_and_the_start_limit_is_fatal() -> None:
    config = WatchdogConfig(backoff_initial_s=0.5, backoff_max_s=3.0, start_limit_burst=5,
                            start_limit_interval_s=60.0)
    policy = RestartPolicy(config)
    assert [policy.failed(now) for now in (0.0, 1.0, 2.0, 3.0)] == [0.5, 1.0, 2.0, 3.0]
    assert policy.failed(4.0) is None  # the fifth failure within 60 s
    policy.ran_since(started=10.0, now=69.0)  # not a whole window: the delay stays at its cap
    assert policy.failed(69.5) == 3.0
    policy.ran_since(started=70.0, now=130.0)  # a whole window up: a fresh start
    assert policy.failed(131.0) == 0.5
    spread = RestartPolicy(config)
    assert all(spread.failed(now) is not None for now in (0.0, 61.0, 122.0, 183.0, 244.0, 305.0))


def test_a_frozen_daemon_is_killed_and_restarted(suite: SuiteFactory) -> None:
    """SIGSTOP: health calls time out (a hang), and SIGTERM cannot stop it: SIGKILL after
    kill_timeout_s does. Meanwhile the other daemons are supervised as usual."""
    with webhook() as hook:
        config = suite(daemon_table("hft_md") + ENGINE + OFF, hook.toml())
        text = config.read_text()  # health alone decides (the heartbeat would see it too),
        config.write_text(text.replace("heartbeat_timeout_s = 1.5", "heartbeat_timeout_s = 60.0")
                          .replace("health_timeout_s = 1.0", "health_timeout_s = 4.0"))
        pids = started(config)  # and its calls wait long: 2 of them, 8 s to tell
        os.kill(pids["engine"], signal.SIGSTOP)
        os.kill(pids["hft_md"], signal.SIGKILL)
        wait_for(lambda: daemon_status(config)["hft_md"].pid not in (0, pids["hft_md"]),
                 "a new hft_md while the engine's health calls are out")
        engine = daemon_status(config)["engine"]
        assert (engine.pid, state(engine)) == (pids["engine"], "running")  # not yet told
        wait_for(lambda: daemon_status(config)["engine"].pid not in (0, pids["engine"]),
                 "a new engine", 60)
        assert hook.kinds("engine")[0] == "hang"
        hang = next(alert for alert in hook.alerts if alert["kind"] == "hang")
        assert "health timeout on 2 calls in a row" in hang["summary"]
        assert metric(config, 'hft_watchdog_restarts_total{daemon="engine",reason="hang"}') == 1


def test_only_the_very_process_it_started_is_adopted(suite: SuiteFactory) -> None:
    """The state file's pid must still be that process (create time) running that daemon
    (command line) as its group leader; a pid now used by another process is left alone."""
    config = suite(daemon_table("hft_md") + daemon_table("engine", enabled=False) + OFF)
    stranger = subprocess.Popen(["sleep", "120"], start_new_session=True)
    try:
        born = psutil.Process(stranger.pid).create_time()
        assert adopted("hft_md", stranger.pid, born) is False  # not an hft daemon
        run_dir = load_config(config).run_dir
        run_dir.mkdir(parents=True)
        statefile.save(statefile.state_path(run_dir), statefile.SavedState(
            {"hft_md": statefile.DaemonRecord(stranger.pid, born, True, 0)}))
        pid = started(config)["hft_md"]
        assert pid != stranger.pid
        with watchdog_client(config) as client:
            watchdog_pid = client.status().pid
        assert adopted("hft_md", pid, psutil.Process(pid).create_time())
        assert adopted("hft_md", pid, psutil.Process(pid).create_time() - 1) is False  # pid reuse
        assert adopted("engine", pid, psutil.Process(pid).create_time()) is False
        assert adopted("hft_md", watchdog_pid, psutil.Process(watchdog_pid).create_time()) is False
        assert hftctl(config, "stop").returncode == 0
        assert stranger.poll() is None  # never signalled
    finally:
        stranger.kill()
        stranger.wait()


def adopted(name: str, pid: int, create_time: float) -> bool:
    process = adopt(name, pid, create_time)
    if process is not None:
        process.close()
    return process is not None
