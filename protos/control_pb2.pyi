from google.protobuf.internal import containers as _containers
from google.protobuf.internal import enum_type_wrapper as _enum_type_wrapper
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class DaemonState(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    DAEMON_STATE_UNSPECIFIED: _ClassVar[DaemonState]
    DAEMON_STATE_STARTING: _ClassVar[DaemonState]
    DAEMON_STATE_RUNNING: _ClassVar[DaemonState]
    DAEMON_STATE_STOPPING: _ClassVar[DaemonState]
    DAEMON_STATE_STOPPED: _ClassVar[DaemonState]

class PluginState(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    PLUGIN_STATE_UNSPECIFIED: _ClassVar[PluginState]
    PLUGIN_STATE_RUNNING: _ClassVar[PluginState]
    PLUGIN_STATE_STOPPED: _ClassVar[PluginState]
    PLUGIN_STATE_FAILED: _ClassVar[PluginState]
    PLUGIN_STATE_INITIALIZED: _ClassVar[PluginState]
    PLUGIN_STATE_DEGRADED: _ClassVar[PluginState]
DAEMON_STATE_UNSPECIFIED: DaemonState
DAEMON_STATE_STARTING: DaemonState
DAEMON_STATE_RUNNING: DaemonState
DAEMON_STATE_STOPPING: DaemonState
DAEMON_STATE_STOPPED: DaemonState
PLUGIN_STATE_UNSPECIFIED: PluginState
PLUGIN_STATE_RUNNING: PluginState
PLUGIN_STATE_STOPPED: PluginState
PLUGIN_STATE_FAILED: PluginState
PLUGIN_STATE_INITIALIZED: PluginState
PLUGIN_STATE_DEGRADED: PluginState

class PluginInfo(_message.Message):
    __slots__ = ("name", "spec", "state", "error")
    NAME_FIELD_NUMBER: _ClassVar[int]
    SPEC_FIELD_NUMBER: _ClassVar[int]
    STATE_FIELD_NUMBER: _ClassVar[int]
    ERROR_FIELD_NUMBER: _ClassVar[int]
    name: str
    spec: str
    state: PluginState
    error: str
    def __init__(self, name: _Optional[str] = ..., spec: _Optional[str] = ..., state: _Optional[_Union[PluginState, str]] = ..., error: _Optional[str] = ...) -> None: ...

class StatusRequest(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class StatusResponse(_message.Message):
    __slots__ = ("daemon", "pid", "state", "uptime_s", "version", "config_path", "plugins", "metrics_port", "started_ns", "loop_iterations")
    DAEMON_FIELD_NUMBER: _ClassVar[int]
    PID_FIELD_NUMBER: _ClassVar[int]
    STATE_FIELD_NUMBER: _ClassVar[int]
    UPTIME_S_FIELD_NUMBER: _ClassVar[int]
    VERSION_FIELD_NUMBER: _ClassVar[int]
    CONFIG_PATH_FIELD_NUMBER: _ClassVar[int]
    PLUGINS_FIELD_NUMBER: _ClassVar[int]
    METRICS_PORT_FIELD_NUMBER: _ClassVar[int]
    STARTED_NS_FIELD_NUMBER: _ClassVar[int]
    LOOP_ITERATIONS_FIELD_NUMBER: _ClassVar[int]
    daemon: str
    pid: int
    state: DaemonState
    uptime_s: float
    version: str
    config_path: str
    plugins: _containers.RepeatedCompositeFieldContainer[PluginInfo]
    metrics_port: int
    started_ns: int
    loop_iterations: int
    def __init__(self, daemon: _Optional[str] = ..., pid: _Optional[int] = ..., state: _Optional[_Union[DaemonState, str]] = ..., uptime_s: _Optional[float] = ..., version: _Optional[str] = ..., config_path: _Optional[str] = ..., plugins: _Optional[_Iterable[_Union[PluginInfo, _Mapping]]] = ..., metrics_port: _Optional[int] = ..., started_ns: _Optional[int] = ..., loop_iterations: _Optional[int] = ...) -> None: ...

class ListPluginsRequest(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class ListPluginsResponse(_message.Message):
    __slots__ = ("plugins",)
    PLUGINS_FIELD_NUMBER: _ClassVar[int]
    plugins: _containers.RepeatedCompositeFieldContainer[PluginInfo]
    def __init__(self, plugins: _Optional[_Iterable[_Union[PluginInfo, _Mapping]]] = ...) -> None: ...

class LoadPluginRequest(_message.Message):
    __slots__ = ("name", "spec", "config_json")
    NAME_FIELD_NUMBER: _ClassVar[int]
    SPEC_FIELD_NUMBER: _ClassVar[int]
    CONFIG_JSON_FIELD_NUMBER: _ClassVar[int]
    name: str
    spec: str
    config_json: str
    def __init__(self, name: _Optional[str] = ..., spec: _Optional[str] = ..., config_json: _Optional[str] = ...) -> None: ...

class UnloadPluginRequest(_message.Message):
    __slots__ = ("name",)
    NAME_FIELD_NUMBER: _ClassVar[int]
    name: str
    def __init__(self, name: _Optional[str] = ...) -> None: ...

class ReloadPluginRequest(_message.Message):
    __slots__ = ("name",)
    NAME_FIELD_NUMBER: _ClassVar[int]
    name: str
    def __init__(self, name: _Optional[str] = ...) -> None: ...

class StopRequest(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class StopResponse(_message.Message):
    __slots__ = ("pid",)
    PID_FIELD_NUMBER: _ClassVar[int]
    pid: int
    def __init__(self, pid: _Optional[int] = ...) -> None: ...

class PluginCommandRequest(_message.Message):
    __slots__ = ("name", "command", "args_json")
    NAME_FIELD_NUMBER: _ClassVar[int]
    COMMAND_FIELD_NUMBER: _ClassVar[int]
    ARGS_JSON_FIELD_NUMBER: _ClassVar[int]
    name: str
    command: str
    args_json: str
    def __init__(self, name: _Optional[str] = ..., command: _Optional[str] = ..., args_json: _Optional[str] = ...) -> None: ...

class PluginCommandResponse(_message.Message):
    __slots__ = ("result_json",)
    RESULT_JSON_FIELD_NUMBER: _ClassVar[int]
    result_json: str
    def __init__(self, result_json: _Optional[str] = ...) -> None: ...
