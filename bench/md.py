"""``bench import``, ``bench replay``, ``bench recorder``: the market-data path, file or feed to bus.

- ``import``: ticks/s of :func:`import_files` on the real IF day (27,955 CTP snapshots) into a
  fresh journal, and of :func:`read_ticks` alone (the CSV parse and normalization), so the
  journal's share is the difference. No peer: nothing else reads this CSV into a journal.
- ``replay``: the Replay plugin in historical mode, unpaced, inside a DaemonHost that is not
  started (its poller is called in a loop, as the host's loop would), over a journal of
  synthesized ticks ``TICK_STEP_NS`` apart (about the whole market's tick rate, so a TIMER
  every 200 ticks at the default 100 ms). ``raw``: no subscriber, the replay and bus cost
  alone; ``subscriber``: one handler that reads ``last_price``. The peer is vn.py's
  EventEngine pushing the same number of TickData events to the same kind of handler, in the
  same run; it starts from objects in memory, we from a journal on disk.
- ``recorder``: hft_md's write path. ``callback``: in one process, what
  ``OnRtnDepthMarketData`` does per tick (stamp, RawStructReader on a real openctp struct,
  Recorder.on_depth: normalize, pack into the journal slot, commit, snapshot update), against
  the DESIGN budget of 5 us; the baseline reads the fields through the SWIG getters.
  ``visible``: the same callback paced like ``bench ipc``, and a spawned busy reader of the
  md journal taking ``time_ns() - ts_ns``: the recorder stamps ``ts_ns`` with the receive
  time it is given, ``time.time_ns()`` as the CTP adapter does, one clock for every process.

The IF day is the repository's copy (``tests/data``), or the file ``TICKS_ENV`` names.
"""

from __future__ import annotations

import csv
import itertools
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from datetime import datetime
from multiprocessing.connection import Connection
from pathlib import Path
from typing import Any

import numpy as np
from openctp_ctp import mdapi
from vnpy.event import Event, EventEngine
from vnpy.trader.constant import Exchange
from vnpy.trader.event import EVENT_TICK
from vnpy.trader.object import TickData

from hft.bench.common import (
    SPAWN,
    BenchError,
    Result,
    check_complete,
    child,
    median_ns_per_op,
    median_rate,
    percentiles,
    receive,
    result,
    sample_tick,
    temp_dir,
    ticks_file,
    vnpy_burst,
    wait_ready,
    wait_until,
)
from hft.daemons.engine.replay import Replay
from hft.daemons.md.csvfile import read_ticks
from hft.daemons.md.ctpstruct import RawStructReader
from hft.daemons.md.depth import DEPTH_FIELDS, EMPTY_PRICE, TEXT_FIELDS, DepthValues
from hft.daemons.md.importer import import_files
from hft.daemons.md.recorder import Recorder
from hft.daemons.refdata.instruments import InstrumentTable, ProductTable
from hft.daemons.runtime.config import SuiteConfig
from hft.daemons.runtime.events import EventType
from hft.daemons.runtime.host import DaemonHost
from hft.daemons.runtime.journal import JournalReader, JournalWriter
from hft.daemons.runtime.plugins import PluginState

"""Path of the IF day CSV, when it is not the repository's copy in ``tests/data``."""
TRADING_DAY = 20210104
TICK_STEP_NS = 500_000
"""Replay journal: ticks this far apart (the whole market: ~800 contracts, 2-4 ticks/s each)."""
REPLAY_T0_NS = 1609723800 * 10**9  # 2021-01-04 09:30:00 +08:00
WRITE_BATCH = 4096
PEER = ("vnpy.event.EventEngine (queue.Queue + engine thread): put(Event(EVENT_TICK, "
        "TickData)) from memory, the same handler")
SWIG = "SWIG attribute getters: getattr(struct, name) per field, texts encoded, then on_depth"
_MARKET_DATA = int(EventType.MARKET_DATA)
_TIMER = int(EventType.TIMER)
_DRAIN_TIMEOUT_S = 120.0
_RECORD_TIMEOUT_S = 10.0  # a reader that waits this long for one record has lost the writer


# --- import ----------------------------------------------------------------------------------

