"""A typed client for one daemon's control plane (used by hftctl, the watchdog and tests):
its Unix socket, or its TCP listener with the daemon's token.

Every failure comes out as :class:`ControlError` with the gRPC status name and the daemon's
message, so callers never handle ``grpc.RpcError`` themselves; the statuses a caller acts on
have their own subclass: :class:`DaemonUnavailableError` (nothing answers, or it is
stopping), :class:`PluginNotFound` and :class:`PluginExists` (the daemon's
PluginNotFoundError and PluginExistsError), :class:`CommandRejected` (a plugin refused a
command or the request was invalid) and :class:`Unauthenticated` (the TCP listener's token
is missing or wrong).
"""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping
from pathlib import Path
from types import TracebackType
from typing import Any, Self

import grpc
from grpc_health.v1 import health_pb2, health_pb2_grpc

from hft.daemons.runtime.token import METADATA_KEY, bearer
from hft.protos import control_pb2, control_pb2_grpc, watchdog_pb2, watchdog_pb2_grpc

DEFAULT_TIMEOUT_S = 5.0


class ControlError(Exception):
    """A control call failed; ``code`` is the gRPC status name, e.g. ``NOT_FOUND``."""

    def __init__(self, target: Path | str, code: str, details: str) -> None:
        self.target = target
        self.code = code
        self.details = details
        super().__init__(f"{target}: {code}: {details}")


class DaemonUnavailableError(ControlError):
    """Nothing answers on the socket (the daemon is not running or not reachable)."""


class PluginNotFound(ControlError):
    """The daemon has no plugin of that name (NOT_FOUND)."""


class PluginExists(ControlError):
    """The daemon already has a plugin of that name (ALREADY_EXISTS)."""


class CommandRejected(ControlError):
    """The request or the plugin's command was refused as invalid (INVALID_ARGUMENT)."""


class Unauthenticated(ControlError):
    """The TCP listener refused the call: no token, or not the daemon's (UNAUTHENTICATED)."""


_ERRORS: dict[grpc.StatusCode, type[ControlError]] = {
    grpc.StatusCode.UNAVAILABLE: DaemonUnavailableError,
    grpc.StatusCode.NOT_FOUND: PluginNotFound,
    grpc.StatusCode.ALREADY_EXISTS: PluginExists,
    grpc.StatusCode.INVALID_ARGUMENT: CommandRejected,
    grpc.StatusCode.UNAUTHENTICATED: Unauthenticated,
}


