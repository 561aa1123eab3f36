"""K-line bars on synthesized ticks: night sessions, Mondays, holidays, clipping, the clock,
late and duplicate ticks, and live == batch on all of it."""

from __future__ import annotations

import datetime as dt

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from test_bars import ALL, CHINA, GRACE_NS, PRODUCTS, Collector, batch_bars, labels, live_bars, local, of

from hft.daemons.engine.barbatch import build_bars
from hft.daemons.engine.bars import BarBuilder
from hft.daemons.engine.bartables import local_midnight_ns, parse_period, parse_periods
from hft.daemons.refdata import calendar
from hft.daemons.runtime.events import TICK_DTYPE, EventType, TickFlag, empty

Row = tuple[str, float, int]  # ("HH:MM:SS.mmm", LastPrice, cumulative Volume)


def clock_ms(text: str) -> int:
    hours, minutes, seconds = text.split(":")
    return round((int(hours) * 3600 + int(minutes) * 60 + float(seconds)) * 1000)


def ticks_of(instrument: str, trading_day: int, rows: list[Row], *, flags: int = 0) -> np.ndarray:
    """MARKET_DATA records as the normalizer makes them: ActionDay from the calendar, the
    session's HighestPrice/LowestPrice as running extremes of LastPrice, Turnover cumulative."""
    ticks = empty(EventType.MARKET_DATA, len(rows))
    product = PRODUCTS.product_of(instrument)
    ticks["instrument"], ticks["exchange"] = instrument.encode(), product.exchange.encode()
    ticks["trading_day"], ticks["flags"] = trading_day, flags
    ms = np.array([clock_ms(row[0]) for row in rows])
    action = [calendar.action_day(trading_day, int(m)) for m in ms]
    ticks["action_day"], ticks["update_ms"] = action, ms
    ticks["exchange_ts_ns"] = ticks["ts_ns"] = [local_midnight_ns(a) + int(m) * 10**6
                                                 for a, m in zip(action, ms, strict=True)]
    prices = np.array([row[1] for row in rows])
    volumes = np.array([row[2] for row in rows])
    ticks["last_price"], ticks["volume"] = prices, volumes
    ticks["highest_price"] = np.maximum.accumulate(prices)
    ticks["lowest_price"] = np.minimum.accumulate(prices)
    ticks["turnover"] = np.cumsum(np.diff(volumes, prepend=0) * prices * product.multiplier)
    ticks["open_interest"] = 1000.0 + np.arange(len(rows))
    return ticks


def merged(*parts: np.ndarray) -> np.ndarray:
    """Several instruments' ticks in arrival (time) order."""
    out = np.zeros(sum(len(part) for part in parts), dtype=TICK_DTYPE)
    out[:] = np.concatenate(parts)
    return out[np.argsort(out["ts_ns"], kind="stable")]


def when(ns: int) -> str:
    return local(ns).strftime("%Y-%m-%d %H:%M")


def check_same(ticks: np.ndarray) -> np.ndarray:
    """Live (clock driven by the data) and batch bars, asserted identical; returns them."""
    live, batch = live_bars(ticks), batch_bars(ticks)
    assert live.tobytes() == batch.tobytes()
    return live


# --- night sessions ----------------------------------------------------------------------------

