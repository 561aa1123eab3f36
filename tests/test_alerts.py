"""The alert sender against real local HTTP services: every kind delivered, failures (error
codes in 200 replies included) retried, a stalled webhook delaying nobody, the rate limit
dropping, counting and then reporting, min_level, close() draining, and the urls and secrets
kept out of the logs and the metrics."""

from __future__ import annotations

import json
import logging
import socket
import time
from collections.abc import Callable, Iterator
from contextlib import ExitStack
from pathlib import Path

import pytest
from prometheus_client import REGISTRY, CollectorRegistry, generate_latest
from support.webhook_services import Alertmanager, DingTalk, Feishu, WebhookService, WeCom

from hft.daemons.runtime.config import WebhookConfig
from hft.daemons.runtime.events import AlertLevel
from hft.daemons.runtime.logs import configure_logging
from hft.daemons.runtime.secrets import mask
from hft.watchdog.alerts import QUEUE_SIZE, RATE_WINDOW_S, Alert, AlertSender

BACKOFF_S = 0.01
DINGTALK_SECRET = "SECsender5ecret0123456789"
FEISHU_SECRET = "fe1shu5enderSecret"


def webhook(kind: str, url: str, **fields: object) -> WebhookConfig:
    return WebhookConfig.model_validate({"kind": kind, "url": url, **fields})


def alert(kind: str = "crash", level: AlertLevel = AlertLevel.CRITICAL,
          summary: str = "engine exited on signal 9") -> Alert:
    return Alert(kind, level, "engine", summary, {"exit_code": "-9"})


class FakeClock:
    """Monotonic seconds that move only when the test says (the rate limit's clock)."""

    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def services() -> Iterator[ExitStack]:
    with ExitStack() as stack:
        yield stack


@pytest.fixture
def registry() -> CollectorRegistry:
    return CollectorRegistry()


SenderFactory = Callable[..., AlertSender]


@pytest.fixture
def sender_for(registry: CollectorRegistry) -> Iterator[SenderFactory]:
    """Makes AlertSenders on the test's registry with a short backoff; closes them after."""
    made: list[AlertSender] = []

    def make(webhooks: list[WebhookConfig], clock: Callable[[], float] = time.monotonic,
             ) -> AlertSender:
        made.append(AlertSender(webhooks, registry=registry, clock=clock,
                                backoff_initial_s=BACKOFF_S))
        return made[-1]

    yield make
    for sender in made:
        sender.close(timeout_s=0)


def metric(registry: CollectorRegistry, name: str, **labels: str) -> float:
    value = registry.get_sample_value(name, labels)
    assert value is not None, (name, labels)
    return value


def test_every_kind_is_delivered_to_its_service(services: ExitStack, registry: CollectorRegistry,
                                                sender_for: SenderFactory) -> None:
    generic = services.enter_context(WebhookService())
    alertmanager = services.enter_context(Alertmanager())
    dingtalk = services.enter_context(DingTalk(DINGTALK_SECRET))
    feishu = services.enter_context(Feishu(FEISHU_SECRET))
    wecom = services.enter_context(WeCom())
    sender = sender_for([
        webhook("generic", generic.base_url + "/hook"),
        webhook("alertmanager", alertmanager.base_url),
        webhook("dingtalk", dingtalk.url, secret=DINGTALK_SECRET),
        webhook("feishu", feishu.url, secret=FEISHU_SECRET),
        webhook("wecom", wecom.url),
    ])
    sender.send(alert())
    names = ("0-generic", "1-alertmanager", "2-dingtalk", "3-feishu", "4-wecom")
    # each service checked its request and said yes: one sent, no error, nothing dropped
    _wait_until(lambda: all(metric(registry, "hft_watchdog_alerts_sent_total", webhook=name) == 1
                            for name in names))
    for name in names:
        assert metric(registry, "hft_watchdog_webhook_errors_total", webhook=name) == 0
        for reason in ("queue_full", "rate_limit", "failed"):
            assert metric(registry, "hft_watchdog_alerts_dropped_total",
                          webhook=name, reason=reason) == 0
    for service in (generic, alertmanager, dingtalk, feishu, wecom):
        assert len(service.requests) == 1
    assert generic.requests[0].json()["host"] == socket.gethostname()
    sender.close()
    assert "hft_watchdog" not in generate_latest(registry).decode()  # close() unregistered


