"""``hft.api`` is a plugin author's one import, and the README's two examples run as written:
the child strategy in a real strategy container, the factor as a real factor plugin, both
loaded from files by the plugin manager of a (not running) engine host, as ``hftctl plugins``
would load them into a daemon."""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest

import hft.api as api
from hft.daemons.runtime.config import SuiteConfig
from hft.daemons.runtime.events import Direction, EventType, Offset, empty
from hft.daemons.runtime.host import DaemonHost
from hft.daemons.runtime.plugins import PluginState

README = Path(__file__).resolve().parents[1] / "README.md"
EXAMPLE = re.compile(r"<!-- example: (?P<name>\S+) -->\n```python\n(?P<code>.*?)```", re.DOTALL)


@pytest.fixture
def examples(tmp_path: Path) -> dict[str, str]:
    """The README's example files, written out as a user would save them: name -> path."""
    paths = {}
    for match in EXAMPLE.finditer(README.read_text()):
        path = tmp_path / match["name"]
        path.write_text(match["code"])
        paths[match["name"]] = str(path)
    assert set(paths) == {"up_down.py", "spread.py"}
    return paths


@pytest.fixture
def host() -> Iterator[DaemonHost]:
    host = DaemonHost("engine", SuiteConfig())
    yield host
    host.plugins.stop_all()


def tick(host: DaemonHost, last: float, spread: float = 0.2) -> np.void:
    record = empty(EventType.MARKET_DATA)[0]
    record["instrument"], record["trading_day"] = b"IF2101", 20210104
    record["last_price"] = last
    record["bid_price"] = [last - spread / 2, *[np.nan] * 4]
    record["ask_price"] = [last + spread / 2, *[np.nan] * 4]
    host.bus.publish(EventType.MARKET_DATA, record)
    return record.copy()


def test_every_public_name_is_exported_and_is_the_runtime_object() -> None:
    public = {name for name in vars(api) if not name.startswith("_") and name != "annotations"}
    assert sorted(api.__all__) == sorted(public)
    for name in api.__all__:
        value = getattr(api, name)
        home = getattr(value, "__module__", None)
        if home is not None and isinstance(value, type | type(api.empty)):
            assert home.startswith("hft.daemons."), (name, home)  # re-exported, not a copy
    assert api.EventType.MARKET_DATA == EventType.MARKET_DATA
    assert issubclass(api.Strategy, api.Plugin) and issubclass(api.FactorPlugin, api.Plugin)


def test_the_readme_strategy_trades_through_a_container(host: DaemonHost,
                                                         examples: dict[str, str]) -> None:
    orders: list[np.void] = []
    host.bus.subscribe(EventType.ORDER_REQ, lambda record: orders.append(record.copy()))
    entry = host.plugins.load("strategies", "strategy_container", {
        "account": "acc1",
        "children": {"up_down": {"spec": examples["up_down.py"], "config": {"lots": 2}}}})
    assert (entry.state, entry.error) == (PluginState.RUNNING, "")
    child: Any = entry.instance.children.get("up_down").instance
    tick(host, 5000.0)
    assert orders == [] and child.target("IF2101") == 0  # no move yet
    tick(host, 5000.4)
    [order] = orders
    assert (Direction(int(order["direction"])), Offset(int(order["offset"])),
            int(order["volume"])) == (Direction.BUY, Offset.OPEN, 2)
    tick(host, 4999.8)
    assert child.target("IF2101") == -2


def test_the_readme_factor_publishes_its_values(host: DaemonHost,
                                                examples: dict[str, str]) -> None:
    values: list[tuple[bytes, float]] = []
    host.bus.subscribe(EventType.FACTOR, lambda record: values.append(
        (bytes(record["name"]).rstrip(b"\0"), float(record["value"]))))
    entry = host.plugins.load("spread", examples["spread.py"], {})
    assert (entry.state, entry.error) == (PluginState.RUNNING, "")
    records = np.array([tick(host, 5000.0, spread=0.2), tick(host, 5001.0, spread=0.6)])
    assert [name for name, _ in values] == [b"spread", b"spread"]
    assert [value for _, value in values] == pytest.approx([0.2, 0.6])
    [definition] = entry.instance.factors
    assert definition.compute(records).tolist() == [value for _, value in values]