def test_rb_night_session_to_2300() -> None:
    day = 20210105  # Tuesday: the night session is Monday evening 2021-01-04
    bars = check_same(ticks_of("rb2105", day, [
        ("20:59:00.500", 4300, 50),  # call auction
        ("21:00:05", 4302, 60), ("21:00:40", 4298, 70),
        ("22:59:59.500", 4310, 100), ("23:00:00.500", 4311, 105),  # end-minute print
        ("23:01:00", 4311, 105),  # after the close: no bar
        ("09:00:01", 4320, 120), ("10:15:00.200", 4321, 130), ("10:30:00.500", 4322, 131),
        ("15:00:00.300", 4330, 140)]))
    minutes = of(bars, "1m")
    assert [when(ns) for ns in minutes["start_ns"]] == [
        "2021-01-04 21:00", "2021-01-04 22:59", "2021-01-05 09:00", "2021-01-05 10:14",
        "2021-01-05 10:30", "2021-01-05 14:59"]
    assert (minutes["trading_day"] == day).all()
    assert tuple(minutes[0][["open", "high", "low", "close", "volume"]]) == (4300, 4302, 4298, 4298, 70)
    assert tuple(minutes[1][["open", "close", "volume"]]) == (4310, 4311, 35)
    assert when(int(minutes[1]["ts_ns"])) == "2021-01-04 23:00"
    daily = of(bars, "1d")[0]
    assert tuple(daily[["open", "high", "low", "close", "volume"]]) == (4300, 4330, 4298, 4330, 140)
    assert local(int(daily["start_ns"])) == dt.datetime(2021, 1, 5, tzinfo=CHINA)
    assert when(int(daily["ts_ns"])) == "2021-01-05 15:00"


def test_cu_night_session_across_midnight_on_a_monday() -> None:
    day = 20210111  # Monday: its night session is Friday 2021-01-08 evening, into Saturday
    bars = check_same(ticks_of("cu2102", day, [
        ("20:59:00.500", 60000, 10), ("21:00:00.500", 60010, 20), ("23:59:30", 60020, 30),
        ("00:00:10", 60030, 40), ("00:59:50", 60040, 50), ("01:00:00.500", 60050, 55),
        ("01:01:00", 60050, 55), ("09:00:10", 60100, 70)]))
    minutes = of(bars, "1m")
    assert [when(ns) for ns in minutes["start_ns"]] == [
        "2021-01-08 21:00", "2021-01-08 23:59", "2021-01-09 00:00", "2021-01-09 00:59",
        "2021-01-11 09:00"]
    assert minutes["volume"].tolist() == [20, 10, 10, 15, 15]
    assert (minutes["trading_day"] == day).all()
    hours = of(bars, "1h")
    assert [when(ns) for ns in hours["start_ns"]] == [
        "2021-01-08 21:00", "2021-01-08 23:00", "2021-01-09 00:00", "2021-01-11 09:00"]
    assert when(int(hours[2]["ts_ns"])) == "2021-01-09 01:00"
    assert of(bars, "1d")["volume"].tolist() == [70]


def test_ag_night_session_to_0230() -> None:
    bars = check_same(ticks_of("ag2106", 20210106, [
        ("21:00:01", 5500, 10), ("02:00:30", 5510, 20), ("02:29:59", 5520, 30),
        ("02:30:00.500", 5530, 40), ("02:31:00", 5530, 40)]))
    minutes = of(bars, "1m")
    assert labels(minutes) == ["21:00", "02:00", "02:29"]
    assert tuple(minutes[2][["open", "close", "volume"]]) == (5520, 5530, 20)
    for period in ("30m", "1h"):
        last = of(bars, period)[-1]
        assert (when(int(last["start_ns"])), when(int(last["ts_ns"]))) == (
            "2021-01-06 02:00", "2021-01-06 02:30"), period
        assert last["volume"] == 30 and last["period_s"] == parse_period(period).seconds


@pytest.mark.parametrize("day", [20210104, 20210218])  # after New Year's Day, after Spring Festival
def test_no_night_bars_when_the_calendar_has_no_night_session(day: int) -> None:
    assert not calendar.has_night_session(day)
    night = ticks_of("rb2105", day, [("21:00:05", 4300, 5), ("22:00:00", 4301, 8)])
    night["action_day"] = calendar.prev_trading_day(day)  # what a confused feed would say
    day_session = ticks_of("rb2105", day, [
        ("08:59:00.500", 4310, 20),  # the day session's own call auction
        ("09:00:30", 4312, 30), ("10:15:00.400", 4315, 40)])
    bars = check_same(merged(night, day_session))
    minutes = of(bars, "1m")
    assert labels(minutes) == ["09:00", "10:14"]
    assert tuple(minutes[0][["open", "close", "volume"]]) == (4310, 4312, 30)
    assert of(bars, "1d")[["open", "volume"]].tolist() == [(4310, 40)]


