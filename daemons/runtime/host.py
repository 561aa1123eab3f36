"""DaemonHost: the runtime every daemon is made of.

One main thread runs everything that touches plugins: queued control commands, due timers
and pollers, in that order, once per loop iteration. Other threads (gRPC handlers, the
metrics server) never call plugin code; they hand commands over with :meth:`submit` and
read plain counters. When no poller had work for ``spin_us`` the loop yields or, in block
mode once ``yield_us`` have passed, sleeps (``waitmode.idle_step``); a sleep waits on a
self-pipe that commands, signals, ``request_stop`` and ``wake`` write to (or on the journals
plugins follow, ``wake_on``, all at once, and on the host's wake word that the same
``wake`` bumps), bounded by the next timer and, while pollers exist, by ``idle_block_s``.
A plugin whose poller is fed by another thread (the CTP API's callbacks) calls ``wake``
after queuing, so its item is handled now, not at the end of the sleep. The cyclic garbage
collector runs in an iteration that found nothing to do, never inside a handler, and never
walks the startup heap (``gcpolicy``).

Start: claim the socket, heartbeat, signal handlers, /metrics, gRPC, the program's
extension if it has one (the watchdog's supervisor), the config's plugins, the startup heap
frozen, then health SERVING. Stop (SIGTERM, SIGINT or Control.Stop): health NOT_SERVING,
refuse new commands, stop the extension, stop plugins in reverse load order, stop gRPC, stop
/metrics, remove the socket, write the final heartbeat (STOPPED); ``run`` then returns 0.

A stop is bounded: plugin code that never returns (a handler in an endless loop) would
otherwise keep the daemon alive forever. Once a stop is requested a guard thread gives the
shutdown ``stop_timeout_s``; past that it logs where the main thread is stuck (the plugin
whose code it is running and the line) and ends the process with EXIT_STOP_TIMED_OUT, for
the watchdog to restart it. SIGINT and SIGTERM never raise KeyboardInterrupt here (their
handler only requests the stop), so any exception out of plugin code is that plugin's.
"""

from __future__ import annotations

import contextlib
import logging
import mmap
import os
import resource
import select
import signal
import sys
import threading
import time
from collections import Counter, deque
from collections.abc import Callable, Iterable, Iterator, Sequence
from concurrent.futures import Future
from pathlib import Path
from types import FrameType
from typing import Any, Protocol, TypeVar

from prometheus_client.core import Metric

from hft.daemons.runtime.bus import EventBus, handler_name
from hft.daemons.runtime.config import SuiteConfig
from hft.daemons.runtime.control import ControlServer, GrpcService, HostStoppingError
from hft.daemons.runtime.gcpolicy import (
    collect_automatically,
    collect_if_due,
    collect_when_idle,
    freeze_startup_heap,
)
from hft.daemons.runtime.heartbeat import DaemonState, HeartbeatWriter
from hft.daemons.runtime.homedir import prepare_home
from hft.daemons.runtime.journal import JournalReader, wait_any
from hft.daemons.runtime.journal.futex import FutexWord
from hft.daemons.runtime.logs import configure_logging
from hft.daemons.runtime.metrics import MetricsServer
from hft.daemons.runtime.plugins import PluginManager, Poller, exception_text
from hft.daemons.runtime.socketlock import SocketClaim, SocketInUseError
from hft.daemons.runtime.timers import TimerQueue
from hft.daemons.runtime.token import TokenError, read_token
from hft.daemons.runtime.waitmode import IdleStep, idle_step

T = TypeVar("T")
STOP_SIGNALS = (signal.SIGTERM, signal.SIGINT)
GRPC_GRACE_S = 2.0
"""How long in-flight RPCs may finish once the gRPC server stops."""
MAX_BLOCK_NS = 1_000_000_000
MAX_WAITER_BLOCK_NS = 5_000_000
"""How long a command or signal may wait while the loop sleeps in an idle waiter."""
_ERROR_LOG_INTERVAL_NS = 1_000_000_000
EXIT_STARTUP_FAILED = 1
"""Exit status of a daemon that could not start (the reason is logged)."""
EXIT_USAGE = 2
"""Exit status for bad arguments or a bad config."""
EXIT_STOP_TIMED_OUT = 3
"""Exit status when the shutdown did not finish within daemons.NAME.stop_timeout_s."""


