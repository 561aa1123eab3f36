"""Factors: incremental == vectorized for every shipped factor on real and synthesized data,
known values, and the plugin machinery (FACTOR records, bar lengths, instruments, metrics)."""

from __future__ import annotations

from collections.abc import Iterator
from importlib.metadata import entry_points
from typing import Any

import numpy as np
import pytest
from prometheus_client.core import Metric
from support.sample_data import IF_DAILY_REFERENCE, IF_DAY

from hft.daemons.engine.factors import host as factor_host
from hft.daemons.engine.factors.base import FactorDef
from hft.daemons.engine.factors.ema import EmaFactor
from hft.daemons.engine.factors.host import FactorHost, FactorPlugin
from hft.daemons.engine.factors.imbalance import BookImbalanceFactor
from hft.daemons.engine.factors.momentum import MomentumFactor
from hft.daemons.engine.factors.volatility import RealizedVolFactor
from hft.daemons.engine.factors.vwap import VwapFactor
from hft.daemons.engine.products import product_of
from hft.daemons.md.csvfile import read_ticks
from hft.daemons.refdata.instruments import InstrumentTable, ProductTable
from hft.daemons.runtime.config import SuiteConfig
from hft.daemons.runtime.events import DEPTH, EventType, TickFlag, counted, empty
from hft.daemons.runtime.host import DaemonHost
from hft.daemons.runtime.metrics import HostCollector
from hft.daemons.runtime.plugins import ENTRY_POINT_GROUP, PluginState

MINUTE_NS = 60_000_000_000

# every shipped factor, with the parameter sets the parity test runs
CASES: list[tuple[type[FactorPlugin], dict[str, Any]]] = [
    (EmaFactor, {"period": 1}), (EmaFactor, {"period": 20}), (EmaFactor, {"period": 200}),
    (MomentumFactor, {"bars": 1}), (MomentumFactor, {"bars": 10}),
    (RealizedVolFactor, {"window": 1}), (RealizedVolFactor, {"window": 30}),
    (VwapFactor, {}),
    (BookImbalanceFactor, {"levels": 1}), (BookImbalanceFactor, {"levels": 5}),
    (BookImbalanceFactor, {"levels": 3, "decay": 0.7}),
]


def define(plugin: type[FactorPlugin], config: dict[str, Any]) -> FactorDef:
    assert plugin.Config is not None
    return plugin.define(plugin.Config.model_validate(config))


@pytest.fixture(scope="module")
def if_ticks() -> np.ndarray:
    """The real IF2101 day (27,955 level-1 snapshots)."""
    return read_ticks(IF_DAY, InstrumentTable(ProductTable.load()))


def bars_of(ticks: np.ndarray) -> np.ndarray:
    """1-minute bars from ticks: each minute's last LastPrice as the close (a stand-in for
    the K-line engine, enough for factors of closes)."""
    minutes = ticks["exchange_ts_ns"] // MINUTE_NS
    last = np.flatnonzero(np.r_[minutes[1:] != minutes[:-1], True])
    bars = empty(EventType.BAR, len(last))
    bars["instrument"] = ticks["instrument"][last]
    bars["period_s"] = 60
    bars["start_ns"] = minutes[last] * MINUTE_NS
    bars["close"] = ticks["last_price"][last]
    return bars


def random_walk_bars(count: int = 3000, seed: int = 7) -> np.ndarray:
    rng = np.random.default_rng(seed)
    bars = empty(EventType.BAR, count)
    bars["instrument"] = b"IF2101"
    bars["period_s"] = 60
    bars["close"] = np.round(4000 * np.exp(np.cumsum(rng.normal(0, 2e-3, count))), 1)
    bars["close"][100:110] = bars["close"][99]  # flat stretch: zero returns
    return bars