def test_no_day_auction_bar_on_a_day_with_a_night_session() -> None:
    bars = check_same(ticks_of("rb2105", 20210105, [("08:59:00.500", 4310, 20), ("09:00:30", 4312, 30)]))
    assert labels(of(bars, "1m")) == ["09:00"]
    assert of(bars, "1m")[["open", "volume"]].tolist() == [(4312, 30)]


# --- clipping ----------------------------------------------------------------------------------

@pytest.mark.parametrize("instrument", ["AP105", "rb2105"])  # FD0900, FN2300 day part
def test_windows_are_clock_aligned_and_clipped_to_sections(instrument: str) -> None:
    bars = check_same(ticks_of(instrument, 20210105, [
        ("08:59:00.500", 100, 1), ("09:14:00", 101, 2), ("10:05:00", 102, 3), ("10:14:30", 103, 4),
        ("10:15:00.500", 104, 5), ("10:30:10", 105, 6), ("10:44:59", 106, 7), ("10:45:01", 107, 8),
        ("11:29:00", 108, 9), ("13:31:00", 109, 10), ("14:01:00", 110, 11)]))
    fifteen = of(bars, "15m")
    assert labels(fifteen) == ["09:00", "10:00", "10:30", "10:45", "11:15", "13:30", "14:00"]
    assert [local(int(ns)).strftime("%H:%M") for ns in fifteen["ts_ns"]] == [
        "09:15", "10:15", "10:45", "11:00", "11:30", "13:45", "14:15"]
    assert fifteen["volume"][1] == 3  # 10:05, 10:14:30 and the 10:15:00.500 print
    hours = of(bars, "1h")
    assert labels(hours) == ["09:00", "10:00", "10:30", "11:00", "13:30", "14:00"]
    assert [local(int(ns)).strftime("%H:%M") for ns in hours["ts_ns"]] == [
        "10:00", "10:15", "11:00", "11:30", "14:00", "15:00"]
    assert (hours["period_s"] == 3600).all()
    assert labels(of(bars, "30m")) == ["09:00", "10:00", "10:30", "11:00", "13:30", "14:00"]


# --- the clock, late and duplicate ticks -----------------------------------------------------

def at(trading_day: int, text: str) -> int:
    return local_midnight_ns(trading_day) + clock_ms(text) * 10**6


