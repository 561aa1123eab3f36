"""The live position book beside the gateway: commissions computed as a counter charges them
(open, close, close today; yesterday's lots closed first outside SHFE/INE), margin from the
fees, day rolls on the first record of a new trading day, and the position view the checks
read."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest

from hft.daemons.refdata.instruments import ProductTable
from hft.daemons.runtime.events import (
    Direction,
    EventType,
    Offset,
    OrderStatus,
    PosDirection,
    empty,
)
from hft.daemons.trade.fees import Fees
from hft.daemons.trade.livebook import LiveBook

FEES = Fees(open_per_lot=1.0, close_per_lot=2.0, close_today_per_lot=10.0, margin_rate=0.1)


def trade(book: LiveBook, day: int, instrument: str, direction: Direction, offset: Offset,
          volume: int, price: float, ref: int = 0) -> Any:
    record = empty(EventType.RTN_TRADE)[0]
    record["trading_day"], record["instrument"], record["account"] = day, instrument.encode(), b"a"
    record["direction"], record["offset"] = direction, offset
    record["volume"], record["price"], record["order_ref"] = volume, price, ref
    entry = book.fill(record)
    return book.record(entry, ts_ns=0, instrument_index=0)


def send(book: LiveBook, ref: int, direction: Direction, offset: Offset, volume: int) -> Any:
    """An ORDER_SEND of IF2101 for account a: the POS_UPDATE of the side it froze, or None."""
    order = empty(EventType.ORDER_SEND)[0]
    order["trading_day"], order["instrument"], order["account"] = 20210104, b"IF2101", b"a"
    order["order_ref"], order["direction"], order["offset"] = ref, direction, offset
    order["volume"], order["price"] = volume, 5000.0
    entry = book.freeze(order)
    return None if entry is None else book.record(entry, ts_ns=0, instrument_index=0)


def final(book: LiveBook, ref: int, status: OrderStatus, traded: int) -> Any:
    """An RTN_ORDER of order ``ref``: the POS_UPDATE of the side it released, or None."""
    record = empty(EventType.RTN_ORDER)[0]
    record["account"], record["order_ref"] = b"a", ref
    record["status"], record["volume_traded"] = status, traded
    entry = book.settle(record)
    return None if entry is None else book.record(entry, ts_ns=0, instrument_index=0)


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


def test_a_working_close_freezes_its_lots_until_its_fills_and_final_status_release_them() -> None:
    book = LiveBook(ProductTable.load(), {}, Fees())
    trade(book, 20210104, "IF2101", Direction.BUY, Offset.OPEN, 3, 5000.0)
    assert send(book, 1, Direction.BUY, Offset.OPEN, 1) is None  # an open freezes nothing
    frozen = send(book, 2, Direction.SELL, Offset.CLOSE, 2)
    assert (frozen["direction"], frozen["position"], frozen["frozen"]) == (PosDirection.LONG, 3, 2)
    filled = trade(book, 20210104, "IF2101", Direction.SELL, Offset.CLOSE, 1, 5010.0, ref=2)
    assert (filled["position"], filled["frozen"]) == (2, 1)  # the fill took a frozen lot
    assert final(book, 2, OrderStatus.NOT_TRADED, 1) is None  # still working
    cancelled = final(book, 2, OrderStatus.CANCELLED, 1)
    assert (cancelled["position"], cancelled["frozen"]) == (2, 0)
    assert send(book, 3, Direction.SELL, Offset.CLOSE, 5) is None  # beyond the lots held
    assert final(book, 3, OrderStatus.REJECTED, 0) is None  # it froze nothing to release


def test_a_final_status_before_the_last_fills_keeps_their_lots_frozen_for_them() -> None:
    book = LiveBook(ProductTable.load(), {}, Fees())
    trade(book, 20210104, "IF2101", Direction.SELL, Offset.OPEN, 4, 5000.0)
    send(book, 1, Direction.BUY, Offset.CLOSE, 3)
    trade(book, 20210104, "IF2101", Direction.BUY, Offset.CLOSE, 1, 4990.0, ref=1)
    # CTP reports ALL_TRADED before the other two lots' trades: they stay frozen for them
    assert final(book, 1, OrderStatus.ALL_TRADED, 3) is None
    last = trade(book, 20210104, "IF2101", Direction.BUY, Offset.CLOSE, 2, 4990.0, ref=1)
    assert (last["direction"], last["position"], last["frozen"]) == (PosDirection.SHORT, 1, 0)
    # an order cancelled untraded releases its lot at once
    send(book, 2, Direction.BUY, Offset.CLOSE, 1)
    assert final(book, 2, OrderStatus.CANCELLED, 0)["frozen"] == 0