def run_import(quick: bool) -> list[Result]:
    """The whole import (parse, sort, journal) and the parse alone, on the IF day."""
    path = ticks_file()
    repeats = 1 if quick else 5
    instruments = InstrumentTable(ProductTable.load())
    n = len(read_ticks(path, instruments))  # also warms the file cache and the instrument
    names = (f"import{i}" for i in itertools.count())
    with temp_dir("import") as directory:
        imported = median_rate(lambda: _import(path, directory, next(names), instruments, n),
                               n, repeats)
    parsed = median_rate(lambda: _parse(path, instruments, n), n, repeats)
    return [result(
        "import", {"ticks_per_s": imported, "parse_ticks_per_s": parsed}, quick=quick,
        params={"n": n, "repeats": repeats, "file": path.name,
                "journal": "a new one per repeat, in the default temp dir",
                "parse": "read_ticks alone: CSV rows -> normalized records, nothing written"},
    )]


def _import(path: Path, directory: Path, name: str, instruments: InstrumentTable, n: int) -> int:
    with _deleted_afterwards(directory, name):
        start = time.perf_counter_ns()
        imported = import_files([path], directory, name, instruments)
        elapsed = time.perf_counter_ns() - start
    _check_count("import", imported.ticks, n)
    return elapsed


def _parse(path: Path, instruments: InstrumentTable, n: int) -> int:
    start = time.perf_counter_ns()
    ticks = read_ticks(path, instruments)
    elapsed = time.perf_counter_ns() - start
    _check_count("read_ticks", len(ticks), n)
    return elapsed


@contextmanager
def _deleted_afterwards(directory: Path, name: str) -> Iterator[None]:
    """A journal's files go as soon as it is measured: each segment maps 400 MB."""
    try:
        yield
    finally:
        for path in directory.glob(f"{name}.*"):
            path.unlink()


def _check_count(what: str, count: int, n: int) -> None:
    if count != n:
        raise BenchError(f"{what} handled {count} ticks, expected {n}")


# --- replay ----------------------------------------------------------------------------------

class _LastPrice:
    """The one trivial subscriber, the same on both sides: keep the last price, count, and
    note when the last expected tick arrived (vn.py's engine thread needs the signal)."""

    def __init__(self, expected: int) -> None:
        self.expected = expected
        self.count = 0
        self.price = 0.0
        self.done = threading.Event()

    def on_record(self, record: np.void) -> None:
        self.price = record["last_price"]
        self.count += 1
        if self.count == self.expected:
            self.done.set()

    def on_event(self, event: Event) -> None:
        self.price = event.data.last_price
        self.count += 1
        if self.count == self.expected:
            self.done.set()


def run_replay(quick: bool) -> list[Result]:
    """Raw, with one subscriber, and vn.py's engine with the same subscriber."""
    n = 100_000 if quick else 1_000_000
    repeats = 3
    with temp_dir("replay") as directory:
        _write_ticks(directory, "md", n)
        timers: list[int] = []
        raw = median_rate(lambda: _replay(directory, n, None, timers), n, repeats)
        subscribed = median_rate(lambda: _replay(directory, n, _LastPrice(n), timers), n,
                                 repeats)
    peer = _engine_rate(n, repeats)
    params = {"n": n, "repeats": repeats, "mode": "historical, speed 0 (as fast as possible)",
              "record": "synthesized MARKET_DATA, one instrument",
              "tick_step_us": TICK_STEP_NS / 1000, "timer_events": timers[0],
              "host": "DaemonHost not started; the plugin's poll() called in a loop"}
    return [
        result("replay.raw", {"ticks_per_s": raw}, quick=quick,
               params={**params, "subscribers": 0}, target={"ticks_per_s_min": 1_000_000.0}),
        result("replay.subscriber", {"ticks_per_s": subscribed}, quick=quick,
               params={**params, "subscribers": 1, "handler": "reads last_price",
                       "peer_n": n},
               baseline=(PEER, {"ticks_per_s": peer}), ratio=subscribed / peer,
               target={"ticks_per_s_min": 300_000.0}),
    ]


def _write_ticks(directory: Path, name: str, n: int) -> None:
    """``n`` ticks of one instrument, ``TICK_STEP_NS`` apart."""
    batch = np.repeat(sample_tick(), WRITE_BATCH)
    with JournalWriter(directory, name, trading_day=TRADING_DAY) as writer:
        for done in range(0, n, WRITE_BATCH):
            size = min(WRITE_BATCH, n - done)
            times = REPLAY_T0_NS + np.arange(done, done + size, dtype=np.int64) * TICK_STEP_NS
            batch["ts_ns"][:size] = batch["exchange_ts_ns"][:size] = times
            writer.append_batch(batch[:size])