class DaemonClient:
    """Calls to the daemon serving ``target``: a Unix socket path, or a TCP ``HOST:PORT``
    string with ``token`` (the daemon's control_token_file); use as a context manager or
    ``close()``."""

    def __init__(self, target: Path | str, timeout_s: float = DEFAULT_TIMEOUT_S,
                 token: bytes | str | None = None) -> None:
        self.target = target
        self.timeout_s = timeout_s
        self._metadata = () if token is None else ((METADATA_KEY, bearer(token)),)
        self._channel = grpc.insecure_channel(
            f"unix:{target}" if isinstance(target, Path) else target)
        self._control = control_pb2_grpc.ControlStub(self._channel)  # type: ignore[no-untyped-call]
        self._health = health_pb2_grpc.HealthStub(self._channel)

    def __enter__(self) -> Self:
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 traceback: TracebackType | None) -> None:
        self.close()

    def close(self) -> None:
        self._channel.close()

    def health(self) -> str:
        """The overall grpc.health.v1 status name: ``SERVING``, ``NOT_SERVING``, ..."""
        response = self._call(self._health.Check, health_pb2.HealthCheckRequest(service=""))
        name: str = health_pb2.HealthCheckResponse.ServingStatus.Name(response.status)
        return name

    def status(self) -> control_pb2.StatusResponse:
        response: control_pb2.StatusResponse = self._call(self._control.Status,
                                                          control_pb2.StatusRequest())
        return response

    def list_plugins(self) -> list[control_pb2.PluginInfo]:
        response: control_pb2.ListPluginsResponse = self._call(
            self._control.ListPlugins, control_pb2.ListPluginsRequest())
        return list(response.plugins)

    def load_plugin(self, name: str, spec: str,
                    config: Mapping[str, Any] | None = None) -> control_pb2.PluginInfo:
        request = control_pb2.LoadPluginRequest(name=name, spec=spec,
                                                config_json=json.dumps(dict(config or {})))
        info: control_pb2.PluginInfo = self._call(self._control.LoadPlugin, request)
        return info

    def unload_plugin(self, name: str) -> control_pb2.PluginInfo:
        info: control_pb2.PluginInfo = self._call(self._control.UnloadPlugin,
                                                  control_pb2.UnloadPluginRequest(name=name))
        return info

    def reload_plugin(self, name: str) -> control_pb2.PluginInfo:
        info: control_pb2.PluginInfo = self._call(self._control.ReloadPlugin,
                                                  control_pb2.ReloadPluginRequest(name=name))
        return info

    def plugin_command(self, name: str, command: str,
                       args: Mapping[str, Any] | None = None) -> Any:
        """Run a plugin's command; its result, decoded from JSON."""
        request = control_pb2.PluginCommandRequest(name=name, command=command,
                                                   args_json=json.dumps(dict(args or {})))
        response: control_pb2.PluginCommandResponse = self._call(self._control.PluginCommand,
                                                                 request)
        return json.loads(response.result_json)

    def stop(self) -> int:
        """Ask the daemon to stop; returns its pid (to wait for the process to exit)."""
        response: control_pb2.StopResponse = self._call(self._control.Stop,
                                                        control_pb2.StopRequest())
        return response.pid

    def _call(self, method: Callable[..., Any], request: Any, timeout_s: float | None = None) -> Any:
        try:
            return method(request, timeout=timeout_s or self.timeout_s, metadata=self._metadata)
        except grpc.RpcError as exc:
            code = exc.code()
            error = _ERRORS.get(code, ControlError)
            raise error(self.target, code.name, exc.details() or "") from None


class WatchdogClient(DaemonClient):
    """The watchdog's control plane: Control and health like any daemon's, plus
    hft.watchdog.v1.Watchdog (start, stop, restart and status of the supervised daemons)."""

    def __init__(self, target: Path | str, timeout_s: float = DEFAULT_TIMEOUT_S,
                 token: bytes | str | None = None) -> None:
        super().__init__(target, timeout_s, token)
        self._watchdog = watchdog_pb2_grpc.WatchdogStub(self._channel)  # type: ignore[no-untyped-call]

    def daemons(self) -> list[watchdog_pb2.DaemonStatus]:
        """Every supervised daemon's status, in start order."""
        return self._daemons(self._watchdog.Status, watchdog_pb2.StatusRequest())

    def start_daemons(self, names: list[str]) -> list[watchdog_pb2.DaemonStatus]:
        """Have the watchdog start ``names`` (all enabled if empty); returns at once."""
        return self._daemons(self._watchdog.Start, watchdog_pb2.StartRequest(names=names))

    def stop_daemons(self, names: list[str], timeout_s: float) -> list[watchdog_pb2.DaemonStatus]:
        """Have the watchdog stop ``names`` (all if empty); returns once they have exited."""
        return self._daemons(self._watchdog.Stop, watchdog_pb2.StopRequest(names=names), timeout_s)

    def restart_daemon(self, name: str) -> list[watchdog_pb2.DaemonStatus]:
        return self._daemons(self._watchdog.Restart, watchdog_pb2.RestartRequest(name=name))

    def _daemons(self, method: Callable[..., Any], request: Any,
                 timeout_s: float | None = None) -> list[watchdog_pb2.DaemonStatus]:
        response: watchdog_pb2.DaemonsResponse = self._call(method, request, timeout_s)
        return list(response.daemons)
