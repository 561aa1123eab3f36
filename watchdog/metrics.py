"""The watchdog's metric families and its per-daemon status message, both read from the
supervisor's published state (the names are fixed: the Prometheus rules and the Grafana
dashboards in ops/ are written against them)."""

from __future__ import annotations

import time
from collections.abc import Iterator
from typing import TYPE_CHECKING

from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric

from hft.protos import watchdog_pb2
from hft.watchdog.checks import SERVING
from hft.watchdog.policy import RestartReason, State

if TYPE_CHECKING:
    from hft.watchdog.supervisor import Supervised, Supervisor

_STATES: dict[State, watchdog_pb2.SupervisedState] = {
    state: getattr(watchdog_pb2, f"SUPERVISED_STATE_{state.name}") for state in State}


def state_name(value: int) -> str:
    """A SupervisedState as the lower-case name status shows (``running``, ``fatal`` ...)."""
    return watchdog_pb2.SupervisedState.Name(value).removeprefix("SUPERVISED_STATE_").lower()


def daemon_status(daemon: Supervised) -> watchdog_pb2.DaemonStatus:
    process = daemon.process
    return watchdog_pb2.DaemonStatus(
        name=daemon.name, enabled=daemon.enabled, state=_STATES[daemon.state],
        pid=0 if process is None else process.pid,
        uptime_s=0.0 if process is None else max(0.0, time.time() - process.create_time),
        restarts=daemon.restarts, health=daemon.health, heartbeat_age_s=daemon.heartbeat_age_s,
        reason=daemon.reason, rss_bytes=0 if daemon.usage is None else daemon.usage.rss_bytes,
        cpu_percent=0.0 if daemon.usage is None else daemon.usage.cpu_percent)


def is_up(status: watchdog_pb2.DaemonStatus) -> bool:
    return status.state == watchdog_pb2.SUPERVISED_STATE_RUNNING and status.health == SERVING


def families(supervisor: Supervisor) -> Iterator[Metric]:
    snapshot = supervisor.snapshot
    state = GaugeMetricFamily("hft_watchdog_daemon_state",
                              "1 for the state each supervised daemon is in, 0 for the others",
                              labels=["daemon", "state"])
    up = GaugeMetricFamily("hft_watchdog_daemon_up", "1 when the daemon runs and is healthy",
                           labels=["daemon"])
    heartbeat = GaugeMetricFamily("hft_watchdog_heartbeat_age_seconds",
                                  "Seconds since the daemon's main loop last beat",
                                  labels=["daemon"])
    rss = GaugeMetricFamily("hft_watchdog_daemon_rss_bytes", "Resident memory of the daemon",
                            labels=["daemon"])
    cpu = GaugeMetricFamily("hft_watchdog_daemon_cpu_percent",
                            "CPU of the daemon between two checks (100 = one core)",
                            labels=["daemon"])
    for status in snapshot:
        for value in _STATES.values():
            state.add_metric([status.name, state_name(value)], int(status.state == value))
        up.add_metric([status.name], int(is_up(status)))
        if status.pid:
            if status.heartbeat_age_s >= 0:
                heartbeat.add_metric([status.name], status.heartbeat_age_s)
            rss.add_metric([status.name], status.rss_bytes)
            cpu.add_metric([status.name], status.cpu_percent)
    yield from (state, up, heartbeat, rss, cpu)

    restarts = CounterMetricFamily("hft_watchdog_restarts",
                                   "Restarts of each daemon by the watchdog, by reason",
                                   labels=["daemon", "reason"])
    counted = dict(supervisor.restarts_total)
    for status in snapshot:
        for reason in RestartReason:
            restarts.add_metric([status.name, reason.value],
                                counted.get((status.name, reason.value), 0))
    yield restarts
    alerts = CounterMetricFamily("hft_watchdog_alerts", "Alerts raised, by kind and level",
                                 labels=["kind", "level"])
    for (kind, level), count in sorted(dict(supervisor.alerts_total).items()):
        alerts.add_metric([kind, level], count)
    yield alerts
