"""``bench factors``: what each shipped factor costs per update, and its vectorized throughput.

Per factor, on synthesized records (a random-walk price, a five-level book):

- ``update_ns``: the factor's own incremental ``update`` of one record;
- ``host_ns``: the whole path a record takes in the engine: ``bus.publish`` -> the factor's
  plugin (header read, instrument lookup, ``update``, FACTOR packed and published to one
  subscriber);
- ``incremental_records_per_s`` and ``vectorized_records_per_s``: the same history one record
  at a time, and with ``compute`` at once (what a backtest uses).

The peer, in the same run, is the rolling-window pattern of vn.py's ArrayManager: keep the
last ``WINDOW`` records in a numpy array, shift it per record and recompute the indicator
over the window (with the factor's own ``compute``, so the math is the same); ``ratio`` is
its ``update_ns`` over ours.
"""

from __future__ import annotations

import time
from typing import Any

import numpy as np

from hft.bench.common import Result, median_ns_per_op, median_rate, result
from hft.daemons.engine.factors.base import Factor, FactorDef
from hft.daemons.engine.factors.ema import EmaFactor
from hft.daemons.engine.factors.host import FactorPlugin
from hft.daemons.engine.factors.imbalance import BookImbalanceFactor
from hft.daemons.engine.factors.momentum import MomentumFactor
from hft.daemons.engine.factors.volatility import RealizedVolFactor
from hft.daemons.engine.factors.vwap import VwapFactor
from hft.daemons.engine.products import product_of
from hft.daemons.runtime.config import SuiteConfig
from hft.daemons.runtime.events import DEPTH, EventType, empty
from hft.daemons.runtime.host import DaemonHost

FACTORS: list[tuple[type[FactorPlugin], dict[str, Any]]] = [
    (EmaFactor, {"period": 20}), (MomentumFactor, {"bars": 10}),
    (RealizedVolFactor, {"window": 20}), (VwapFactor, {}),
    (BookImbalanceFactor, {"levels": 1}), (BookImbalanceFactor, {"levels": 5}),
]
WINDOW = 100
"""Records the peer keeps and recomputes over (ArrayManager's default size)."""
INSTRUMENT = "IF2101"
PEER = (f"rolling window of {WINDOW} records, shifted and recomputed with numpy per record "
        "(vn.py ArrayManager pattern)")


def run(quick: bool) -> list[Result]:
    n = 20_000 if quick else 200_000
    repeats = 3 if quick else 5
    history = {EventType.MARKET_DATA: _ticks(n), EventType.BAR: _bars(n)}
    results = []
    for plugin, config in FACTORS:
        assert plugin.Config is not None
        definition = plugin.define(plugin.Config.model_validate(config))
        results.append(_measure(plugin, config, definition, history[definition.event_type],
                                repeats, quick))
    return results


def _measure(plugin: type[FactorPlugin], config: dict[str, Any], definition: FactorDef,
             records: np.ndarray, repeats: int, quick: bool) -> Result:
    n, peer_n = len(records), len(records) // 20
    rows = list(records)  # record views, as the bus hands them to handlers
    update_ns = median_ns_per_op(lambda: _incremental(definition, rows), n, repeats)
    host_ns = _through_host(plugin, config, definition, rows, repeats)
    vectorized = median_rate(lambda: _vectorized(definition, records), n, repeats)
    peer_ns = median_ns_per_op(lambda: _window(definition, records, rows[:peer_n]), peer_n,
                               repeats)
    return result(
        f"factors.{definition.name}",
        {"update_ns": update_ns, "host_ns": host_ns, "incremental_records_per_s": 1e9 / update_ns,
         "vectorized_records_per_s": vectorized},
        params={"n": n, "repeats": repeats, "config": config,
                "records": definition.event_type.name, "peer_n": peer_n},
        quick=quick, baseline=(PEER, {"update_ns": peer_ns}), ratio=peer_ns / update_ns,
        target={"host_ns_max": 3000.0})


def _factor(definition: FactorDef) -> Factor:
    return definition.make(product_of(INSTRUMENT))


def _incremental(definition: FactorDef, rows: list[Any]) -> int:
    update = _factor(definition).update
    start = time.perf_counter_ns()
    for row in rows:
        update(row)
    return time.perf_counter_ns() - start


def _through_host(plugin: type[FactorPlugin], config: dict[str, Any], definition: FactorDef,
                  rows: list[Any], repeats: int) -> float:
    """ns per record published to the plugin in a host that is not started (its bus)."""
    host = DaemonHost("engine", SuiteConfig())
    host.plugins.load("bench", f"{plugin.__module__}:{plugin.__name__}", config)
    host.bus.subscribe(EventType.FACTOR, lambda record: None)
    publish, kind = host.bus.publish, int(definition.event_type)

    def loop() -> int:
        start = time.perf_counter_ns()
        for row in rows:
            publish(kind, row)
        return time.perf_counter_ns() - start

    try:
        return median_ns_per_op(loop, len(rows), repeats)
    finally:
        host.plugins.stop_all()


def _vectorized(definition: FactorDef, records: np.ndarray) -> int:
    start = time.perf_counter_ns()
    definition.compute(records, product_of(INSTRUMENT))
    return time.perf_counter_ns() - start


def _window(definition: FactorDef, records: np.ndarray, rows: list[Any]) -> int:
    factor = _factor(definition)
    window = records[:WINDOW].copy()
    start = time.perf_counter_ns()
    for row in rows:
        window[:-1] = window[1:]
        window[-1] = row
        factor.compute(window)[-1]
    return time.perf_counter_ns() - start


def _ticks(count: int) -> np.ndarray:
    rng = np.random.default_rng(1)
    ticks = empty(EventType.MARKET_DATA, count)
    ticks["instrument"], ticks["exchange"], ticks["trading_day"] = INSTRUMENT, "CFFEX", 20210104
    ticks["last_price"] = 5000 + np.cumsum(rng.integers(-2, 3, count)) * 0.2
    ticks["volume"] = np.cumsum(rng.integers(1, 5, count))
    ticks["turnover"] = np.cumsum(rng.integers(1, 5, count) * 5000 * 300.0)
    ticks["bid_volume"] = rng.integers(1, 30, (count, DEPTH))
    ticks["ask_volume"] = rng.integers(1, 30, (count, DEPTH))
    return ticks


def _bars(count: int) -> np.ndarray:
    rng = np.random.default_rng(2)
    bars = empty(EventType.BAR, count)
    bars["instrument"], bars["exchange"], bars["period_s"] = INSTRUMENT, "CFFEX", 60
    bars["close"] = 5000 * np.exp(np.cumsum(rng.normal(0, 1e-3, count)))
    return bars
