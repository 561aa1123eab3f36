"""hft.watchdog.v1.Watchdog: the watchdog's gRPC service (start, stop, restart, status), served
on its control socket beside Control, health and reflection.

Handlers run in gRPC's threads: they validate the names, hand the change to the supervisor
thread and answer from its published snapshot. Stop answers once the daemons' processes are
gone (or the call's deadline is near, with what is still stopping).
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, NoReturn

import grpc

from hft.daemons.runtime.config import DAEMON_NAMES
from hft.daemons.runtime.control import GrpcService
from hft.protos import watchdog_pb2, watchdog_pb2_grpc

if TYPE_CHECKING:
    from hft.watchdog.supervisor import Supervisor

WATCHDOG_SERVICE = watchdog_pb2.DESCRIPTOR.services_by_name["Watchdog"].full_name
COMMAND_TIMEOUT_S = 5.0
"""How long a handler waits for the supervisor thread to take a command."""
POLL_S = 0.05
_SETTLED = frozenset({watchdog_pb2.SUPERVISED_STATE_STOPPED, watchdog_pb2.SUPERVISED_STATE_FATAL,
                      watchdog_pb2.SUPERVISED_STATE_FOREIGN})


def watchdog_service(supervisor: Supervisor) -> GrpcService:
    servicer = WatchdogService(supervisor)
    return GrpcService(WATCHDOG_SERVICE, lambda server: watchdog_pb2_grpc.add_WatchdogServicer_to_server(  # type: ignore[no-untyped-call]
        servicer, server))


class WatchdogService(watchdog_pb2_grpc.WatchdogServicer):
    """The RPCs (method names are the RPC names)."""

    def __init__(self, supervisor: Supervisor) -> None:
        self._supervisor = supervisor

    def Start(self, request: watchdog_pb2.StartRequest,  # noqa: N802
              context: grpc.ServicerContext) -> watchdog_pb2.DaemonsResponse:
        names = self._names(request.names, context, enabled_only=True)
        self._command(context, lambda: self._supervisor.start_daemons(names))
        return self._response(names)

    def Stop(self, request: watchdog_pb2.StopRequest,  # noqa: N802
             context: grpc.ServicerContext) -> watchdog_pb2.DaemonsResponse:
        names = self._names(request.names, context, enabled_only=False)
        self._command(context, lambda: self._supervisor.stop_daemons(names))
        remaining = context.time_remaining()
        deadline = time.monotonic() + (self._supervisor.config.kill_timeout_s + 5.0
                                       if remaining is None else max(0.0, remaining - 0.5))
        while time.monotonic() < deadline and not all(
                status.state in _SETTLED for status in self._supervisor.status_of(names)):
            time.sleep(POLL_S)
        return self._response(names)

    def Restart(self, request: watchdog_pb2.RestartRequest,  # noqa: N802
                context: grpc.ServicerContext) -> watchdog_pb2.DaemonsResponse:
        [name] = self._names([request.name], context, enabled_only=True)
        self._command(context, lambda: self._supervisor.restart_daemon(name))
        return self._response([name])

    def Status(self, request: watchdog_pb2.StatusRequest,  # noqa: N802
               context: grpc.ServicerContext) -> watchdog_pb2.DaemonsResponse:
        return watchdog_pb2.DaemonsResponse(daemons=self._supervisor.snapshot)

    def _names(self, names: Sequence[str], context: grpc.ServicerContext,
               enabled_only: bool) -> list[str]:
        """The named daemons (every enabled one if none), each known and, to be started,
        enabled."""
        daemons = self._supervisor.daemons
        if not names:
            return [name for name in DAEMON_NAMES if daemons[name].enabled or not enabled_only]
        unknown = [name for name in names if name not in daemons]
        if unknown:
            _abort(context, grpc.StatusCode.INVALID_ARGUMENT,
                   f"unknown daemon {', '.join(map(repr, unknown))}; expected one of "
                   f"{', '.join(DAEMON_NAMES)}")
        disabled = [name for name in names if enabled_only and not daemons[name].enabled]
        if disabled:
            _abort(context, grpc.StatusCode.INVALID_ARGUMENT,
                   f"{', '.join(disabled)} disabled in the watchdog's config "
                   "(daemons.NAME.enabled = false)")
        return list(dict.fromkeys(names))

    def _command(self, context: grpc.ServicerContext, command: Callable[[], None]) -> None:
        future = self._supervisor.submit(command)
        try:
            future.result(timeout=COMMAND_TIMEOUT_S)
        except TimeoutError:
            _abort(context, grpc.StatusCode.UNAVAILABLE,
                   "the supervisor did not take the command (the watchdog is stopping?)")

    def _response(self, names: Sequence[str]) -> watchdog_pb2.DaemonsResponse:
        # the snapshot is published after the turn that ran the command
        return watchdog_pb2.DaemonsResponse(daemons=self._supervisor.status_of(names))


def _abort(context: grpc.ServicerContext, code: grpc.StatusCode, message: str) -> NoReturn:
    context.abort(code, message)
    raise AssertionError("grpc.ServicerContext.abort returned")