def test_metrics_go_to_the_default_registry_or_to_the_callers_collector(
        services: ExitStack) -> None:
    service = services.enter_context(WebhookService())
    config = [webhook("generic", service.base_url)]
    on_default = AlertSender(config)
    assert 'hft_watchdog_alerts_sent_total{webhook="0-generic"} 0.0' \
        in generate_latest(REGISTRY).decode()
    on_default.close()
    assert "hft_watchdog_alerts_sent" not in generate_latest(REGISTRY).decode()
    served_by_caller = AlertSender(config, registry=None)  # e.g. merged by the watchdog's host
    served_by_caller.send(alert())
    service.wait_for(1)

    def sent() -> float:
        [family] = [f for f in served_by_caller.collect() if f.name == "hft_watchdog_alerts_sent"]
        return float(family.samples[0].value)

    _wait_until(lambda: sent() == 1)
    served_by_caller.close()
    assert "hft_watchdog_alerts_sent" not in generate_latest(REGISTRY).decode()


def test_an_error_code_in_a_200_reply_is_retried_until_accepted(
        services: ExitStack, registry: CollectorRegistry, sender_for: SenderFactory) -> None:
    robot = services.enter_context(DingTalk(DINGTALK_SECRET))
    robot.script((200, {"errcode": 130101, "errmsg": "send too fast"}),
                 (503, {"error": "unavailable"}))
    sender = sender_for([webhook("dingtalk", robot.url, secret=DINGTALK_SECRET, retries=3)])
    sender.send(alert())
    robot.wait_for(3)
    _wait_until(lambda: metric(registry, "hft_watchdog_alerts_sent_total", webhook="0-dingtalk") == 1)
    assert metric(registry, "hft_watchdog_webhook_errors_total", webhook="0-dingtalk") == 2
    first, _, third = robot.requests
    assert first.body == third.body  # the same message, signed again for each attempt
    assert "sign" in third.query


def test_an_alert_failing_every_attempt_is_dropped_as_failed(
        services: ExitStack, registry: CollectorRegistry, sender_for: SenderFactory,
        caplog: pytest.LogCaptureFixture) -> None:
    bot = services.enter_context(Feishu())
    bot.script(*[(200, {"code": 11232, "msg": "frequency limited"})] * 3)
    sender = sender_for([webhook("feishu", bot.url, retries=2)])
    sender.send(alert())
    bot.wait_for(3)
    _wait_until(lambda: metric(registry, "hft_watchdog_alerts_dropped_total",
                               webhook="0-feishu", reason="failed") == 1)
    assert metric(registry, "hft_watchdog_webhook_errors_total", webhook="0-feishu") == 3
    assert metric(registry, "hft_watchdog_alerts_sent_total", webhook="0-feishu") == 0
    attempts = [r for r in caplog.records if r.getMessage() == "webhook attempt failed"]
    assert [r.attempt for r in attempts] == [1, 2, 3]  # type: ignore[attr-defined]
    assert "code 11232" in attempts[0].error  # type: ignore[attr-defined]


def test_a_refusal_no_retry_can_change_is_not_retried(
        services: ExitStack, registry: CollectorRegistry, sender_for: SenderFactory) -> None:
    alertmanager = services.enter_context(Alertmanager())
    alertmanager.script((400, "bad alert"))
    sender = sender_for([webhook("alertmanager", alertmanager.base_url, retries=5)])
    sender.send(alert())
    sender.send(alert("restart"))  # arrives after the first was given up
    alertmanager.wait_for(2)
    _wait_until(lambda: metric(registry, "hft_watchdog_alerts_sent_total",
                               webhook="0-alertmanager") == 1)
    assert metric(registry, "hft_watchdog_webhook_errors_total", webhook="0-alertmanager") == 1
    assert metric(registry, "hft_watchdog_alerts_dropped_total", webhook="0-alertmanager",
                  reason="failed") == 1
    assert alertmanager.requests[1].json()[0]["labels"]["kind"] == "restart"


def test_a_stalled_webhook_delays_neither_send_nor_another_webhook(
        services: ExitStack, sender_for: SenderFactory) -> None:
    stalled = services.enter_context(WebhookService())
    healthy = services.enter_context(WeCom())
    stalled.stall()  # holds every request until the test ends
    sender = sender_for([webhook("generic", stalled.base_url, timeout_s=60),
                         webhook("wecom", healthy.url)])
    for n in range(5):
        sender.send(alert(summary=f"alert {n}"))  # returns although webhook 0 never answers
    received = healthy.wait_for(5)
    assert [f"alert {n}" in r.json()["markdown"]["content"] for n, r in enumerate(received)] \
        == [True] * 5
    assert len(stalled.requests) == 1  # still waiting on its first