def _replay(directory: Path, n: int, subscriber: _LastPrice | None, timers: list[int]) -> int:
    """One historical replay of journal ``md`` to its end; appends the TIMERs it published."""
    host = DaemonHost("engine", SuiteConfig())
    if subscriber is not None:
        host.bus.subscribe(_MARKET_DATA, subscriber.on_record)
    entry = host.plugins.load("replay", "replay", {
        "journals": ["md"], "directory": str(directory), "mode": "historical"})
    plugin = entry.instance
    if entry.state is not PluginState.RUNNING or not isinstance(plugin, Replay):
        raise BenchError(f"the replay plugin did not start: {entry.error}")
    try:
        poll = plugin.poll
        start = time.perf_counter_ns()
        while not plugin.finished:
            poll()
        elapsed = time.perf_counter_ns() - start
    finally:
        host.plugins.stop_all()
    _check_count("replay", plugin.published, n)
    if subscriber is not None:
        _check_count("the subscriber", subscriber.count, n)
    timers.append(host.bus.published[_TIMER])
    return elapsed


def _engine_rate(n: int, repeats: int) -> float:
    tick = TickData(gateway_name="CTP", symbol="IF2101", exchange=Exchange.CFFEX,
                    datetime=datetime.now(), last_price=5298.0)
    event = Event(EVENT_TICK, tick)
    engine = EventEngine()
    engine.start()
    try:
        return median_rate(lambda: _engine_burst(engine, event, n), n, repeats)
    finally:
        engine.stop()  # joins its timer thread: up to its 1 s interval, outside every timing


def _engine_burst(engine: EventEngine, event: Event, n: int) -> int:
    subscriber = _LastPrice(n)
    return vnpy_burst(engine, EVENT_TICK, event, subscriber.on_event, subscriber, n,
                      _DRAIN_TIMEOUT_S)


# --- recorder --------------------------------------------------------------------------------

Read = Callable[[Any], DepthValues]
def run_recorder(quick: bool) -> list[Result]:
    """The callback's cost in process (ours and the SWIG getters'), then its latency to a
    reader in another process."""
    path = ticks_file()
    n = 5_000 if quick else 27_955
    n_visible = 2_000 if quick else 20_000
    repeats = 3
    interval_ns = 200_000
    warmup = 50
    structs = ctp_structs(path, max(n, n_visible))
    instruments = InstrumentTable(ProductTable.load())
    raw = RawStructReader(mdapi.CThostFtdcDepthMarketDataField, DepthValues)
    with temp_dir("recorder") as directory, \
            temp_dir("recorder", shared_memory=True) as shm:
        recorder = _RecorderFactory(directory, shm, instruments)
        ours = _callback_figures(recorder, raw.read, structs[:n], repeats)
        theirs = _callback_figures(recorder, _read_by_attributes, structs[:n], repeats)
        visible = _visible_latency(recorder, raw.read, structs[:n_visible], interval_ns)
    params = {"n": n, "repeats": repeats, "file": path.name,
              "struct": "openctp_ctp CThostFtdcDepthMarketDataField, one per IF-day row",
              "received_ns": "time.time_ns() at callback entry, as the CTP adapter stamps it",
              "snapshot": "on, in /dev/shm", "journal": "a new one per repeat, on disk",
              "stale": "every tick is flagged STALE (2021 data, today's clock), and kept"}
    return [
        result("recorder.callback", ours, quick=quick,
               params={**params, "read": "RawStructReader (one string_at + one struct unpack)"},
               baseline=(SWIG, theirs), ratio=theirs["p50_us"] / ours["p50_us"],
               target={"p50_us_max": 5.0}),
        result("recorder.visible", percentiles(visible[warmup:]), quick=quick,
               params={**params, "n": n_visible, "repeats": 1, "warmup_dropped": warmup,
                       "interval_us": interval_ns / 1000, "reader": "spawned child, busy",
                       "clock": "time_ns: received_ns (ts_ns) -> reader's next() returned",
                       "budget_p50_us": "5 (callback -> committed) + 2 (reader sees, spin)"}),
    ]


def ctp_structs(path: Path, count: int) -> list[Any]:
    """The first ``count`` snapshots of ``path`` as real openctp structs; a field the file
    lacks is set as CTP sends it (an empty price is EMPTY_PRICE, DBL_MAX; a volume 0)."""
    with path.open(newline="", encoding="utf-8") as handle:
        rows = list(itertools.islice(csv.DictReader(handle), count))
    if len(rows) < count:
        raise BenchError(f"{path} has {len(rows)} ticks, the benchmark needs {count}")
    probe = mdapi.CThostFtdcDepthMarketDataField()
    kinds = [(name, type(getattr(probe, name))) for name in DEPTH_FIELDS]
    structs = []
    for row in rows:
        depth = mdapi.CThostFtdcDepthMarketDataField()
        for name, kind in kinds:
            text = row.get(name) or ""
            if kind is str:
                setattr(depth, name, text)
            else:
                setattr(depth, name, kind(text) if text else EMPTY_PRICE if kind is float else 0)
        structs.append(depth)
    return structs


