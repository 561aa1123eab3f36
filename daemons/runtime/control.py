"""The daemon's gRPC server: hft.control.v1.Control, grpc.health.v1 and server reflection.

It listens on a Unix domain socket created with mode 0600 (the umask is tightened around
the bind, so the socket is never reachable by other users, not even briefly) and, when
configured, on a TCP address where every call must carry the daemon's token (metadata
``authorization: Bearer <token>``, compared in constant time; a call without it gets
UNAUTHENTICATED before any handler runs). The TCP listener is bounded, since anyone who can
reach it may open connections: at most TCP_MAX_CONNECTIONS at once, a connection that does
not complete its HTTP/2 handshake within seconds is closed, idle ones after a minute, every
one after ten (clients reconnect), and at most TCP_MAX_CONCURRENT_RPCS calls run at once
(the rest are refused with RESOURCE_EXHAUSTED at once). So a flood of idle connections or
of unauthenticated calls holds a bounded number of descriptors and threads, and the Unix
socket (its own server, owner-only) keeps answering. Handlers run
in gRPC's worker threads; everything that touches plugins is handed to the main loop with
``host.submit`` and the handler waits for the result, so plugins only ever run on the main
thread.
"""

from __future__ import annotations

import json
import os
import re
import stat
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, NoReturn, TypeVar

import grpc
from grpc_health.v1 import health, health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection

import hft
from hft.daemons.runtime.config import PLUGIN_NAME_PATTERN
from hft.daemons.runtime.heartbeat import DaemonState
from hft.daemons.runtime.plugins import (
    LoadedPlugin,
    PluginExistsError,
    PluginNotFoundError,
    PluginState,
    exception_text,
)
from hft.daemons.runtime.token import METADATA_KEY, bearer, matches
from hft.protos import control_pb2, control_pb2_grpc

if TYPE_CHECKING:
    from hft.daemons.runtime.host import DaemonHost

CONTROL_SERVICE = control_pb2.DESCRIPTOR.services_by_name["Control"].full_name
DEFAULT_CALL_TIMEOUT_S = 30.0
"""How long a handler waits for the main loop when the client set no deadline."""
MAX_SPEC_LENGTH = 4096
MAX_CONFIG_JSON_LENGTH = 1 << 20
TCP_MAX_CONNECTIONS = 32
TCP_MAX_CONCURRENT_RPCS = 8
_TCP_OPTIONS = (
    ("grpc.max_allowed_incoming_connections", TCP_MAX_CONNECTIONS),
    ("grpc.server_handshake_timeout_ms", 5_000),
    ("grpc.max_connection_idle_ms", 60_000),
    ("grpc.max_connection_age_ms", 600_000),
    ("grpc.max_connection_age_grace_ms", 30_000),
    ("grpc.keepalive_time_ms", 60_000),
    ("grpc.keepalive_timeout_ms", 10_000),
    ("grpc.max_concurrent_streams", TCP_MAX_CONCURRENT_RPCS),
    ("grpc.max_receive_message_length", 2 * MAX_CONFIG_JSON_LENGTH),
)
"""The TCP listener's bounds (see the module docstring)."""
_PLUGIN_NAME = re.compile(PLUGIN_NAME_PATTERN)
_DAEMON_STATES = {
    DaemonState.STARTING: control_pb2.DAEMON_STATE_STARTING,
    DaemonState.RUNNING: control_pb2.DAEMON_STATE_RUNNING,
    DaemonState.STOPPING: control_pb2.DAEMON_STATE_STOPPING,
    DaemonState.STOPPED: control_pb2.DAEMON_STATE_STOPPED,
}
_PLUGIN_STATES = {
    PluginState.RUNNING: control_pb2.PLUGIN_STATE_RUNNING,
    PluginState.STOPPED: control_pb2.PLUGIN_STATE_STOPPED,
    PluginState.FAILED: control_pb2.PLUGIN_STATE_FAILED,
    PluginState.INITIALIZED: control_pb2.PLUGIN_STATE_INITIALIZED,
    PluginState.DEGRADED: control_pb2.PLUGIN_STATE_DEGRADED,
}
T = TypeVar("T")


@dataclass(frozen=True)
class GrpcService:
    """A further service a program serves beside Control (the watchdog's own): its full
    name (for health and reflection) and the generated ``add_..._to_server`` call for it."""

    name: str
    add_to: Callable[[grpc.Server], None]


