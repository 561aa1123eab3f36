"""The position book as the risk daemon keeps it live, beside the gateway.

Fills move the exact book (``book.py``), each with its commission from the product's fees
(``fees.Fees``: per lot and per turnover, open, close and close-today apart; CTP's
OnRtnTrade carries none, so the book computes it as a counter would); margins are the fees'
margin rate. Ticks mark the book; the first tick or fill of a new trading day rolls it (every
lot becomes yesterday's, at the settlement price last seen for its instrument, else its last
price). It hands out the POS_UPDATE record of a side that moved, and it is the position view
the pre-trade checks read (lots held, the day's PnL).
"""

from __future__ import annotations

from collections.abc import Mapping
from decimal import Decimal
from typing import Any

import numpy as np

from hft.daemons.refdata.instruments import ProductTable, product_code
from hft.daemons.runtime.events import (
    RTN_TRADE_DTYPE,
    TICK_DTYPE,
    EventType,
    Offset,
    PosDirection,
    empty,
    fields_struct,
)
from hft.daemons.trade.book import (
    MONEY_SCALE,
    PositionBook,
    PositionEntry,
    float_to_money,
    pack_pos_update,
)
from hft.daemons.trade.fees import Fees

_FILL = fields_struct(RTN_TRADE_DTYPE, ("trading_day", "instrument", "price", "volume",
                                        "direction", "offset", "account")).unpack_from
_MARK = fields_struct(TICK_DTYPE, ("trading_day", "instrument", "last_price",
                                   "settlement_price")).unpack_from


class LiveBook:
    """Fills, marks and day rolls into a PositionBook; POS_UPDATE records out."""

    def __init__(self, products: ProductTable, fees: Mapping[str, Fees],
                 default_fees: Fees) -> None:
        self.book = PositionBook(
            products, {code: Decimal(str(f.margin_rate)) for code, f in fees.items()},
            Decimal(str(default_fees.margin_rate)))
        self._fees, self._default_fees = dict(fees), default_fees
        self._instrument_fees: dict[str, Fees] = {}
        """Each instrument's fees, found once (not a product-code match per fill)."""
        self.trading_day = 0
        self._held: dict[bytes, str] = {}
        """Instruments the book has entries in: their id as the book spells it."""
        self._settlements: dict[bytes, float] = {}
        record = empty(EventType.POS_UPDATE)
        self._record, self._bytes = record[0], record.view(np.uint8).data

    def fill(self, trade: Any) -> PositionEntry:
        """Book one RTN_TRADE; BookError (naming why) for a fill the book cannot take, e.g. a
        close of lots it does not hold (the position predates this journal)."""
        day, key, price, volume, direction, offset, account = _FILL(trade)
        self.roll_to(day)
        instrument = self._held.get(key) or key.rstrip(b"\0").decode()
        contract = self.book.contract(instrument)
        owner = account.rstrip(b"\0").decode()
        commission = self._commission(owner, instrument, direction, offset, price, volume)
        entry = self.book.trade(owner, instrument, direction, offset, contract.ticks(price),
                                volume, float_to_money(commission))
        self._held[key] = instrument
        return entry

    def _commission(self, account: str, instrument: str, direction: int, offset: int,
                    price: float, volume: int) -> float:
        """What the counter charges for the fill, in CNY: a close of today's lots at the
        close-today rates (on SHFE/INE a close_today; elsewhere what yesterday's lots do not
        cover, as the book closes yesterday's first)."""
        contract = self.book.contract(instrument)
        fees = self._instrument_fees.get(instrument)
        if fees is None:
            fees = self._instrument_fees[instrument] = self._fees.get(
                product_code(instrument), self._default_fees)
        if offset == Offset.OPEN:
            return fees.open_commission(price, volume, contract.multiplier)
        if contract.split_close:
            today = volume if offset == Offset.CLOSE_TODAY else 0
        else:
            held = self.book.order_side(account, instrument, direction, offset)
            today = max(0, volume - held.yd_position)
        return fees.close_commission(price, today, volume - today, contract.multiplier)

    def mark(self, tick: Any) -> None:
        """Mark a held instrument at a MARKET_DATA record's last price; remember its
        settlement price for the day's roll."""
        day, key, last, settlement = _MARK(tick)
        if day > self.trading_day:
            self.roll_to(day)
        instrument = self._held.get(key)
        if instrument is None:
            return
        if settlement == settlement:
            self._settlements[key] = settlement
        if last == last:
            self.book.mark(instrument, self.book.contract(instrument).ticks(last))

    def roll_to(self, day: int) -> None:
        """A new trading day: mark at the settlements seen, then every lot is yesterday's."""
        if day <= self.trading_day:
            return
        if self.trading_day:
            for key, settlement in self._settlements.items():
                instrument = self._held[key]
                self.book.mark(instrument, self.book.contract(instrument).ticks(settlement))
            self.book.roll()
            self._settlements.clear()
        self.trading_day = day

    def record(self, entry: PositionEntry, *, ts_ns: int, instrument_index: int) -> Any:
        """The POS_UPDATE record of one side (a buffer reused by the next call)."""
        pack_pos_update(self._bytes, 0, entry, ts_ns=ts_ns, trading_day=self.trading_day,
                        instrument_index=instrument_index, source=0)
        return self._record

    # --- the position view of the pre-trade checks ---------------------------------------

    def lots(self, account: str, instrument: str) -> tuple[int, int]:
        """(long, short) lots ``account`` holds in ``instrument``."""
        long = short = 0
        for entry in self.book.entries_of(instrument):
            if entry.account == account:
                if entry.direction == PosDirection.LONG:
                    long = entry.position
                else:
                    short = entry.position
        return long, short

    def pnl(self, account: str) -> float:
        """The account's realized + floating PnL of the trading day, CNY (by date)."""
        money = sum(entry.close_profit_by_date + entry.position_profit
                    for entry in self.book.entries() if entry.account == account)
        return money / MONEY_SCALE