def test_bars_close_on_the_clock_and_refused_ticks_never_change_them() -> None:
    day = 20210104
    sink = Collector()
    builder = BarBuilder(PRODUCTS, parse_periods(["1m", "5m", "1d"]), sink, grace_ns=GRACE_NS)

    def feed(*rows: Row, flags: int = 0) -> None:
        for tick in ticks_of("IF2101", day, list(rows), flags=flags):
            builder.on_tick(tick)

    def emitted() -> list[tuple[str, int, float, int]]:
        bars = sink.records
        return [(local(int(b["start_ns"])).strftime("%H:%M"), int(b["period_s"]),
                 float(b["close"]), int(b["volume"])) for b in bars]

    feed(("09:29:00.400", 5000, 10), ("09:30:30", 5001, 20))
    builder.on_clock(at(day, "09:31:00.999"))
    assert emitted() == []
    builder.on_clock(at(day, "09:31:01"))  # end + grace, no later tick needed
    assert emitted() == [("09:30", 60, 5001, 20)]
    assert sink.records[0]["ts_ns"] == at(day, "09:31:00")
    builder.on_clock(at(day, "09:35:00.999"))
    assert len(emitted()) == 1
    builder.on_clock(at(day, "09:35:01"))
    assert emitted()[1:] == [("09:30", 300, 5001, 20)]

    feed(("11:29:59", 5002, 40))
    builder.on_clock(at(day, "11:30:00.400"))
    feed(("11:30:00.400", 5003, 45))  # end-minute print within the grace: the 11:29 bar
    builder.on_clock(at(day, "11:30:01"))
    assert emitted()[2:] == [("11:29", 60, 5003, 25), ("11:25", 300, 5003, 25)]
    feed(("11:29:59.500", 4000, 50))  # its bar is closed: refused, the bar stays as emitted
    assert (builder.stats.late, len(emitted())) == (1, 4)

    feed(("13:00:01", 5010, 60))
    feed(("13:00:01", 5010, 60))  # the same snapshot again
    assert builder.stats.duplicate == 1
    feed(("13:01:00", 5011, 70), ("13:00:30", 4000, 75))  # back to an earlier bar
    feed(("13:01:30", 5012, 80), ("13:01:40", 4000, 78))  # cumulative volume goes down
    assert builder.stats.late == 3
    feed(("13:01:50", 4000, 90), flags=TickFlag.STALE)
    feed(("13:01:55", float("nan"), 90))
    feed(("13:02:10", 5013, 90))
    assert builder.stats.ignored == 2
    builder.on_clock(at(day, "14:00:00"))
    # nothing refused is lost: the late tick's 5 lots are in the next bar, the refused
    # ticks' prices are in none
    assert emitted()[4:] == [("13:00", 60, 5010, 15), ("13:01", 60, 5012, 20),
                             ("13:02", 60, 5013, 10), ("13:00", 300, 5013, 45)]
    assert (sink.records["low"] > 4000).all() and (sink.records["open"] > 4000).all()
    builder.on_clock(at(day, "15:00:00.999"))
    assert len(emitted()) == 8
    builder.on_clock(at(day, "15:00:01"))
    assert emitted()[8:] == [("00:00", 86400, 5013, 90)]
    assert builder.stats.bars == [5, 3, 1]
    builder.flush()
    assert len(emitted()) == 9


def test_the_clock_closes_empty_minutes_too() -> None:
    """Once the clock has passed a minute's end + grace, a tick stamped in it is late even if
    that minute never had a bar: its 5-minute window was already emitted."""
    day = 20210104
    sink = Collector()
    builder = BarBuilder(PRODUCTS, parse_periods(["1m", "5m"]), sink, grace_ns=GRACE_NS)
    builder.on_tick(ticks_of("IF2101", day, [("09:30:10", 5000, 10)])[0])
    builder.on_clock(at(day, "09:35:01"))
    assert sink.count == 2
    builder.on_tick(ticks_of("IF2101", day, [("09:33:00", 5001, 12)])[0])
    builder.on_tick(ticks_of("IF2101", day, [("09:35:02", 5002, 15)])[0])
    builder.flush()
    assert builder.stats.late == 1
    assert [(local(int(b["start_ns"])).strftime("%H:%M"), int(b["period_s"]), int(b["volume"]))
            for b in sink.records] == [("09:30", 60, 10), ("09:30", 300, 10), ("09:35", 60, 5),
                                       ("09:35", 300, 5)]


def test_a_tick_of_a_later_minute_closes_the_bars_it_ends_at_once() -> None:
    sink = Collector()
    builder = BarBuilder(PRODUCTS, parse_periods(["1m", "5m"]), sink, grace_ns=GRACE_NS)
    for tick in ticks_of("IF2101", 20210104, [("09:33:30", 5000, 10), ("09:34:30", 5001, 12),
                                              ("09:35:10", 5002, 15)]):
        builder.on_tick(tick)
    assert [(local(int(b["start_ns"])).strftime("%H:%M"), int(b["period_s"]), int(b["volume"]))
            for b in sink.records] == [("09:33", 60, 10), ("09:34", 60, 2), ("09:30", 300, 12)]


