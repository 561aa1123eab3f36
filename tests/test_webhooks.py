"""Each webhook format, posted to a local stand-in of its service that checks the request the
way the service documents it (signatures recomputed from the secret with hmac, not with the
code under test), and each service's reply read the way the service means it."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import time
import urllib.request
from pathlib import Path

import pydantic
import pytest
from support.webhook_services import (
    Alertmanager,
    DingTalk,
    Feishu,
    WebhookService,
    WeCom,
    parse_rfc3339,
)

from hft.daemons.runtime.config import ConfigError, WebhookConfig, load_config
from hft.daemons.runtime.events import AlertLevel
from hft.daemons.runtime.secrets import mask
from hft.watchdog.alerts import Alert
from hft.watchdog.webhooks import (
    MAX_MESSAGE_BYTES,
    WebhookError,
    WebhookRequest,
    build_request,
    check_reply,
    credentials,
    rfc3339,
)

HOST = "trade-01"
ALERT = Alert("crash", AlertLevel.CRITICAL, "engine", "engine exited on signal 9 (SIGKILL)",
              {"exit_code": "-9", "restarts": "3"}, time_ns=1_764_443_900_123_456_789)
DINGTALK_SECRET = "SECd1n9ta1k5ecret0123456789abcdef"
FEISHU_SECRET = "fe1shu5ecretQx7Yz"


def webhook(kind: str, url: str, **fields: object) -> WebhookConfig:
    return WebhookConfig.model_validate({"kind": kind, "url": url, **fields})


def post(request: WebhookRequest) -> bytes:
    """What the service replied, HTTP 200 only (urllib raises on any other status)."""
    http_request = urllib.request.Request(request.url, data=request.body,
                                          headers=dict(request.headers), method="POST")
    with urllib.request.urlopen(http_request, timeout=10) as response:
        return bytes(response.read())


def deliver(service: WebhookService, config: WebhookConfig, alert: Alert = ALERT,
            now_ns: int | None = None) -> bytes:
    request = build_request(alert, config, now_ns=time.time_ns() if now_ns is None else now_ns,
                            host=HOST)
    reply = post(request)
    check_reply(config.kind, reply)
    return reply


def test_generic_carries_every_alert_field() -> None:
    with WebhookService() as service:
        deliver(service, webhook("generic", f"{service.base_url}/hooks/hft"))
        [received] = service.requests
    assert received.path == "/hooks/hft"
    assert received.headers["content-type"].startswith("application/json")
    body = received.json()
    assert body == {"source": "hft-watchdog", "host": HOST, "kind": "crash", "level": "critical",
                    "daemon": "engine", "summary": ALERT.summary,
                    "details": {"exit_code": "-9", "restarts": "3"},
                    "time": "2025-11-29T19:18:20.123456789Z", "time_ns": ALERT.time_ns}
    assert parse_rfc3339(body["time"]) == ALERT.time_ns


@pytest.mark.parametrize(("prefix", "configured"), [
    ("", ""), ("", "/"), ("/alertmanager", "/alertmanager"),
    ("", "/api/v2/alerts"), ("/am", "/am/api/v2/alerts/"),
])
def test_alertmanager_gets_a_v2_alert_from_its_base_url_or_the_full_path(
        prefix: str, configured: str) -> None:
    with Alertmanager(prefix) as alertmanager:
        reply = deliver(alertmanager, webhook("alertmanager", alertmanager.base_url + configured))
        [received] = alertmanager.requests
    assert reply == b""  # the stand-in answers 400 with the reason to anything it would refuse
    [alert] = received.json()
    assert alert["labels"] == {"alertname": "HftCrash", "severity": "critical", "daemon": "engine",
                               "kind": "crash", "source": "hft-watchdog", "instance": HOST}
    assert alert["annotations"] == {"summary": ALERT.summary,
                                    "description": f"{ALERT.summary}\nexit_code: -9\nrestarts: 3"}
    assert parse_rfc3339(alert["startsAt"]) == ALERT.time_ns
    assert "endsAt" not in alert


def test_alertmanager_alertname_is_a_label_value_from_any_kind() -> None:
    with Alertmanager() as alertmanager:
        deliver(alertmanager, webhook("alertmanager", alertmanager.base_url),
                Alert("heartbeat_lost", AlertLevel.WARNING, "", "no heartbeat for 5 s"))
        [alert] = alertmanager.requests[0].json()
    assert alert["labels"]["alertname"] == "HftHeartbeatLost"
    assert "daemon" not in alert["labels"]  # an empty value is no label


def _dingtalk_sign(secret: str, timestamp_ms: int) -> str:
    return base64.b64encode(hmac.new(secret.encode(), f"{timestamp_ms}\n{secret}".encode(),
                                     hashlib.sha256).digest()).decode()


def test_dingtalk_markdown_signed_in_the_query() -> None:
    # a moment whose signature holds "+" and "/": the query must carry them URL-encoded
    now_ms = time.time_ns() // 10**6
    while not {"+", "/"} <= set(_dingtalk_sign(DINGTALK_SECRET, now_ms)):
        now_ms += 1
    with DingTalk(DINGTALK_SECRET) as robot:
        reply = deliver(robot, webhook("dingtalk", robot.url, secret=DINGTALK_SECRET),
                        now_ns=now_ms * 10**6)
        [received] = robot.requests
    assert json.loads(reply) == {"errcode": 0, "errmsg": "ok"}
    assert received.query["timestamp"] == str(now_ms)
    assert received.query["sign"] == _dingtalk_sign(DINGTALK_SECRET, now_ms)
    markdown = received.json()["markdown"]
    assert markdown["title"] == "hft CRITICAL: engine crash"
    assert markdown["text"] == (
        "#### hft CRITICAL: engine crash\n\n**engine exited on signal 9 (SIGKILL)**\n\n"
        "- exit_code: -9\n- restarts: 3\n\ntrade-01 · 2025-11-30 03:18:20.123 UTC+8")


def test_dingtalk_without_a_secret_adds_nothing_to_the_url() -> None:
    with DingTalk() as robot:
        deliver(robot, webhook("dingtalk", robot.url))
        assert robot.requests[0].query == {"access_token": DingTalk.TOKEN}


def test_a_signature_made_with_another_secret_is_refused_and_read_as_a_failure() -> None:
    with DingTalk(DINGTALK_SECRET) as robot, pytest.raises(WebhookError, match="errcode 310000"):
        deliver(robot, webhook("dingtalk", robot.url, secret="SECnot-the-robots-secret"))


def test_feishu_card_signed_in_the_body() -> None:
    now_ns = time.time_ns()
    with Feishu(FEISHU_SECRET) as bot:
        reply = deliver(bot, webhook("feishu", bot.url, secret=FEISHU_SECRET), now_ns=now_ns)
        [received] = bot.requests
    assert json.loads(reply)["code"] == 0
    body = received.json()
    timestamp = now_ns // 10**9
    assert body["timestamp"] == str(timestamp)
    assert body["sign"] == base64.b64encode(hmac.new(
        f"{timestamp}\n{FEISHU_SECRET}".encode(), b"", hashlib.sha256).digest()).decode()
    card = body["card"]
    assert card["header"] == {"title": {"tag": "plain_text", "content": "hft CRITICAL: engine crash"},
                              "template": "red"}
    assert card["elements"][0]["text"]["content"] == (
        "**engine exited on signal 9 (SIGKILL)**\n**exit_code**: -9\n**restarts**: 3")


def test_feishu_refuses_a_signature_older_than_an_hour() -> None:
    two_hours_ago = time.time_ns() - 7200 * 10**9
    with Feishu(FEISHU_SECRET) as bot, pytest.raises(WebhookError, match="code 19021"):
        deliver(bot, webhook("feishu", bot.url, secret=FEISHU_SECRET), now_ns=two_hours_ago)


def test_feishu_colours_the_card_by_level_and_needs_no_secret() -> None:
    with Feishu() as bot:
        for level in AlertLevel:
            deliver(bot, webhook("feishu", bot.url), Alert("restart", level, "risk", "restarted"))
        templates = [r.json()["card"]["header"]["template"] for r in bot.requests]
        assert "sign" not in bot.requests[0].json()
    assert templates == ["blue", "orange", "red"]


def test_wecom_markdown_within_its_4096_bytes() -> None:
    long_alert = Alert("position_mismatch", AlertLevel.WARNING, "risk", "持仓不一致",
                       {f"合约{i}": "多头 3 手, 柜台 2 手" for i in range(400)})
    with WeCom() as robot:
        deliver(robot, webhook("wecom", robot.url))
        deliver(robot, webhook("wecom", robot.url), long_alert)
        short, long = (r.json()["markdown"]["content"] for r in robot.requests)
    assert short.startswith('### <font color="warning">hft CRITICAL: engine crash</font>\n'
                            "**engine exited on signal 9 (SIGKILL)**\n> exit_code: -9\n")
    assert len(long.encode()) <= MAX_MESSAGE_BYTES and long.endswith("…")


def test_wecom_refusal_in_a_200_reply_is_a_failure() -> None:
    with WeCom() as robot, pytest.raises(WebhookError, match="errcode 93000"):
        deliver(robot, webhook("wecom", f"{robot.base_url}/cgi-bin/webhook/send?key=revoked-key"))


@pytest.mark.parametrize(("kind", "reply", "error"), [
    ("dingtalk", b'{"errcode": 130101, "errmsg": "send too fast"}', "errcode 130101"),
    ("wecom", b'{"errcode": 45009, "errmsg": "api freq out of limit"}', "errcode 45009"),
    ("feishu", b'{"code": 11232, "msg": "frequency limited"}', "code 11232"),
    ("feishu", b'{"StatusCode": 9499, "StatusMessage": "Bad Request"}', "StatusCode 9499"),
    ("dingtalk", b"<html>gateway</html>", "no JSON"),
    ("wecom", b"[]", "not an object"),
    ("feishu", b'{"data": {}}', "no code"),
])
def test_robot_replies_that_refuse_are_failures(kind: str, reply: bytes, error: str) -> None:
    with pytest.raises(WebhookError, match=error):
        check_reply(kind, reply)  # type: ignore[arg-type]


def test_replies_that_accept_pass() -> None:
    check_reply("dingtalk", b'{"errcode":0,"errmsg":"ok"}')
    check_reply("feishu", b'{"StatusCode":0,"StatusMessage":"success"}')
    check_reply("alertmanager", b"")
    check_reply("generic", b"anything at all")


def test_rfc3339_keeps_nanoseconds() -> None:
    assert rfc3339(0) == "1970-01-01T00:00:00.000000000Z"
    assert rfc3339(1_700_000_000_000_000_001) == "2023-11-14T22:13:20.000000001Z"


def test_the_url_and_the_secret_are_never_shown() -> None:
    token = "0123456789abcdef0123456789abcdef-never-shown"
    url = f"https://oapi.dingtalk.com/robot/send?access_token={token}"
    config = webhook("dingtalk", url, secret="SECsigning-secret-never-shown")
    request = build_request(ALERT, config, now_ns=time.time_ns(), host=HOST)
    shown = f"{config!r} {config} {config.model_dump_json()} {request!r} {request}"
    for value in (url, token, "SECsigning-secret-never-shown"):
        assert value not in shown
        assert value in set(credentials(config))  # the sender registers these
    assert mask(f"at {url}.") == "at ***."  # Secrets: registered when the config was made


def test_a_feishu_hook_id_in_the_path_is_a_credential_too() -> None:
    config = webhook("feishu", "https://open.feishu.cn/open-apis/bot/v2/hook/" + Feishu.HOOK)
    assert Feishu.HOOK in set(credentials(config))
    assert "open-apis" not in set(credentials(config))


def test_a_bad_url_is_refused_without_echoing_it(tmp_path: Path) -> None:
    config = tmp_path / "hft.toml"
    config.write_text('[[watchdog.webhooks]]\nkind = "wecom"\n'
                      'url = "ftp://qyapi.example/send?key=leaky-key-123456"\n')
    with pytest.raises(ConfigError, match=r"watchdog\.webhooks\.0\.url: .*http") as refused:
        load_config(config)
    assert "leaky-key-123456" not in str(refused.value)


@pytest.mark.parametrize("url", ["https://", "http://host with space/x", "mailto:ops@example.com",
                                 "https://example.com/" + "x" * 2048])
def test_webhook_urls_are_http_with_a_host(url: str) -> None:
    with pytest.raises(pydantic.ValidationError, match="http:// or https://"):
        webhook("generic", url)


def test_a_secret_is_for_the_signing_robots_only() -> None:
    with pytest.raises(pydantic.ValidationError, match="not wecom"):
        webhook("wecom", "https://example.com/x", secret="SECxyzw")

