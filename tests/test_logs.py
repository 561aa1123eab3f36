"""Structured logs: JSON lines with daemon, pid and extras; secrets never reach the output."""

from __future__ import annotations

import json
import logging
import os
from collections.abc import Iterator
from pathlib import Path

import pytest

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


def test_secrets_are_masked_in_extras_at_any_depth_and_in_messages(log_file: Path) -> None:
    config = {"front": "tcp://180.168.146.187:10201", "Password": "hunter2",
              "brokers": [{"auth_code": "0000000000000000", "user": "u1"}]}
    logging.getLogger("hft.test").info("login user=u1 password=hunter2 token: abc123",
                                       extra={"config": config, "api_key": "k-123"})
    text = log_file.read_text(encoding="utf-8")
    for secret in ("hunter2", "0000000000000000", "abc123", "k-123"):
        assert secret not in text
    [line] = lines(log_file)
    assert line["config"] == {"front": "tcp://180.168.146.187:10201", "Password": "***",
                              "brokers": [{"auth_code": "***", "user": "u1"}]}
    assert line["message"] == "login user=u1 password=*** token: ***"
    assert config["Password"] == "hunter2"  # the caller's dict is not modified


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
