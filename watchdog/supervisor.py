"""The supervisor: one thread that starts, checks, restarts and stops the daemons.

The thread owns every daemon's state (:class:`Supervised`); gRPC handlers hand it commands
(:meth:`Supervisor.submit`) and read the snapshot it publishes after each turn. A turn waits
on the live daemons' pidfds and a wake-up pipe (commands, health answers), so a death is
handled the moment it happens; every ``check_interval_s`` it checks each running daemon
(psutil, the last health answer, the heartbeat) and sends the next health call, whose answer
arrives asynchronously: no check blocks the loop. Nothing here signals a process this
watchdog did not start: it only knows the ones it spawned or adopted (same pid, create time
and command line, see :mod:`hft.watchdog.process`).

Alerts: ``crash`` (a running daemon died), ``restart`` (it runs again after a crash, hang,
lost heartbeat or memory kill), ``fatal`` (the start limit), ``hang`` (health failed
``unhealthy_after`` checks in a row), ``heartbeat_lost`` (its heartbeat is older than
``heartbeat_timeout_s`` as many times), ``memory`` (rss above max_rss_mb: restarted), ``cpu``
(above max_cpu_percent for ``unhealthy_after`` checks: once per episode), and the journals'
ALERT records. A crash loop of failed starts raises none until it is FATAL: one alert.
"""

from __future__ import annotations

import contextlib
import logging
import math
import os
import select
import signal
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterable, Sequence
from concurrent.futures import Future
from dataclasses import dataclass
from typing import TypeVar

from prometheus_client.core import Metric

from hft.daemons.runtime.config import DAEMON_NAMES, SuiteConfig
from hft.daemons.runtime.control import GrpcService
from hft.daemons.runtime.events import AlertLevel
from hft.protos import watchdog_pb2
from hft.watchdog import metrics, statefile
from hft.watchdog.alerts import Alert, AlertSender
from hft.watchdog.checks import SERVING, HealthProbe, Usage, heartbeat_age_s, usage
from hft.watchdog.journal_alerts import JournalAlerts
from hft.watchdog.policy import RestartPolicy, RestartReason, State
from hft.watchdog.process import DaemonProcess, adopt, socket_holder, spawn
from hft.watchdog.service import watchdog_service

T = TypeVar("T")
STARTING_PROBE_S = 0.1
"""How often a starting daemon's health is asked (it is RUNNING once it answers SERVING)."""
SHUTDOWN_GRACE_S = 5.0
"""Beyond kill_timeout_s: how long the watchdog's stop waits for the last daemon to exit."""
log = logging.getLogger("hft.watchdog")


@dataclass
class Supervised:
    """One daemon as the supervisor sees it (touched by the supervisor thread only)."""

    name: str
    enabled: bool
    policy: RestartPolicy
    state: State = State.STOPPED
    want_running: bool = False
    process: DaemonProcess | None = None
    probe: HealthProbe | None = None
    restarts: int = 0
    reason: str = ""
    health: str = ""
    heartbeat_age_s: float = -1.0
    usage: Usage | None = None
    failed_health: int = 0
    """Health answers in a row that were not SERVING (a timeout is one)."""
    stale_beats: int = 0
    """Checks in a row that found the heartbeat older than heartbeat_timeout_s."""
    hot_checks: int = 0
    cpu_alerted: bool = False
    deadline: float = math.inf
    """Monotonic time of the next step: the end of a backoff, a start timeout, the SIGKILL."""
    next_probe: float = 0.0
    running_since: float = 0.0
    pending_restart: RestartReason | None = None
    """The next spawn is a restart for this reason (counted when it happens)."""
    alert_when_running: bool = False
    """It failed while running: say so (the restart alert) once it runs again."""
    then_start: bool = False
    """A STOPPING daemon is started again once it exited (Restart)."""
    failure: tuple[str, RestartReason] | None = None
    """A STOPPING daemon the watchdog stopped because it failed a check: why."""


