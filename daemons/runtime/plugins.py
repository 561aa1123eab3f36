"""Plugins: the unit every daemon is built from, loaded, unloaded and reloaded at run time.

A plugin is a subclass of :class:`Plugin` with the lifecycle ``init(ctx)`` -> ``start()`` ->
``stop()``. Its spec says where the class comes from:

- ``sim_feed`` -- an entry point of the ``hft.plugins`` group (installed packages);
- ``package.module:Class`` -- an importable module;
- ``/path/to/file.py`` or ``file.py:Class`` -- a source file; without ``:Class`` the file must
  define exactly one Plugin subclass.

Everything a plugin hooks into the host (bus subscriptions, pollers, timers, metrics) goes
through its :class:`PluginContext`, which remembers it, so unloading a plugin releases all of
it. A plugin that fails to import, init or start is recorded as FAILED with its error and the
host goes on; a reload whose new code does not import leaves the old instance running.
"Fails" means any BaseException: a plugin that calls ``sys.exit()`` or raises
KeyboardInterrupt has failed, the daemon has not (the host turns SIGINT and SIGTERM into a
stop request, so no KeyboardInterrupt comes from a real signal). A running plugin whose bus
handler raised on its last ``failing_after`` calls in a row is DEGRADED until a call
returns normally.

A config validation error never echoes what was given (pydantic's ``input``): the fields are
credentials as often as not, so the error names the key and the reason only. The values under
secret-looking keys of every config loaded are registered with the log masker
(:mod:`hft.daemons.runtime.secrets`), and plugin errors are masked with it too.
"""

from __future__ import annotations

import importlib
import importlib.machinery
import importlib.util
import logging
import sys
import traceback
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from enum import StrEnum
from importlib.metadata import entry_points
from pathlib import Path
from types import ModuleType
from typing import TYPE_CHECKING, Any, Protocol

import pydantic
from prometheus_client.core import Metric

from hft.daemons.runtime import secrets
from hft.daemons.runtime.bus import EventBus, Handler

if TYPE_CHECKING:
    from hft.daemons.runtime.journal import JournalReader

ENTRY_POINT_GROUP = "hft.plugins"
_SOON_S = 1e-9
"""``call_soon``'s timer: due at once, so it runs at the loop's next look at its timers."""

Poller = Callable[[], int]
"""Called from the host's main loop; returns how many events it handled (0 = idle)."""


class HostServices(Protocol):
    """What the daemon host offers plugins besides the bus."""

    @property
    def journal_dir(self) -> Path:
        """Where journals live (``<home>/journal``)."""

    @property
    def run_dir(self) -> Path:
        """Where run-time files live: sockets, heartbeats, snapshots (``<home>/run``)."""

    def add_poller(self, poller: Poller) -> None: ...

    def remove_poller(self, poller: Poller) -> None: ...

    def call_every(self, interval_s: float, callback: Callable[[], object]) -> int: ...

    def cancel_timer(self, timer_id: int) -> None: ...

    def wake_on(self, reader: JournalReader) -> None:
        """Let a commit to ``reader``'s journal wake the host from its idle sleep."""

    def stop_waking_on(self, reader: JournalReader) -> None: ...

    def wake(self) -> None:
        """Thread-safe: end the host's idle sleep, so its pollers run now."""


class PluginError(Exception):
    """A plugin spec that cannot be resolved to a Plugin class."""


class PluginNotFoundError(KeyError):
    """No plugin of that name is loaded (the control plane answers NOT_FOUND)."""

    def __str__(self) -> str:
        return str(self.args[0])


class PluginExistsError(ValueError):
    """A plugin of that name is already loaded (the control plane answers ALREADY_EXISTS)."""


def entry_point(name: str) -> tuple[str, str]:
    """(module, attribute) of the ``hft.plugins`` entry point ``name``; PluginError if none."""
    matches = entry_points(group=ENTRY_POINT_GROUP, name=name)
    if not matches:
        raise PluginError(f"no entry point {name!r} in group {ENTRY_POINT_GROUP!r}; "
                          "use 'module:Class'")
    module, _, attribute = next(iter(matches)).value.partition(":")
    return module, attribute


