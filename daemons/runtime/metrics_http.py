"""The /metrics HTTP server of one daemon: bounded, and optionally behind TLS or basic auth.

prometheus-client's own server (a ThreadingWSGIServer) gives every connection a thread that
waits for it forever, so idle connections pile up until the daemon runs out of descriptors.
This one, on 127.0.0.1 only:

- serves at most MAX_CONNECTIONS connections at once; a connection beyond that is closed as
  soon as it is accepted;
- closes a connection that has not sent its request (or finished its TLS handshake) within
  IDLE_TIMEOUT_S;
- with ``metrics_tls``, speaks only TLS (1.2 or later) with the given certificate, and with
  ``client_cafile`` asks for (or, ``client_auth_required``, demands) a client certificate
  signed by that CA; the handshake runs in the connection's thread, never in the accept loop;
- with ``metrics_auth``, answers 401 to a request without the configured basic-auth user and
  password (read from a file only its owner can read, compared in constant time).
"""

from __future__ import annotations

import base64
import hmac
import logging
import ssl
import threading
from collections.abc import Callable, Iterable
from typing import Any
from wsgiref.simple_server import WSGIRequestHandler, make_server

from prometheus_client.exposition import ThreadingWSGIServer

from hft.daemons.runtime.config import MetricsTlsConfig

log = logging.getLogger(__name__)
BIND_ADDRESS = "127.0.0.1"
MAX_CONNECTIONS = 16
IDLE_TIMEOUT_S = 10.0
POLL_INTERVAL_S = 0.05
"""How often the server thread checks for shutdown: bounds how long a daemon's stop waits."""
REALM = "hft metrics"

WsgiApp = Callable[[dict[str, Any], Callable[..., Any]], Iterable[bytes]]


class _Handler(WSGIRequestHandler):
    """Times out idle connections, does the TLS handshake in its own thread, logs nothing per
    request (a scrape every few seconds would flood the daemon's stderr)."""

    server: _BoundedServer

    def setup(self) -> None:
        self.request.settimeout(self.server.idle_timeout_s)
        if isinstance(self.request, ssl.SSLSocket):
            self.request.do_handshake()
        super().setup()

    def log_message(self, format: str, *args: Any) -> None:
        pass


class _BoundedServer(ThreadingWSGIServer):
    """A thread per connection, at most MAX_CONNECTIONS of them."""

    idle_timeout_s = IDLE_TIMEOUT_S

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        self._slots = threading.BoundedSemaphore(MAX_CONNECTIONS)
        self.refused = 0
        """Connections closed at once because every slot was taken."""
        super().__init__(*args, **kwargs)

    def process_request(self, request: Any, client_address: Any) -> None:
        if not self._slots.acquire(blocking=False):
            self.refused += 1
            self.shutdown_request(request)
            return
        try:
            super().process_request(request, client_address)
        except BaseException:
            self._slots.release()
            raise

    def process_request_thread(self, request: Any, client_address: Any) -> None:
        try:
            super().process_request_thread(request, client_address)
        finally:
            self._slots.release()

    def handle_error(self, request: Any, client_address: Any) -> None:
        """A client that timed out, failed its handshake or hung up: not the daemon's error
        (the default prints a traceback to stderr, outside the JSON log)."""
        log.debug("metrics connection dropped", exc_info=True,
                  extra={"client": f"{client_address[0]}:{client_address[1]}"})


def tls_context(config: MetricsTlsConfig) -> ssl.SSLContext:
    """The server side of /metrics over TLS; ssl.SSLError/OSError name a bad file."""
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    context.load_cert_chain(config.certfile, config.keyfile)
    if config.client_cafile is not None:
        context.load_verify_locations(cafile=config.client_cafile)
        context.verify_mode = (ssl.CERT_REQUIRED if config.client_auth_required
                               else ssl.CERT_OPTIONAL)
    return context


def basic_auth(app: WsgiApp, username: str, password: str) -> WsgiApp:
    """``app`` answering only requests that carry ``username:password`` (HTTP basic auth)."""
    expected = ("Basic " + base64.b64encode(f"{username}:{password}".encode()).decode()).encode()

    def guarded(environ: dict[str, Any], start_response: Callable[..., Any]) -> Iterable[bytes]:
        supplied = str(environ.get("HTTP_AUTHORIZATION", "")).encode()
        if hmac.compare_digest(supplied, expected):
            return app(environ, start_response)
        start_response("401 Unauthorized", [("WWW-Authenticate", f'Basic realm="{REALM}"'),
                                            ("Content-Type", "text/plain; charset=utf-8")])
        return [b"401 Unauthorized: this /metrics needs its basic-auth user and password\n"]

    return guarded


class MetricsHttpServer:
    """Serves one WSGI app on 127.0.0.1 in a background thread (see the module docstring)."""

    def __init__(self, app: WsgiApp, tls: ssl.SSLContext | None = None,
                 idle_timeout_s: float = IDLE_TIMEOUT_S) -> None:
        self._app = app
        self._tls = tls
        self._idle_timeout_s = idle_timeout_s
        self._server: _BoundedServer | None = None

    @property
    def scheme(self) -> str:
        return "https" if self._tls is not None else "http"

    def start(self, port: int) -> int:
        """Serve on 127.0.0.1:``port`` (0 = any free port); returns the bound port."""
        server = make_server(BIND_ADDRESS, port, self._app, _BoundedServer, handler_class=_Handler)
        server.idle_timeout_s = self._idle_timeout_s
        if self._tls is not None:
            server.socket = self._tls.wrap_socket(server.socket, server_side=True,
                                                  do_handshake_on_connect=False)
        self._server = server
        threading.Thread(target=server.serve_forever, args=(POLL_INTERVAL_S,),
                         name="metrics", daemon=True).start()
        return int(server.server_port)

    def stop(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()

