"""Webhook formats: one alert as the HTTP request each service documents, and its reply's verdict.

Pure functions (alert, webhook config, clock, host name in; url, JSON body, headers out), so
the formats are tested without a network and :mod:`hft.watchdog.alerts` only moves bytes.

- ``generic``: one JSON object with every alert field, ``source`` and ``host``.
- ``alertmanager``: Alertmanager's v2 API, ``POST <base>/api/v2/alerts`` with a JSON list of
  one alert (labels ``alertname`` = "Hft" + the kind in CamelCase, e.g. HftHeartbeatLost,
  ``severity``, ``daemon``, ``kind``, ``source``, ``instance`` = the host; annotations
  ``summary``, ``description``; ``startsAt``). No ``endsAt``: an alert is one event, which
  Alertmanager resolves after its ``resolve_timeout`` (checked once by hand against
  Alertmanager 0.25, Debian's package).
- ``dingtalk``: the custom robot's markdown message; with a secret, ``timestamp`` (ms) and
  ``sign`` = base64(HMAC-SHA256(key=secret, timestamp + "\\n" + secret)) in the query.
- ``feishu``: the custom bot's interactive card (header coloured by level); with a secret,
  ``timestamp`` (s) and ``sign`` = base64(HMAC-SHA256(key=timestamp + "\\n" + secret, "")) in
  the body.
- ``wecom``: the group robot's markdown message.

The robots answer HTTP 200 with an error code in the body (``errcode``; Feishu ``code``), so
:func:`check_reply` reads it. Robot messages start with "hft" (a robot's keyword security
setting can use it) and are cut to MAX_MESSAGE_BYTES (WeCom's markdown limit is 4096).
"""

from __future__ import annotations

import base64
import datetime as dt
import hashlib
import hmac
import json
import re
import urllib.parse
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from hft.daemons.refdata.clock import CHINA
from hft.daemons.runtime.config import WebhookConfig, WebhookKind
from hft.daemons.runtime.events import AlertLevel
from hft.daemons.runtime.secrets import mask

if TYPE_CHECKING:
    from hft.watchdog.alerts import Alert

SOURCE = "hft-watchdog"
ALERTMANAGER_PATH = "/api/v2/alerts"
MAX_MESSAGE_BYTES = 4000
"""Robot message text is cut to this (WeCom refuses markdown above 4096 bytes)."""
MAX_ERROR_CHARS = 200
"""A refusing reply's message is quoted up to this length in errors and logs."""
TOKEN_MIN_CHARS = 20
"""Url path segments this long are treated as tokens (Feishu's hook id is a 36-char uuid)."""
_JSON_HEADERS = {"Content-Type": "application/json; charset=utf-8"}
_CARD_COLOURS = {AlertLevel.INFO: "blue", AlertLevel.WARNING: "orange", AlertLevel.CRITICAL: "red"}
_WECOM_COLOURS = {AlertLevel.INFO: "info", AlertLevel.WARNING: "warning",
                  AlertLevel.CRITICAL: "warning"}
_REPLY_KEYS = {"dingtalk": ("errcode", "errmsg"), "wecom": ("errcode", "errmsg"),
               "feishu": ("code", "msg")}
_LABEL_NAME = re.compile(r"[^A-Za-z0-9_]")


class WebhookError(Exception):
    """A failed delivery. The message never holds the url or the secret; ``permanent`` means
    a retry cannot help (the service refused the request itself, e.g. HTTP 400)."""

    def __init__(self, message: str, *, permanent: bool = False) -> None:
        super().__init__(mask(message))
        self.permanent = permanent


@dataclass(frozen=True, repr=False)
class WebhookRequest:
    """One POST to make. Its repr hides the url (robot urls carry their access token)."""

    url: str
    body: bytes
    headers: Mapping[str, str]

    def __repr__(self) -> str:
        return f"WebhookRequest(url='***', body={len(self.body)} bytes)"


def webhook_name(index: int, webhook: WebhookConfig) -> str:
    """How logs and metrics name a webhook: ``<index>-<kind>``, never its url."""
    return f"{index}-{webhook.kind}"


