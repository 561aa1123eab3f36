"""The built-in suite (daemons/default.toml: every daemon, the default plugins) as real
processes on free /metrics ports, for the tests that look at what the whole suite exports."""

from __future__ import annotations

import re
import socket
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from functools import partial
from importlib import resources
from pathlib import Path

from hft.daemons.runtime.config import DAEMON_NAMES, WATCHDOG
from support.daemons import START_TIMEOUT_S, Daemon, serving, spawn_daemon, wait_for


def free_port() -> int:
    """A TCP port free on 127.0.0.1 right now."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


@dataclass
class Suite:
    daemons: dict[str, Daemon]
    metrics_ports: dict[str, int]
    """Daemon name -> its /metrics port."""

    def scrape(self, name: str) -> str:
        """The daemon's /metrics text."""
        url = f"http://127.0.0.1:{self.metrics_ports[name]}/metrics"
        with urllib.request.urlopen(url, timeout=5) as response:
            return str(response.read().decode())


def default_config(directory: Path, ports: dict[str, int], extra: str = "") -> Path:
    """daemons/default.toml with its home in ``directory``, each daemon's (and the
    watchdog's) metrics_port from ``ports``, and ``extra`` TOML at the end."""
    text = resources.files("hft.daemons").joinpath("default.toml").read_text("utf-8")
    text = text.replace('home = "~/.hft"', f'home = "{directory / "home"}"', 1)
    for name, port in ports.items():
        text, count = re.subn(
            rf"(\[(?:daemons\.)?{name}\]\n(?:[^\[].*\n)*?metrics_port = )\d+",
            rf"\g<1>{port}", text)
        assert count == 1, f"no metrics_port for {name} in default.toml"
    path = directory / "hft.toml"
    path.write_text(text + extra)
    return path


WATCHED_WEBHOOK = """
[[watchdog.webhooks]]
kind = "generic"
url = "http://127.0.0.1:9/never-called"
"""
"""A webhook for the watchdog of ``running_suite(watchdog=True)``, so the per-webhook
series exist (nothing is sent: the watchdog only looks at daemons it did not start)."""


@contextmanager
def running_suite(directory: Path, *, watchdog: bool = False) -> Iterator[Suite]:
    """Every daemon of the built-in suite started and SERVING; all stopped at the end. With
    ``watchdog``, a real watchdog (--no-autostart) beside them, serving its /metrics too."""
    names = (*DAEMON_NAMES, WATCHDOG) if watchdog else DAEMON_NAMES
    ports = {name: free_port() for name in names}
    config = default_config(directory, ports, WATCHED_WEBHOOK if watchdog else "")
    daemons: dict[str, Daemon] = {}
    try:
        for name in DAEMON_NAMES:
            daemons[name] = spawn_daemon(name, config, directory / f"{name}.stderr")
        for name, daemon in daemons.items():
            wait_for(partial(serving, daemon), f"{name} to be SERVING", START_TIMEOUT_S)
        if watchdog:
            daemons[WATCHDOG] = spawn_daemon(WATCHDOG, config, directory / "watchdog.stderr")
            wait_for(partial(serving, daemons[WATCHDOG]), "the watchdog to be SERVING",
                     START_TIMEOUT_S)
        yield Suite(daemons, ports)
    finally:
        for daemon in daemons.values():
            daemon.stop()
