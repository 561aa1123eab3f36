"""Replay: the engine plugin over md journals, for every process that consumes ticks.

``mode`` picks one of the two replays of replays.py (each a reference path and a declared
fast path publishing the same events):

- ``live``: follow the writers from their current end with the lowest latency the wait mode
  allows. With one journal and the ``block`` wait mode the host's idle loop sleeps on the
  journal's futex, so a commit wakes the engine at once.
- ``historical``: from ``start`` (a time; default the oldest record kept) to ``until`` or the
  end, as fast as possible (``speed`` 0) or paced at ``speed`` x real time.

A record goes on the bus as the journal's own view (no copy), except from a historical merge
of several journals (a copy). Several journals are merged in ``ts_ns`` order. TIMER events
carry the data's clock so consumers close bars on time: live from the plugin's timer (the
feed's clock), historically whenever the replayed time crosses a ``timer_interval_ms``
boundary, so a backtest closes bars exactly as live trading would.
"""

from __future__ import annotations

import datetime as dt
import time
from collections.abc import Iterable
from pathlib import Path
from typing import Any, Literal

from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from pydantic import BaseModel, ConfigDict, Field

from hft.daemons.engine.replays import HistoricalReplay, LiveReplay, TimerPublisher
from hft.daemons.refdata.clock import CHINA
from hft.daemons.runtime.journal import (
    ATTACH_INTERVAL_S,
    JournalReader,
    if_there,
    seq_at_time,
)
from hft.daemons.runtime.plugins import Plugin, PluginContext
from hft.daemons.runtime.waitmode import WaitMode


class ReplayConfig(BaseModel):
    model_config = ConfigDict(extra="forbid")

    journals: list[str] = Field(default=["md-sim"], min_length=1)
    """md journal names, in ``directory`` (default: the suite's journal directory)."""
    directory: Path | None = None
    mode: Literal["live", "historical"] = "live"
    start: dt.datetime | None = None
    """historical: the first record time (default: the oldest record kept)."""
    until: dt.datetime | None = None
    """historical: stop before this time (default: at the end of the journals)."""
    speed: float = Field(default=0.0, ge=0.0)
    """historical: 0 = as fast as possible, N = N x real time."""
    instruments: list[str] = []
    """Only ticks of these instruments (default: all)."""
    batch: int = Field(default=4096, ge=1)
    """Records per poll at most, so control commands and timers stay responsive."""
    timer_interval_ms: int = Field(default=100, ge=1)
    wait_mode: WaitMode = WaitMode.BLOCK


class Replay(Plugin):
    """Engine plugin: md journals -> MARKET_DATA, FEED_GAP and TIMER events on the bus, through
    a :class:`LiveReplay` or a :class:`HistoricalReplay` (replays.py) as ``mode`` says."""

    Config = ReplayConfig

    def init(self, ctx: PluginContext) -> None:
        super().init(ctx)
        self.config: ReplayConfig = ctx.config
        self.replay: LiveReplay | HistoricalReplay | None = None
        """None until a live replay finds its journals."""
        self._timer = TimerPublisher(ctx, self.config.timer_interval_ms)

    @property
    def published(self) -> int:
        return self.replay.published if self.replay else 0

    @property
    def lapped(self) -> int:
        return self.replay.lapped if self.replay else 0

    @property
    def finished(self) -> bool:
        """A historical replay reached ``until`` or the journals' end (never, live)."""
        return isinstance(self.replay, HistoricalReplay) and self.replay.finished

    def poll(self) -> int:
        """Run the replay's path once, as the host's poll loop does (which calls the replay
        directly): for driving a replay by hand, in tests and benchmarks."""
        return self.replay.poll() if self.replay else 0

    def start(self) -> None:
        config, ctx = self.config, self.ctx
        self._directory = config.directory or ctx.host.journal_dir
        if config.mode == "historical":  # history that is not there is an error
            start_ns = _ns(config.start) if config.start else None
            self.replay = HistoricalReplay(
                ctx, [self._open(name, _start_seq(self._directory, name, start_ns))
                      for name in config.journals],
                until_ns=_ns(config.until) if config.until else None, speed=config.speed,
                **self._common())
            ctx.add_poller(self.replay.poll)
            return
        ctx.call_every(config.timer_interval_ms / 1000, self._wall_timer)
        if not ctx.call_until(ATTACH_INTERVAL_S, self._attach):  # hft_md may start later
            ctx.log.warning("waiting for the md journals to appear",
                            extra={"journals": config.journals, "directory": str(self._directory)})

    def _common(self) -> dict[str, Any]:
        config = self.config
        return {"instruments": config.instruments, "batch": config.batch, "timer": self._timer}

    def _attach(self) -> bool:
        """Open every live journal once all exist, then start following them."""
        if self.replay is not None:
            return True
        readers = if_there(lambda: [self._open(name, "end") for name in self.config.journals],
                           self.ctx.log)
        if readers is None:
            return False  # not there yet (missing, or no segment): the timer tries again
        self.replay = LiveReplay(self.ctx, readers, **self._common())
        self.ctx.add_poller(self.replay.poll)
        if self.config.wait_mode is WaitMode.BLOCK:
            for reader in readers:
                self.ctx.wake_on(reader)
        self.ctx.log.info("following the md journals", extra={"journals": self.config.journals})
        return True

    def _open(self, name: str, start: int | str) -> JournalReader:
        return JournalReader(self._directory, name, wait_mode=self.config.wait_mode, start=start)

    def _wall_timer(self) -> None:
        """Live TIMER on the feed's clock (LiveReplay.data_now)."""
        now = time.time_ns()
        self._timer(self.replay.data_now(now) if isinstance(self.replay, LiveReplay) else now)

    def stop(self) -> None:
        for reader in self.replay.readers if self.replay else ():
            reader.close()

    def metrics(self) -> Iterable[Metric]:
        published = CounterMetricFamily("hft_replay_records", "Records replayed onto the bus")
        published.add_metric([], self.published)
        lapped = CounterMetricFamily("hft_replay_lapped_records",
                                     "Records lost because retention removed them first")
        lapped.add_metric([], self.lapped)
        lag = GaugeMetricFamily("hft_replay_lag_records", "Records committed but not read yet "
                                "(a replay reads up to a batch ahead)", labels=["journal"])
        if self.replay is not None:
            for name, reader in zip(self.config.journals, self.replay.readers, strict=True):
                lag.add_metric([name], reader.lag)
        return (published, lapped, lag)


def _start_seq(directory: Path, name: str, start_ns: int | None) -> int | str:
    return seq_at_time(directory, name, start_ns) if start_ns is not None else "begin"


def _ns(moment: dt.datetime) -> int:
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=CHINA)
    return int(moment.timestamp() * 1e9)
