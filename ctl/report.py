"""What ``hftctl status`` shows: per daemon, its control plane's answer and its heartbeat.

The heartbeat file tells what gRPC cannot once a daemon is gone: whether it stopped cleanly
(last state STOPPED) or died (``dead``: its last state was not STOPPED and the pid is gone),
and a daemon whose pid lives but does not answer is ``unresponsive``.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import psutil

from hft.ctl.client import ControlError, DaemonClient
from hft.daemons.runtime.config import DAEMON_NAMES, SuiteConfig
from hft.daemons.runtime.heartbeat import (
    DaemonState,
    Heartbeat,
    HeartbeatError,
    read_heartbeat,
)
from hft.daemons.runtime.socketlock import PROBE_TIMEOUT_S
from hft.protos import control_pb2


def daemon_status(suite: SuiteConfig, name: str) -> dict[str, Any]:
    """One daemon's status as plain data (JSON-ready); works whether it runs or not."""
    row: dict[str, Any] = {
        "daemon": name, "enabled": suite.daemon(name).enabled, "running": False, "pid": None,
        "state": "stopped", "uptime_s": None, "heartbeat_age_s": None, "metrics_port": None,
        "plugins": [], "socket": str(suite.socket_path(name)),
    }
    heartbeat = _heartbeat(suite, name)
    if heartbeat is not None:
        row["heartbeat_age_s"] = round(heartbeat.age_s(), 3)
    try:
        with DaemonClient(suite.socket_path(name), timeout_s=PROBE_TIMEOUT_S) as client:
            status = client.status()
    except ControlError:
        if heartbeat is not None and heartbeat.state is not DaemonState.STOPPED:
            alive = psutil.pid_exists(heartbeat.pid)
            row.update(state="unresponsive" if alive else "dead",
                       pid=heartbeat.pid if alive else None)
        return row
    row.update(
        running=True, pid=status.pid,
        state=control_pb2.DaemonState.Name(status.state).removeprefix("DAEMON_STATE_").lower(),
        uptime_s=round(status.uptime_s, 3), metrics_port=status.metrics_port,
        plugins=[plugin_dict(p) for p in status.plugins])
    return row


def _heartbeat(suite: SuiteConfig, name: str) -> Heartbeat | None:
    try:
        return read_heartbeat(suite.heartbeat_path(name))
    except HeartbeatError:
        return None


def suite_status(suite: SuiteConfig) -> list[dict[str, Any]]:
    return [daemon_status(suite, name) for name in DAEMON_NAMES]


def plugin_dict(info: control_pb2.PluginInfo) -> dict[str, str]:
    return {"name": info.name, "spec": info.spec, "state": plugin_state(info),
            "error": info.error}


def plugin_state(info: control_pb2.PluginInfo) -> str:
    return control_pb2.PluginState.Name(info.state).removeprefix("PLUGIN_STATE_").lower()


def format_table(rows: Sequence[Mapping[str, Any]]) -> str:
    """Rows of dicts as aligned text columns (the union of their keys, in first-seen order)."""
    columns = list(dict.fromkeys(key for row in rows for key in row))
    cells = [[_cell(row.get(column)) for column in columns] for row in rows]
    widths = [max(len(column), *(len(line[i]) for line in cells))
              for i, column in enumerate(columns)]
    lines = [columns, *cells]
    return "\n".join("  ".join(text.ljust(width) for text, width in zip(line, widths, strict=True))
                     .rstrip() for line in lines)


def _cell(value: Any) -> str:
    if value is None:
        return "-"
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, float):
        return f"{value:.10g}"  # prices and money whole; no exponent below 1e10
    if isinstance(value, list):
        return ",".join(_cell(item) for item in value) or "-"
    if isinstance(value, dict) and "name" in value and "state" in value:
        return f"{value['name']}:{value['state']}"
    return str(value)

