"""What the supervisor checks on a live daemon: gRPC health (asynchronous, with a deadline),
heartbeat freshness and psutil's view (memory, CPU).

A health call never blocks the supervisor: it is sent with a deadline and its answer is
picked up on a later loop turn (the callback wakes the loop), so one daemon that does not
answer delays nobody else's checks. The heartbeat catches what health cannot: a plugin stuck
in the main loop stops the beats while gRPC's threads still answer SERVING.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import grpc
import psutil
from grpc_health.v1 import health_pb2, health_pb2_grpc

from hft.daemons.runtime.heartbeat import HeartbeatError, read_heartbeat

SERVING = "SERVING"
_CHANNEL_OPTIONS = (
    ("grpc.initial_reconnect_backoff_ms", 50),
    ("grpc.min_reconnect_backoff_ms", 50),
    ("grpc.max_reconnect_backoff_ms", 250),
)
"""A starting daemon's socket appears within a second: retry the connection quickly."""


class HealthProbe:
    """grpc.health.v1 checks of one daemon process over its Unix socket, one at a time."""

    def __init__(self, socket_path: Path, on_answer: Callable[[], None]) -> None:
        self._channel = grpc.insecure_channel(f"unix:{socket_path}", options=_CHANNEL_OPTIONS)
        self._stub = health_pb2_grpc.HealthStub(self._channel)
        self._on_answer = on_answer
        self._lock = threading.Lock()
        self._in_flight = False
        self._answer: str | None = None

    def request(self, timeout_s: float) -> None:
        """Send a check unless one is still out."""
        with self._lock:
            if self._in_flight:
                return
            self._in_flight = True
        future = self._stub.Check.future(health_pb2.HealthCheckRequest(service=""),
                                         timeout=timeout_s)
        future.add_done_callback(self._answered)

    def take(self) -> str | None:
        """The answer that came in since the last take, if any: a grpc.health.v1 status name,
        ``timeout`` (no answer within the deadline) or ``unreachable``."""
        with self._lock:
            answer, self._answer = self._answer, None
            return answer

    def close(self) -> None:
        self._channel.close()

    def _answered(self, future: grpc.Future) -> None:
        try:
            response = future.result()
            answer = health_pb2.HealthCheckResponse.ServingStatus.Name(response.status)
        except grpc.FutureCancelledError:
            answer = "unreachable"
        except grpc.RpcError as exc:
            answer = {grpc.StatusCode.DEADLINE_EXCEEDED: "timeout",
                      grpc.StatusCode.UNAVAILABLE: "unreachable"}.get(exc.code(),
                                                                      exc.code().name.lower())
        with self._lock:
            self._answer, self._in_flight = answer, False
        self._on_answer()


def heartbeat_age_s(path: Path, pid: int, since_ns: int) -> float:
    """Seconds since ``pid`` last beat in ``path``; since ``since_ns`` (its start) when the
    file holds no beat of that process (not written yet, or an earlier process's)."""
    try:
        beat = read_heartbeat(path)
    except HeartbeatError:
        beat = None
    if beat is not None and beat.pid == pid:
        return beat.age_s()
    return max(0.0, (time.time_ns() - since_ns) / 1e9)


@dataclass(frozen=True)
class Usage:
    rss_bytes: int
    cpu_percent: float
    """Since the previous sample of the same psutil.Process (100 = one core)."""


def usage(process: psutil.Process) -> Usage | None:
    """Resident memory and CPU of a live process; None if it is gone or a zombie."""
    try:
        with process.oneshot():
            if process.status() == psutil.STATUS_ZOMBIE:
                return None
            return Usage(process.memory_info().rss, process.cpu_percent(interval=None))
    except psutil.Error:
        return None
