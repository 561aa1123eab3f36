"""Local stand-ins for the services alert webhooks post to: real HTTP servers (127.0.0.1, an
ephemeral port, one thread per request) that check each request the way the service's public
documentation says it checks it, and answer the way it answers (the robots: HTTP 200 with an
error code in the body; Alertmanager: HTTP 400). Signatures are recomputed here from the
secret with hmac directly, not with the code under test.

Each server records what it received (``requests``), can be told to answer the next requests
with given replies (``script``) and to hold every request until ``release()`` (``stall()``);
use it as a context manager (``with DingTalk(secret) as robot:``) so it always shuts down.
"""

from __future__ import annotations

import base64
import datetime as dt
import hashlib
import hmac
import json
import re
import threading
import time
import urllib.parse
from collections import deque
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, Self

SIGNATURE_MAX_AGE_S = 3600
"""DingTalk and Feishu refuse a timestamp more than an hour from their clock."""
WAIT_S = 30.0
"""How long a test waits for requests to arrive (a bound, never a measured duration)."""


@dataclass(frozen=True)
class Received:
    path: str
    query: dict[str, str]
    headers: dict[str, str]
    body: bytes

    def json(self) -> Any:
        return json.loads(self.body)


class WebhookService:
    """A generic webhook receiver: accepts any JSON POST with HTTP 200. Subclasses check more."""

    def __init__(self) -> None:
        self.requests: list[Received] = []
        self._replies: deque[tuple[int, bytes]] = deque()
        self._arrived = threading.Condition()
        self._released = threading.Event()
        self._released.set()
        service = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                parts = urllib.parse.urlsplit(self.path)
                received = Received(parts.path, dict(urllib.parse.parse_qsl(parts.query)),
                                    {k.lower(): v for k, v in self.headers.items()},
                                    self.rfile.read(int(self.headers.get("Content-Length", 0))))
                with service._arrived:
                    service.requests.append(received)
                    scripted = service._replies.popleft() if service._replies else None
                    service._arrived.notify_all()
                service._released.wait()
                status, body = scripted or service.answer(received)
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, format: str, *args: Any) -> None:
                pass

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._server.daemon_threads = True
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)
        self._thread.start()

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self._server.server_address[1]}"

    def answer(self, received: Received) -> tuple[int, bytes]:
        if not received.headers.get("content-type", "").startswith("application/json"):
            return 415, b"Content-Type is not application/json"
        received.json()
        return 200, b""

    def script(self, *replies: tuple[int, object]) -> None:
        """Answer the next requests with these (status, JSON) replies, whatever they hold."""
        with self._arrived:
            self._replies.extend((status, json.dumps(body).encode()) for status, body in replies)

    def stall(self) -> None:
        self._released.clear()

    def release(self) -> None:
        self._released.set()

    def wait_for(self, count: int) -> list[Received]:
        """The first ``count`` requests, once they have arrived (AssertionError after WAIT_S)."""
        with self._arrived:
            if not self._arrived.wait_for(lambda: len(self.requests) >= count, WAIT_S):
                raise AssertionError(f"{len(self.requests)} requests arrived, expected {count}")
            return self.requests[:count]

    def close(self) -> None:
        self.release()
        self._server.shutdown()
        self._server.server_close()

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()


def _json_object(received: Received) -> dict[str, Any] | None:
    try:
        body = received.json()
    except ValueError:
        return None
    return body if isinstance(body, dict) else None


def _fresh(timestamp: object, unit_per_s: int) -> int | None:
    """The timestamp as an int when it is one and within the services' hour, else None."""
    try:
        value = int(str(timestamp))
    except ValueError:
        return None
    return value if abs(value / unit_per_s - time.time()) <= SIGNATURE_MAX_AGE_S else None


class DingTalk(WebhookService):
    """The custom robot: ``POST /robot/send?access_token=T[&timestamp=ms&sign=S]``; markdown
    messages need ``markdown.title`` and ``markdown.text``; replies ``{"errcode", "errmsg"}``."""

    TOKEN = "d1n9talk0access0token0123456789abcdef0123456789abcdef0123456789ab"

    def __init__(self, secret: str | None = None) -> None:
        super().__init__()
        self.secret = secret

    @property
    def url(self) -> str:
        return f"{self.base_url}/robot/send?access_token={self.TOKEN}"

    def answer(self, received: Received) -> tuple[int, bytes]:
        if received.path != "/robot/send" or received.query.get("access_token") != self.TOKEN:
            return _reply(errcode=300001, errmsg="token is not exist")
        if self.secret is not None:
            timestamp = _fresh(received.query.get("timestamp", ""), 1000)
            expected = base64.b64encode(hmac.new(
                self.secret.encode(), f"{timestamp}\n{self.secret}".encode(),
                hashlib.sha256).digest()).decode()
            if timestamp is None or received.query.get("sign") != expected:
                return _reply(errcode=310000, errmsg="sign not match")
        body = _json_object(received)
        if body is None or body.get("msgtype") != "markdown":
            return _reply(errcode=40035, errmsg="missing or unsupported msgtype")
        markdown = body.get("markdown")
        if not (isinstance(markdown, dict) and _text(markdown.get("title"))
                and _text(markdown.get("text"))):
            return _reply(errcode=40035, errmsg="markdown needs title and text")
        return _reply(errcode=0, errmsg="ok")