def raise_fd_limit() -> int:
    """Raise the soft limit of open descriptors to the hard one (a bounded number of client
    connections, journals and sockets all need them); returns the limit now in force."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft == hard or hard == resource.RLIM_INFINITY:  # Linux refuses an infinite one
        return soft
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    return hard


class StartupError(Exception):
    """The daemon cannot start: its socket is taken, its port is in use, ..."""


class HostExtension(Protocol):
    """A program's own part of its host beside the config's plugins (the watchdog's
    supervisor): gRPC services served with Control, metric families on /metrics (collected on
    the metrics thread), and work started once the socket is claimed and stopped right after
    the host reports NOT_SERVING."""

    @property
    def services(self) -> Sequence[GrpcService]: ...

    def collect(self) -> Iterable[Metric]: ...

    def start(self) -> None: ...

    def stop(self) -> None: ...


class DaemonHost:
    """A plugin host with a main loop, a control server, /metrics and a heartbeat.

    Implements :class:`hft.daemons.runtime.plugins.HostServices`; those methods, like all
    plugin code, are for the main thread only.
    """

    def __init__(self, name: str, suite: SuiteConfig,
                 extension: HostExtension | None = None) -> None:
        self.name = name
        self.suite = suite
        self.extension = extension
        self.config = suite.daemon(name)
        self.log = logging.getLogger(f"hft.daemon.{name}")
        self.bus = EventBus(failing_after=self.config.failing_after)
        self.plugins = PluginManager(self.bus, self, self.log.getChild("plugin"))
        self.timers = TimerQueue(on_error=lambda callback: self._callback_failed("timer",
                                                                                  callback))
        self.callback_errors: Counter[tuple[str, str]] = Counter()
        """Exceptions raised by pollers and timers, keyed by (kind, callback name)."""
        self.state = DaemonState.STARTING
        self.iterations = 0
        self.started_ns = time.time_ns()
        self.metrics_port = 0
        self._started_monotonic_ns = time.monotonic_ns()
        self._pollers: tuple[Poller, ...] = ()
        self._wake_readers: list[JournalReader] = []
        self._commands: deque[tuple[Callable[[], Any], Future[Any]]] = deque()
        self._commands_lock = threading.Lock()
        self._accepting_commands = True
        self._stop_reason = ""
        self._wake_fds: tuple[int, int] | None = None
        """(read end, write end) of the self-pipe the idle loop blocks on."""
        self._wake_word = FutexWord(mmap.mmap(-1, 4), 0)
        """Bumped by :meth:`wake`; the sleep on the followed journals waits on it too."""
        self._heartbeat: HeartbeatWriter | None = None
        self._last_error_log_ns: dict[str, int] = {}
        self._stop_requested = threading.Event()
        self._stopped = threading.Event()

    # HostServices (main thread only)

    @property
    def journal_dir(self) -> Path:
        return self.suite.journal_dir

    @property
    def run_dir(self) -> Path:
        return self.suite.run_dir

    @property
    def pollers(self) -> tuple[Poller, ...]:
        return self._pollers

    def add_poller(self, poller: Poller) -> None:
        """Call ``poller()`` every loop iteration; it returns how many events it handled."""
        self._pollers += (poller,)

    def remove_poller(self, poller: Poller) -> None:
        pollers = list(self._pollers)
        pollers.remove(poller)
        self._pollers = tuple(pollers)

    def call_every(self, interval_s: float, callback: Callable[[], object]) -> int:
        """Call ``callback()`` every ``interval_s`` seconds from the main loop; returns its id."""
        return self.timers.add(interval_s, callback, time.monotonic_ns())

    def cancel_timer(self, timer_id: int) -> None:
        self.timers.cancel(timer_id)

    def wake_on(self, reader: JournalReader) -> None:
        """In block mode, sleep until ``reader``'s journal, or another one given here, has a
        record (instead of on the self-pipe), so a commit to any of them wakes the loop."""
        self._wake_readers.append(reader)

    def stop_waking_on(self, reader: JournalReader) -> None:
        self._wake_readers.remove(reader)

    # Thread-safe

    def submit(self, command: Callable[[], T]) -> Future[T]:
        """Run ``command`` on the main thread; its result or exception lands in the future.

        Raises HostStoppingError once shutdown has begun.
        """
        future: Future[T] = Future()
        with self._commands_lock:
            if not self._accepting_commands:
                raise HostStoppingError(f"daemon {self.name} is stopping")
            self._commands.append((command, future))
        self.wake()
        return future

    def wake(self) -> None:
        """End the main loop's idle sleep (or the next one), so its pollers run now: for a
        plugin whose poller another thread feeds, called after queuing."""
        if self._wake_fds is not None:
            with contextlib.suppress(BlockingIOError):  # full pipe: a wake-up is pending anyway
                os.write(self._wake_fds[1], b"\0")
        self._wake_word.bump()

    def request_stop(self, reason: str) -> None:
        """Ask the main loop to shut down gracefully (also safe from a signal handler)."""
        if not self._stop_reason:
            self._stop_reason = reason
            self.wake()
            self._stop_requested.set()

    def uptime_s(self) -> float:
        return (time.monotonic_ns() - self._started_monotonic_ns) / 1e9

    def heartbeat_age_s(self) -> float:
        """Seconds since the last heartbeat; since the start if there has been none."""
        last_ns = self._heartbeat.last_beat_ns if self._heartbeat else self.started_ns
        return (time.time_ns() - last_ns) / 1e9

    # Lifecycle

    def run(self) -> int:
        """Start, serve until asked to stop, shut down gracefully; returns the exit code.

        Raises StartupError when the daemon cannot start; what was started is undone.
        """
        self._pin_cpus()  # first: every thread started later inherits it
        threading.Thread(target=self._bound_the_stop, name="stop-guard", daemon=True).start()
        try:
            with contextlib.ExitStack() as cleanup:
                self._start(cleanup)
                self._loop()
        finally:
            self._stopped.set()
        return 0

    def _bound_the_stop(self) -> None:
        """Guard thread: once a stop is requested, end the process if the shutdown has not
        finished within stop_timeout_s (see the module docstring)."""
        self._stop_requested.wait()
        timeout_s = self.config.stop_timeout_s
        if self._stopped.wait(timeout_s):
            return
        self.log.critical("stop timed out: the main loop is stuck; exiting without a clean "
                          "shutdown", extra={"timeout_s": timeout_s, "stuck_in": self._stuck_in(),
                                             "exit_status": EXIT_STOP_TIMED_OUT})
        for handler in logging.getLogger().handlers:
            handler.flush()
        os._exit(EXIT_STOP_TIMED_OUT)

    def _stuck_in(self) -> str:
        """Where the main thread is: the plugin whose code it runs (innermost first) and
        the line it is on."""
        frame = sys._current_frames().get(threading.main_thread().ident or 0)
        if frame is None:
            return "unknown (the main thread has no frame)"
        where = f"{frame.f_code.co_filename}:{frame.f_lineno} in {frame.f_code.co_name}"
        loaded = [entry for entry in self.plugins if entry.instance is not None]
        instances = {id(entry.instance): entry.name for entry in loaded}
        modules = {type(entry.instance).__module__: entry.name for entry in loaded}
        caller: FrameType | None = frame
        while caller is not None:  # by instance first: two plugins may share a module
            plugin = (instances.get(id(caller.f_locals.get("self")))
                      or modules.get(caller.f_globals.get("__name__", "")))
            if plugin is not None:
                return f"plugin {plugin!r} at {where}"
            caller = caller.f_back
        return f"no plugin's code, at {where}"

    def _start(self, cleanup: contextlib.ExitStack) -> None:
        """Start everything, registering its undo in ``cleanup`` (which runs in reverse)."""
        cleanup.enter_context(self._stop_on_signals())
        try:
            tightened = prepare_home(self.suite)
        except OSError as exc:
            raise StartupError(f"cannot create the home directory (paths.home): {exc}") from None
        if tightened:
            self.log.warning("directories others could read were made private (0700)",
                             extra={"directories": [str(path) for path in tightened]})
        fd_limit = raise_fd_limit()
        socket_path = self.suite.socket_path(self.name)
        cleanup.callback(self._final_beat)
        try:
            claim = SocketClaim(socket_path)
        except (SocketInUseError, OSError) as exc:
            raise StartupError(f"cannot claim the control socket: {exc}") from None
        cleanup.callback(claim.release)
        self._heartbeat = HeartbeatWriter(self.suite.heartbeat_path(self.name), self.started_ns)
        self._beat()

        try:
            metrics = MetricsServer(self)
        except (OSError, TokenError) as exc:
            raise StartupError(f"cannot set up /metrics (daemons.{self.name}.metrics_tls, "
                               f"metrics_auth): {exc}") from None
        try:
            self.metrics_port = metrics.start(self.config.metrics_port)
        except OSError as exc:
            raise StartupError(f"cannot serve /metrics on 127.0.0.1:{self.config.metrics_port} "
                               f"(daemons.{self.name}.metrics_port): {exc}") from None
        cleanup.callback(metrics.stop)

        control = self._control_server(socket_path)
        try:
            control.start()
        except (RuntimeError, OSError) as exc:
            raise StartupError(f"cannot serve gRPC on {socket_path}"
                               f"{f' and {control.tcp_address}' if control.tcp_address else ''}"
                               f": {exc}") from None
        cleanup.callback(control.stop, GRPC_GRACE_S)
        cleanup.callback(self.plugins.stop_all)
        if self.extension is not None:
            self.extension.start()
            cleanup.callback(self.extension.stop)
        cleanup.callback(self._begin_shutdown, control)

        self.call_every(self.config.heartbeat_interval_s, self._beat)
        for plugin_name, plugin in self.config.plugins.items():
            self.plugins.load(plugin_name, plugin.spec, plugin.config, start=False)
        self.plugins.start_all()
        frozen = freeze_startup_heap()
        collect_when_idle()
        cleanup.callback(collect_automatically)
        self.state = DaemonState.RUNNING
        self._beat()
        control.set_serving(True)
        self.log.info("daemon started", extra={
            "socket": str(socket_path), "metrics_port": self.metrics_port,
            "control_tcp": f"{control.tcp_address} (port {control.tcp_port}, token required)"
            if control.tcp_address else "off", "metrics_scheme": metrics.scheme,
            "fd_limit": fd_limit, "cpu_affinity": sorted(os.sched_getaffinity(0)),
            "gc_frozen_objects": frozen,
            "plugins": [p.name for p in self.plugins], "config": str(self.suite.source)})

    def _pin_cpus(self) -> None:
        """Keep the process on the CPUs of daemons.NAME.cpu_affinity, when set: every thread
        it has (imports start native ones), and so every one started later."""
        if self.config.cpu_affinity is not None:
            try:
                for thread in os.listdir("/proc/self/task"):
                    os.sched_setaffinity(int(thread), self.config.cpu_affinity)
            except OSError as exc:  # e.g. a cpuset (container) that excludes them
                raise StartupError(f"cannot run on CPUs {self.config.cpu_affinity} "
                                   f"(daemons.{self.name}.cpu_affinity): {exc}") from None

    def _control_server(self, socket_path: Path) -> ControlServer:
        """The gRPC server; with the TCP listener and its token when configured."""
        services = () if self.extension is None else self.extension.services
        token_path = self.suite.token_path(self.name)
        if token_path is None:
            return ControlServer(self, socket_path, services=services)
        try:
            token = read_token(token_path)
        except TokenError as exc:
            raise StartupError(f"{exc} (daemons.{self.name}.control_token_file)") from None
        return ControlServer(self, socket_path, self.config.control_tcp, token, services)

    def _loop(self) -> None:
        mode = self.config.wait_mode
        spin_ns, yield_ns = self.config.spin_us * 1000, self.config.yield_us * 1000
        timers = self.timers
        commands = self._commands
        last_work_ns = time.monotonic_ns()
        while not self._stop_reason:
            self.iterations += 1
            now_ns = time.monotonic_ns()
            if commands:
                self._run_commands()
            if now_ns >= timers.next_due_ns:
                timers.run_due(now_ns)
            if self._poll():
                last_work_ns = now_ns
                continue
            if collect_if_due():
                continue  # that took a while: look for work again before waiting
            step = idle_step(mode, now_ns - last_work_ns, spin_ns, yield_ns)
            if step is IdleStep.YIELD:
                os.sched_yield()
            elif step is IdleStep.SLEEP and self._sleep():
                last_work_ns = now_ns

    def _poll(self) -> int:
        """Call every poller once; how many events they handled."""
        work = 0
        for poller in self._pollers:
            try:
                work += poller()
            except BaseException:  # one bad poller (even one calling exit) must not stop us
                self._callback_failed("poller", poller)
        return work

    def _sleep(self) -> bool:
        """Sleep until woken, the next timer or the bound; True, without sleeping, when a
        last look finds work after all (a command queued, or a poller that had something)."""
        timeout_ns = min(self.timers.next_due_ns - time.monotonic_ns(), MAX_BLOCK_NS)
        if self._wake_readers:
            # a commit to a journal this daemon follows, or a wake(), ends the sleep; a signal
            # caught by another thread waits at most MAX_WAITER_BLOCK_NS. The word is read
            # before a last look at the pollers: a wake() after the look changes it.
            seen = self._wake_word.value
            if self._commands or self._poll():
                return True
            wait_any(self._wake_readers, min(timeout_ns, MAX_WAITER_BLOCK_NS) / 1e9,
                     also=((self._wake_word, seen),))
            if self._wake_word.value != seen:
                self._drain_wake_pipe()  # the same wake-ups wrote to it: do not let it fill
            return False
        if self._pollers:
            timeout_ns = min(timeout_ns, round(self.config.idle_block_s * 1e9))
        if (timeout_ns > 0 and self._wake_fds is not None
                and select.select([self._wake_fds[0]], [], [], timeout_ns / 1e9)[0]):
            self._drain_wake_pipe()
        return False

    def _drain_wake_pipe(self) -> None:
        if self._wake_fds is not None:
            with contextlib.suppress(BlockingIOError):
                os.read(self._wake_fds[0], 4096)

    def _run_commands(self) -> None:
        while self._commands:
            command, future = self._commands.popleft()
            if not future.set_running_or_notify_cancel():
                continue
            try:
                result = command()
            except Exception as exc:  # the caller gets it through the future
                future.set_exception(exc)
            except BaseException as exc:  # an exit is the command's failure, not the daemon's
                future.set_exception(RuntimeError(f"the command raised {exception_text(exc)}"))
            else:
                future.set_result(result)

    def _begin_shutdown(self, control: ControlServer) -> None:
        """The first step of every shutdown: report NOT_SERVING, stop taking commands and
        fail the queued ones."""
        control.begin_shutdown()
        self.log.info("daemon stopping", extra={"reason": self._stop_reason or "error"})
        self.state = DaemonState.STOPPING
        self._beat()
        with self._commands_lock:
            self._accepting_commands = False
        while self._commands:
            _, future = self._commands.popleft()
            if future.set_running_or_notify_cancel():
                future.set_exception(HostStoppingError(f"daemon {self.name} is stopping"))

    def _final_beat(self) -> None:
        if self._heartbeat is not None:
            self.state = DaemonState.STOPPED
            self._beat()
            self._heartbeat.close()
            self.log.info("daemon stopped", extra={"reason": self._stop_reason or "startup"})

    def _beat(self) -> None:
        if self._heartbeat is not None:
            self._heartbeat.beat(self.state, self.iterations)

    @contextlib.contextmanager
    def _stop_on_signals(self) -> Iterator[None]:
        """SIGTERM/SIGINT request a graceful stop and wake the loop through a self-pipe."""
        read_fd, write_fd = os.pipe2(os.O_NONBLOCK | os.O_CLOEXEC)

        def on_signal(signum: int, frame: FrameType | None) -> None:
            self.request_stop(signal.Signals(signum).name)

        previous = {signum: signal.signal(signum, on_signal) for signum in STOP_SIGNALS}
        previous_wakeup_fd = signal.set_wakeup_fd(write_fd, warn_on_full_buffer=False)
        self._wake_fds = read_fd, write_fd
        try:
            yield
        finally:
            self._wake_fds = None
            signal.set_wakeup_fd(previous_wakeup_fd)
            for signum, handler in previous.items():
                signal.signal(signum, handler)
            os.close(read_fd)
            os.close(write_fd)

    def _callback_failed(self, kind: str, callback: Callable[[], object]) -> None:
        name = handler_name(callback)
        self.callback_errors[(kind, name)] += 1
        now_ns = time.monotonic_ns()
        if now_ns - self._last_error_log_ns.get(name, -_ERROR_LOG_INTERVAL_NS) \
                >= _ERROR_LOG_INTERVAL_NS:
            self._last_error_log_ns[name] = now_ns
            self.log.exception(f"{kind} raised; the loop goes on", extra={
                "callback": name, "errors": self.callback_errors[(kind, name)]})


def run_daemon(prog: str, name: str, suite: SuiteConfig,
               extension: HostExtension | None = None) -> int:
    """Run the daemon ``name`` in the foreground with the suite's logging, for the command
    line ``prog``; its exit status. Why it could not start is logged, and also printed on
    stderr when the log does not go there."""
    configure_logging(name, level=suite.logging.level, stderr=suite.logging.stderr,
                      file=suite.json_log_path(name) if suite.logging.file else None)
    try:
        return DaemonHost(name, suite, extension).run()
    except StartupError as exc:
        logging.getLogger(f"hft.daemon.{name}").error("cannot start", extra={"error": str(exc)})
        if not suite.logging.stderr:
            print(f"{prog}: cannot start: {exc}", file=sys.stderr)
        return EXIT_STARTUP_FAILED