def build_request(alert: Alert, webhook: WebhookConfig, *, now_ns: int, host: str) -> WebhookRequest:
    """The request delivering ``alert`` to ``webhook``; ``now_ns`` (wall clock) stamps the
    signatures, so build it again for every attempt."""
    return _BUILDERS[webhook.kind](alert, webhook, now_ns, host)


def check_reply(kind: WebhookKind, body: bytes) -> None:
    """Raise WebhookError when a 2xx reply still says the message was refused."""
    if kind in ("generic", "alertmanager"):
        return
    try:
        reply = json.loads(body)
    except ValueError:
        raise WebhookError(f"{kind} replied with no JSON: {_quote(body)}") from None
    if not isinstance(reply, dict):
        raise WebhookError(f"{kind} replied with JSON that is not an object: {_quote(body)}")
    code_key, message_key = _REPLY_KEYS[kind]
    if kind == "feishu" and code_key not in reply and "StatusCode" in reply:
        code_key, message_key = "StatusCode", "StatusMessage"  # Feishu's older reply fields
    if code_key not in reply:
        raise WebhookError(f"{kind} reply has no {code_key}: {_quote(body)}")
    if reply[code_key] != 0:
        raise WebhookError(f"{kind} refused the message: {code_key} {reply[code_key]!r}, "
                           f"{_quote(str(reply.get(message_key, '')).encode())}")


def dingtalk_sign(secret: str, timestamp_ms: int) -> str:
    """DingTalk's signature (before URL encoding): the secret keys an HMAC-SHA256 over
    ``"<timestamp ms>\\n<secret>"``, base64."""
    digest = hmac.new(secret.encode(), f"{timestamp_ms}\n{secret}".encode(), hashlib.sha256)
    return base64.b64encode(digest.digest()).decode()


def feishu_sign(secret: str, timestamp_s: int) -> str:
    """Feishu's signature: ``"<timestamp s>\\n<secret>"`` keys an HMAC-SHA256 over an empty
    message, base64."""
    digest = hmac.new(f"{timestamp_s}\n{secret}".encode(), b"", hashlib.sha256)
    return base64.b64encode(digest.digest()).decode()


def rfc3339(time_ns: int) -> str:
    """UTC, nanosecond precision: ``2026-11-29T19:18:20.123456789Z``."""
    seconds, nanos = divmod(time_ns, 10**9)
    return f"{dt.datetime.fromtimestamp(seconds, dt.UTC):%Y-%m-%dT%H:%M:%S}.{nanos:09d}Z"


def credentials(webhook: WebhookConfig) -> Iterator[str]:
    """The parts of a webhook that must never be shown: the url, its query values and its
    token-like path segments (the access token travels in either), the secret."""
    url = webhook.url.reveal()
    yield url
    parts = urllib.parse.urlsplit(url)
    yield from (value for _, value in urllib.parse.parse_qsl(parts.query))
    yield from (segment for segment in parts.path.split("/") if len(segment) >= TOKEN_MIN_CHARS)
    if webhook.secret is not None:
        yield webhook.secret.reveal()


def _generic(alert: Alert, webhook: WebhookConfig, now_ns: int, host: str) -> WebhookRequest:
    return _json_request(webhook.url.reveal(), {
        "source": SOURCE, "host": host, "kind": alert.kind, "level": _level(alert),
        "daemon": alert.daemon, "summary": alert.summary, "details": dict(alert.details),
        "time": rfc3339(alert.time_ns), "time_ns": alert.time_ns})


def _alertmanager(alert: Alert, webhook: WebhookConfig, now_ns: int, host: str) -> WebhookRequest:
    labels = {"alertname": "Hft" + "".join(word.capitalize() for word in
                                           _LABEL_NAME.sub("_", alert.kind).split("_")),
              "severity": _level(alert), "daemon": alert.daemon, "kind": alert.kind,
              "source": SOURCE, "instance": host}
    description = "\n".join([alert.summary, *(f"{key}: {value}"
                                              for key, value in alert.details.items())])
    return _json_request(_alertmanager_url(webhook.url.reveal()), [{
        "labels": {name: value for name, value in labels.items() if value},
        "annotations": {"summary": alert.summary, "description": description},
        "startsAt": rfc3339(alert.time_ns)}])