def test_a_new_trading_day_closes_the_previous_days_bars_at_once() -> None:
    sink = Collector()
    builder = BarBuilder(PRODUCTS, parse_periods(["1m", "1d"]), sink, grace_ns=GRACE_NS)
    for tick in merged(ticks_of("rb2105", 20210105, [("14:59:30", 4300, 10)]),
                       ticks_of("rb2105", 20210106, [("21:00:30", 4310, 5)])):
        builder.on_tick(tick)
    assert [(int(b["trading_day"]), int(b["period_s"])) for b in sink.records] == [
        (20210105, 60), (20210105, 86400)]


def test_malformed_times_make_no_bar_and_bad_days_are_named() -> None:
    ticks = ticks_of("IF2101", 20210104, [("09:30:00", 5000, 1), ("09:30:10", 5001, 2),
                                          ("09:30:20", 5002, 3)])
    ticks["update_ms"][1] = -60_000  # would index the last minute of the day from the end
    ticks["update_ms"][2] = 86_400_000 + 9 * 3_600_000 + 30 * 60_000
    bars = check_same(ticks)
    assert of(bars, "1m")[["close", "volume"]].tolist() == [(5000, 1)]
    ticks["trading_day"][0] = 20211340
    builder = BarBuilder(PRODUCTS, ALL, Collector())
    with pytest.raises(ValueError, match="trading day 20211340 is not a YYYYMMDD date"):
        builder.on_tick(ticks[0])
    with pytest.raises(ValueError, match="trading day 20211340"):
        build_bars(ticks, PRODUCTS, ALL)


def test_unknown_instruments_are_counted_and_named() -> None:
    ticks = ticks_of("IF2101", 20210104, [("09:30:00", 5000, 1)])
    ticks["instrument"] = b"ZZ2101"
    sink = Collector()
    builder = BarBuilder(PRODUCTS, ALL, sink)
    builder.on_tick(ticks[0])
    builder.on_tick(ticks[0])
    builder.flush()
    assert (builder.stats.unknown, sink.count) == (2, 0)
    with pytest.raises(KeyError, match="ZZ"):
        build_bars(ticks, PRODUCTS, ALL)


# --- live == batch -------------------------------------------------------------------------------

def test_live_equals_batch_on_several_instruments_over_a_weekend() -> None:
    friday, monday = 20210108, 20210111
    ticks = merged(
        ticks_of("rb2105", friday, [("09:00:00.500", 4300, 1), ("09:00:00.500", 4300, 1),
                                    ("11:30:00.500", 4301, 3), ("14:59:59", 4302, 6)]),
        ticks_of("cu2102", friday, [("10:20:00", 60000, 2), ("13:30:00", 60010, 4)]),
        ticks_of("rb2105", monday, [("20:59:00.500", 4310, 2), ("21:30:00", 4308, 4),
                                    ("23:00:00.100", 4309, 5), ("23:05:00", 4309, 5)]),
        ticks_of("cu2102", monday, [("21:00:00.500", 60100, 3), ("00:30:00", 60200, 9),
                                    ("01:00:00.900", 60210, 10)]),
        ticks_of("ag2106", monday, [("02:29:00", 5500, 3), ("02:30:00.100", 5505, 4)]),
        ticks_of("rb2105", monday, [("09:10:00", 4320, 9)], flags=TickFlag.OUT_OF_SESSION),
        ticks_of("IF2101", monday, [("09:29:00.400", 5000, 7), ("15:00:00.400", 5010, 9),
                                    ("15:30:48.900", 5010, 9)]))
    bars = check_same(ticks)
    assert sorted({bytes(i) for i in bars["instrument"]}) == [b"IF2101", b"ag2106", b"cu2102", b"rb2105"]
    daily = of(bars, "1d")
    assert sorted((bytes(b["instrument"]), int(b["trading_day"]), int(b["volume"])) for b in daily) == [
        (b"IF2101", monday, 9), (b"ag2106", monday, 4), (b"cu2102", friday, 4),
        (b"cu2102", monday, 10), (b"rb2105", friday, 6), (b"rb2105", monday, 5)]