def deep_ticks(count: int = 5000, seed: int = 3) -> np.ndarray:
    """Synthesized ticks with five book levels, empty levels and an empty book now and then."""
    rng = np.random.default_rng(seed)
    ticks = empty(EventType.MARKET_DATA, count)
    ticks["instrument"] = b"IF2101"
    ticks["last_price"] = 4000 + np.cumsum(rng.integers(-2, 3, count)) * 0.2
    ticks["volume"] = np.cumsum(rng.integers(0, 5, count))
    ticks["turnover"] = np.cumsum(rng.integers(0, 5, count) * 4000 * 300.0)
    ticks["bid_volume"] = rng.integers(0, 30, (count, DEPTH)) * (rng.random((count, DEPTH)) > 0.1)
    ticks["ask_volume"] = rng.integers(0, 30, (count, DEPTH)) * (rng.random((count, DEPTH)) > 0.1)
    ticks["bid_volume"][::97] = 0
    ticks["ask_volume"][::97] = 0
    return ticks


def incremental(definition: FactorDef, records: np.ndarray) -> np.ndarray:
    factor = definition.make(product_of("IF2101"))
    return np.array([factor.update(record) for record in records])


def datasets(definition: FactorDef, if_ticks: np.ndarray) -> list[np.ndarray]:
    if definition.event_type is EventType.BAR:
        return [bars_of(if_ticks), random_walk_bars()]
    return [if_ticks, deep_ticks()]


def test_the_parity_cases_cover_every_shipped_factor() -> None:
    shipped = {ep.load() for ep in entry_points(group=ENTRY_POINT_GROUP)}
    factor_plugins = {cls for cls in shipped if isinstance(cls, type)
                      and issubclass(cls, FactorPlugin)}
    assert factor_plugins == {plugin for plugin, _ in CASES}


@pytest.mark.parametrize(("plugin", "config"), CASES,
                         ids=[f"{p.__name__}-{c}" for p, c in CASES])
def test_incremental_equals_vectorized(plugin: type[FactorPlugin], config: dict[str, Any],
                                       if_ticks: np.ndarray) -> None:
    definition = define(plugin, config)
    for records in datasets(definition, if_ticks):
        one_by_one = incremental(definition, records[definition.reads(records)])
        at_once = definition.compute(records, product_of("IF2101"))
        assert at_once.dtype == np.float64 and at_once.shape == one_by_one.shape
        assert np.isfinite(one_by_one).any()  # not a comparison of NaNs only
        np.testing.assert_allclose(one_by_one, at_once, rtol=1e-10, atol=1e-15, equal_nan=True)


def closes(*values: float) -> np.ndarray:
    bars = empty(EventType.BAR, len(values))
    bars["close"] = values
    return bars


@pytest.mark.parametrize(("plugin", "config", "records", "expected"), [
    (EmaFactor, {"period": 3}, closes(1, 2, 3, 4, 5), [np.nan, np.nan, 2, 3, 4]),
    (EmaFactor, {"period": 3}, closes(1, 2, 3, 7), [np.nan, np.nan, 2, 4.5]),
    (MomentumFactor, {"bars": 2}, closes(100, 110, 121, 133.1), [np.nan, np.nan, 0.21, 0.21]),
    (RealizedVolFactor, {"window": 2}, closes(100, 100 * np.e ** 0.01, 100 * np.e ** 0.03,
                                              100 * np.e ** 0.03),
     [np.nan, np.nan, np.sqrt(0.0005), 0.02]),
])
def test_known_values(plugin: type[FactorPlugin], config: dict[str, Any], records: np.ndarray,
                      expected: list[float]) -> None:
    definition = define(plugin, config)
    np.testing.assert_allclose(incremental(definition, records), expected, rtol=1e-12,
                               equal_nan=True)


def test_book_imbalance_weights_levels() -> None:
    tick = empty(EventType.MARKET_DATA)
    tick["bid_volume"] = [[3, 5, 7, 0, 0]]
    tick["ask_volume"] = [[2, 4, 0, 0, 9]]
    values = {levels: incremental(define(BookImbalanceFactor, {"levels": levels}), tick)[0]
              for levels in (1, 2, 5)}
    assert values[1] == pytest.approx(1 / 5)
    assert values[2] == pytest.approx(1.5 / 9.5)
    assert values[5] == pytest.approx((1 + 0.5 + 0.25 * 7 - 0.0625 * 9) / (5 + 4.5 + 1.75 + 0.5625))
    empty_book = empty(EventType.MARKET_DATA)
    assert np.isnan(incremental(define(BookImbalanceFactor, {"levels": 5}), empty_book)[0])


