"""A simulated futures market that produces CTP-like depth snapshots.

Each instrument follows its product's session template and the trading calendar: snapshots
carry exchange times inside the sessions only (the call-auction print included), a night
session only where the calendar has one, prices on the product's tick grid inside the limit
band, and cumulative Volume/Turnover that restart each trading day while OpenInterest carries
over, like the real fields. Snapshots come every ``interval_ms`` per instrument (CTP sends
about two a second), on a simulated exchange clock that skips the hours when every instrument
is closed, so a demo always has data. Everything is deterministic for a given seed and start.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterator
from dataclasses import dataclass

import numpy as np

from hft.daemons.md.depth import EMPTY_PRICE, DepthValues
from hft.daemons.refdata import calendar
from hft.daemons.refdata.clock import CHINA, MINUTE_MS, is_night, tday_minute
from hft.daemons.refdata.instruments import Instrument

_MAX_CLOSED_MS = 14 * 86_400_000
_LIMIT_BAND = 0.08  # daily limit: +-8% of the previous settlement


@dataclass
class _Book:
    """One instrument's state across snapshots."""

    instrument: Instrument
    rng: np.random.Generator
    ticks: int  # last price in price ticks (integers keep prices on the grid)
    pre_settlement: int
    pre_close: int
    open_interest: int
    trading_day: int = 0
    open: int = 0
    high: int = 0
    low: int = 0
    volume: int = 0
    turnover: float = 0.0
    pre_open_interest: int = 0
    upper: int = 0
    lower: int = 0


