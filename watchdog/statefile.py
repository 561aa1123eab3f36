"""The watchdog's state file, ``<home>/run/watchdog.state``: what a restarted watchdog needs
to take over where the last one stopped.

Per daemon: the pid and create time of the process it started (to adopt that very process,
never another with a recycled pid), whether it should run, its restart count and, when it is
FATAL, why (a FATAL daemon stays so across a restart of the watchdog); per alert
journal: the next seq to read (so alerts are neither repeated nor skipped). JSON, mode 0600,
replaced atomically (written to a temporary file, fsynced, renamed over the old one).
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

VERSION = 1
log = logging.getLogger("hft.watchdog.state")


@dataclass(frozen=True)
class DaemonRecord:
    pid: int = 0
    create_time: float = 0.0
    want_running: bool = False
    restarts: int = 0
    fatal: str = ""
    """Why it is FATAL; empty when it is not."""


@dataclass(frozen=True)
class SavedState:
    daemons: dict[str, DaemonRecord] = field(default_factory=dict)
    journals: dict[str, int] = field(default_factory=dict)
    """Alert journal name -> the next seq to read."""


def state_path(run_dir: Path) -> Path:
    return run_dir / "watchdog.state"


def save(path: Path, state: SavedState) -> None:
    body = json.dumps({"version": VERSION,
                       "daemons": {name: asdict(record) for name, record in state.daemons.items()},
                       "journals": state.journals}, indent=1, sort_keys=True)
    temporary = path.with_name(path.name + ".tmp")
    fd = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_CLOEXEC, 0o600)
    try:
        os.write(fd, body.encode())
        os.fsync(fd)
    finally:
        os.close(fd)
    os.replace(temporary, path)


def load(path: Path) -> SavedState:
    """The saved state; an empty one if there is none or it cannot be used (logged: the
    watchdog then starts afresh instead of refusing to run)."""
    try:
        raw: Any = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        return SavedState()
    except (OSError, ValueError) as exc:
        log.error("the state file cannot be read; starting afresh",
                  extra={"path": str(path), "error": str(exc)})
        return SavedState()
    with contextlib.suppress(TypeError, ValueError, AttributeError, KeyError):
        if raw["version"] == VERSION:
            daemons = {str(name): DaemonRecord(pid=int(entry["pid"]),
                                               create_time=float(entry["create_time"]),
                                               want_running=bool(entry["want_running"]),
                                               restarts=int(entry["restarts"]),
                                               fatal=str(entry.get("fatal", "")))
                       for name, entry in raw["daemons"].items()}
            journals = {str(name): int(seq) for name, seq in raw["journals"].items()}
            return SavedState(daemons, journals)
    log.error("the state file is not in the expected format; starting afresh",
              extra={"path": str(path)})
    return SavedState()
