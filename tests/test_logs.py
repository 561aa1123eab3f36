"""Structured logs: JSON lines with daemon, pid and extras; secrets never reach the output."""

from __future__ import annotations

import json
import logging
import os
from collections.abc import Iterator
from pathlib import Path

import pytest

from hft.daemons.runtime import secrets
from hft.daemons.runtime.logs import configure_logging


@pytest.fixture
def log_file(tmp_path: Path) -> Iterator[Path]:
    path = tmp_path / "log" / "engine.jsonl"
    handlers = configure_logging("engine", level="INFO", stderr=False, file=path)
    yield path
    for handler in handlers:
        logging.getLogger().removeHandler(handler)
        handler.close()


def lines(path: Path) -> list[dict[str, object]]:
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines()]


def test_json_lines_carry_daemon_pid_level_and_extras(log_file: Path) -> None:
    logging.getLogger("hft.test").warning("feed %s gap", "IF2101",
                                          extra={"plugin": "md", "gap_ms": 1500})
    [line] = lines(log_file)
    assert line["daemon"] == "engine" and line["pid"] == os.getpid()
    assert line["level"] == "WARNING" and line["logger"] == "hft.test"
    assert line["message"] == "feed IF2101 gap"
    assert (line["plugin"], line["gap_ms"]) == ("md", 1500)
    assert "time" in line
    assert log_file.stat().st_mode & 0o777 == 0o600


def test_registered_secrets_and_secret_keys_are_masked_at_any_depth(log_file: Path) -> None:
    secrets.register("hunter2-pw")
    secrets.register_config({"brokers": [{"auth_code": 1234567890123456, "user": "u1"}]})
    config = {"front": "tcp://180.168.146.187:10201", "Password": "any value",
              "brokers": [{"auth_code": "1234567890123456", "user": "u1"}],
              "note": "logged in with hunter2-pw"}
    logging.getLogger("hft.test").info("login user=u1 password=hunter2-pw code 1234567890123456",
                                       extra={"config": config, "api_key": "k-123"})
    text = log_file.read_text(encoding="utf-8")
    for secret in ("hunter2-pw", "1234567890123456", "any value", "k-123"):
        assert secret not in text
    [line] = lines(log_file)
    assert line["config"] == {"front": "tcp://180.168.146.187:10201", "Password": "***",
                              "brokers": [{"auth_code": "***", "user": "u1"}],
                              "note": "logged in with ***"}
    assert line["message"] == "login user=u1 password=*** code ***"
    assert config["Password"] == "any value"  # the caller's dict is not modified


def test_unrelated_text_is_left_exactly_as_it_was(log_file: Path) -> None:
    message = "token file /tmp/token: No such file or directory; password: unchanged, pwd=/srv"
    logging.getLogger("hft.test").error(message, extra={"detail": "secret: not registered"})
    [line] = lines(log_file)
    assert (line["message"], line["detail"]) == (message, "secret: not registered")


def test_secrets_in_exception_messages_are_masked(log_file: Path) -> None:
    secrets.register("s3cret-in-a-traceback")
    try:
        raise ValueError("login refused for s3cret-in-a-traceback")
    except ValueError:
        logging.getLogger("hft.test").exception("failed")
    assert "s3cret-in-a-traceback" not in log_file.read_text(encoding="utf-8")
    [line] = lines(log_file)
    assert "ValueError: login refused for ***" in str(line["exc_info"])


def test_short_values_are_not_registered() -> None:
    secrets.register("ab1")
    assert secrets.mask("ab1 stays") == "ab1 stays"


def test_level_filters_and_exceptions_are_included(log_file: Path) -> None:
    log = logging.getLogger("hft.test")
    log.debug("not shown")
    try:
        raise RuntimeError("boom")
    except RuntimeError:
        log.exception("handler failed")
    [line] = lines(log_file)
    assert line["level"] == "ERROR"
    assert "RuntimeError: boom" in str(line["exc_info"])
