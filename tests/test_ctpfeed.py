"""The CTP feed plugin in a daemon host, against the CTP API emulator."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import pytest
from support.ctp_emulator import CtpMdEmulator
from support.ctpdata import depth
from support.daemons import wait_for

from hft.daemons.md.ctp import MdState
from hft.daemons.md.ctpfeed import CtpFeed
from hft.daemons.runtime.config import SuiteConfig
from hft.daemons.runtime.events import EventType
from hft.daemons.runtime.host import DaemonHost
from hft.daemons.runtime.journal import JournalReader
from hft.daemons.runtime.plugins import PluginState

PASSWORD = "pw-Never-Shown-9"


class EmulatedCtpFeed(CtpFeed):
    """The plugin with the API factory pointed at an emulator (one per test)."""


@pytest.fixture
def emulator(monkeypatch: pytest.MonkeyPatch) -> CtpMdEmulator:
    emulator = CtpMdEmulator(broker_id="9999", user_id="218001", password=PASSWORD)
    monkeypatch.setattr(EmulatedCtpFeed, "md_api_factory", emulator.factory)
    return emulator


@pytest.fixture
def host(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, emulator: CtpMdEmulator) -> DaemonHost:
    for variable, value in (("CTP_MD_FRONT", "tcp://127.0.0.1:10211"), ("CTP_BROKER_ID", "9999"),
                            ("CTP_USER_ID", "218001"), ("CTP_PASSWORD", PASSWORD)):
        monkeypatch.setenv(variable, value)
    return DaemonHost("hft_md", SuiteConfig.model_validate({"paths": {"home": str(tmp_path)}}))


def load(host: DaemonHost, config: dict[str, Any]) -> Any:
    return host.plugins.load("ctp", f"{__name__}:EmulatedCtpFeed", config)


def records(host: DaemonHost) -> list[tuple[int, bytes]]:
    with JournalReader(host.journal_dir, "md-ctp") as reader:
        out = []
        while (record := reader.read()) is not None:
            kind = int(record["type"])
            out.append((kind, bytes(record["instrument"] if kind == EventType.MARKET_DATA
                                    else record["reason"])))
        return out


def test_credentials_from_the_environment_and_ticks_into_the_journal(
        host: DaemonHost, emulator: CtpMdEmulator, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)
    entry = load(host, {"instruments": ["rb2605"], "stale_after_s": None})
    assert entry.state is PluginState.RUNNING, entry.error
    feed = entry.instance
    wait_for(lambda: feed.adapter.state is MdState.SUBSCRIBED, "subscribed")
    emulator.push(depth("rb2605"))
    wait_for(lambda: (EventType.MARKET_DATA, b"rb2605") in records(host), "the tick recorded")
    names = {metric.name for metric in feed.metrics()}
    assert {"hft_md_ticks", "hft_md_ctp_state", "hft_md_ctp_logins"} <= names
    host.plugins.unload("ctp")
    assert records(host)[-1] == (EventType.FEED_GAP, b"ctp feed stopped")
    assert PASSWORD not in caplog.text and PASSWORD not in repr(feed.settings)


def test_missing_credentials_are_named_without_showing_the_password(
        host: DaemonHost, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("CTP_MD_FRONT")
    monkeypatch.delenv("CTP_USER_ID")
    entry = load(host, {"instruments": ["rb2605"]})
    assert entry.state is PluginState.FAILED
    assert "md_fronts (or $CTP_MD_FRONT)" in entry.error and "user_id (or $CTP_USER_ID)" in entry.error
    assert PASSWORD not in entry.error
    monkeypatch.setenv("CTP_MD_FRONT", "tcp://127.0.0.1:10211")
    monkeypatch.setenv("CTP_USER_ID", "218001")
    assert "instruments or patterns" in load_error(host, {})


def test_credentials_from_a_0600_file_where_the_environment_has_none(
        host: DaemonHost, emulator: CtpMdEmulator, tmp_path: Path,
        monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("CTP_PASSWORD")
    monkeypatch.delenv("CTP_MD_FRONT")
    secrets = tmp_path / "ctp.json"
    secrets.write_text(f'{{"password": "{PASSWORD}", "md_fronts": ["tcp://127.0.0.1:10211"]}}')
    secrets.chmod(0o640)
    config = {"instruments": ["rb2605"], "credentials_file": str(secrets)}
    assert "make it 0600" in load_error(host, config)
    host.plugins.unload("ctp2")
    secrets.chmod(0o600)
    entry = load(host, config)
    assert entry.state is PluginState.RUNNING, entry.error
    wait_for(lambda: entry.instance.adapter.state is MdState.SUBSCRIBED, "subscribed")
    assert PASSWORD not in repr(entry.instance.settings)
    secrets.write_text('{"md_fronts": "tcp://127.0.0.1:10211"}')
    assert "md_fronts must be a list of strings" in load_error(host, config)


def load_error(host: DaemonHost, config: dict[str, Any]) -> str:
    entry = host.plugins.load("ctp2", f"{__name__}:EmulatedCtpFeed", config)
    assert entry.state is PluginState.FAILED
    return entry.error


def test_a_wrong_password_leaves_the_adapter_in_error_without_retrying(
        host: DaemonHost, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CTP_PASSWORD", "wrong-password-123")
    entry = load(host, {"instruments": ["rb2605"]})
    assert entry.state is PluginState.RUNNING, entry.error
    wait_for(lambda: entry.instance.adapter.state is MdState.ERROR, "the login refused")
    assert entry.instance.adapter.stats.login_failures == 1
    host.plugins.unload("ctp")