class Supervisor:
    """The watchdog's supervision; a HostExtension of its DaemonHost (its gRPC service and
    metrics, started once the watchdog owns its socket, stopped first at shutdown)."""

    def __init__(self, suite: SuiteConfig, alerts: AlertSender, autostart: bool) -> None:
        self.suite = suite
        self.config = suite.watchdog
        self._alerts = alerts
        self._autostart = autostart
        self.daemons = {name: Supervised(name, suite.daemon(name).enabled,
                                         RestartPolicy(self.config)) for name in DAEMON_NAMES}
        self.restarts_total: Counter[tuple[str, str]] = Counter()
        self.alerts_total: Counter[tuple[str, str]] = Counter()
        self.snapshot: tuple[watchdog_pb2.DaemonStatus, ...] = ()
        """Every daemon's status after the last turn (replaced whole: safe to read anywhere)."""
        self._state_path = statefile.state_path(suite.run_dir)
        self._journals: JournalAlerts | None = None
        self._commands: list[tuple[Callable[[], object], Future[object]]] = []
        self._commands_lock = threading.Lock()
        self._wake_fds = os.pipe2(os.O_NONBLOCK | os.O_CLOEXEC)
        self._shutting_down = False
        self._dirty = True
        self._thread = threading.Thread(target=self._run, name="supervisor", daemon=True)

    # HostExtension

    @property
    def services(self) -> Sequence[GrpcService]:
        return (watchdog_service(self),)

    def collect(self) -> Iterable[Metric]:
        yield from metrics.families(self)
        yield from self._alerts.collect()

    def start(self) -> None:
        """Adopt what the last watchdog left running, then supervise (its own thread)."""
        saved = statefile.load(self._state_path)
        now = time.monotonic()
        for daemon in self.daemons.values():
            record = saved.daemons.get(daemon.name, statefile.DaemonRecord())
            daemon.restarts = record.restarts
            process = adopt(daemon.name, record.pid, record.create_time) if record.pid else None
            if process is not None:
                log.info("adopted a running daemon", extra={"supervised": daemon.name,
                                                            "child_pid": process.pid})
                self._attach(daemon, process, now)
                self._set(daemon, State.RUNNING, "adopted from the previous watchdog")
                daemon.running_since, daemon.want_running = now, True
                if not (record.want_running and daemon.enabled):  # being stopped, or disabled
                    self.stop_daemons([daemon.name])
            elif record.fatal and daemon.enabled:  # a restart of the watchdog is no retry
                self._set(daemon, State.FATAL, record.fatal)
            elif daemon.enabled and self._autostart and (
                    record.want_running if daemon.name in saved.daemons else True):
                daemon.want_running = True
                self._set(daemon, State.STARTING, "")
        self._journals = JournalAlerts(self.suite.journal_dir, self.config.alert_journals,
                                       saved.journals)
        self._publish()
        self._thread.start()

    def stop(self) -> None:
        """Stop every daemon (SIGTERM, then SIGKILL after kill_timeout_s), keeping what
        should run in the state file, and end the thread."""
        if self._thread.is_alive():
            with contextlib.suppress(TimeoutError):
                self.submit(self._shut_down).result(timeout=1.0)
            self._thread.join(self.config.kill_timeout_s + SHUTDOWN_GRACE_S)
        self._alerts.close()

    # Thread-safe

    def submit(self, command: Callable[[], T]) -> Future[T]:
        """Run ``command`` on the supervisor thread at its next turn."""
        future: Future[T] = Future()
        with self._commands_lock:
            self._commands.append((command, future))  # type: ignore[arg-type]
        self._wake()
        return future

    def status_of(self, names: Iterable[str]) -> list[watchdog_pb2.DaemonStatus]:
        wanted = set(names)
        return [status for status in self.snapshot if status.name in wanted]

    # Commands (supervisor thread)

    def start_daemons(self, names: Sequence[str]) -> None:
        for name in names:
            daemon = self.daemons[name]
            daemon.want_running = True
            if daemon.state is State.STOPPING:
                daemon.then_start = True
            elif daemon.state in (State.STOPPED, State.FATAL, State.BACKOFF, State.FOREIGN):
                if daemon.state is State.FATAL:
                    daemon.policy.reset()
                self._set(daemon, State.STARTING, "")
        self._dirty = True

    def stop_daemons(self, names: Sequence[str]) -> None:
        now = time.monotonic()
        for name in names:
            daemon = self.daemons[name]
            daemon.want_running, daemon.then_start, daemon.failure = False, False, None
            daemon.pending_restart, daemon.alert_when_running = None, False
            if daemon.process is None:
                self._set(daemon, State.STOPPED, "")
            elif daemon.state is not State.STOPPING:
                self._signal_stop(daemon, now)
        self._dirty = True

    def restart_daemon(self, name: str) -> None:
        daemon = self.daemons[name]
        daemon.want_running, daemon.failure = True, None
        daemon.policy.reset()
        if daemon.process is None:
            daemon.pending_restart = RestartReason.MANUAL
            self._set(daemon, State.STARTING, "")
        else:
            daemon.then_start = True
            if daemon.state is not State.STOPPING:
                self._signal_stop(daemon, time.monotonic())
        self._dirty = True

    def _shut_down(self) -> None:
        self._shutting_down = True
        now = time.monotonic()
        for daemon in self.daemons.values():
            if daemon.process is None:
                self._set(daemon, State.STOPPED, "the watchdog stopped")
            elif daemon.state is not State.STOPPING:
                self._signal_stop(daemon, now)

    # The loop

    def _run(self) -> None:
        next_check = time.monotonic()
        while not (self._shutting_down and all(d.process is None for d in self.daemons.values())):
            now = time.monotonic()
            timeout = max(0.0, min(next_check, *(d.deadline for d in self.daemons.values())) - now)
            if any(d.state is State.STARTING for d in self.daemons.values()):
                timeout = min(timeout, STARTING_PROBE_S)
            pidfds = [d.process.pidfd for d in self.daemons.values() if d.process is not None]
            select.select([self._wake_fds[0], *pidfds], [], [], timeout)
            with contextlib.suppress(BlockingIOError):
                os.read(self._wake_fds[0], 4096)
            try:
                next_check = self._turn(next_check)
            except Exception:  # a bug must not end supervision
                log.exception("supervisor turn failed; going on")
                time.sleep(self.config.check_interval_s)
        self._save()
        if self._journals is not None:
            self._journals.close()

    def _turn(self, next_check: float) -> float:
        self._run_commands()
        now = time.monotonic()
        for daemon in self.daemons.values():
            if daemon.process is not None and daemon.process.exited():
                self._on_exit(daemon, now)
        self._take_answers(now)
        if now >= next_check:
            self._check_all(now)
            self._poll_journals()
            next_check = now + self.config.check_interval_s
        self._advance(now)
        self._publish()
        if self._dirty:
            self._save()
        return next_check

    def _run_commands(self) -> None:
        with self._commands_lock:
            commands, self._commands = self._commands, []
        outcomes: list[tuple[Future[object], object, Exception | None]] = []
        for command, future in commands:
            if future.set_running_or_notify_cancel():
                try:
                    outcomes.append((future, command(), None))
                except Exception as exc:
                    outcomes.append((future, None, exc))
        if commands:
            self._advance(time.monotonic())  # spawn what was asked at once
            self._publish()  # the callers answer from the snapshot: it must show the change
        for future, result, error in outcomes:
            if error is None:
                future.set_result(result)
            else:
                future.set_exception(error)

    def _on_exit(self, daemon: Supervised, now: float) -> None:
        process = daemon.process
        assert process is not None
        process.kill_leftovers()  # while our child is still unreaped: its group id is ours
        how = process.exit_status()
        self._detach(daemon)
        if self._shutting_down:
            self._set(daemon, State.STOPPED, f"the watchdog stopped ({how})")
        elif daemon.state is State.STOPPING:
            if daemon.failure is not None:
                why, reason = daemon.failure
                daemon.failure = None
                self._failed(daemon, now, f"{why}; {how}", reason)
            elif daemon.then_start:
                daemon.then_start = False
                daemon.pending_restart = RestartReason.MANUAL
                self._set(daemon, State.STARTING, "")
            else:
                self._set(daemon, State.STOPPED, how)
        elif daemon.state is State.STARTING:
            self._failed(daemon, now, f"{how} while starting", RestartReason.CRASH)
        else:
            self._alert("crash", AlertLevel.CRITICAL, daemon,
                        f"{daemon.name} died: {how}", {"pid": str(process.pid)})
            daemon.alert_when_running = True
            self._failed(daemon, now, how, RestartReason.CRASH)

    def _failed(self, daemon: Supervised, now: float, why: str, reason: RestartReason) -> None:
        """After a failure: BACKOFF (started again after the policy's delay) or FATAL."""
        if not daemon.want_running:
            self._set(daemon, State.STOPPED, why)
            return
        delay = daemon.policy.failed(now)
        if delay is None:
            daemon.pending_restart, daemon.alert_when_running = None, False
            limit = (f"failed {self.config.start_limit_burst} times within "
                     f"{self.config.start_limit_interval_s:g}s (start_limit_burst)")
            self._set(daemon, State.FATAL, f"{why}; {limit}")
            self._alert("fatal", AlertLevel.CRITICAL, daemon,
                        f"{daemon.name} is FATAL: {why}; {limit}; hftctl start "
                        f"{daemon.name} to try again")
            return
        daemon.pending_restart = reason
        self._set(daemon, State.BACKOFF, f"{why}; starting again in {delay:g}s")
        daemon.deadline = now + delay

    def _take_answers(self, now: float) -> None:
        for daemon in self.daemons.values():
            answer = None if daemon.probe is None else daemon.probe.take()
            if answer is None:
                continue
            daemon.health = answer
            daemon.failed_health = 0 if answer == SERVING else daemon.failed_health + 1
            if daemon.state is State.STARTING and answer == SERVING:
                self._set(daemon, State.RUNNING, "")
                daemon.running_since, daemon.stale_beats = now, 0
                if daemon.alert_when_running:
                    daemon.alert_when_running = False
                    assert daemon.process is not None
                    self._alert("restart", AlertLevel.WARNING, daemon,
                                f"{daemon.name} restarted and runs again (pid "
                                f"{daemon.process.pid})", {"pid": str(daemon.process.pid)})

    def _check_all(self, now: float) -> None:
        for daemon in self.daemons.values():
            if daemon.state is State.FOREIGN and daemon.want_running \
                    and socket_holder(self.suite.socket_path(daemon.name)) is None:
                self._set(daemon, State.STARTING, "")
            if daemon.state is State.RUNNING and daemon.process is not None:
                self._check(daemon, daemon.process, now)

    def _check(self, daemon: Supervised, process: DaemonProcess, now: float) -> None:
        daemon.policy.ran_since(daemon.running_since, now)
        daemon.usage = usage(process.psutil)
        daemon.heartbeat_age_s = heartbeat_age_s(self.suite.heartbeat_path(daemon.name),
                                                 process.pid, int(process.create_time * 1e9))
        if daemon.usage is not None and self._over_limits(daemon, daemon.usage, now):
            return
        stale = daemon.heartbeat_age_s > self.config.heartbeat_timeout_s
        daemon.stale_beats = daemon.stale_beats + 1 if stale else 0
        limit = self.config.unhealthy_after
        if daemon.stale_beats >= limit or daemon.failed_health >= limit:
            if daemon.stale_beats >= limit:
                why = (f"heartbeat {daemon.heartbeat_age_s:.1f}s old (heartbeat_timeout_s "
                       f"{self.config.heartbeat_timeout_s:g}): its main loop hangs")
                kind, reason = "heartbeat_lost", RestartReason.HEARTBEAT
            else:
                why = f"health {daemon.health} on {daemon.failed_health} calls in a row"
                kind, reason = "hang", RestartReason.HANG
            self._alert(kind, AlertLevel.CRITICAL, daemon, f"{daemon.name}: {why}; restarting",
                        {"pid": str(process.pid)})
            daemon.alert_when_running = True
            daemon.failure = (why, reason)
            self._signal_stop(daemon, now)
            return
        if daemon.probe is not None:
            daemon.probe.request(self.config.health_timeout_s)

    def _over_limits(self, daemon: Supervised, measured: Usage, now: float) -> bool:
        """Memory above its limit: alert and restart (True). CPU above its limit for
        ``unhealthy_after`` checks: one warning per episode."""
        max_rss_mb = self.config.max_rss_mb.get(daemon.name)
        if max_rss_mb is not None and measured.rss_bytes > max_rss_mb * 2**20:
            why = f"rss {measured.rss_bytes / 2**20:.0f} MB above max_rss_mb {max_rss_mb}"
            self._alert("memory", AlertLevel.CRITICAL, daemon, f"{daemon.name}: {why}; "
                        "restarting", {"rss_bytes": str(measured.rss_bytes)})
            daemon.alert_when_running = True
            daemon.failure = (why, RestartReason.MEMORY)
            self._signal_stop(daemon, now)
            return True
        max_cpu = self.config.max_cpu_percent.get(daemon.name)
        if max_cpu is not None and measured.cpu_percent > max_cpu:
            daemon.hot_checks += 1
            if daemon.hot_checks >= self.config.unhealthy_after and not daemon.cpu_alerted:
                daemon.cpu_alerted = True
                self._alert("cpu", AlertLevel.WARNING, daemon,
                            f"{daemon.name}: CPU {measured.cpu_percent:.0f}% above "
                            f"max_cpu_percent {max_cpu:g}", {})
        else:
            daemon.hot_checks, daemon.cpu_alerted = 0, False
        return False

    def _advance(self, now: float) -> None:
        """Time-driven steps: backoff over, spawn in start order, start and kill timeouts."""
        for daemon in self.daemons.values():
            if daemon.state is State.BACKOFF and now >= daemon.deadline:
                self._set(daemon, State.STARTING, daemon.reason)
            if daemon.state is State.STARTING and daemon.process is None:
                if not self._shutting_down:
                    self._spawn_in_turn(daemon, now)
            elif daemon.state is State.STARTING and daemon.process is not None:
                if now >= daemon.deadline:
                    daemon.failure = (f"not SERVING within {self.config.start_timeout_s:g}s "
                                      "(start_timeout_s)", RestartReason.CRASH)
                    self._signal_stop(daemon, now)
                elif now >= daemon.next_probe and daemon.probe is not None:
                    daemon.next_probe = now + STARTING_PROBE_S
                    daemon.probe.request(self.config.health_timeout_s)
            elif daemon.state is State.STOPPING and now >= daemon.deadline:
                assert daemon.process is not None
                log.warning("not stopped within kill_timeout_s: SIGKILL", extra={
                    "supervised": daemon.name, "child_pid": daemon.process.pid})
                daemon.process.signal_group(signal.SIGKILL)
                daemon.deadline = math.inf

    def _spawn_in_turn(self, daemon: Supervised, now: float) -> None:
        """Spawn ``daemon`` unless one before it in the start order is still starting, or a
        process this watchdog did not start holds its socket."""
        ahead = next((d for d in self.daemons.values() if d.name == daemon.name
                      or d.state is State.STARTING), daemon)
        if ahead is not daemon:
            daemon.reason = f"waiting for {ahead.name} to be SERVING"
            return
        socket_path = self.suite.socket_path(daemon.name)
        holder = socket_holder(socket_path)
        if holder is not None:
            self._set(daemon, State.FOREIGN,
                      f"pid {holder} serves {socket_path} and was not started by this watchdog; "
                      "it is left alone: stop it to let the watchdog start its own")
            return
        try:
            process = spawn(self.suite, daemon.name)
        except OSError as exc:
            self._failed(daemon, now, f"cannot spawn: {exc}", RestartReason.CRASH)
            return
        log.info("daemon spawned", extra={"supervised": daemon.name, "child_pid": process.pid})
        self._attach(daemon, process, now)
        daemon.reason = ""
        daemon.deadline = now + self.config.start_timeout_s
        if daemon.pending_restart is not None:
            daemon.restarts += 1
            self.restarts_total[(daemon.name, daemon.pending_restart.value)] += 1
            daemon.pending_restart = None

    # Helpers

    def _attach(self, daemon: Supervised, process: DaemonProcess, now: float) -> None:
        daemon.process = process
        daemon.probe = HealthProbe(self.suite.socket_path(daemon.name), self._wake)
        daemon.health, daemon.next_probe = "", now
        daemon.failed_health = daemon.stale_beats = 0
        self._dirty = True

    def _detach(self, daemon: Supervised) -> None:
        if daemon.process is not None:
            daemon.process.close()
        if daemon.probe is not None:
            daemon.probe.close()
        daemon.process = daemon.probe = daemon.usage = None
        daemon.health, daemon.heartbeat_age_s, daemon.hot_checks = "", -1.0, 0
        daemon.deadline = math.inf
        self._dirty = True

    def _signal_stop(self, daemon: Supervised, now: float) -> None:
        assert daemon.process is not None
        self._set(daemon, State.STOPPING, daemon.failure[0] if daemon.failure else "")
        daemon.process.signal_group(signal.SIGTERM)
        daemon.deadline = now + self.config.kill_timeout_s

    def _set(self, daemon: Supervised, state: State, reason: str) -> None:
        if state is not daemon.state:
            log.info("daemon state", extra={"supervised": daemon.name, "state": state.value,
                                            "was": daemon.state.value, "reason": reason})
        daemon.state, daemon.reason = state, reason
        daemon.deadline = math.inf
        self._dirty = True

    def _alert(self, kind: str, level: AlertLevel, daemon: Supervised, summary: str,
               details: dict[str, str] | None = None) -> None:
        self._send(Alert(kind, level, daemon.name, summary,
                         {"state": daemon.state.value, **(details or {})}))

    def _send(self, alert: Alert) -> None:
        self.alerts_total[(alert.kind, alert.level.name.lower())] += 1
        self._alerts.send(alert)

    def _poll_journals(self) -> None:
        if self._journals is None:
            return
        alerts = self._journals.poll()
        for alert in alerts:
            self._send(alert)
        if alerts:  # saved then (not after every record): a restart rereads no alert
            self._dirty = True

    def _publish(self) -> None:
        self.snapshot = tuple(metrics.daemon_status(daemon) for daemon in self.daemons.values())

    def _save(self) -> None:
        records = {d.name: statefile.DaemonRecord(
            pid=d.process.pid if d.process else 0,
            create_time=d.process.create_time if d.process else 0.0,
            want_running=d.want_running, restarts=d.restarts,
            fatal=d.reason if d.state is State.FATAL else "") for d in self.daemons.values()}
        journals = {} if self._journals is None else self._journals.positions
        try:
            statefile.save(self._state_path, statefile.SavedState(records, journals))
        except OSError as exc:
            log.error("cannot write the state file", extra={"path": str(self._state_path),
                                                            "error": str(exc)})
            return
        self._dirty = False

    def _wake(self) -> None:
        with contextlib.suppress(BlockingIOError):
            os.write(self._wake_fds[1], b"\0")
