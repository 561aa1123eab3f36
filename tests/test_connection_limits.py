"""Floods of idle connections and unauthenticated calls against a real daemon's TCP control
listener and /metrics: the daemon holds a bounded number of them, and its Unix socket keeps
answering."""

from __future__ import annotations

import contextlib
import resource
import select
import socket
import subprocess
import sys
import threading
import urllib.request
from collections.abc import Callable, Iterator
from pathlib import Path

import grpc
import pytest
from prometheus_client import CollectorRegistry, make_wsgi_app
from support.daemons import Daemon, wait_for, wait_serving
from test_control_tcp import _config, _free_port, _token_file

from hft.daemons.runtime.config import load_config
from hft.daemons.runtime.metrics_http import MAX_CONNECTIONS, MetricsHttpServer
from hft.protos import control_pb2, control_pb2_grpc

DAEMON_FD_LIMIT = 256
"""The daemon's descriptor limit (soft and hard): a flood on main used them all up."""
IDLE_CONNECTIONS = 3 * DAEMON_FD_LIMIT
"""Per target: well past what the daemon could hold if it kept them."""


def _limit_descriptors() -> None:
    resource.setrlimit(resource.RLIMIT_NOFILE, (DAEMON_FD_LIMIT, DAEMON_FD_LIMIT))


@pytest.fixture
def daemon(tmp_path: Path) -> Iterator[tuple[Daemon, int]]:
    """An engine with a TCP listener, started with few descriptors; yields it and its port."""
    port = _free_port()
    config = _config(tmp_path, port, _token_file(tmp_path / "token"))
    stderr_path = tmp_path / "engine.stderr"
    with stderr_path.open("wb") as stderr:
        process = subprocess.Popen(
            [sys.executable, "-m", "hft.daemons", "engine", "--config", str(config)],
            stdin=subprocess.DEVNULL, stdout=stderr, stderr=stderr,
            preexec_fn=_limit_descriptors)
    started = Daemon("engine", process, load_config(config), stderr_path)
    try:
        wait_serving(started)
        yield started, port
    finally:
        started.stop()


@pytest.fixture
def descriptors() -> Iterator[None]:
    """Enough descriptors in this process for the flood (root may raise the hard limit)."""
    before = resource.getrlimit(resource.RLIMIT_NOFILE)
    needed = 2 * IDLE_CONNECTIONS + 256
    resource.setrlimit(resource.RLIMIT_NOFILE, (max(before[0], needed), max(before[1], needed)))
    yield
    resource.setrlimit(resource.RLIMIT_NOFILE, before)


def _idle_connections(port: int, count: int) -> list[socket.socket]:
    """Up to ``count`` connections that never send a byte, each one connected before the next
    (so each has been through the daemon's accept); stops early once the daemon no longer
    accepts any."""
    opened: list[socket.socket] = []
    unanswered = 0
    while len(opened) < count and unanswered < 5:
        connection = socket.socket()
        connection.settimeout(1.0)
        try:
            connection.connect(("127.0.0.1", port))
        except TimeoutError:
            connection.close()
            unanswered += 1
            continue
        opened.append(connection)
    return opened


def _open_descriptors(pid: int) -> int:
    return len(list(Path(f"/proc/{pid}/fd").iterdir()))


def test_idle_floods_leave_the_unix_socket_answering(daemon: tuple[Daemon, int],
                                                     descriptors: None) -> None:
    engine, tcp_port = daemon
    with engine.client() as client:
        metrics_port = client.status().metrics_port
    flood = _idle_connections(tcp_port, IDLE_CONNECTIONS)
    flood += _idle_connections(metrics_port, IDLE_CONNECTIONS)
    try:
        for _ in range(3):  # each a new connection to the Unix socket
            with engine.client(timeout_s=20) as client:
                assert client.status().pid == engine.process.pid
        assert _open_descriptors(engine.process.pid) < DAEMON_FD_LIMIT
    finally:
        for connection in flood:
            connection.close()


def test_unauthenticated_calls_at_a_high_rate_do_not_starve_the_unix_socket(
        daemon: tuple[Daemon, int]) -> None:
    engine, tcp_port = daemon
    stop = threading.Event()
    refused: list[grpc.StatusCode] = []

    def hammer() -> None:
        with grpc.insecure_channel(f"127.0.0.1:{tcp_port}") as channel:
            stub = control_pb2_grpc.ControlStub(channel)
            while not stop.is_set():
                with contextlib.suppress(grpc.RpcError):
                    stub.Status(control_pb2.StatusRequest(), timeout=5)
                    refused.append(grpc.StatusCode.OK)  # never: no token
                refused.append(grpc.StatusCode.UNAUTHENTICATED)

    hammers = [threading.Thread(target=hammer) for _ in range(8)]
    for thread in hammers:
        thread.start()
    try:
        wait_for(lambda: len(refused) > 200, "the flood of refused calls")
        for _ in range(20):
            with engine.client(timeout_s=20) as client:
                assert client.status().pid == engine.process.pid
    finally:
        stop.set()
        for thread in hammers:
            thread.join()
    assert grpc.StatusCode.OK not in refused


def _closed_by_the_server(connection: socket.socket) -> bool:
    readable, _, _ = select.select([connection], [], [], 0)
    return bool(readable) and connection.recv(1) == b""


def _scrape(port: int) -> int:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/", timeout=5) as response:
            return int(response.status)
    except OSError:
        return 0


@pytest.fixture
def metrics_server() -> Iterator[Callable[[float], int]]:
    """Factory: a running MetricsHttpServer with the given idle timeout; returns its port."""
    servers: list[MetricsHttpServer] = []

    def start(idle_timeout_s: float) -> int:
        server = MetricsHttpServer(make_wsgi_app(CollectorRegistry()),
                                   idle_timeout_s=idle_timeout_s)
        servers.append(server)
        return server.start(0)

    yield start
    for server in servers:
        server.stop()


def test_metrics_holds_at_most_max_connections(metrics_server: Callable[[float], int]) -> None:
    port = metrics_server(60.0)
    idle = [socket.create_connection(("127.0.0.1", port), timeout=5)
            for _ in range(MAX_CONNECTIONS + 8)]
    try:
        wait_for(lambda: sum(map(_closed_by_the_server, idle)) == 8,
                 "the connections beyond the bound to be closed")
        assert _scrape(port) == 0  # every slot is held by an idle connection
    finally:
        for connection in idle:
            connection.close()
    wait_for(lambda: _scrape(port) == 200, "a scrape once the idle connections are gone")


def test_metrics_closes_a_connection_that_sends_nothing(
        metrics_server: Callable[[float], int]) -> None:
    port = metrics_server(0.2)
    with socket.create_connection(("127.0.0.1", port), timeout=5) as idle:
        wait_for(lambda: _closed_by_the_server(idle), "the idle connection to be closed")
    assert _scrape(port) == 200
