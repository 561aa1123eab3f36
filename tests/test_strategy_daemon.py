"""The strategy tree in a real engine daemon, driven over gRPC with ``hftctl plugins command``:
netting, disable, weights, children loaded and unloaded at run time, metrics, and the
PluginCommand RPC's errors."""

from __future__ import annotations

import json
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner
from prometheus_client.parser import text_string_to_metric_families
from support.daemons import Daemon, running_daemon, write_config
from test_factors_daemon import FEED
from test_strategy import SCRIPTED

from hft.ctl.cli import main
from hft.ctl.client import ControlError

# Fills every ORDER_REQ at its price at once, publishing the returns from inside the
# ORDER_REQ's dispatch, as a synchronous simulator would.
EXCHANGE = '''
from hft.daemons.runtime.events import EventType, OrderStatus, empty
from hft.daemons.runtime.plugins import Plugin


class Exchange(Plugin):
    def init(self, ctx):
        super().init(ctx)
        self.trade = empty(EventType.RTN_TRADE)[0]
        self.status = empty(EventType.RTN_ORDER)[0]
        ctx.subscribe(EventType.ORDER_REQ, self.on_order)

    def on_order(self, order):
        for record in (self.trade, self.status):
            record["instrument"], record["order_ref"] = order["instrument"], order["order_ref"]
            record["source"] = order["source"]
        for name in ("exchange", "direction", "offset", "price", "volume", "account"):
            self.trade[name] = order[name]
        self.status["volume"] = self.status["volume_traded"] = order["volume"]
        self.status["status"] = OrderStatus.ALL_TRADED
        self.ctx.bus.publish(EventType.RTN_TRADE, self.trade)
        self.ctx.bus.publish(EventType.RTN_ORDER, self.status)
'''


@pytest.fixture(scope="module")
def engine(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Daemon]:
    directory = tmp_path_factory.mktemp("strategy")
    for name, text in (("feed.py", FEED), ("exchange.py", EXCHANGE), ("scripted.py", SCRIPTED)):
        (directory / name).write_text(text)
    config = write_config(directory, f"""
[daemons.engine]
metrics_port = 0

[daemons.engine.plugins.feed]
spec = "{directory / 'feed.py'}"
config = {{ instrument = "IF2101" }}

[daemons.engine.plugins.exchange]
spec = "{directory / 'exchange.py'}"

[daemons.engine.plugins.strat]
spec = "strategy_container"
config.account = "acc1"
config.children.long = {{ spec = "{directory / 'scripted.py'}", config = {{ targets = {{ IF2101 = 3 }} }} }}
config.children.short = {{ spec = "{directory / 'scripted.py'}", config = {{ targets = {{ IF2101 = -1 }} }} }}
""")
    with running_daemon("engine", config) as daemon:
        yield daemon


def command(engine: Daemon, plugin: str, cmd: str, /, **args: Any) -> Any:
    with engine.client() as client:
        return client.plugin_command(plugin, cmd, args)


def position(engine: Daemon) -> int:
    return int(command(engine, "strat", "list")["instruments"]["IF2101"]["position"])


def metrics(engine: Daemon) -> dict[tuple[str, frozenset[tuple[str, str]]], float]:
    with engine.client() as client:
        port = client.status().metrics_port
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as response:
        text = response.read().decode()
    return {(s.name, frozenset(s.labels.items())): s.value
            for family in text_string_to_metric_families(text) for s in family.samples}


def test_children_are_netted_and_managed_over_grpc(engine: Daemon, tmp_path: Path) -> None:
    command(engine, "feed", "publish", steps=1)  # the first price: the net order goes out
    assert position(engine) == 2  # long 3, short -1

    cli = CliRunner().invoke(main, ["plugins", "command", "--config", str(engine.suite.source),
                                    "engine", "strat", "disable", "--args", '{"name": "short"}'])
    assert cli.exit_code == 0, cli.output
    answer = json.loads(cli.output)
    assert (answer["name"], answer["enabled"], answer["lots"]) == ("short", False, {})
    assert position(engine) == 3

    assert command(engine, "strat", "weight", name="long", weight=2)["lots"] == {"IF2101": 6}
    assert position(engine) == 6
    loaded = command(engine, "strat", "load", name="hedge", spec=str(Path(
        engine.suite.source or "").parent / "scripted.py"), config={"targets": {"IF2101": -6}})
    assert (loaded["state"], loaded["lots"]) == ("running", {"IF2101": -6})
    assert position(engine) == 0
    assert command(engine, "strat", "unload", name="hedge")["state"] == "unloaded"
    assert position(engine) == 6

    listed = {c["name"]: c for c in command(engine, "strat", "list")["children"]}
    assert set(listed) == {"long", "short", "hedge", "(unattributed)"}
    assert sum(c["lots"].get("IF2101", 0) for c in listed.values()) == pytest.approx(6)
    samples = metrics(engine)
    orders = samples[("hft_strategy_orders_total", frozenset({("container", "strat")}))]
    assert orders == samples[("hft_bus_events_published_total",
                              frozenset({("type", "ORDER_REQ")}))] >= 5
    assert samples[("hft_strategy_position_lots",
                    frozenset({("container", "strat"), ("instrument", "IF2101")}))] == 6
    assert ("hft_strategy_pnl", frozenset({("container", "strat"), ("child", "long")})) in samples


@pytest.mark.parametrize(("plugin", "cmd", "args", "code", "message"), [
    ("strat", "flatten", {}, "INVALID_ARGUMENT", "strat flatten: unknown command 'flatten'"),
    ("strat", "disable", {"name": "nobody"}, "INVALID_ARGUMENT", "no child named 'nobody'"),
    ("strat", "weight", {"name": "long"}, "INVALID_ARGUMENT", "weight"),
    ("exchange", "list", {}, "UNIMPLEMENTED", "takes no commands"),
    ("nope", "list", {}, "NOT_FOUND", "no plugin named 'nope'"),
])
def test_plugin_command_errors_name_the_reason(engine: Daemon, plugin: str, cmd: str,
                                               args: dict[str, Any], code: str,
                                               message: str) -> None:
    with pytest.raises(ControlError) as refused:
        command(engine, plugin, cmd, **args)
    assert refused.value.code == code and message in refused.value.details


def test_plugin_command_to_a_failed_plugin_and_bad_arguments(engine: Daemon,
                                                              tmp_path: Path) -> None:
    broken = tmp_path / "broken.py"
    broken.write_text("import module_that_does_not_exist\n")
    with engine.client() as client:
        client.load_plugin("broken", str(broken))
        with pytest.raises(ControlError) as refused:
            client.plugin_command("broken", "list")
        client.unload_plugin("broken")
    assert refused.value.code == "FAILED_PRECONDITION" and "is failed" in refused.value.details
    cli = CliRunner().invoke(main, ["plugins", "command", "--config", str(engine.suite.source),
                                    "engine", "strat", "list", "--args", "[1]"])
    assert cli.exit_code == 2 and "must be a JSON object" in cli.output