def _alertmanager_url(url: str) -> str:
    """The base url gets ``/api/v2/alerts`` appended; the full alerts path is kept (less a
    trailing slash, which Alertmanager's router does not match)."""
    parts = urllib.parse.urlsplit(url)
    path = parts.path.rstrip("/")
    if not path.endswith(ALERTMANAGER_PATH):
        path += ALERTMANAGER_PATH
    return urllib.parse.urlunsplit(parts._replace(path=path))


def _dingtalk(alert: Alert, webhook: WebhookConfig, now_ns: int, host: str) -> WebhookRequest:
    details = "\n".join(f"- {key}: {value}" for key, value in alert.details.items())
    text = "\n\n".join(part for part in (f"#### {_title(alert)}", f"**{alert.summary}**", details,
                                          f"{host} · {_local_time(alert.time_ns)}") if part)
    url = webhook.url.reveal()
    if webhook.secret is not None:
        timestamp_ms = now_ns // 10**6
        query = urllib.parse.urlencode({"timestamp": timestamp_ms,
                                        "sign": dingtalk_sign(webhook.secret.reveal(), timestamp_ms)})
        url += ("&" if urllib.parse.urlsplit(url).query else "?") + query
    return _json_request(url, {"msgtype": "markdown",
                               "markdown": {"title": _title(alert), "text": _clip(text)}})


def _feishu(alert: Alert, webhook: WebhookConfig, now_ns: int, host: str) -> WebhookRequest:
    lines = [f"**{alert.summary}**", *(f"**{key}**: {value}" for key, value in alert.details.items())]
    body: dict[str, Any] = {}
    if webhook.secret is not None:
        timestamp_s = now_ns // 10**9
        body = {"timestamp": str(timestamp_s),
                "sign": feishu_sign(webhook.secret.reveal(), timestamp_s)}
    body |= {"msg_type": "interactive", "card": {
        "header": {"title": {"tag": "plain_text", "content": _title(alert)},
                   "template": _CARD_COLOURS[alert.level]},
        "elements": [
            {"tag": "div", "text": {"tag": "lark_md", "content": _clip("\n".join(lines))}},
            {"tag": "note", "elements": [{"tag": "plain_text",
                                          "content": f"{host} · {_local_time(alert.time_ns)}"}]},
        ]}}
    return _json_request(webhook.url.reveal(), body)


def _wecom(alert: Alert, webhook: WebhookConfig, now_ns: int, host: str) -> WebhookRequest:
    colour = _WECOM_COLOURS[alert.level]
    text = "\n".join([f'### <font color="{colour}">{_title(alert)}</font>', f"**{alert.summary}**",
                      *(f"> {key}: {value}" for key, value in alert.details.items()),
                      f'<font color="comment">{host} · {_local_time(alert.time_ns)}</font>'])
    return _json_request(webhook.url.reveal(), {"msgtype": "markdown",
                                                "markdown": {"content": _clip(text)}})


_BUILDERS: dict[WebhookKind, Callable[[Alert, WebhookConfig, int, str], WebhookRequest]] = {
    "generic": _generic, "alertmanager": _alertmanager, "dingtalk": _dingtalk,
    "feishu": _feishu, "wecom": _wecom}


def _json_request(url: str, payload: object) -> WebhookRequest:
    return WebhookRequest(url, json.dumps(payload, ensure_ascii=False).encode(), _JSON_HEADERS)


def _level(alert: Alert) -> str:
    return alert.level.name.lower()


def _title(alert: Alert) -> str:
    return f"hft {alert.level.name}: {alert.daemon} {alert.kind}"


def _local_time(time_ns: int) -> str:
    """The operators' clock (the exchanges' China time), to the millisecond."""
    seconds, nanos = divmod(time_ns, 10**9)
    return f"{dt.datetime.fromtimestamp(seconds, CHINA):%Y-%m-%d %H:%M:%S}.{nanos // 10**6:03d} UTC+8"


def _clip(text: str) -> str:
    """``text`` cut to MAX_MESSAGE_BYTES of UTF-8 (never inside a character), marked with "…"."""
    encoded = text.encode()
    if len(encoded) <= MAX_MESSAGE_BYTES:
        return text
    return encoded[:MAX_MESSAGE_BYTES - 3].decode(errors="ignore") + "…"


def _quote(body: bytes) -> str:
    return repr(body[:MAX_ERROR_CHARS].decode(errors="replace"))
