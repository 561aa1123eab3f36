"""K-line bars on the real IF day: vendor daily bar, session edges, live == batch, CLI, plugin.

The helpers here (live_bars, batch_bars, labels) are shared with the other test_bars_* files.
"""

from __future__ import annotations

import csv
import datetime as dt
import io
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from click.testing import CliRunner
from support.sample_data import IF_DAILY_REFERENCE, IF_DAY

from hft.ctl.cli import main as hftctl
from hft.daemons.engine.barbatch import build_bars
from hft.daemons.engine.bario import CSV_COLUMNS
from hft.daemons.engine.bars import BarBuilder
from hft.daemons.engine.bartables import Period, parse_periods
from hft.daemons.engine.products import product_of, products
from hft.daemons.md.csvfile import read_ticks
from hft.daemons.md.history import journal_ticks
from hft.daemons.md.importer import import_files
from hft.daemons.refdata.instruments import InstrumentTable, ProductTable
from hft.daemons.runtime.config import SuiteConfig
from hft.daemons.runtime.events import BAR_DTYPE, EventType, TickFlag, empty
from hft.daemons.runtime.host import DaemonHost
from hft.daemons.runtime.journal import JournalWriter
from hft.daemons.runtime.plugins import PluginState

PRODUCTS = ProductTable.load()
ALL = parse_periods(["1m", "5m", "15m", "30m", "1h", "1d"])
GRACE_NS = 1_000_000_000
CHINA = dt.timezone(dt.timedelta(hours=8))


# --- helpers shared with the other test_bars_* files ------------------------------------------

def canonical(bars: np.ndarray, periods: Sequence[Period] = ALL) -> np.ndarray:
    """Bars sorted by instrument, period (given order), start; padding zeroed (numpy leaves
    the padding of fancy-indexed records undefined), so records compare byte for byte."""
    rank = {period.seconds: number for number, period in enumerate(periods)}
    order = np.lexsort((bars["start_ns"], [rank[int(s)] for s in bars["period_s"]],
                        bars["instrument"]))
    out = np.zeros(len(bars), dtype=BAR_DTYPE)
    out[:] = bars[order]
    return out


class Collector:
    """A bar sink that keeps copies (the builder reuses its record)."""

    def __init__(self) -> None:
        self.bars = np.zeros(0, dtype=BAR_DTYPE)
        self._records = np.zeros(64, dtype=BAR_DTYPE)
        self.count = 0

    def __call__(self, bar: np.void) -> None:
        if self.count == len(self._records):
            grown = np.zeros(2 * self.count, dtype=BAR_DTYPE)
            grown[:self.count] = self._records
            self._records = grown
        self._records[self.count] = bar
        self.count += 1

    @property
    def records(self) -> np.ndarray:
        return self._records[:self.count]


def live_bars(ticks: np.ndarray, periods: Sequence[Period] = ALL, *, clock: bool = True,
              builder: BarBuilder | None = None) -> np.ndarray:
    """The live builder's bars, its clock driven from each tick's ts_ns before the tick (as
    the replay's data-clock TIMERs do), then flushed."""
    sink = Collector()
    builder = builder or BarBuilder(PRODUCTS, periods, sink, grace_ns=GRACE_NS)
    for tick in ticks:
        if clock:
            builder.on_clock(int(tick["ts_ns"]))
        builder.on_tick(tick)
    builder.flush()
    return canonical(sink.records, periods)


def batch_bars(ticks: np.ndarray, periods: Sequence[Period] = ALL) -> np.ndarray:
    return canonical(build_bars(ticks, PRODUCTS, periods), periods)


def of(bars: np.ndarray, period: str) -> np.ndarray:
    return bars[bars["period_s"] == parse_periods([period])[0].seconds]


def local(ns: int) -> dt.datetime:
    return dt.datetime.fromtimestamp(ns / 1e9, CHINA)


def labels(bars: np.ndarray) -> list[str]:
    """'HH:MM' of each bar's start on the local clock."""
    return [local(int(ns)).strftime("%H:%M") for ns in bars["start_ns"]]


