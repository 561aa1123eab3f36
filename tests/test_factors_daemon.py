"""Factor plugins in a real engine daemon, over gRPC: load (with the hftctl command line),
unload and reload one factor while the engine runs, the others keeping their state; a broken
factor file refused with its error while the running ones go on."""

from __future__ import annotations

import math
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner
from prometheus_client.parser import text_string_to_metric_families
from support.daemons import Daemon, running_daemon, write_config

from hft.ctl.cli import main
from hft.protos import control_pb2

# A test feed: per step one tick and one 1-minute bar of config["instrument"], on a timer
# (config["interval_s"]) or synchronously on the command "publish" {"steps": N}.
FEED = '''
import math
import time

from hft.daemons.runtime.events import EventType, empty
from hft.daemons.runtime.plugins import Plugin


class Feed(Plugin):
    def start(self):
        self.steps = 0
        self.tick = empty(EventType.MARKET_DATA)[0]
        self.bar = empty(EventType.BAR)[0]
        for record in (self.tick, self.bar):
            record["instrument"] = self.ctx.config["instrument"].encode()
            record["exchange"] = b"CFFEX"
            record["trading_day"] = 20210104
        self.bar["period_s"] = 60
        if "interval_s" in self.ctx.config:
            self.ctx.call_every(self.ctx.config["interval_s"], self.step)

    def command(self, name, args):
        if name != "publish":
            raise ValueError(f"unknown command {name!r}")
        for _ in range(args["steps"]):
            self.step()
        return {"steps": self.steps}

    def step(self):
        self.steps += 1
        price = round(5000 + 20 * math.sin(self.steps / 9), 1)
        tick, bar = self.tick, self.bar
        tick["ts_ns"] = bar["ts_ns"] = time.time_ns()
        tick["last_price"] = bar["close"] = price
        tick["bid_price"] = [price - 0.2] + [math.nan] * 4
        tick["ask_price"] = [price + 0.2] + [math.nan] * 4
        tick["bid_volume"] = [1 + self.steps % 5, 2, 0, 0, 0]
        tick["ask_volume"] = [3, 1, 0, 0, 0]
        tick["volume"] = self.steps
        tick["turnover"] = tick["turnover"] + price * 300
        self.ctx.bus.publish(EventType.MARKET_DATA, tick)
        self.ctx.bus.publish(EventType.BAR, bar)
'''

FILE_FACTOR = '''
from hft.daemons.engine.factors.ema import EmaConfig, EmaFactor


class FileEma(EmaFactor):
    """An EMA under another name, from a file: {version}"""

    @classmethod
    def define(cls, config: EmaConfig):
        return super().define(config.model_copy(update={{"name": "file_ema"}}))
'''


def price(step: int) -> float:
    """The feed's close at ``step`` (as FEED computes it)."""
    return round(5000 + 20 * math.sin(step / 9), 1)


@pytest.fixture(scope="module")
def engine(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Daemon]:
    """An engine with the command-driven IF2101 feed and a timer-driven rb2105 feed (so
    events flow the whole time plugins are loaded and unloaded)."""
    directory = tmp_path_factory.mktemp("factors")
    (directory / "feed.py").write_text(FEED)
    config = write_config(directory, f"""
[daemons.engine]
metrics_port = 0

[daemons.engine.plugins.feed]
spec = "{directory / 'feed.py'}"
config = {{ instrument = "IF2101" }}

[daemons.engine.plugins.background]
spec = "{directory / 'feed.py'}"
config = {{ instrument = "rb2105", interval_s = 0.002 }}
""")
    with running_daemon("engine", config) as daemon:
        yield daemon


def factors(engine: Daemon) -> dict[tuple[str, str], tuple[int, float]]:
    """(plugin, factor) -> (updates, last value) of IF2101, from /metrics."""
    with engine.client() as client:
        port = client.status().metrics_port
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as response:
        text = response.read().decode()
    found: dict[tuple[str, str], dict[str, float]] = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            if sample.name.startswith("hft_factor_") and sample.labels["instrument"] == "IF2101":
                key = (sample.labels["plugin"], sample.labels["factor"])
                found.setdefault(key, {})[sample.name] = sample.value
    return {key: (int(v["hft_factor_updates_total"]), v["hft_factor_value"])
            for key, v in found.items()}


