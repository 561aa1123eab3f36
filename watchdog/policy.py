"""The supervised states and the restart policy: exponential backoff and the start limit.

States follow supervisord's: STOPPED, STARTING (spawned, not SERVING yet, or waiting for the
daemon before it), RUNNING, BACKOFF (failed, started again after a delay), STOPPING (SIGTERM
sent, SIGKILL at the deadline), FATAL (failed ``start_limit_burst`` times within
``start_limit_interval_s``; stays so until a Start or Restart) and FOREIGN (a process this
watchdog did not start holds the daemon's socket: it is reported and never touched).
"""

from __future__ import annotations

from collections import deque
from enum import Enum

from hft.daemons.runtime.config import WatchdogConfig


class State(Enum):
    STOPPED = "stopped"
    STARTING = "starting"
    RUNNING = "running"
    BACKOFF = "backoff"
    STOPPING = "stopping"
    FATAL = "fatal"
    FOREIGN = "foreign"


class RestartReason(Enum):
    """Why a daemon was restarted (the restarts_total metric's label)."""

    CRASH = "crash"
    HANG = "hang"
    HEARTBEAT = "heartbeat"
    MEMORY = "memory"
    MANUAL = "manual"


class RestartPolicy:
    """One daemon's failures: how long to wait before the next start, or FATAL.

    Each failure doubles the delay (``backoff_initial_s`` up to ``backoff_max_s``); a daemon
    that stays up for ``start_limit_interval_s`` is healthy again and its delay starts over.
    ``start_limit_burst`` failures within ``start_limit_interval_s`` are fatal.
    """

    def __init__(self, config: WatchdogConfig) -> None:
        self._config = config
        self._failures: deque[float] = deque()
        self._delay_s = config.backoff_initial_s

    def failed(self, now: float) -> float | None:
        """Record a failure at monotonic ``now``; the delay before the next start, None when
        the start limit is reached (FATAL)."""
        window = self._config.start_limit_interval_s
        self._failures.append(now)
        while self._failures and self._failures[0] <= now - window:
            self._failures.popleft()
        if len(self._failures) >= self._config.start_limit_burst:
            return None
        delay, self._delay_s = self._delay_s, min(self._delay_s * 2, self._config.backoff_max_s)
        return delay

    def ran_since(self, started: float, now: float) -> None:
        """Forgive the past failures once the daemon has run a whole start-limit window."""
        if now - started >= self._config.start_limit_interval_s:
            self.reset()

    def reset(self) -> None:
        self._failures.clear()
        self._delay_s = self._config.backoff_initial_s
