"""The live position book beside the gateway: commissions computed as a counter charges them
(open, close, close today; yesterday's lots closed first outside SHFE/INE), margin from the
fees, day rolls on the first record of a new trading day, and the position view the checks
read."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest

from hft.daemons.refdata.instruments import ProductTable
from hft.daemons.runtime.events import Direction, EventType, Offset, PosDirection, empty
from hft.daemons.trade.fees import Fees
from hft.daemons.trade.livebook import LiveBook

FEES = Fees(open_per_lot=1.0, close_per_lot=2.0, close_today_per_lot=10.0, margin_rate=0.1)


def trade(book: LiveBook, day: int, instrument: str, direction: Direction, offset: Offset,
          volume: int, price: float) -> Any:
    record = empty(EventType.RTN_TRADE)[0]
    record["trading_day"], record["instrument"], record["account"] = day, instrument.encode(), b"a"
    record["direction"], record["offset"] = direction, offset
    record["volume"], record["price"] = volume, price
    entry = book.fill(record)
    return book.record(entry, ts_ns=0, instrument_index=0)


def tick(book: LiveBook, day: int, instrument: str, last: float,
         settlement: float = np.nan) -> None:
    record = empty(EventType.MARKET_DATA)[0]
    record["trading_day"], record["instrument"] = day, instrument.encode()
    record["last_price"], record["settlement_price"] = last, settlement
    book.mark(record)


def test_cffex_closes_take_yesterdays_lots_first_and_are_charged_so() -> None:
    book = LiveBook(ProductTable.load(), {"IF": FEES}, Fees())
    trade(book, 20210104, "IF2101", Direction.BUY, Offset.OPEN, 2, 5000.0)
    tick(book, 20210104, "IF2101", 5010.0, settlement=5010.0)
    tick(book, 20210105, "IF2101", 5020.0)  # a new day: the 2 lots are yesterday's
    trade(book, 20210105, "IF2101", Direction.BUY, Offset.OPEN, 1, 5020.0)  # 1 x 1
    closed = trade(book, 20210105, "IF2101", Direction.SELL, Offset.CLOSE, 2, 5030.0)  # 2 x 2
    assert (closed["position"], closed["yd_position"], closed["today_position"]) == (1, 0, 1)
    last = trade(book, 20210105, "IF2101", Direction.SELL, Offset.CLOSE, 1, 5030.0)  # 1 x 10
    assert last["commission"] == pytest.approx(1 + 4 + 10)
    assert last["position"] == 0
    assert book.lots("a", "IF2101") == (0, 0)


def test_shfe_close_today_is_charged_at_the_close_today_rate() -> None:
    book = LiveBook(ProductTable.load(), {}, FEES)  # rb takes the default fees
    trade(book, 20210104, "rb2105", Direction.SELL, Offset.OPEN, 3, 4000.0)  # 3 x 1
    record = trade(book, 20210104, "rb2105", Direction.BUY, Offset.CLOSE_TODAY, 2, 3990.0)
    assert record["commission"] == pytest.approx(3 + 2 * 10)
    assert record["direction"] == PosDirection.SHORT and record["position"] == 1
    # margin: the fees' rate x the position's cost (1 lot x 4000 x 10)
    assert record["margin"] == pytest.approx(0.1 * 4000 * 10)
    assert book.lots("a", "rb2105") == (0, 1)
    # the day's PnL: 2 lots closed 10 below their open price, short: +2 x 10 x 10
    tick(book, 20210104, "rb2105", 4000.0)
    assert book.pnl("a") == pytest.approx(200.0)