def _read_by_attributes(depth: Any) -> DepthValues:
    """The naive read: one SWIG property call per field."""
    values = [getattr(depth, name) for name in DEPTH_FIELDS]
    for position in _TEXT_POSITIONS:  # the normalizer takes the texts as bytes
        values[position] = values[position].encode()
    return DepthValues._make(values)


_TEXT_POSITIONS = [DEPTH_FIELDS.index(name) for name in TEXT_FIELDS]


class _RecorderFactory:
    """Fresh recorders (journal on disk, snapshot in /dev/shm), as hft_md opens one per feed."""

    def __init__(self, directory: Path, shm: Path, instruments: InstrumentTable) -> None:
        self.directory, self.shm, self.instruments = directory, shm, instruments
        self._names = (f"md{i}" for i in itertools.count())

    @contextmanager
    def __call__(self) -> Iterator[Recorder]:
        name = next(self._names)
        with _deleted_afterwards(self.directory, name):
            recorder = Recorder.open("bench", self.directory, name, self.instruments,
                                     snapshot_path=self.shm / name, trading_day=TRADING_DAY)
            try:
                yield recorder
            finally:
                recorder.close()
                (self.shm / name).unlink(missing_ok=True)


def _callback_figures(recorder: _RecorderFactory, read: Read, structs: Sequence[Any],
                      repeats: int) -> dict[str, float]:
    """Percentiles of every tick of every repeat, the mean per tick (median of the repeats),
    and the read alone."""
    runs = [_callback_samples(recorder, read, structs) for _ in range(repeats)]
    n = len(structs)
    return {**percentiles(np.concatenate(runs)),
            "ns_per_tick": float(np.median([run.mean() for run in runs])),
            "read_ns_per_tick": median_ns_per_op(lambda: _read_all(read, structs), n, repeats)}


def _callback_samples(recorder: _RecorderFactory, read: Read, structs: Sequence[Any]) -> np.ndarray:
    """Each tick timed on its own: stamp, read the struct, record it (the adapter's callback)."""
    samples = np.empty(len(structs), np.int64)
    with recorder() as opened:
        on_depth, clock, stamp = opened.on_depth, time.perf_counter_ns, time.time_ns
        for i, depth in enumerate(structs):
            started = clock()
            on_depth(read(depth), stamp())
            samples[i] = clock() - started
        _check_count("the recorder", opened.normalizer.stats.ticks, len(structs))
    return samples


def _read_all(read: Read, structs: Sequence[Any]) -> int:
    start = time.perf_counter_ns()
    for depth in structs:
        read(depth)
    return time.perf_counter_ns() - start


def _visible_latency(recorder: _RecorderFactory, read: Read, structs: Sequence[Any],
                     interval_ns: int) -> np.ndarray:
    """The parent plays the CTP callback every ``interval_ns``; a child reads the journal."""
    n = len(structs)
    ready_in, ready_out = SPAWN.Pipe(duplex=False)
    results_in, results_out = SPAWN.Pipe(duplex=False)
    with recorder() as opened, \
            child(_visible_reader, str(opened.writer.directory), opened.writer.name, n,
                  ready_out, results_out) as process:
        wait_ready(ready_in, process, "recorder reader")
        on_depth, stamp, due = opened.on_depth, time.time_ns, time.monotonic_ns()
        for depth in structs:
            due += interval_ns
            wait_until(due)
            on_depth(read(depth), stamp())
        samples: np.ndarray = receive(results_in, process, "recorder reader",
                                      _RECORD_TIMEOUT_S + 10.0)
        _check_count("the recorder", opened.normalizer.stats.ticks, n)
    check_complete(samples, n, "md journal reader")
    return samples


def _visible_reader(directory: str, name: str, n: int, ready: Connection,
                    results: Connection) -> None:
    """Child: busy-read ``n`` ticks of the md journal, send back ``time_ns() - ts_ns`` of each."""
    samples = np.zeros(n, np.int64)
    clock, count = time.time_ns, 0
    with JournalReader(directory, name, start="end", wait_mode="busy") as reader:
        ready.send(True)
        next_record = reader.next
        while count < n:
            record = next_record(_RECORD_TIMEOUT_S)
            now = clock()
            if record is None:
                break
            if reader.last_type == _MARKET_DATA:
                samples[count] = now - int(record["ts_ns"])
                count += 1
    results.send(samples[:count])