class Plugin:
    """Base class of every plugin; override what you need.

    A subclass may declare a nested ``Config`` pydantic model: its ``[plugins.NAME.config]``
    table is validated against it (a bad key is refused with its name) and handed over as
    ``ctx.config``; without one, ``ctx.config`` is the plain mapping.
    """

    Config: type[pydantic.BaseModel] | None = None

    def init(self, ctx: PluginContext) -> None:
        """Called once after loading: subscribe, allocate, validate. Must not block."""
        self.ctx = ctx

    def start(self) -> None:
        """Begin work (connect, open journals). Called after every plugin's init."""

    def stop(self) -> None:
        """Release what start() took. Called on unload, reload and shutdown."""

    def metrics(self) -> Iterable[Metric]:
        """Metric families for /metrics, built at scrape time on the metrics thread: read
        plain counters here, never touch state the main thread is changing."""
        return ()


@dataclass
class PluginContext:
    """A plugin's view of its host; records every hook so unload can undo it."""

    name: str
    config: Any
    bus: EventBus
    host: HostServices
    log: logging.Logger
    _subscriptions: list[tuple[int, Handler]] = field(default_factory=list)
    _pollers: list[Poller] = field(default_factory=list)
    _timers: list[int] = field(default_factory=list)
    _wake_readers: list[JournalReader] = field(default_factory=list)

    def subscribe(self, event_type: int, handler: Handler) -> None:
        self.bus.subscribe(event_type, handler)
        self._subscriptions.append((event_type, handler))

    def unsubscribe(self, event_type: int, handler: Handler) -> None:
        self.bus.unsubscribe(event_type, handler)
        self._subscriptions.remove((event_type, handler))

    def add_poller(self, poller: Poller) -> None:
        self.host.add_poller(poller)
        self._pollers.append(poller)

    def call_every(self, interval_s: float, callback: Callable[[], object]) -> int:
        timer_id = self.host.call_every(interval_s, callback)
        self._timers.append(timer_id)
        return timer_id

    def call_soon(self, callback: Callable[[], object]) -> None:
        """Call ``callback()`` once from the main loop, at its next turn: asked from
        ``start()``, after every plugin of the host has started."""
        def once() -> None:
            self.host.cancel_timer(timer_id)
            self._timers.remove(timer_id)
            callback()

        timer_id = self.call_every(_SOON_S, once)

    def call_until(self, interval_s: float, attempt: Callable[[], bool]) -> bool:
        """Call ``attempt`` now and, until it returns True, every ``interval_s`` (e.g. to
        follow a journal another daemon has not made yet); whether the first call did."""
        if attempt():
            return True

        def again() -> None:
            if attempt():
                self.host.cancel_timer(timer_id)
                self._timers.remove(timer_id)

        timer_id = self.call_every(interval_s, again)
        return False

    def wake_on(self, reader: JournalReader) -> None:
        """Let a commit to ``reader``'s journal wake the host when it sleeps (block mode): the
        host sleeps on every journal its plugins follow at once."""
        self.host.wake_on(reader)
        self._wake_readers.append(reader)

    def wake(self) -> None:
        """Thread-safe: make the host's loop run its pollers now, out of its idle sleep. A
        poller that another thread feeds (an API's callbacks on a queue) needs it after each
        item queued; otherwise the item waits for the sleep's bound (5 ms while the host
        sleeps on journals)."""
        self.host.wake()

    def failing(self) -> bool:
        """Whether one of this plugin's bus handlers is failing (see EventBus.failing)."""
        return any(self.bus.failing(event_type, handler)
                   for event_type, handler in list(self._subscriptions))

    def release(self) -> None:
        """Undo every hook this plugin made (called by the manager on unload)."""
        for event_type, handler in self._subscriptions:
            self.bus.unsubscribe(event_type, handler)
        for poller in self._pollers:
            self.host.remove_poller(poller)
        for timer_id in self._timers:
            self.host.cancel_timer(timer_id)
        for reader in self._wake_readers:
            self.host.stop_waking_on(reader)
        self._wake_readers.clear()
        self._subscriptions.clear()
        self._pollers.clear()
        self._timers.clear()


class PluginState(StrEnum):
    INITIALIZED = "initialized"  # init() done, start() pending (a host starting its plugins)
    RUNNING = "running"
    STOPPED = "stopped"
    FAILED = "failed"
    DEGRADED = "degraded"  # running, but a bus handler raised on its last calls (see health)


@dataclass
class LoadedPlugin:
    """What the manager knows of one plugin: shown by ``hftctl plugins``."""

    name: str
    spec: str
    config: Mapping[str, Any]
    state: PluginState = PluginState.STOPPED
    error: str = ""
    instance: Plugin | None = None
    context: PluginContext | None = None

    @property
    def health(self) -> PluginState:
        """``state``, or DEGRADED for a running plugin with a failing handler: what status
        and /metrics show."""
        if self.state is PluginState.RUNNING and self.context is not None \
                and self.context.failing():
            return PluginState.DEGRADED
        return self.state


