"""Fixtures every test module gets; the helpers they use live in ``support.daemons``."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from support.daemons import Daemon, spawn_daemon, wait_serving

from hft.daemons.runtime.config import HOME_ENV


@pytest.fixture(autouse=True)
def no_user_settings(monkeypatch: pytest.MonkeyPatch) -> None:
    """A developer's own HFT_HOME or HFT_CONFIG must not leak into a test (or its daemons)."""
    monkeypatch.delenv(HOME_ENV, raising=False)
    monkeypatch.delenv("HFT_CONFIG", raising=False)


@pytest.fixture
def start_daemon() -> Iterator[Callable[[str, Path], Daemon]]:
    """Factory: start a daemon and wait until it is SERVING; every one is stopped afterwards."""
    started: list[Daemon] = []

    def start(name: str, config_path: Path) -> Daemon:
        daemon = spawn_daemon(name, config_path)
        started.append(daemon)
        return wait_serving(daemon)

    yield start
    for daemon in started:
        daemon.stop()
