"""``bench bars``: the K-line builders against vn.py's BarGenerator, on the real IF day.

- live: our BarBuilder fed the day's MARKET_DATA records one by one, as the bus hands them
  over, against vn.py's ``BarGenerator.update_tick`` fed vn.py ``TickData`` objects built
  from the same ticks beforehand, as its gateways hand them over. Both make 1-minute and
  5-minute bars (vn.py: ``window=5`` over its 1-minute bars, fed from ``on_bar`` as its
  strategies do); ``ratio`` is on that work, the two sides' runs alternating.
  ``all_periods_ns_per_tick`` is our cost with the six default periods. Both builders are
  made before timing, ours with its session tables for the day (start-up work in a daemon).
  Neither side's clock is driven (vn.py has none).
- batch: :func:`build_bars` (all six periods) over the IF day repeated on consecutive
  trading days, so fixed costs do not hide the per-tick rate.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from datetime import datetime
from typing import Any
from zoneinfo import ZoneInfo

import numpy as np
from vnpy.trader.constant import Exchange
from vnpy.trader.object import TickData
from vnpy.trader.utility import BarGenerator

from hft.bench.common import Result, median_ns_per_op, median_rate, result, ticks_file
from hft.daemons.engine.barbatch import build_bars
from hft.daemons.engine.bars import BarBuilder
from hft.daemons.engine.bartables import Period, local_midnight_ns, parse_periods
from hft.daemons.md.csvfile import read_ticks
from hft.daemons.refdata.calendar import next_trading_day
from hft.daemons.refdata.instruments import InstrumentTable, ProductTable
from hft.daemons.runtime.events import EventType, empty

PEER = ("vnpy.trader.utility.BarGenerator(on_bar, window=5, on_window_bar): update_tick per "
        "TickData, update_bar per 1-minute bar")
COMPARED = ("1m", "5m")
ALL = ("1m", "5m", "15m", "30m", "1h", "1d")
_CHINA = ZoneInfo("Asia/Shanghai")


def run(quick: bool) -> list[Result]:
    repeats = 3 if quick else 7
    days = 4 if quick else 36
    products = ProductTable.load()
    ticks = read_ticks(ticks_file(), InstrumentTable(products))
    records = list(ticks)  # the views the bus hands over
    n = len(records)
    compared, every = parse_periods(COMPARED), parse_periods(ALL)
    ours, theirs = _interleaved(_live(records, products, compared), _peer(vnpy_ticks(ticks)),
                                n, repeats)
    ours_all = median_ns_per_op(_live(records, products, every), n, repeats)
    history = _repeat_days(ticks, days)
    batch = median_rate(_batch(history, products, every), len(history), repeats)
    return [result(
        "bars",
        {"ns_per_tick": ours, "ticks_per_s": 1e9 / ours, "all_periods_ns_per_tick": ours_all,
         "batch_ticks_per_s": batch},
        quick=quick,
        params={"n": n, "repeats": repeats, "periods": list(COMPARED), "all_periods": list(ALL),
                "batch_n": len(history), "batch_days": days,
                "input": "IF2101 2021-01-04 (real CTP snapshots); ours: numpy records, "
                         "theirs: TickData objects, both built before timing"},
        baseline=(PEER, {"ns_per_tick": theirs, "ticks_per_s": 1e9 / theirs}),
        ratio=theirs / ours,
        target={"ratio_min": 3.0, "batch_ticks_per_s_min": 5e6},
    )]


def _interleaved(ours: Callable[[], int], theirs: Callable[[], int], n: int,
                 repeats: int) -> tuple[float, float]:
    """Median ns per tick of each, their runs alternating so that a load change on the shared
    machine hits both sides alike."""
    runs = [(ours(), theirs()) for _ in range(repeats)]
    return (float(np.median([run[0] for run in runs])) / n,
            float(np.median([run[1] for run in runs])) / n)


def _live(records: Sequence[np.void], products: ProductTable,
          periods: Sequence[Period]) -> Callable[[], int]:
    first = records[0]
    instrument, index = first["instrument"].decode(), int(first["instrument_index"])
    day = int(first["trading_day"])

    def loop() -> int:
        builder = BarBuilder(products, periods, _drop)
        builder.add_instrument(instrument, index, day)  # start-up work, as a daemon does it
        on_tick = builder.on_tick
        start = time.perf_counter_ns()
        for record in records:
            on_tick(record)
        elapsed = time.perf_counter_ns() - start
        builder.flush()
        _check_bars("ours", sum(builder.stats.bars[:1]))
        return elapsed
    return loop


def _peer(ticks: list[TickData]) -> Callable[[], int]:
    def loop() -> int:
        minutes: list[Any] = []

        def on_bar(bar: Any) -> None:
            minutes.append(bar)
            generator.update_bar(bar)

        generator = BarGenerator(on_bar, 5, _drop)
        update = generator.update_tick
        start = time.perf_counter_ns()
        for tick in ticks:
            update(tick)
        elapsed = time.perf_counter_ns() - start
        _check_bars("vn.py", len(minutes))
        return elapsed
    return loop


def _batch(history: np.ndarray, products: ProductTable, periods: Sequence[Period]) -> Callable[[], int]:
    def loop() -> int:
        start = time.perf_counter_ns()
        bars = build_bars(history, products, periods)
        elapsed = time.perf_counter_ns() - start
        _check_bars("batch", len(bars))
        return elapsed
    return loop


def _drop(_bar: object) -> None:
    """The bar consumer on both sides: nothing, so only the building is measured."""


def _check_bars(who: str, count: int) -> None:
    if count < 200:  # the IF day has 240 one-minute bars; far fewer means a broken run
        raise RuntimeError(f"{who} built only {count} bars from the IF day")


def vnpy_ticks(ticks: np.ndarray) -> list[TickData]:
    """vn.py's own tick objects for the same snapshots, as its CTP gateway builds them."""
    return [TickData(gateway_name="CTP", symbol=tick["instrument"].decode(), exchange=Exchange.CFFEX,
                     datetime=datetime.fromtimestamp(int(tick["exchange_ts_ns"]) / 1e9, _CHINA),
                     volume=float(tick["volume"]), turnover=float(tick["turnover"]),
                     open_interest=float(tick["open_interest"]),
                     last_price=float(tick["last_price"]), high_price=float(tick["highest_price"]),
                     low_price=float(tick["lowest_price"]), open_price=float(tick["open_price"]))
            for tick in ticks]


def _repeat_days(ticks: np.ndarray, days: int) -> np.ndarray:
    """The IF day's ticks on ``days`` consecutive trading days (IF has no night session)."""
    out = empty(EventType.MARKET_DATA, len(ticks) * days)
    day = first = int(ticks["trading_day"][0])
    for k in range(days):
        part = out[k * len(ticks):(k + 1) * len(ticks)]
        part[:] = ticks
        shift = local_midnight_ns(day) - local_midnight_ns(first)
        part["trading_day"] = part["action_day"] = day
        part["exchange_ts_ns"] += shift
        part["ts_ns"] += shift
        day = next_trading_day(day)
    return out