# --- the IF day --------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def if_ticks() -> np.ndarray:
    return read_ticks(IF_DAY, InstrumentTable(PRODUCTS))


@pytest.fixture(scope="module")
def if_bars(if_ticks: np.ndarray) -> np.ndarray:
    return live_bars(if_ticks)


def _minute(ticks: np.ndarray, hhmm: str) -> np.ndarray:
    """Ticks stamped in local minute HH:MM."""
    hours, minutes = map(int, hhmm.split(":"))
    return ticks[ticks["update_ms"] // 60_000 == hours * 60 + minutes]


def test_daily_bar_equals_the_vendor_reference(if_ticks: np.ndarray, if_bars: np.ndarray) -> None:
    rows = list(csv.DictReader(IF_DAILY_REFERENCE.open()))
    reference = next(row for row in rows if row["date"] == "2021/01/04")
    for bars in (if_bars, batch_bars(if_ticks)):
        daily = of(bars, "1d")
        assert len(daily) == 1
        bar = daily[0]
        assert (bar["open"], bar["high"], bar["low"], bar["close"]) == tuple(
            float(reference[name]) for name in ("open", "high", "low", "close"))
        assert bar["high"] == 5298.8 > if_ticks["last_price"].max() == 5298.0
        assert bar["volume"] == float(reference["volume"]) == 84288
        assert bar["turnover"] == float(reference["turnover"])
        assert bar["open_interest"] == float(reference["open_interest"]) == 84531
        assert bar["trading_day"] == 20210104
        assert local(int(bar["start_ns"])) == dt.datetime(2021, 1, 4, tzinfo=CHINA)
        assert local(int(bar["ts_ns"])) == dt.datetime(2021, 1, 4, 15, tzinfo=CHINA)


def test_240_minute_bars_add_up_to_the_day(if_bars: np.ndarray) -> None:
    minutes = of(if_bars, "1m")
    assert len(minutes) == 240
    daily = of(if_bars, "1d")[0]
    assert minutes["volume"].sum() == daily["volume"] == 84288
    assert minutes["turnover"].sum() == daily["turnover"]
    assert minutes["high"].max() == daily["high"] and minutes["low"].min() == daily["low"]
    assert [len(of(if_bars, p.name)) for p in ALL] == [240, 48, 16, 8, 5, 1]
    for period in ("5m", "15m", "30m", "1h"):
        assert of(if_bars, period)["volume"].sum() == 84288, period


def test_session_edges(if_ticks: np.ndarray, if_bars: np.ndarray) -> None:
    minutes = of(if_bars, "1m")
    by_label = dict(zip(labels(minutes), minutes, strict=True))
    assert labels(minutes)[:2] == ["09:30", "09:31"]
    assert labels(minutes)[118:122] == ["11:28", "11:29", "13:00", "13:01"]
    assert labels(minutes)[-1] == "14:59"
    assert not {"09:29", "11:30", "12:00", "15:00", "15:30", "15:35"} & by_label.keys()
    # the 09:29 auction print opens the 09:30 bar, with its volume
    auction = _minute(if_ticks, "09:29")
    assert len(auction) == 1 and auction["volume"][0] == 240
    assert by_label["09:30"]["open"] == auction["last_price"][0] == 5230
    assert by_label["09:30"]["volume"] == _minute(if_ticks, "09:30")["volume"][-1]
    # the 15:00:00.400 print closes the 14:59 bar
    close = _minute(if_ticks, "15:00")
    assert len(close) == 1 and close["update_ms"][0] % 60_000 == 400
    assert by_label["14:59"]["close"] == close["last_price"][0] == 5260
    assert by_label["14:59"]["volume"] == close["volume"][0] - _minute(if_ticks, "14:58")["volume"][-1]
    assert by_label["13:00"]["volume"] == (_minute(if_ticks, "13:00")["volume"][-1]
                                          - _minute(if_ticks, "11:29")["volume"][-1])


def test_an_end_minute_print_folds_into_the_sections_last_bar(if_ticks: np.ndarray) -> None:
    """The file's morning ends at 11:29:59.900; add the 11:30:00.400 print real days have."""
    last = int(np.flatnonzero(if_ticks["update_ms"] < 11 * 3_600_000 + 30 * 60_000)[-1])
    ticks = np.zeros(len(if_ticks) + 1, dtype=if_ticks.dtype)
    ticks[:last + 1], ticks[last + 2:] = if_ticks[:last + 1], if_ticks[last + 1:]
    ticks[last + 1] = if_ticks[last]
    end_print = ticks[last + 1:last + 2]
    end_print["update_ms"] += 500  # 11:29:59.900 -> 11:30:00.400
    end_print["exchange_ts_ns"] += 500_000_000
    end_print["ts_ns"] += 500_000_000
    end_print["volume"] += 7
    end_print["turnover"] += 7 * 300 * 5290.0
    end_print["last_price"] = end_print["highest_price"] = 5290.0
    for bars in (live_bars(ticks), batch_bars(ticks)):
        minutes = of(bars, "1m")
        assert len(minutes) == 240 and "11:30" not in labels(minutes)
        bar = dict(zip(labels(minutes), minutes, strict=True))["11:29"]
        assert (bar["close"], bar["high"]) == (5290.0, 5290.0)
        assert bar["volume"] == end_print["volume"][0] - _minute(ticks, "11:28")["volume"][-1]
        assert local(int(bar["ts_ns"])) == dt.datetime(2021, 1, 4, 11, 30, tzinfo=CHINA)
        assert of(bars, "1d")["volume"][0] == 84288  # the cumulative field already had them


def test_post_close_snapshots_make_no_bar(if_ticks: np.ndarray, if_bars: np.ndarray) -> None:
    after = if_ticks[if_ticks["update_ms"] >= 15 * 3_600_000 + 60_000]
    assert len(after) == 2 and (after["flags"] & TickFlag.OUT_OF_SESSION).all()
    unflagged = if_ticks.copy()
    unflagged["flags"] = 0  # outside every session even without the normalizer's flag
    for bars in (live_bars(unflagged), batch_bars(unflagged)):
        np.testing.assert_array_equal(bars, if_bars)


def test_a_rise_of_highest_price_goes_into_the_later_ticks_bar(if_ticks: np.ndarray,
                                                               if_bars: np.ndarray) -> None:
    rise = int(np.flatnonzero(if_ticks["highest_price"] == 5298.8)[0])
    assert if_ticks["highest_price"][rise - 1] < 5298.8 and if_ticks["last_price"][rise] < 5298.8
    minute = local(int(if_ticks["exchange_ts_ns"][rise])).strftime("%H:%M")
    minutes = of(if_bars, "1m")
    assert [label for label, high in zip(labels(minutes), minutes["high"], strict=True)
            if high == 5298.8] == [minute]


def test_live_and_batch_give_identical_bars(if_ticks: np.ndarray, if_bars: np.ndarray) -> None:
    batch = batch_bars(if_ticks)
    assert len(batch) == 318
    assert batch.tobytes() == if_bars.tobytes()
    assert live_bars(if_ticks, clock=False).tobytes() == batch.tobytes()


def test_only_1m_periods_are_not_needed_for_the_others(if_ticks: np.ndarray, if_bars: np.ndarray) -> None:
    periods = parse_periods(["1d", "15m"])
    for bars in (live_bars(if_ticks, periods), batch_bars(if_ticks, periods)):
        assert bars.tobytes() == canonical(np.concatenate([of(if_bars, "1d"), of(if_bars, "15m")]),
                                           periods).tobytes()


# --- hftctl bars -------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def journal(tmp_path_factory: pytest.TempPathFactory) -> Path:
    directory = tmp_path_factory.mktemp("md")
    import_files([IF_DAY], directory, "md", InstrumentTable(PRODUCTS))
    gap = empty(EventType.FEED_GAP)  # not a tick, though its bytes can be viewed as one
    gap["feed"], gap["ts_ns"] = b"sim", 1609747200 * 10**9
    with JournalWriter(directory, "md") as writer:
        writer.append(gap[0])
    return directory


def _hftctl(*args: str) -> Any:
    return CliRunner().invoke(hftctl, list(args))


def test_hftctl_bars_prints_csv(journal: Path, if_bars: np.ndarray) -> None:
    result = _hftctl("bars", "--journal", str(journal), "--instrument", "IF2101", "--period", "1d",
                     "--format", "csv")
    assert result.exit_code == 0, result.output
    assert result.output.splitlines() == [
        ",".join(CSV_COLUMNS),
        "2021-01-04T00:00:00+08:00,20210104,5230,5298.8,5192,5260,84288,132807388020,84531"]
    result = _hftctl("bars", "--journal", str(journal), "--name", "md", "--instrument", "IF2101")
    assert result.exit_code == 0, result.output
    rows = list(csv.DictReader(io.StringIO(result.output)))
    assert tuple(rows[0]) == CSV_COLUMNS == ("datetime", "trading_day", "open", "high", "low",
                                             "close", "volume", "turnover", "open_interest")
    assert len(rows) == 240
    assert rows[0]["datetime"] == "2021-01-04T09:30:00+08:00"
    assert rows[-1]["datetime"] == "2021-01-04T14:59:00+08:00"
    minutes = of(if_bars, "1m")
    assert [float(row["high"]) for row in rows] == minutes["high"].tolist()
    assert [int(row["volume"]) for row in rows] == minutes["volume"].tolist()
    assert [float(row["turnover"]) for row in rows] == minutes["turnover"].tolist()
    hours = _hftctl("bars", "--journal", str(journal), "--instrument", "IF2101", "--period", "1h")
    assert [row.split(",")[0][11:16] for row in hours.output.splitlines()[1:]] == [
        "09:30", "10:00", "11:00", "13:00", "14:00"]


@pytest.mark.parametrize(("args", "message"), [
    (("--journal", "{missing}", "--instrument", "IF2101"), "no such journal"),
    (("--journal", "{journal}", "--name", "other", "--instrument", "IF2101"), "no such journal"),
    (("--journal", "{journal}", "--instrument", "IF2102"), "has no ticks of 'IF2102'"),
    (("--journal", "{journal}", "--instrument", "IF2102"), "(it has: IF2101)"),
    (("--journal", "{journal}", "--instrument", "XX2101"), "unknown product 'XX'"),
    (("--journal", "{journal}", "--instrument", "IF2101", "--period", "7m"), "divides a day"),
    (("--journal", "{journal}", "--instrument", "IF2101", "--period", "2d"), "only 1d"),
    (("--journal", "{journal}", "--instrument", "IF2101", "--period", "1w"), "bad period '1w'"),
])
def test_hftctl_bars_errors_are_clear(journal: Path, tmp_path: Path, args: tuple[str, ...],
                                      message: str) -> None:
    result = _hftctl("bars", *(a.format(journal=journal, missing=tmp_path / "nope") for a in args))
    assert result.exit_code != 0
    assert message in result.output


def test_journal_ticks_keeps_one_instruments_ticks_in_order(tmp_path: Path) -> None:
    records = empty(EventType.MARKET_DATA, 6)
    records["type"] = EventType.MARKET_DATA
    records["ts_ns"] = np.arange(6)
    records["instrument"] = [b"IF2101", b"rb2105"] * 3
    records["type"][3] = EventType.FEED_GAP  # not a tick, though its bytes say rb2105
    with JournalWriter(tmp_path, "md") as writer:
        writer.append_batch(records)
    got = journal_ticks(tmp_path, "md", "IF2101")
    assert got["ts_ns"].tolist() == [0, 2, 4]
    assert journal_ticks(tmp_path, "md", "rb2105")["ts_ns"].tolist() == [1, 5]
    with pytest.raises(ValueError, match=r"no ticks of 'IF2102' \(it has: IF2101, rb2105\)"):
        journal_ticks(tmp_path, "md", "IF2102")


# --- the KlineEngine plugin ------------------------------------------------------------------

def test_kline_plugin_on_a_historical_replay_publishes_the_batch_bars(journal: Path,
                                                                      if_ticks: np.ndarray) -> None:
    host = DaemonHost("engine", SuiteConfig())
    seen = Collector()
    host.bus.subscribe(EventType.BAR, seen)
    kline = host.plugins.load("kline", "kline", {"periods": ["1m", "5m", "1d"], "grace_s": 1.0})
    replay = host.plugins.load("replay", "replay", {"journals": ["md"], "directory": str(journal),
                                                    "mode": "historical"})
    assert kline.state is PluginState.RUNNING, kline.error
    assert replay.state is PluginState.RUNNING, replay.error
    try:
        while replay.instance is not None and not replay.instance.finished:
            replay.instance.poll()
        periods = parse_periods(["1m", "5m", "1d"])
        # no flush: the data clock's TIMERs (the post-close snapshots) closed every bar
        assert canonical(seen.records, periods).tobytes() == batch_bars(if_ticks, periods).tobytes()
        metrics = {(family.name, sample.labels.get("period", "")): sample.value
                   for family in kline.instance.metrics() for sample in family.samples}  # type: ignore[union-attr]
        assert metrics[("hft_kline_bars", "1m")] == 240 and metrics[("hft_kline_bars", "1d")] == 1
        assert metrics[("hft_kline_late_ticks", "")] == 0
        assert metrics[("hft_kline_ignored_ticks", "")] == 2
    finally:
        host.plugins.stop_all()


def test_the_engines_plugins_share_one_product_table() -> None:
    host = DaemonHost("engine", SuiteConfig())
    kline = host.plugins.load("kline", "kline", {"periods": ["1m"]})
    again = host.plugins.load("kline2", "kline", {"periods": ["5m"]})
    try:
        assert kline.instance.builder.products is again.instance.builder.products is products()  # type: ignore[union-attr]
        assert product_of("rb2105").exchange == "SHFE"  # type: ignore[union-attr]
        assert product_of("XX2101") is None and product_of("2101") is None
    finally:
        host.plugins.stop_all()


def test_kline_plugin_refuses_a_bad_config() -> None:
    host = DaemonHost("engine", SuiteConfig())
    entry = host.plugins.load("kline", "kline", {"periods": ["1m", "7m"]})
    assert entry.state is PluginState.FAILED and "7m" in entry.error
    entry = host.plugins.load("kline2", "kline", {"periods": ["1m"], "grace": 1})
    assert entry.state is PluginState.FAILED and "grace" in entry.error
    host.plugins.stop_all()


def test_empty_records_make_an_empty_batch() -> None:
    assert len(build_bars(empty(EventType.MARKET_DATA, 0), PRODUCTS, ALL)) == 0


def test_a_live_builder_joining_mid_day_does_not_dump_the_days_volume_into_its_first_bar(
        if_ticks: np.ndarray) -> None:
    """An engine restarted at 10:00 sees the first tick's cumulative volume (everything since
    09:29): with late_join_baseline that tick is a baseline, so the 10:00 bar holds only
    what traded from it on; without, the day counts from zero as for complete history."""
    from_ten = if_ticks[if_ticks["update_ms"] >= 10 * 3_600_000]
    minute = parse_periods(["1m"])

    def first_bar_volume(baseline: bool) -> int:
        bars: list[tuple[int, int]] = []
        builder = BarBuilder(ProductTable.load(), minute,
                             lambda b: bars.append((int(b["start_ns"]), int(b["volume"]))),
                             late_join_baseline=baseline)
        for tick in from_ten:
            builder.on_tick(tick)
        builder.flush()
        return bars[0][1]

    in_ten = from_ten[from_ten["update_ms"] < 10 * 3_600_000 + 60_000]
    assert first_bar_volume(True) == in_ten["volume"][-1] - in_ten["volume"][0]
    assert first_bar_volume(False) == in_ten["volume"][-1]