def ticks_through_a_host(host: DaemonHost, ticks: np.ndarray,
                         factors: list[dict[str, Any]]) -> dict[str, list[dict[str, Any]]]:
    """Publish ``ticks`` to a factor engine on a real host's bus; its FACTOR records by name."""
    got = captured_factors(host)
    entry = host.plugins.load("factors", "factor_engine", {"factors": factors})
    assert (entry.state, entry.error) == (PluginState.RUNNING, "")
    for tick in ticks:
        host.bus.publish(EventType.MARKET_DATA, tick)
    by_name: dict[str, list[dict[str, Any]]] = {}
    for record in got:
        by_name.setdefault(record["name"], []).append(record)
    return by_name


TICK_FACTORS = [{"spec": "factor_vwap"}, {"spec": "factor_book_imbalance", "config": {"levels": 1}},
                {"spec": "factor_book_imbalance", "config": {"levels": 5}}]


def test_the_if_days_settlement_snapshots_produce_no_factor_value(host: DaemonHost,
                                                                   if_ticks: np.ndarray) -> None:
    settlement = if_ticks[(if_ticks["flags"] & TickFlag.OUT_OF_SESSION) != 0]
    assert len(settlement) == 2 and (settlement["update_ms"] > 15 * 3_600_000).all()
    published = ticks_through_a_host(host, if_ticks, TICK_FACTORS)
    counting = if_ticks[counted(if_ticks)]
    assert len(counting) == len(if_ticks) - 2
    for spec, (name, records) in zip(TICK_FACTORS, published.items(), strict=True):
        definition = define(_plugin(spec), spec.get("config", {}))
        assert definition.name == name
        # live (the host, tick by tick) == vectorized (FactorDef.compute), value for value
        assert [r["ts_ns"] for r in records] == counting["ts_ns"].tolist()
        np.testing.assert_array_equal([r["value"] for r in records],
                                      definition.compute(if_ticks, product_of("IF2101")))
        assert not set(settlement["ts_ns"].tolist()) & {r["ts_ns"] for r in records}


def _plugin(spec: dict[str, Any]) -> type[FactorPlugin]:
    [entry] = entry_points(group=ENTRY_POINT_GROUP, name=spec["spec"])
    plugin: type[FactorPlugin] = entry.load()
    return plugin


def test_a_volume_backwards_tick_does_not_move_vwap(host: DaemonHost, if_ticks: np.ndarray) -> None:
    ticks = if_ticks[5000:5003].copy()
    assert (ticks["flags"] == 0).all() and ticks["volume"][0] > 1000
    ticks["volume"][1] = ticks["volume"][0] - 1000  # its totals went back: not the day's
    ticks["turnover"][1] = ticks["turnover"][0] / 2
    ticks["flags"][1] = TickFlag.VOLUME_BACKWARDS
    [vwap] = ticks_through_a_host(host, ticks, [{"spec": "factor_vwap"}]).values()
    expected = ticks["turnover"][[0, 2]] / (ticks["volume"][[0, 2]] * 300)
    assert [(r["ts_ns"], r["value"]) for r in vwap] == list(zip(ticks["ts_ns"][[0, 2]].tolist(),
                                                              expected.tolist(), strict=True))
    np.testing.assert_array_equal(define(VwapFactor, {}).compute(ticks, product_of("IF2101")), expected)


def test_multi_level_imbalance_is_level_one_imbalance_on_a_level_one_feed(if_ticks: np.ndarray) -> None:
    assert not if_ticks["bid_volume"][:, 1:].any() and not if_ticks["ask_volume"][:, 1:].any()
    level_one = define(BookImbalanceFactor, {"levels": 1}).compute(if_ticks)
    np.testing.assert_array_equal(define(BookImbalanceFactor, {"levels": 5}).compute(if_ticks), level_one)