class PluginManager:
    """Loads plugins into a host and drives their lifecycle; never lets one take it down."""

    def __init__(self, bus: EventBus, host: HostServices, log: logging.Logger) -> None:
        self._bus = bus
        self._host = host
        self._log = log
        self._plugins: dict[str, LoadedPlugin] = {}
        self._file_modules = 0

    def __iter__(self) -> Any:
        return iter(list(self._plugins.values()))

    def get(self, name: str) -> LoadedPlugin:
        try:
            return self._plugins[name]
        except KeyError:
            raise PluginNotFoundError(f"no plugin named {name!r}; loaded: "
                                      f"{sorted(self._plugins)}") from None

    def load(self, name: str, spec: str, config: Mapping[str, Any] | None = None, *,
             start: bool = True) -> LoadedPlugin:
        """Resolve, init and (unless ``start`` is False) start a plugin. Its own failures are
        recorded, not raised."""
        if name in self._plugins:
            raise PluginExistsError(f"a plugin named {name!r} is already loaded; unload it first")
        entry = LoadedPlugin(name=name, spec=spec, config=dict(config or {}))
        secrets.register_config(entry.config)
        self._plugins[name] = entry
        try:
            cls = self._resolve(spec, reload=False)
        except BaseException as exc:  # an import-time error (or exit) is the plugin's, not the host's
            self._fail(entry, "load", exc)
            return entry
        if self._init(entry, cls) and start:
            self._start(entry)
        return entry

    def start_all(self) -> None:
        """Start every plugin that is initialized but not started, in load order: a host
        loads all its plugins with ``start=False`` first, so each start() runs after every
        plugin's init()."""
        for entry in list(self._plugins.values()):
            if entry.state is PluginState.INITIALIZED:
                self._start(entry)

    def unload(self, name: str) -> LoadedPlugin:
        entry = self.get(name)
        self._stop(entry)
        del self._plugins[name]
        return entry

    def reload(self, name: str) -> LoadedPlugin:
        """Re-import the plugin's code and restart it; if the new code does not import,
        the running instance is left as it was and the error is returned."""
        entry = self.get(name)
        try:
            cls = self._resolve(entry.spec, reload=True)
        except BaseException as exc:
            entry.error = _describe("reload", exc)
            self._log.error("plugin reload refused, the running instance goes on",
                            extra={"plugin": name, "error": entry.error})
            return entry
        self._stop(entry)
        entry.error = ""
        if self._init(entry, cls):
            self._start(entry)
        return entry

    def stop_all(self) -> None:
        """Stop every plugin, the last loaded first."""
        for entry in reversed(list(self._plugins.values())):
            self._stop(entry)

    def _init(self, entry: LoadedPlugin, cls: type[Plugin]) -> bool:
        ctx = PluginContext(name=entry.name, config=entry.config, bus=self._bus, host=self._host,
                            log=self._log.getChild(entry.name))
        entry.context = ctx
        if cls.Config is not None:
            try:
                ctx.config = cls.Config.model_validate(entry.config)
            except pydantic.ValidationError as exc:
                self._fail(entry, "config", PluginConfigError(exc), with_traceback=False)
                return False
            except BaseException as exc:
                self._fail(entry, "config", exc)
                return False
        try:
            instance = cls()
            instance.init(ctx)
        except BaseException as exc:
            ctx.release()
            self._fail(entry, "init", exc)
            return False
        entry.instance = instance
        entry.state = PluginState.INITIALIZED
        return True

    def _start(self, entry: LoadedPlugin) -> None:
        assert entry.instance is not None and entry.context is not None
        try:
            entry.instance.start()
        except BaseException as exc:
            entry.context.release()
            self._fail(entry, "start", exc)
            return
        entry.state = PluginState.RUNNING
        self._log.info("plugin started", extra={"plugin": entry.name, "spec": entry.spec})

    def _stop(self, entry: LoadedPlugin) -> None:
        if entry.state is PluginState.RUNNING and entry.instance is not None:
            try:
                entry.instance.stop()
            except BaseException as exc:
                entry.error = _describe("stop", exc)
                self._log.error("plugin stop raised", extra={"plugin": entry.name, "error": entry.error})
        if entry.context is not None:
            entry.context.release()
        if entry.state in (PluginState.RUNNING, PluginState.INITIALIZED):
            entry.state = PluginState.STOPPED
        entry.instance = None

    def _fail(self, entry: LoadedPlugin, step: str, exc: BaseException, *,
              with_traceback: bool = True) -> None:
        entry.state = PluginState.FAILED
        entry.error = _describe(step, exc)
        entry.instance = None
        details = {"traceback": traceback.format_exc()} if with_traceback else {}
        self._log.error("plugin failed; the host goes on",
                        extra={"plugin": entry.name, "spec": entry.spec, "error": entry.error,
                               **details})

    def _resolve(self, spec: str, *, reload: bool) -> type[Plugin]:
        if not is_file_spec(spec):
            return named_plugin(spec, reload=reload)
        path, _, attr = _split_file_spec(spec)
        return _plugin_class(self._import_file(Path(path)), attr, spec)

    def _import_file(self, path: Path) -> ModuleType:
        if not path.is_file():
            raise PluginError(f"plugin file {str(path)!r} does not exist")
        self._file_modules += 1
        module_name = f"hft_plugin_file_{self._file_modules}_{path.stem}"
        module_spec = importlib.util.spec_from_file_location(
            module_name, path, loader=_FreshSourceLoader(module_name, str(path)))
        if module_spec is None or module_spec.loader is None:
            raise PluginError(f"cannot load {str(path)!r} as a Python module")
        module = importlib.util.module_from_spec(module_spec)
        sys.modules[module_name] = module
        try:
            module_spec.loader.exec_module(module)
        except BaseException:
            del sys.modules[module_name]
            raise
        return module


