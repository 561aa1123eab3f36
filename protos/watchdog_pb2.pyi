from google.protobuf.internal import containers as _containers
from google.protobuf.internal import enum_type_wrapper as _enum_type_wrapper
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class SupervisedState(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    SUPERVISED_STATE_UNSPECIFIED: _ClassVar[SupervisedState]
    SUPERVISED_STATE_STOPPED: _ClassVar[SupervisedState]
    SUPERVISED_STATE_STARTING: _ClassVar[SupervisedState]
    SUPERVISED_STATE_RUNNING: _ClassVar[SupervisedState]
    SUPERVISED_STATE_BACKOFF: _ClassVar[SupervisedState]
    SUPERVISED_STATE_STOPPING: _ClassVar[SupervisedState]
    SUPERVISED_STATE_FATAL: _ClassVar[SupervisedState]
    SUPERVISED_STATE_FOREIGN: _ClassVar[SupervisedState]
SUPERVISED_STATE_UNSPECIFIED: SupervisedState
SUPERVISED_STATE_STOPPED: SupervisedState
SUPERVISED_STATE_STARTING: SupervisedState
SUPERVISED_STATE_RUNNING: SupervisedState
SUPERVISED_STATE_BACKOFF: SupervisedState
SUPERVISED_STATE_STOPPING: SupervisedState
SUPERVISED_STATE_FATAL: SupervisedState
SUPERVISED_STATE_FOREIGN: SupervisedState

class StartRequest(_message.Message):
    __slots__ = ("names",)
    NAMES_FIELD_NUMBER: _ClassVar[int]
    names: _containers.RepeatedScalarFieldContainer[str]
    def __init__(self, names: _Optional[_Iterable[str]] = ...) -> None: ...

class StopRequest(_message.Message):
    __slots__ = ("names",)
    NAMES_FIELD_NUMBER: _ClassVar[int]
    names: _containers.RepeatedScalarFieldContainer[str]
    def __init__(self, names: _Optional[_Iterable[str]] = ...) -> None: ...

class RestartRequest(_message.Message):
    __slots__ = ("name",)
    NAME_FIELD_NUMBER: _ClassVar[int]
    name: str
    def __init__(self, name: _Optional[str] = ...) -> None: ...

class StatusRequest(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class DaemonStatus(_message.Message):
    __slots__ = ("name", "enabled", "state", "pid", "uptime_s", "restarts", "health", "heartbeat_age_s", "reason", "rss_bytes", "cpu_percent")
    NAME_FIELD_NUMBER: _ClassVar[int]
    ENABLED_FIELD_NUMBER: _ClassVar[int]
    STATE_FIELD_NUMBER: _ClassVar[int]
    PID_FIELD_NUMBER: _ClassVar[int]
    UPTIME_S_FIELD_NUMBER: _ClassVar[int]
    RESTARTS_FIELD_NUMBER: _ClassVar[int]
    HEALTH_FIELD_NUMBER: _ClassVar[int]
    HEARTBEAT_AGE_S_FIELD_NUMBER: _ClassVar[int]
    REASON_FIELD_NUMBER: _ClassVar[int]
    RSS_BYTES_FIELD_NUMBER: _ClassVar[int]
    CPU_PERCENT_FIELD_NUMBER: _ClassVar[int]
    name: str
    enabled: bool
    state: SupervisedState
    pid: int
    uptime_s: float
    restarts: int
    health: str
    heartbeat_age_s: float
    reason: str
    rss_bytes: float
    cpu_percent: float
    def __init__(self, name: _Optional[str] = ..., enabled: _Optional[bool] = ..., state: _Optional[_Union[SupervisedState, str]] = ..., pid: _Optional[int] = ..., uptime_s: _Optional[float] = ..., restarts: _Optional[int] = ..., health: _Optional[str] = ..., heartbeat_age_s: _Optional[float] = ..., reason: _Optional[str] = ..., rss_bytes: _Optional[float] = ..., cpu_percent: _Optional[float] = ...) -> None: ...

class DaemonsResponse(_message.Message):
    __slots__ = ("daemons",)
    DAEMONS_FIELD_NUMBER: _ClassVar[int]
    daemons: _containers.RepeatedCompositeFieldContainer[DaemonStatus]
    def __init__(self, daemons: _Optional[_Iterable[_Union[DaemonStatus, _Mapping]]] = ...) -> None: ...