def test_vwap_of_the_if_day_matches_the_vendor_daily_bar(if_ticks: np.ndarray) -> None:
    reference = (IF_DAILY_REFERENCE).read_text().splitlines()
    header = reference[0].split(",")
    day = dict(zip(header, next(r for r in reference if r.startswith("2021")).split(","),
                   strict=True))
    vwap = define(VwapFactor, {}).compute(if_ticks, product_of("IF2101"))
    assert vwap[-1] == pytest.approx(float(day["turnover"]) / (float(day["volume"]) * 300))
    assert float(day["low"]) <= np.nanmin(vwap) and np.nanmax(vwap) <= float(day["high"])


@pytest.fixture
def host() -> Iterator[DaemonHost]:
    """A host that is not running: its bus and plugin manager are used directly. Its plugins
    are stopped afterwards (factor metrics are shared per process)."""
    host = DaemonHost("engine", SuiteConfig())
    yield host
    host.plugins.stop_all()


def captured_factors(host: DaemonHost) -> list[dict[str, Any]]:
    got: list[dict[str, Any]] = []
    host.bus.subscribe(EventType.FACTOR, lambda r: got.append({
        "instrument": bytes(r["instrument"]).decode(), "name": bytes(r["name"]).decode(),
        "value": float(r["value"]), "ts_ns": int(r["ts_ns"]), "day": int(r["trading_day"]),
        "index": int(r["instrument_index"]), "source": int(r["source"])}))
    return got


def bar(instrument: bytes, close: float, period_s: int = 60, ts_ns: int = 1) -> np.void:
    record = empty(EventType.BAR)[0]
    record["instrument"], record["close"], record["period_s"] = instrument, close, period_s
    record["ts_ns"], record["trading_day"], record["instrument_index"] = ts_ns, 20210104, 7
    return record


def test_a_factor_plugin_publishes_per_instrument_and_bar_length(host: DaemonHost) -> None:
    got = captured_factors(host)
    entry = host.plugins.load("ema2", "hft.daemons.engine.factors.ema:EmaFactor", {"period": 2})
    assert (entry.state, entry.error) == (PluginState.RUNNING, "")
    for ts, (instrument, close) in enumerate([(b"IF2101", 10.0), (b"rb2105", 100.0),
                                              (b"IF2101", 20.0), (b"rb2105", 200.0),
                                              (b"IF2101", 30.0)], start=1):
        host.bus.publish(EventType.BAR, bar(instrument, close, ts_ns=ts))
        host.bus.publish(EventType.BAR, bar(instrument, 1e9, period_s=300))  # another length
    assert [(g["instrument"], g["value"]) for g in got] == [
        ("IF2101", pytest.approx(np.nan, nan_ok=True)), ("rb2105", pytest.approx(np.nan, nan_ok=True)),
        ("IF2101", 15.0), ("rb2105", 150.0), ("IF2101", 15 + 2 / 3 * 15)]
    assert {g["name"] for g in got} == {"ema_2"}
    assert [g["ts_ns"] for g in got] == [1, 2, 3, 4, 5]  # the producing record's time
    assert {(g["day"], g["index"], g["source"]) for g in got} == {
        (20210104, 7, factor_host.source_id("ema2"))}
    streams = {(s.name, s.instrument): (s.updates, s.value) for s in entry.instance.streams()}  # type: ignore[union-attr]
    assert streams == {(b"ema_2", "IF2101"): (3, 25.0), (b"ema_2", "rb2105"): (2, 150.0)}