class SimulatedMarket:
    """Generates snapshots for ``instruments`` from exchange time ``start`` on."""

    def __init__(self, instruments: list[Instrument], start: dt.datetime, *, seed: int = 0,
                 interval_ms: int = 500, start_prices: dict[str, float] | None = None) -> None:
        if interval_ms < 1:
            raise ValueError(f"interval_ms must be >= 1, not {interval_ms}")
        self.interval_ms = interval_ms
        self.now_ms = _to_ms(start) // interval_ms * interval_ms
        """The simulated exchange clock, ms since the epoch."""
        rng = np.random.default_rng(seed)
        prices = start_prices or {}
        self._books = []
        for instrument in instruments:
            tick = instrument.product.price_tick
            price = prices.get(instrument.id, _DEFAULT_PRICES.get(instrument.product.code, 5000.0))
            ticks = round(price / tick)
            self._books.append(_Book(instrument, np.random.default_rng(rng.integers(2**32)), ticks,
                                     ticks, ticks, int(rng.integers(20_000, 200_000))))

    def advance(self, until_ms: int) -> Iterator[DepthValues]:
        """Snapshots with exchange times up to ``until_ms``, in time order. Closed time takes
        no time: when every instrument is closed the clock jumps to the next minute where one
        opens, even past ``until_ms`` (at most a fortnight ahead)."""
        horizon = max(self.now_ms, until_ms) + _MAX_CLOSED_MS
        while self.now_ms < horizon:
            local = dt.datetime.fromtimestamp(self.now_ms / 1000, CHINA)
            action_day = calendar.to_day(local.date())
            day_ms = (local.hour * 3600 + local.minute * 60 + local.second) * 1000 + local.microsecond // 1000
            trading_day = _trading_day(action_day, day_ms)
            books = [b for b in self._books if self._is_open(b.instrument, trading_day, action_day, day_ms)]
            if not books:  # nothing open: on to the next whole minute
                self.now_ms += MINUTE_MS - day_ms % MINUTE_MS
                continue
            if self.now_ms > until_ms:
                return
            for book in books:
                yield self._snapshot(book, trading_day, action_day, day_ms)
            self.now_ms += self.interval_ms

    def _is_open(self, instrument: Instrument, trading_day: int, action_day: int, day_ms: int) -> bool:
        """In a section; or the first snapshot of an auction or section-end minute (the
        exchange prints once there: 09:29:00.4, 11:30:00.4 ...)."""
        if not trading_day or not calendar.is_trading_day(trading_day):
            return False
        session = instrument.product.session
        minute = tday_minute(day_ms // MINUTE_MS)
        bar = session.bar_of_minute[minute]
        if bar < 0:
            return False
        if session.bar_starts[bar] != minute and day_ms % MINUTE_MS >= self.interval_ms:
            return False
        # a night session runs only on the evening the calendar gives it (Friday for Monday)
        return not is_night(day_ms) or (calendar.has_night_session(trading_day)
                             and calendar.action_day(trading_day, day_ms) == action_day)

    def _snapshot(self, book: _Book, trading_day: int, action_day: int, day_ms: int) -> DepthValues:
        if book.trading_day != trading_day:
            self._new_trading_day(book, trading_day)
        rng = book.rng
        trades = int(rng.poisson(3.0))
        if trades:
            book.ticks = min(book.upper, max(book.lower, book.ticks + int(rng.integers(-2, 3))))
            if book.volume == 0:
                book.open = book.high = book.low = book.ticks
            lots = trades * int(rng.integers(1, 6))
            book.volume += lots
            tick_size = book.instrument.product.price_tick
            book.turnover += book.ticks * tick_size * lots * book.instrument.product.multiplier
            book.open_interest = max(0, book.open_interest + int(rng.integers(-lots, lots + 1)))
            # the session extremes may trade between two snapshots, as in a real feed
            book.high = max(book.high, book.ticks + int(rng.random() < 0.05))
            book.low = min(book.low, book.ticks - int(rng.random() < 0.05))
        tick = book.instrument.product.price_tick
        traded = book.volume > 0

        def price(ticks: int) -> float:
            return round(ticks * tick, 6)

        empty = EMPTY_PRICE
        bid1, bid2, bid3, bid4, bid5 = (
            price(book.ticks - 1 - level) if book.ticks - 1 - level >= book.lower else empty
            for level in range(5))
        ask1, ask2, ask3, ask4, ask5 = (
            price(book.ticks + 1 + level) if book.ticks + 1 + level <= book.upper else empty
            for level in range(5))
        bv1, bv2, bv3, bv4, bv5, av1, av2, av3, av4, av5 = (
            int(v) for v in rng.integers(1, 60, size=10))
        update = dt.timedelta(milliseconds=day_ms)
        hours, rest = divmod(int(update.total_seconds()), 3600)
        multiplier = book.instrument.product.multiplier
        return DepthValues(
            TradingDay=str(trading_day).encode(), ActionDay=str(action_day).encode(),
            UpdateTime=f"{hours:02d}:{rest // 60:02d}:{rest % 60:02d}".encode(),
            UpdateMillisec=day_ms % 1000,
            InstrumentID=book.instrument.id.encode(), ExchangeID=book.instrument.exchange_id,
            LastPrice=price(book.ticks), OpenPrice=price(book.open) if traded else empty,
            HighestPrice=price(book.high) if traded else empty,
            LowestPrice=price(book.low) if traded else empty,
            ClosePrice=empty, SettlementPrice=empty, PreClosePrice=price(book.pre_close),
            PreSettlementPrice=price(book.pre_settlement), UpperLimitPrice=price(book.upper),
            LowerLimitPrice=price(book.lower),
            AveragePrice=book.turnover / (book.volume * multiplier) if traded else empty,
            Volume=book.volume, Turnover=book.turnover, OpenInterest=float(book.open_interest),
            PreOpenInterest=float(book.pre_open_interest),
            BidPrice1=bid1, BidPrice2=bid2, BidPrice3=bid3, BidPrice4=bid4, BidPrice5=bid5,
            AskPrice1=ask1, AskPrice2=ask2, AskPrice3=ask3, AskPrice4=ask4, AskPrice5=ask5,
            BidVolume1=bv1, BidVolume2=bv2, BidVolume3=bv3, BidVolume4=bv4, BidVolume5=bv5,
            AskVolume1=av1, AskVolume2=av2, AskVolume3=av3, AskVolume4=av4, AskVolume5=av5,
        )

    @staticmethod
    def _new_trading_day(book: _Book, trading_day: int) -> None:
        """Cumulative fields restart; yesterday's close becomes the reference prices."""
        if book.trading_day:
            book.pre_close = book.pre_settlement = book.ticks
        book.trading_day = trading_day
        book.volume, book.turnover = 0, 0.0
        book.pre_open_interest = book.open_interest
        band = max(1, round(book.pre_settlement * _LIMIT_BAND))
        book.upper, book.lower = book.pre_settlement + band, book.pre_settlement - band
        book.open = book.high = book.low = book.ticks


def _trading_day(action_day: int, day_ms: int) -> int:
    try:
        return calendar.trading_day_of(action_day, day_ms)
    except ValueError:
        return 0


def _to_ms(moment: dt.datetime) -> int:
    return int(moment.timestamp() * 1000)


_DEFAULT_PRICES = {"IF": 4000.0, "IC": 6000.0, "IH": 2700.0, "rb": 3500.0, "cu": 75000.0,
                   "ag": 7500.0, "au": 550.0, "SR": 5500.0, "m": 3000.0, "i": 800.0}
