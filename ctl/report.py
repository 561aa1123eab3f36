"""What ``hftctl status`` shows: the watchdog's view of every daemon, one row each, like
supervisorctl's (state, pid, uptime, restarts, health, heartbeat age, and why when it is not
running), after a row for the watchdog itself; and the status's exit code."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from hft.daemons.runtime.config import WATCHDOG
from hft.protos import control_pb2, watchdog_pb2
from hft.watchdog.metrics import is_up, state_name

EXIT_ALL_UP = 0
EXIT_NOT_ALL_UP = 3
"""An enabled daemon is not running healthy (stopped, starting, backoff, FATAL ...)."""
EXIT_NO_WATCHDOG = 4


def status_rows(watchdog: control_pb2.StatusResponse,
                daemons: Sequence[watchdog_pb2.DaemonStatus]) -> list[dict[str, Any]]:
    """The watchdog's row, then each daemon's, as plain data (JSON-ready)."""
    rows: list[dict[str, Any]] = [{
        "daemon": WATCHDOG, "enabled": True, "state": "running", "pid": watchdog.pid,
        "uptime_s": round(watchdog.uptime_s, 3), "restarts": None, "health": "SERVING",
        "heartbeat_age_s": None, "reason": ""}]
    for status in daemons:
        rows.append({
            "daemon": status.name, "enabled": status.enabled, "state": state_name(status.state),
            "pid": status.pid or None, "uptime_s": round(status.uptime_s, 3) if status.pid else None,
            "restarts": status.restarts, "health": status.health or None,
            "heartbeat_age_s": round(status.heartbeat_age_s, 3)
            if status.heartbeat_age_s >= 0 else None,
            "reason": status.reason if status.enabled else "disabled in the config"})
    return rows


def exit_code(daemons: Sequence[watchdog_pb2.DaemonStatus]) -> int:
    """0 when every enabled daemon runs and is healthy, else 3."""
    return EXIT_ALL_UP if all(is_up(status) for status in daemons if status.enabled) \
        else EXIT_NOT_ALL_UP


def table_rows(rows: Sequence[Mapping[str, Any]]) -> list[dict[str, Any]]:
    """The rows as the table shows them: uptime as H:MM:SS, ages in seconds."""
    return [{"daemon": row["daemon"], "state": row["state"], "pid": row["pid"],
             "uptime": None if row["uptime_s"] is None else _clock(row["uptime_s"]),
             "restarts": row["restarts"], "health": row["health"],
             "heartbeat": None if row["heartbeat_age_s"] is None
             else f"{row['heartbeat_age_s']:.1f}s", "reason": row["reason"] or None}
            for row in rows]


def _clock(seconds: float) -> str:
    whole = int(seconds)
    return f"{whole // 3600}:{whole // 60 % 60:02d}:{whole % 60:02d}"


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