class HostStoppingError(Exception):
    """The daemon is shutting down and takes no more commands."""


class CommandRefused(Exception):
    """A plugin command that did not run, with the gRPC status that says why."""

    def __init__(self, code: grpc.StatusCode, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.message = message


def plugin_info(entry: LoadedPlugin) -> control_pb2.PluginInfo:
    return control_pb2.PluginInfo(name=entry.name, spec=entry.spec,
                                  state=_PLUGIN_STATES[entry.health], error=entry.error)


def status_response(host: DaemonHost) -> control_pb2.StatusResponse:
    """The host's Status; call on the main thread (it reads the plugin table)."""
    return control_pb2.StatusResponse(
        daemon=host.name, pid=os.getpid(), state=_DAEMON_STATES[host.state],
        uptime_s=host.uptime_s(), version=hft.__version__, config_path=str(host.suite.source or ""),
        plugins=map(plugin_info, host.plugins), metrics_port=host.metrics_port,
        started_ns=host.started_ns, loop_iterations=host.iterations)


def plugin_command(host: DaemonHost, name: str, command: str, args: dict[str, Any]) -> str:
    """Run ``command(command, args)`` of a running plugin (on the main thread); its result as
    JSON. A plugin takes commands by defining that method; it refuses one by raising
    ValueError, LookupError or TypeError."""
    entry = host.plugins.get(name)
    if entry.state is not PluginState.RUNNING or entry.instance is None:
        raise CommandRefused(grpc.StatusCode.FAILED_PRECONDITION,
                             f"plugin {name!r} is {entry.state.value}, not running")
    handler = getattr(entry.instance, "command", None)
    if not callable(handler):
        raise CommandRefused(grpc.StatusCode.UNIMPLEMENTED,
                             f"plugin {name!r} ({entry.spec}) takes no commands")
    try:
        result = handler(command, args)
    except (ValueError, LookupError, TypeError) as exc:
        reason = exc.args[0] if isinstance(exc, KeyError) and exc.args else exc
        raise CommandRefused(grpc.StatusCode.INVALID_ARGUMENT,
                             f"{name} {command}: {reason}") from None
    except BaseException as exc:  # its exit is the command's failure, never the daemon's
        raise CommandRefused(grpc.StatusCode.INTERNAL,
                             f"{name} {command} raised {exception_text(exc)}") from None
    try:
        return json.dumps(result, allow_nan=False)
    except (TypeError, ValueError) as exc:
        raise CommandRefused(grpc.StatusCode.INTERNAL,
                             f"{name} {command}: the result is not JSON: {exc}") from None


class ControlService(control_pb2_grpc.ControlServicer):
    """hft.control.v1.Control for one DaemonHost (method names are the RPC names)."""

    def __init__(self, host: DaemonHost) -> None:
        self._host = host

    def Status(self, request: control_pb2.StatusRequest,  # noqa: N802
               context: grpc.ServicerContext) -> control_pb2.StatusResponse:
        return self._on_main_thread(context, lambda: status_response(self._host))

    def ListPlugins(self, request: control_pb2.ListPluginsRequest,  # noqa: N802
                    context: grpc.ServicerContext) -> control_pb2.ListPluginsResponse:
        def list_plugins() -> control_pb2.ListPluginsResponse:
            return control_pb2.ListPluginsResponse(plugins=map(plugin_info, self._host.plugins))
        return self._on_main_thread(context, list_plugins)

    def LoadPlugin(self, request: control_pb2.LoadPluginRequest,  # noqa: N802
                   context: grpc.ServicerContext) -> control_pb2.PluginInfo:
        name = _checked_name(request.name, context)
        if not request.spec or len(request.spec) > MAX_SPEC_LENGTH:
            _abort(context, grpc.StatusCode.INVALID_ARGUMENT,
                   f"spec must be 1 to {MAX_SPEC_LENGTH} characters, got {len(request.spec)}")
        config = _parse_config(request.config_json, context)
        return self._on_main_thread(
            context, lambda: plugin_info(self._host.plugins.load(name, request.spec, config)))

    def UnloadPlugin(self, request: control_pb2.UnloadPluginRequest,  # noqa: N802
                     context: grpc.ServicerContext) -> control_pb2.PluginInfo:
        name = _checked_name(request.name, context)
        return self._on_main_thread(context, lambda: plugin_info(self._host.plugins.unload(name)))

    def ReloadPlugin(self, request: control_pb2.ReloadPluginRequest,  # noqa: N802
                     context: grpc.ServicerContext) -> control_pb2.PluginInfo:
        name = _checked_name(request.name, context)
        return self._on_main_thread(context, lambda: plugin_info(self._host.plugins.reload(name)))

    def PluginCommand(self, request: control_pb2.PluginCommandRequest,  # noqa: N802
                      context: grpc.ServicerContext) -> control_pb2.PluginCommandResponse:
        name = _checked_name(request.name, context)
        args = _parse_config(request.args_json, context, "args_json")
        return self._on_main_thread(context, lambda: control_pb2.PluginCommandResponse(
            result_json=plugin_command(self._host, name, request.command, args)))

    def Stop(self, request: control_pb2.StopRequest,  # noqa: N802
             context: grpc.ServicerContext) -> control_pb2.StopResponse:
        self._host.request_stop("Control.Stop")
        return control_pb2.StopResponse(pid=os.getpid())

    def _on_main_thread(self, context: grpc.ServicerContext, command: Callable[[], T]) -> T:
        """Run ``command`` on the main loop and map its failure to a gRPC status."""
        try:
            future = self._host.submit(command)
        except HostStoppingError as exc:
            _abort(context, grpc.StatusCode.UNAVAILABLE, str(exc))
        remaining = context.time_remaining()
        timeout = DEFAULT_CALL_TIMEOUT_S if remaining is None else max(remaining, 0.0)
        try:
            return future.result(timeout=timeout)
        except TimeoutError:
            code, message = (grpc.StatusCode.DEADLINE_EXCEEDED,
                             f"the main loop did not finish the command within {timeout:.1f}s "
                             "(it is busy or hung; the command may still complete)")
        except HostStoppingError as exc:
            code, message = grpc.StatusCode.UNAVAILABLE, str(exc)
        except CommandRefused as exc:
            code, message = exc.code, exc.message
        except PluginNotFoundError as exc:
            code, message = grpc.StatusCode.NOT_FOUND, str(exc)
        except PluginExistsError as exc:
            code, message = grpc.StatusCode.ALREADY_EXISTS, str(exc)
        except Exception as exc:  # a bug in the host, not in a plugin (those are recorded)
            code, message = grpc.StatusCode.INTERNAL, f"{type(exc).__name__}: {exc}"
        _abort(context, code, message)


class ControlServer:
    """The gRPC server of one daemon: on its Unix socket, and on TCP with a token if asked."""

    def __init__(self, host: DaemonHost, socket_path: Path, tcp_address: str | None = None,
                 token: bytes | None = None, services: Sequence[GrpcService] = ()) -> None:
        self.socket_path = socket_path
        self._services = tuple(services)
        self.tcp_address = tcp_address
        self.tcp_port = 0
        """The bound TCP port (``tcp_address`` may ask for port 0: any free one)."""
        self._health = health.HealthServicer()
        self._server = self._serving(ControlService(host), interceptors=())
        self._tcp_server = None
        if tcp_address is not None:
            if not token:
                raise ValueError("a TCP control listener needs a token")
            self._tcp_server = self._serving(
                ControlService(host), interceptors=(_TokenCheck(token),), options=_TCP_OPTIONS,
                maximum_concurrent_rpcs=TCP_MAX_CONCURRENT_RPCS)
        self.set_serving(False)

    def _serving(self, control: ControlService, interceptors: tuple[grpc.ServerInterceptor, ...],
                 options: tuple[tuple[str, int], ...] = (),
                 maximum_concurrent_rpcs: int | None = None) -> grpc.Server:
        server = grpc.server(ThreadPoolExecutor(max_workers=4, thread_name_prefix="grpc"),
                             interceptors=interceptors, options=options,
                             maximum_concurrent_rpcs=maximum_concurrent_rpcs)
        control_pb2_grpc.add_ControlServicer_to_server(control, server)  # type: ignore[no-untyped-call]
        for service in self._services:
            service.add_to(server)
        health_pb2_grpc.add_HealthServicer_to_server(self._health, server)
        reflection.enable_server_reflection(
            (CONTROL_SERVICE, *(service.name for service in self._services),
             health.SERVICE_NAME, reflection.SERVICE_NAME), server)
        return server

    def start(self) -> None:
        """Bind the socket with mode 0600 (and the TCP address) and start serving (health:
        NOT_SERVING)."""
        old_umask = os.umask(0o177)
        try:
            self._server.add_insecure_port(f"unix:{self.socket_path}")
        finally:
            os.umask(old_umask)
        mode = stat.S_IMODE(self.socket_path.stat().st_mode)
        if mode != 0o600:
            raise PermissionError(f"{self.socket_path} was created with mode {mode:o}, not 600")
        if self._tcp_server is not None:
            try:
                self.tcp_port = self._tcp_server.add_insecure_port(str(self.tcp_address))
            except RuntimeError as exc:
                raise OSError(f"cannot listen on {self.tcp_address}: {exc}") from None
            if not self.tcp_port:
                raise OSError(f"cannot listen on {self.tcp_address}")
            self._tcp_server.start()
        self._server.start()

    def set_serving(self, serving: bool) -> None:
        status = (health_pb2.HealthCheckResponse.SERVING if serving
                  else health_pb2.HealthCheckResponse.NOT_SERVING)
        for service in ("", CONTROL_SERVICE, *(service.name for service in self._services)):
            self._health.set(service, status)

    def begin_shutdown(self) -> None:
        """Report NOT_SERVING from now on, whatever happens next."""
        self._health.enter_graceful_shutdown()

    def stop(self, grace_s: float) -> None:
        """Stop accepting calls, let running ones finish for ``grace_s``, close the socket."""
        stopping = [self._server.stop(grace_s)]
        if self._tcp_server is not None:
            stopping.append(self._tcp_server.stop(grace_s))
        for event in stopping:
            event.wait()


class _TokenCheck(grpc.ServerInterceptor):  # type: ignore[misc]  # grpc ships no stubs
    """The TCP listener's gate: a call whose metadata lacks the token is refused."""

    def __init__(self, token: bytes) -> None:
        self._expected = bearer(token)

    def intercept_service(self, continuation: Callable[[grpc.HandlerCallDetails], Any],
                          details: grpc.HandlerCallDetails) -> Any:
        handler = continuation(details)
        supplied = next((value for key, value in details.invocation_metadata or ()
                         if key == METADATA_KEY), "")
        if handler is None or (isinstance(supplied, str) and matches(supplied, self._expected)):
            return handler
        return _refusing(handler)


def _refusing(handler: Any) -> grpc.RpcMethodHandler:
    """A handler of the same kind as ``handler`` that answers UNAUTHENTICATED."""
    def refuse(_request: Any, context: grpc.ServicerContext) -> NoReturn:
        _abort(context, grpc.StatusCode.UNAUTHENTICATED,
               f"this listener needs the daemon's token in the metadata: {METADATA_KEY}: "
               "Bearer <token>")

    make = {(False, False): grpc.unary_unary_rpc_method_handler,
            (False, True): grpc.unary_stream_rpc_method_handler,
            (True, False): grpc.stream_unary_rpc_method_handler,
            (True, True): grpc.stream_stream_rpc_method_handler,
            }[(handler.request_streaming, handler.response_streaming)]
    method_handler: grpc.RpcMethodHandler = make(
        refuse, request_deserializer=handler.request_deserializer,
        response_serializer=handler.response_serializer)
    return method_handler


def _checked_name(name: str, context: grpc.ServicerContext) -> str:
    if not _PLUGIN_NAME.match(name):
        _abort(context, grpc.StatusCode.INVALID_ARGUMENT,
               f"plugin name {name!r} must match {PLUGIN_NAME_PATTERN}")
    return name


def _parse_config(text: str, context: grpc.ServicerContext,
                  field: str = "config_json") -> dict[str, Any]:
    if len(text) > MAX_CONFIG_JSON_LENGTH:
        _abort(context, grpc.StatusCode.INVALID_ARGUMENT,
               f"{field} is {len(text)} characters, at most {MAX_CONFIG_JSON_LENGTH}")
    try:
        config = json.loads(text) if text else {}
    except json.JSONDecodeError as exc:
        _abort(context, grpc.StatusCode.INVALID_ARGUMENT, f"{field} is not JSON: {exc}")
    if not isinstance(config, dict):
        _abort(context, grpc.StatusCode.INVALID_ARGUMENT,
               f"{field} must be a JSON object, got {type(config).__name__}")
    return config


def _abort(context: grpc.ServicerContext, code: grpc.StatusCode, message: str) -> NoReturn:
    context.abort(code, message)
    raise AssertionError("grpc.ServicerContext.abort returned")  # abort always raises