def publish(engine: Daemon, steps: int) -> int:
    with engine.client() as client:
        result: dict[str, Any] = client.plugin_command("feed", "publish", {"steps": steps})
    return int(result["steps"])


def test_load_unload_reload_a_factor_while_the_others_keep_their_state(
        engine: Daemon, tmp_path: Path) -> None:
    cli = CliRunner().invoke(main, [
        "plugins", "load", "--config", str(engine.suite.source), "engine", "ema20",
        "hft.daemons.engine.factors.ema:EmaFactor", "--plugin-config", '{"period": 20}'])
    assert cli.exit_code == 0, cli.output
    assert "engine: plugin ema20 running" in cli.output
    with engine.client() as client:
        assert client.load_plugin("obi", "factor_book_imbalance", {"levels": 5}).error == ""
        assert client.load_plugin("factors", "factor_engine", {"factors": [
            {"spec": "factor_momentum", "config": {"bars": 5}}, {"spec": "factor_vwap"}]}
        ).error == ""
    start = publish(engine, 30)

    seen = factors(engine)
    assert seen[("ema20", "ema_20")][0] == 30 and math.isfinite(seen[("ema20", "ema_20")][1])
    assert seen[("obi", "obi_5")][0] == 30
    assert seen[("factors", "mom_5")] == (30, pytest.approx(price(start) / price(start - 5) - 1))

    with engine.client() as client:
        reloaded = client.reload_plugin("ema20")
    assert (reloaded.state, reloaded.error) == (control_pb2.PLUGIN_STATE_RUNNING, "")
    start = publish(engine, 5)
    seen = factors(engine)
    assert seen[("ema20", "ema_20")][0] == 5 and math.isnan(seen[("ema20", "ema_20")][1])
    assert seen[("obi", "obi_5")][0] == 35  # untouched by the reload of another factor
    assert seen[("factors", "mom_5")] == (35, pytest.approx(price(start) / price(start - 5) - 1))
    assert seen[("factors", "vwap")][0] == 35

    with engine.client() as client:
        assert client.unload_plugin("obi").state == control_pb2.PLUGIN_STATE_STOPPED
    publish(engine, 5)
    seen = factors(engine)
    assert ("obi", "obi_5") not in seen
    assert (seen[("ema20", "ema_20")][0], seen[("factors", "mom_5")][0]) == (10, 40)


def test_a_broken_factor_file_is_refused_and_the_running_ones_go_on(
        engine: Daemon, tmp_path: Path) -> None:
    broken = tmp_path / "broken.py"
    broken.write_text("from hft.daemons.engine.factors.ema import EmaFactor\n"
                      "class Broken(EmaFactor):\n    def define(cls, config:\n")
    good = tmp_path / "file_ema.py"
    good.write_text(FILE_FACTOR.format(version="v1"))
    with engine.client() as client:
        refused = client.load_plugin("broken", str(broken))
        assert refused.state == control_pb2.PLUGIN_STATE_FAILED
        assert refused.error.startswith("load failed: SyntaxError")
        assert client.load_plugin("mom3", "factor_momentum", {"bars": 3}).error == ""
        loaded = client.load_plugin("file_ema", str(good), {"period": 2})
        assert (loaded.state, loaded.error) == (control_pb2.PLUGIN_STATE_RUNNING, "")
    publish(engine, 4)
    before = factors(engine)
    assert before[("file_ema", "file_ema")][0] == before[("mom3", "mom_3")][0] == 4

    good.write_text("from hft.daemons.engine.factors.ema import EmaFactor\nclass Oops(:\n")
    with engine.client() as client:
        kept = client.reload_plugin("file_ema")
        assert kept.state == control_pb2.PLUGIN_STATE_RUNNING
        assert kept.error.startswith("reload failed: SyntaxError")
    publish(engine, 3)
    after = factors(engine)
    assert after[("file_ema", "file_ema")][0] == 7  # the old instance, with its state
    assert after[("mom3", "mom_3")][0] == 7
    with engine.client() as client:
        assert client.health() == "SERVING"
        for name in ("broken", "mom3", "file_ema"):
            client.unload_plugin(name)