class Feishu(WebhookService):
    """The custom bot: ``POST /open-apis/bot/v2/hook/<id>``; with signing, ``timestamp`` (s)
    and ``sign`` in the body; interactive cards in ``card``; replies ``{"code", "msg"}``."""

    HOOK = "3f1c0b6e-6a2d-4f5e-9b8a-0c1d2e3f4a5b"
    COLOURS = ("blue", "wathet", "turquoise", "green", "yellow", "orange", "red", "carmine",
               "violet", "purple", "indigo", "grey")
    MAX_BODY = 20 * 1024

    def __init__(self, secret: str | None = None) -> None:
        super().__init__()
        self.secret = secret

    @property
    def url(self) -> str:
        return f"{self.base_url}/open-apis/bot/v2/hook/{self.HOOK}"

    def answer(self, received: Received) -> tuple[int, bytes]:
        if received.path != f"/open-apis/bot/v2/hook/{self.HOOK}":
            return _reply(code=19001, msg="param invalid: incoming webhook access token invalid")
        body = _json_object(received)
        if body is None or len(received.body) > self.MAX_BODY:
            return _reply(code=9499, msg="Bad Request")
        if self.secret is not None:
            timestamp = _fresh(body.get("timestamp", ""), 1)
            expected = base64.b64encode(hmac.new(
                f"{timestamp}\n{self.secret}".encode(), b"", hashlib.sha256).digest()).decode()
            if timestamp is None or body.get("sign") != expected:
                return _reply(code=19021, msg="sign match fail or timestamp is not within one "
                                              "hour from current time")
        card = body.get("card")
        if body.get("msg_type") != "interactive" or not isinstance(card, dict):
            return _reply(code=9499, msg="Bad Request")
        header, elements = card.get("header"), card.get("elements")
        if not (isinstance(header, dict) and header.get("template") in self.COLOURS
                and header.get("title", {}).get("tag") == "plain_text"
                and _text(header["title"].get("content"))
                and isinstance(elements, list) and elements
                and all(isinstance(e, dict) and _text(e.get("tag")) for e in elements)):
            return _reply(code=11246, msg="create card content failed")
        return _reply(code=0, msg="success", data={})


class WeCom(WebhookService):
    """The group robot: ``POST /cgi-bin/webhook/send?key=K``; markdown ``content`` of at most
    4096 bytes; replies ``{"errcode", "errmsg"}``."""

    KEY = "6c8e2b1a-93f4-4d7e-a5b0-1f2e3d4c5b6a"
    MAX_CONTENT = 4096

    @property
    def url(self) -> str:
        return f"{self.base_url}/cgi-bin/webhook/send?key={self.KEY}"

    def answer(self, received: Received) -> tuple[int, bytes]:
        if received.path != "/cgi-bin/webhook/send" or received.query.get("key") != self.KEY:
            return _reply(errcode=93000, errmsg="invalid webhook url")
        body = _json_object(received)
        markdown = body.get("markdown") if body else None
        if body is None or body.get("msgtype") != "markdown" or not isinstance(markdown, dict) \
                or not _text(markdown.get("content")):
            return _reply(errcode=40008, errmsg="invalid message type")
        if len(markdown["content"].encode()) > self.MAX_CONTENT:
            return _reply(errcode=40058, errmsg="markdown.content exceed max length 4096")
        return _reply(errcode=0, errmsg="ok")


class Alertmanager(WebhookService):
    """Alertmanager's API v2: ``POST <prefix>/api/v2/alerts`` with a JSON list of postable
    alerts (labels with ``alertname``, label names ``[a-zA-Z_][a-zA-Z0-9_]*``, string values,
    RFC 3339 times); 200 with an empty body, 400 with the reason."""

    FIELDS = frozenset({"labels", "annotations", "startsAt", "endsAt", "generatorURL"})
    LABEL_NAME = re.compile(r"[a-zA-Z_][a-zA-Z0-9_]*")
    RFC3339 = re.compile(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d{1,9})?(Z|[+-]\d\d:\d\d)")

    def __init__(self, prefix: str = "") -> None:
        super().__init__()
        self.prefix = prefix

    def answer(self, received: Received) -> tuple[int, bytes]:
        if received.path != f"{self.prefix}/api/v2/alerts":
            return 404, b"404 page not found"
        try:
            alerts = received.json()
        except ValueError:
            return 400, b'"body is not JSON"'
        if not isinstance(alerts, list) or not alerts:
            return 400, b'"body is not a list of alerts"'
        problem = next(filter(None, map(self._problem, alerts)), None)
        return (400, json.dumps(problem).encode()) if problem else (200, b"")

    def _problem(self, alert: object) -> str | None:
        if not isinstance(alert, dict) or set(alert) - self.FIELDS:
            return f"not a postable alert: {alert!r}"
        for key in ("labels", "annotations"):
            pairs = alert.get(key, {})
            if not isinstance(pairs, dict) or not all(
                    isinstance(name, str) and self.LABEL_NAME.fullmatch(name) and isinstance(value, str)
                    for name, value in pairs.items()):
                return f"invalid {key}: {pairs!r}"
        if not alert.get("labels", {}).get("alertname"):
            return "labels has no alertname"
        for key in ("startsAt", "endsAt"):
            if key in alert and not (isinstance(alert[key], str)
                                     and self.RFC3339.fullmatch(alert[key])):
                return f"{key} is not RFC 3339: {alert[key]!r}"
        return None


def parse_rfc3339(text: str) -> int:
    """Nanoseconds since the epoch of an RFC 3339 time with up to 9 fractional digits."""
    match = re.fullmatch(r"(.{19})(?:\.(\d{1,9}))?Z", text)
    assert match, text
    seconds = dt.datetime.fromisoformat(match[1]).replace(tzinfo=dt.UTC).timestamp()
    return int(seconds) * 10**9 + int((match[2] or "0").ljust(9, "0"))


def _text(value: object) -> bool:
    return isinstance(value, str) and bool(value.strip())


def _reply(**fields: object) -> tuple[int, bytes]:
    return 200, json.dumps(fields).encode()