def test_an_attempt_ends_at_the_webhooks_timeout(
        services: ExitStack, registry: CollectorRegistry, sender_for: SenderFactory,
        caplog: pytest.LogCaptureFixture) -> None:
    stalled = services.enter_context(WebhookService())
    stalled.stall()  # answers only after the test: without a timeout the attempt never ends
    sender = sender_for([webhook("generic", stalled.base_url, timeout_s=0.2, retries=1)])
    sender.send(alert())
    _wait_until(lambda: metric(registry, "hft_watchdog_alerts_dropped_total", webhook="0-generic",
                               reason="failed") == 1)
    assert len(stalled.requests) == 2
    errors = [r.error for r in caplog.records if r.getMessage() == "webhook attempt failed"]  # type: ignore[attr-defined]
    assert len(errors) == 2 and all("timed out" in error for error in errors)


def test_a_full_queue_drops_and_counts(services: ExitStack, registry: CollectorRegistry,
                                       sender_for: SenderFactory) -> None:
    stalled = services.enter_context(WebhookService())
    stalled.stall()
    sender = sender_for([webhook("generic", stalled.base_url, timeout_s=60,
                                 max_per_minute=10_000)])
    sender.send(alert())
    stalled.wait_for(1)  # the worker is now stuck on the first alert
    for _ in range(QUEUE_SIZE + 7):
        sender.send(alert())
    assert metric(registry, "hft_watchdog_alerts_dropped_total", webhook="0-generic",
                  reason="queue_full") == 7


def test_the_rate_limit_drops_counts_and_then_reports(
        services: ExitStack, registry: CollectorRegistry, sender_for: SenderFactory) -> None:
    robot = services.enter_context(DingTalk())
    clock = FakeClock()
    sender = sender_for([webhook("dingtalk", robot.url, max_per_minute=2)], clock=clock)
    for kind in ("crash", "restart", "crash", "restart", "crash"):
        sender.send(alert(kind))
        clock.now += 1
    assert metric(registry, "hft_watchdog_alerts_dropped_total", webhook="0-dingtalk",
                  reason="rate_limit") == 3
    robot.wait_for(2)
    clock.now += RATE_WINDOW_S  # the limit clears; no new alert: the idle worker reports
    summary = robot.wait_for(3)[2].json()["markdown"]["text"]
    assert "hft CRITICAL: watchdog alerts_dropped" in summary
    assert "3 alerts were not sent to this webhook: over its limit of 2 a minute" in summary
    assert "- kinds: crash x2, restart x1" in summary
    sender.send(alert("hang"))  # the summary took one of the two places in this window
    sender.send(alert("fatal"))
    robot.wait_for(4)
    assert metric(registry, "hft_watchdog_alerts_dropped_total", webhook="0-dingtalk",
                  reason="rate_limit") == 4
    _wait_until(lambda: metric(registry, "hft_watchdog_alerts_sent_total",
                               webhook="0-dingtalk") == 4)


def test_the_rate_limit_summary_goes_ahead_of_the_next_alert(
        services: ExitStack, sender_for: SenderFactory) -> None:
    robot = services.enter_context(WeCom())
    clock = FakeClock()
    sender = sender_for([webhook("wecom", robot.url, max_per_minute=2)], clock=clock)
    sender.send(alert("crash"))
    sender.send(alert("restart", AlertLevel.WARNING))
    sender.send(alert("memory", AlertLevel.WARNING))  # over the limit
    clock.now += RATE_WINDOW_S
    sender.send(alert("fatal"))
    contents = [r.json()["markdown"]["content"] for r in robot.wait_for(4)]
    assert "engine crash" in contents[0] and "engine restart" in contents[1]
    assert "watchdog alerts_dropped" in contents[2] and "> kinds: memory x1" in contents[2]
    assert '<font color="warning">hft WARNING' in contents[2]  # the level of what it dropped
    assert "engine fatal" in contents[3]


def test_min_level_filters_per_webhook(services: ExitStack, sender_for: SenderFactory) -> None:
    everything = services.enter_context(WebhookService())
    critical_only = services.enter_context(WebhookService())
    sender = sender_for([webhook("generic", everything.base_url, min_level="info"),
                         webhook("generic", critical_only.base_url, min_level="critical")])
    for level in AlertLevel:
        sender.send(alert(level.name.lower(), level))
    sender.close(timeout_s=30)
    assert [r.json()["level"] for r in everything.requests] == ["info", "warning", "critical"]
    assert [r.json()["level"] for r in critical_only.requests] == ["critical"]