class _FreshSourceLoader(importlib.machinery.SourceFileLoader):
    """Compiles the file every time, never using or writing __pycache__: bytecode is
    validated by mtime in whole seconds and size, so a plugin file rewritten within the
    same second at the same size would otherwise reload its old code."""

    def path_stats(self, path: str) -> Mapping[str, Any]:
        raise OSError("the bytecode cache is bypassed for plugin files")


def named_plugin(spec: str, *, reload: bool = False) -> type[Plugin]:
    """The class an entry point name or a ``module:Class`` spec names (a file spec is the
    manager's to import: it names each file's module)."""
    module, _, attr = spec.partition(":")
    if not attr:
        module, attr = entry_point(spec)
    return _plugin_class(_import_module(module, reload=reload), attr, spec)


def is_file_spec(spec: str) -> bool:
    """Whether ``spec`` names a .py file rather than an entry point or a module."""
    return "/" in spec or spec.partition(":")[0].endswith(".py")


def _split_file_spec(spec: str) -> tuple[str, str, str]:
    path, sep, attr = spec.rpartition(":")
    if not sep or not path.endswith(".py"):
        return spec, "", ""
    return path, sep, attr


def _import_module(name: str, *, reload: bool) -> ModuleType:
    if reload and name in sys.modules:
        return importlib.reload(sys.modules[name])
    return importlib.import_module(name)


def _plugin_class(module: ModuleType, attr: str, spec: str) -> type[Plugin]:
    if attr:
        cls = getattr(module, attr, None)
        if cls is None:
            raise PluginError(f"{spec!r}: module {module.__name__!r} has no attribute {attr!r}")
    else:
        found = [v for v in vars(module).values()
                 if isinstance(v, type) and issubclass(v, Plugin) and v is not Plugin
                 and v.__module__ == module.__name__]
        if len(found) != 1:
            names = [c.__name__ for c in found]
            raise PluginError(f"{spec!r} defines {len(found)} Plugin subclasses {names}; "
                              "name one as 'file.py:Class'")
        cls = found[0]
    if not (isinstance(cls, type) and issubclass(cls, Plugin)):
        raise PluginError(f"{spec!r}: {cls!r} is not a subclass of hft.daemons.runtime.plugins.Plugin")
    return cls


class PluginConfigError(ValueError):
    """A plugin config that does not validate, described without the values given."""

    def __init__(self, error: pydantic.ValidationError) -> None:
        problems = "; ".join(
            f"{'.'.join(map(str, problem['loc'])) or '(config)'}: {problem['msg']}"
            for problem in error.errors(include_url=False, include_input=False,
                                        include_context=False))
        super().__init__(f"{error.title}: {problems}")


def exception_text(exc: BaseException) -> str:
    """``Type: message``, or ``Type`` alone when it has no message (a bare KeyboardInterrupt)."""
    message = str(exc)
    return f"{type(exc).__name__}: {message}" if message else type(exc).__name__


def _describe(step: str, exc: BaseException) -> str:
    """The error shown by status and ``hftctl plugins``: no registered secret in it."""
    return secrets.mask(f"{step} failed: {exception_text(exc)}")
