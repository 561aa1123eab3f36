"""The position book as the risk daemon keeps it live, beside the gateway.

Fills move the exact book (``book.py``), each with its commission from the product's fees
(``fees.Fees``: per lot and per turnover, open, close and close-today apart; CTP's
OnRtnTrade carries none, so the book computes it as a counter would); margins are the fees'
margin rate. Ticks mark the book; the first tick or fill of a new trading day rolls it (every
lot becomes yesterday's, at the settlement price last seen for its instrument, else its last
price), and ``roll_to`` names the sides that moved, for the desk to publish. It hands out
the POS_UPDATE record of a side that moved, and it is the position view the pre-trade checks
read (lots held, the day's PnL).

Frozen lots, as a counter keeps them: a close order sent freezes the lots it will take
(``freeze``), each of its fills releases what it books, and its final status releases what
will never fill (``settle``: the volume it did not trade; CTP may report the final status
before the last trades, whose lots stay frozen until they come). A close the book cannot
cover (lots it does not hold: the position predates the journal) freezes nothing; the
counter judges it, and a fill the book cannot take is reported by the desk.
"""

from __future__ import annotations

from collections.abc import Mapping
from decimal import Decimal
from typing import Any

import numpy as np

from hft.daemons.refdata.instruments import ProductTable, product_code
from hft.daemons.runtime.events import (
    FINAL_STATUSES,
    ORDER_DTYPE,
    RTN_ORDER_DTYPE,
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
    BookError,
    PositionBook,
    PositionEntry,
    float_to_money,
    pack_pos_update,
)
from hft.daemons.trade.fees import Fees

# fields_struct reads fields in their record order
_FILL = fields_struct(RTN_TRADE_DTYPE, ("trading_day", "source", "instrument", "order_ref",
                                        "price", "volume", "direction", "offset",
                                        "account")).unpack_from
_CLOSE_ORDER = fields_struct(ORDER_DTYPE, ("trading_day", "source", "instrument", "order_ref",
                                           "volume", "direction", "offset",
                                           "account")).unpack_from
_MARK = fields_struct(TICK_DTYPE, ("trading_day", "instrument", "last_price",
                                   "settlement_price")).unpack_from
_OFFSET = fields_struct(ORDER_DTYPE, ("offset",)).unpack_from
_OPEN = int(Offset.OPEN)
_ORDER_STATUS = fields_struct(RTN_ORDER_DTYPE, ("source", "order_ref", "volume_traded",
                                                "status", "account")).unpack_from
OrderKey = tuple[bytes, int, int]
"""(account, source, order_ref) as the records carry them."""


class _Frozen:
    """The lots one working close order holds frozen."""

    __slots__ = ("account", "direction", "filled", "instrument", "lots", "offset")

    def __init__(self, account: str, instrument: str, direction: int, offset: int,
                 lots: int, filled: int) -> None:
        self.account, self.instrument = account, instrument
        self.direction, self.offset = direction, offset
        self.lots = lots
        """Still frozen."""
        self.filled = filled
        """Lots of its fills booked so far."""


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
        self._frozen: dict[OrderKey, _Frozen] = {}
        """Working close orders' frozen lots, by order."""
        record = empty(EventType.POS_UPDATE)
        self._record, self._bytes = record[0], record.view(np.uint8).data

    def fill(self, trade: Any) -> PositionEntry:
        """Book one RTN_TRADE (releasing the lots its order froze); BookError (naming why) for
        a fill the book cannot take, e.g. a close of lots it does not hold (the position
        predates this journal)."""
        day, source, key, ref, price, volume, direction, offset, account = _FILL(trade)
        self.roll_to(day)
        self._release_filled((account, source, ref), volume)
        instrument = self._instrument(key)
        contract = self.book.contract(instrument)
        owner = account.rstrip(b"\0").decode()
        commission = self._commission(owner, instrument, direction, offset, price, volume)
        entry = self.book.trade(owner, instrument, direction, offset, contract.ticks(price),
                                volume, float_to_money(commission))
        self._held[key] = instrument
        return entry

    def freeze(self, order: Any, filled: int = 0) -> PositionEntry | None:
        """Freeze the lots a close ORDER_SEND (a record or its bytes) of which ``filled``
        lots are booked already will still take while it works; the side it froze, or None
        (an open, a close filled already, or one the book cannot cover: nothing frozen)."""
        if _OFFSET(order)[0] == _OPEN:  # most orders: one field read
            return None
        day, source, key, ref, volume, direction, offset, account = _CLOSE_ORDER(order)
        if volume <= filled:
            return None
        if day:
            self.roll_to(day)
        owner, instrument = account.rstrip(b"\0").decode(), self._instrument(key)
        try:
            entry = self.book.freeze(owner, instrument, direction, offset, volume - filled)
        except BookError:
            return None
        self._frozen[(account, source, ref)] = _Frozen(owner, instrument, direction, offset,
                                                       volume - filled, filled)
        return entry

    def settle(self, rtn_order: Any) -> PositionEntry | None:
        """An RTN_ORDER: once final, release the frozen lots its order will never fill; the
        side released, or None."""
        source, ref, traded, status, account = _ORDER_STATUS(rtn_order)
        frozen = self._frozen.get((account, source, ref))
        if frozen is None or status not in FINAL_STATUSES:
            return None
        release = frozen.lots - max(0, traded - frozen.filled)  # fills still on their way
        entry = None
        if release > 0:
            entry = self._unfreeze(frozen, release)
        if not frozen.lots:
            del self._frozen[(account, source, ref)]
        return entry

    def _release_filled(self, key: OrderKey, volume: int) -> None:
        frozen = self._frozen.get(key)
        if frozen is None:
            return
        frozen.filled += volume
        release = min(volume, frozen.lots)
        if release:
            self._unfreeze(frozen, release)
        if not frozen.lots:
            del self._frozen[key]

    def _unfreeze(self, frozen: _Frozen, lots: int) -> PositionEntry:
        frozen.lots -= lots
        return self.book.unfreeze(frozen.account, frozen.instrument, frozen.direction,
                                  frozen.offset, lots)

    def _instrument(self, key: bytes) -> str:
        """The instrument id as the book spells it."""
        return self._held.get(key) or key.rstrip(b"\0").decode()

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

    def roll_to(self, day: int) -> list[PositionEntry]:
        """A new trading day: mark at the settlements seen, then every lot is yesterday's and
        the day's figures start from zero; the sides that moved (held, or traded the day
        before), for their POS_UPDATEs."""
        if day <= self.trading_day:
            return []
        moved: list[PositionEntry] = []
        if self.trading_day:
            for key, settlement in self._settlements.items():
                instrument = self._held[key]
                self.book.mark(instrument, self.book.contract(instrument).ticks(settlement))
            moved = [entry for entry in self.book.entries() if entry.position or entry.traded]
            self.book.roll()
            self._settlements.clear()
        self.trading_day = day
        return moved

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