def test_the_default_min_level_is_warning(services: ExitStack,
                                          sender_for: SenderFactory) -> None:
    service = services.enter_context(WebhookService())
    sender = sender_for([webhook("generic", service.base_url)])
    sender.send(alert("restart", AlertLevel.INFO))
    sender.send(alert("hang", AlertLevel.WARNING))
    sender.close(timeout_s=30)
    assert [r.json()["kind"] for r in service.requests] == ["hang"]


def test_close_delivers_what_is_queued(services: ExitStack, sender_for: SenderFactory) -> None:
    service = services.enter_context(Feishu())
    sender = sender_for([webhook("feishu", service.url)])
    for n in range(15):
        sender.send(alert(summary=f"alert {n}"))
    sender.close(timeout_s=60)
    assert len(service.requests) == 15
    sender.send(alert())  # after close: not sent, and no error
    sender.close()


def test_close_gives_up_at_its_deadline_and_says_what_was_left(
        services: ExitStack, sender_for: SenderFactory,
        caplog: pytest.LogCaptureFixture) -> None:
    stalled = services.enter_context(WebhookService())
    stalled.stall()
    sender = sender_for([webhook("generic", stalled.base_url, timeout_s=60)])
    for _ in range(4):
        sender.send(alert())
    stalled.wait_for(1)
    sender.close(timeout_s=0.2)  # returns although the webhook still holds the first
    [left] = [r for r in caplog.records if r.getMessage() == "alerts not delivered before close"]
    assert (left.webhook, left.queued, left.in_flight) == ("0-generic", 3, 1)  # type: ignore[attr-defined]


def test_urls_tokens_and_secrets_stay_out_of_logs_errors_and_metrics(
        services: ExitStack, registry: CollectorRegistry, sender_for: SenderFactory,
        caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)
    robot = services.enter_context(DingTalk(DINGTALK_SECRET))
    # the robot refuses and quotes the url back, as a misbehaving proxy might
    robot.script(*[(200, {"errcode": 300001, "errmsg": f"token of {robot.url} is not exist"})] * 2)
    dead_url = "http://127.0.0.1:9/robot/send?access_token=dead0token0123456789"
    sender = sender_for([webhook("dingtalk", robot.url, secret=DINGTALK_SECRET, retries=1),
                         webhook("wecom", dead_url, retries=0)])
    sender.send(alert())
    robot.wait_for(2)
    _wait_until(lambda: sum(metric(registry, "hft_watchdog_alerts_dropped_total", webhook=name,
                                   reason="failed") for name in ("0-dingtalk", "1-wecom")) == 2)
    shown = caplog.text + " ".join(str(vars(record)) for record in caplog.records) \
        + generate_latest(registry).decode() + repr(sender)
    assert "errcode 300001" in shown and "Connection refused" in shown
    for value in (robot.url, DingTalk.TOKEN, DINGTALK_SECRET, dead_url, "dead0token0123456789"):
        assert value not in shown
        assert mask(value) == "***"  # and a log handler with the mask filter hides them


def test_the_alert_log_line_keeps_the_watchdogs_own_fields(tmp_path: Path,
                                                          sender_for: SenderFactory) -> None:
    log_file = tmp_path / "watchdog.jsonl"
    root = logging.getLogger()
    level = root.level
    handlers = configure_logging("watchdog", stderr=False, file=log_file)
    try:
        sender_for([]).send(alert())
    finally:
        for handler in handlers:
            root.removeHandler(handler)
            handler.close()
        root.setLevel(level)
    [line] = [json.loads(text) for text in log_file.read_text().splitlines()]
    assert (line["message"], line["daemon"], line["level"]) == ("alert", "watchdog", "ERROR")
    assert (line["alert_daemon"], line["alert_kind"], line["alert_level"]) \
        == ("engine", "crash", "critical")


def _wait_until(condition: object) -> None:
    """Poll ``condition`` (a metric a worker thread updates after the request arrived)."""
    assert callable(condition)
    deadline = time.monotonic() + 30
    while not condition():
        assert time.monotonic() < deadline, "condition not met within 30 s"
        time.sleep(0.01)