def test_factor_metrics_appear_once_for_every_factor_plugin(host: DaemonHost) -> None:
    host.plugins.load("ema2", "factor_ema", {"period": 2, "name": "fast"})
    host.plugins.load("mom1", "factor_momentum", {"bars": 1})
    host.plugins.load("ticks", "factor_book_imbalance", {})  # nothing read yet: no samples
    host.bus.publish(EventType.BAR, bar(b"IF2101", 10.0))
    host.bus.publish(EventType.BAR, bar(b"IF2101", 11.0))

    def factor_families() -> list[Metric]:
        return [f for f in HostCollector(host).collect() if f.name.startswith("hft_factor")]

    families = factor_families()
    # one family per name (OpenMetrics refuses repeats), with every plugin's samples
    assert sorted(f.name for f in families) == ["hft_factor_updates", "hft_factor_value"]
    samples = {(s.name, s.labels["plugin"], s.labels["factor"]): s.value
               for f in families for s in f.samples}
    assert samples[("hft_factor_updates_total", "ema2", "fast")] == 2
    assert samples[("hft_factor_value", "ema2", "fast")] == 10.5
    assert samples[("hft_factor_value", "mom1", "mom_1")] == pytest.approx(0.1)
    host.plugins.unload("ema2")
    assert {s.labels["plugin"] for f in factor_families() for s in f.samples} == {"mom1"}


def test_factor_engine_hosts_several_factors_under_one_subscription(host: DaemonHost) -> None:
    got = captured_factors(host)
    entry = host.plugins.load("factors", "factor_engine", {"factors": [
        {"spec": "factor_ema", "config": {"period": 2}},
        {"spec": "hft.daemons.engine.factors.momentum:MomentumFactor", "config": {"bars": 1}},
        {"spec": "factor_vwap"},
        {"spec": "factor_ema", "config": {"period": 2, "period_s": 300}},
    ]})
    assert (entry.state, entry.error) == (PluginState.RUNNING, "")
    assert len(host.bus.handlers(EventType.BAR)) == 1  # one subscription for three bar factors
    assert len(host.bus.handlers(EventType.MARKET_DATA)) == 1
    for close in (10.0, 20.0):
        host.bus.publish(EventType.BAR, bar(b"IF2101", close))
    host.bus.publish(EventType.BAR, bar(b"IF2101", 7.0, period_s=300))
    tick = empty(EventType.MARKET_DATA)[0]
    tick["instrument"], tick["volume"], tick["turnover"] = b"IF2101", 2, 2 * 300 * 5000.0
    host.bus.publish(EventType.MARKET_DATA, tick)
    assert [(g["name"], g["value"]) for g in got][2:] == [
        ("ema_2", 15.0), ("mom_1", 1.0), ("ema_2_300s", pytest.approx(np.nan, nan_ok=True)),
        ("vwap", 5000.0)]


@pytest.mark.parametrize(("config", "error"), [
    ({"factors": [{"spec": "factor_ema"}, {"spec": "factor_ema"}]}, "used twice"),
    ({"factors": [{"spec": "sim_feed"}]}, "is not a factor plugin"),
    ({"factors": [{"spec": "no_such_factor"}]}, "no entry point 'no_such_factor'"),
    ({"factors": [{"spec": "factor_ema", "config": {"period": 0}}]}, "factors[0] (factor_ema)"),
    ({"factors": []}, "at least 1 item"),
])
def test_factor_engine_refuses_a_bad_config_with_its_reason(host: DaemonHost,
                                                            config: dict[str, Any],
                                                            error: str) -> None:
    entry = host.plugins.load("factors", "factor_engine", config)
    assert entry.state is PluginState.FAILED
    assert error in entry.error
    assert host.bus.handlers(EventType.BAR) == ()


def test_vwap_leaves_out_an_instrument_without_a_multiplier(host: DaemonHost) -> None:
    got = captured_factors(host)
    host.plugins.load("vwap", "factor_vwap", {})
    for instrument in (b"XX9999", b"IF2101"):
        tick = empty(EventType.MARKET_DATA)[0]
        tick["instrument"], tick["volume"], tick["turnover"] = instrument, 1, 300 * 4000.0
        host.bus.publish(EventType.MARKET_DATA, tick)
    assert [(g["instrument"], g["value"]) for g in got] == [("IF2101", 4000.0)]
    assert isinstance(host.plugins.get("vwap").instance, FactorHost)
