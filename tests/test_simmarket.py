"""The simulated market: sessions, calendar, tick grid and cumulative fields like a real feed."""

from __future__ import annotations

import datetime as dt
from collections import defaultdict

import numpy as np
import pytest

from hft.daemons.md.depth import DepthValues
from hft.daemons.md.normalize import TickNormalizer
from hft.daemons.md.simmarket import SimulatedMarket
from hft.daemons.refdata.clock import CHINA
from hft.daemons.refdata.instruments import InstrumentTable, ProductTable
from hft.daemons.runtime.events import TICK_DTYPE, TickFlag


def at(*args: int) -> dt.datetime:
    return dt.datetime(*args, tzinfo=CHINA)  # type: ignore[misc]


@pytest.fixture(scope="module")
def weekend_run() -> tuple[InstrumentTable, list[DepthValues]]:
    """Friday 2021-01-08 evening to Monday 2021-01-11 close: one day-only and three night
    templates (to 23:00, to 01:00, to 02:30)."""
    table = InstrumentTable(ProductTable.load())
    instruments = [table.register(i) for i in ("IF2101", "rb2105", "cu2102", "ag2106")]
    market = SimulatedMarket(instruments, at(2021, 1, 8, 20, 0), seed=3)
    return table, list(market.advance(int(at(2021, 1, 11, 15, 30).timestamp() * 1000)))


def by_instrument(snapshots: list[DepthValues]) -> dict[bytes, list[DepthValues]]:
    grouped = defaultdict(list)
    for snapshot in snapshots:
        grouped[snapshot.InstrumentID].append(snapshot)
    return grouped


def span(snapshots: list[DepthValues], action_day: bytes) -> tuple[bytes, bytes]:
    times = [s.UpdateTime for s in snapshots if s.ActionDay == action_day]
    return (min(times), max(times)) if times else (b"", b"")


def test_sessions_follow_each_template_and_the_calendar(weekend_run: tuple) -> None:
    _, snapshots = weekend_run
    grouped = by_instrument(snapshots)
    assert span(grouped[b"IF2101"], b"20210111") == (b"09:29:00", b"15:00:00")
    assert span(grouped[b"IF2101"], b"20210108") == (b"", b"")  # no night for index futures
    assert span(grouped[b"rb2105"], b"20210108") == (b"20:59:00", b"23:00:00")
    assert span(grouped[b"cu2102"], b"20210109") == (b"00:00:00", b"01:00:00")
    assert span(grouped[b"ag2106"], b"20210109") == (b"00:00:00", b"02:30:00")
    # nothing on Saturday daytime, Saturday evening or Sunday
    assert not [s for s in snapshots if s.ActionDay == b"20210110"]
    saturday = [s for s in snapshots if s.ActionDay == b"20210109"]
    assert max(s.UpdateTime for s in saturday) == b"02:30:00"
    # every tick belongs to Monday's trading day
    assert {s.TradingDay for s in snapshots} == {b"20210111"}


def test_one_print_in_auction_and_end_minutes_about_two_a_second_otherwise(weekend_run: tuple) -> None:
    _, snapshots = weekend_run
    index_future = by_instrument(snapshots)[b"IF2101"]
    times = [s.UpdateTime for s in index_future]
    assert times.count(b"09:29:00") == 1 and times.count(b"11:30:00") == 1
    assert times.count(b"15:00:00") == 1 and times.count(b"10:00:00") == 2
    assert not [t for t in times if b"11:30:01" <= t < b"13:00:00"]
    assert len(index_future) == 2 * 4 * 3600 + 3  # 4 hours at 2/s plus 3 single prints


def test_prices_on_the_tick_grid_inside_the_limits_and_cumulative_fields_behave(
        weekend_run: tuple) -> None:
    table, snapshots = weekend_run
    for instrument_id, ticks in by_instrument(snapshots).items():
        tick_size = table[instrument_id.decode()].product.price_tick
        last = np.array([s.LastPrice for s in ticks])
        assert np.allclose(np.round(last / tick_size) * tick_size, last)
        assert (last <= ticks[0].UpperLimitPrice).all()
        assert (last >= ticks[0].LowerLimitPrice).all()
        volume = np.array([s.Volume for s in ticks])
        turnover = np.array([s.Turnover for s in ticks])
        assert (np.diff(volume) >= 0).all() and (np.diff(turnover) >= 0).all()
        high = np.array([s.HighestPrice for s in ticks if s.Volume])
        assert (high >= last[volume > 0]).all()


def test_cumulative_volume_restarts_on_a_new_trading_day() -> None:
    table = InstrumentTable(ProductTable.load())
    market = SimulatedMarket([table.register("rb2105")], at(2021, 1, 8, 14, 59), seed=1)
    ticks = list(market.advance(int(at(2021, 1, 8, 21, 1).timestamp() * 1000)))
    friday = [s for s in ticks if s.TradingDay == b"20210108"]
    monday = [s for s in ticks if s.TradingDay == b"20210111"]
    assert friday and monday
    assert monday[0].Volume < friday[-1].Volume
    assert monday[0].PreClosePrice == friday[-1].LastPrice
    assert monday[0].PreOpenInterest == friday[-1].OpenInterest


def test_the_same_seed_gives_the_same_ticks_and_they_normalize_cleanly() -> None:
    table = InstrumentTable(ProductTable.load())
    start, end = at(2021, 1, 11, 9, 29), int(at(2021, 1, 11, 9, 40).timestamp() * 1000)
    first = list(SimulatedMarket([table.register("IF2101")], start, seed=9).advance(end))
    again = list(SimulatedMarket([table.register("IF2101")], start, seed=9).advance(end))
    assert first == again
    normalizer = TickNormalizer(table, stale_after_s=None)
    out = bytearray(TICK_DTYPE.itemsize)
    for snapshot in first:
        assert normalizer.normalize(snapshot, None, out)
        tick = np.frombuffer(bytes(out), TICK_DTYPE)[0]
        bad = TickFlag.OUT_OF_SESSION | TickFlag.VOLUME_BACKWARDS | TickFlag.DAYS_DERIVED
        assert not tick["flags"] & bad