def test_live_equals_batch_when_ticks_go_back() -> None:
    """Out-of-order and backwards ticks take the batch path's exact (tick by tick) fallback.
    Refused ticks' prices are in no bar, but what they show in the cumulative fields is: the
    session low fell to 4299 with the refused 21:00:30 tick, which the 21:01:20 tick reveals."""
    ticks = ticks_of("rb2105", 20210105, [
        ("21:00:01", 4300, 10), ("21:01:00", 4301, 20), ("21:00:30", 4299, 25),
        ("21:01:10", 4302, 15), ("21:01:10", 4302, 15), ("21:01:20", 4303, 30),
        ("21:01:20", 4303, 30), ("21:02:00", 4290, 30), ("21:01:59", 4310, 40)])
    live = live_bars(ticks, clock=False)
    assert live.tobytes() == batch_bars(ticks).tobytes()
    assert of(live, "1m")[["open", "high", "low", "close", "volume"]].tolist() == [
        (4300, 4300, 4300, 4300, 10), (4301, 4303, 4299, 4303, 20), (4290, 4290, 4290, 4290, 0)]


_MINUTES = st.integers(min_value=0, max_value=1439)


@st.composite
def tick_streams(draw: st.DrawFn) -> np.ndarray:
    """Random ticks of two instruments over two trading days: inside and outside sessions,
    duplicates, steps back in time and volume, flags, empty prices, highs and lows that jump."""
    parts = []
    for instrument in ("rb2105", "ag2106"):
        for day in (20210108, 20210111):
            count = draw(st.integers(min_value=0, max_value=25))
            rows, volume = [], 0
            for _ in range(count):
                volume = max(0, volume + draw(st.integers(min_value=-2, max_value=10)))
                minute = draw(_MINUTES)
                second = draw(st.sampled_from(["00.500", "30", "59.900"]))
                rows.append((f"{minute // 60:02d}:{minute % 60:02d}:{second}",
                             float(draw(st.integers(min_value=100, max_value=110))), volume))
            ticks = ticks_of(instrument, day, rows)
            jumps = draw(st.lists(st.booleans(), min_size=count, max_size=count))
            ticks["highest_price"] += np.where(jumps, 3.0, 0.0)
            ticks["lowest_price"] -= np.where(jumps[::-1], 2.0, 0.0)
            if count:
                ticks["flags"][draw(st.integers(0, count - 1))] = draw(st.sampled_from(
                    [0, int(TickFlag.STALE), int(TickFlag.DAYS_DERIVED)]))
                ticks["last_price"][draw(st.integers(0, count - 1))] = draw(
                    st.sampled_from([np.nan, 105.0]))
            parts.append(ticks)
    return merged(*parts) if draw(st.booleans()) else np.concatenate(parts)


@settings(max_examples=150, deadline=None)
@given(tick_streams())
def test_live_equals_batch_on_random_streams(ticks: np.ndarray) -> None:
    live = live_bars(ticks, clock=False)
    assert live.tobytes() == batch_bars(ticks).tobytes()
    minutes = of(live, "1m")
    for daily in of(live, "1d"):  # every period adds up to the day
        same = ((minutes["instrument"] == daily["instrument"])
                & (minutes["trading_day"] == daily["trading_day"]))
        assert minutes["volume"][same].sum() == daily["volume"]


# --- periods ---------------------------------------------------------------------------------------

def test_periods() -> None:
    assert [(p.name, p.minutes, p.seconds) for p in parse_periods(["1m", "60m", "4h", "1d", "1440m"])] == [
        ("1m", 1, 60), ("1h", 60, 3600), ("4h", 240, 14400), ("1d", 0, 86400), ("24h", 1440, 86400)]
    for bad, message in (("7m", "divides a day"), ("0m", "bad period"), ("2d", "only 1d"),
                         ("m5", "bad period"), ("", "bad period")):
        with pytest.raises(ValueError, match=message):
            parse_period(bad)
    with pytest.raises(ValueError, match=r"\['1h'\] given more than once"):
        parse_periods(["1h", "60m"])
    with pytest.raises(ValueError, match="no bar period"):
        parse_periods([])
