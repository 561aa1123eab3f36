"""The simulated counter's minimal view of each account: funds, margins, closable lots.

Just enough for the simulated exchange to refuse what a CTP counter refuses (insufficient
funds, a close beyond the position) and to charge commissions and margins per product. It
is deliberately small and sits behind the :class:`Accounts` protocol: the exact position book
(``daemons/trade/book.py``: lots first-opened-first-closed, close profit by date and by
trade, settlement) replaces it by implementing the same five calls.

Its simplifications (the exact book has none): a position's margin is charged at its open
price and never re-marked, close profit is taken against the average open price per
direction, floating profit is not counted in the funds available. It follows CTP's close
rules: on SHFE/INE ``close``/``close_yesterday`` take yesterday's lots and ``close_today``
today's; elsewhere any close takes yesterday's first, then today's.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Protocol

from hft.daemons.refdata.instruments import SPLIT_CLOSE_EXCHANGES
from hft.daemons.runtime.events import Direction, Offset
from hft.daemons.trade.ctperrors import CtpError
from hft.daemons.trade.fees import Fees


@dataclass(frozen=True, slots=True)
class Contract:
    """What the counter knows of an instrument."""

    key: bytes
    """The instrument id as records carry it (32 bytes, NUL padded)."""
    id: str
    exchange: str
    multiplier: int
    price_tick: float
    fees: Fees

    @property
    def splits_today(self) -> bool:
        return self.exchange in SPLIT_CLOSE_EXCHANGES


class Accounts(Protocol):
    """What the simulated exchange asks of the counter's account view."""

    def reserve(self, account: bytes, contract: Contract, direction: int, offset: int,
                price: float, volume: int) -> int:
        """Freeze funds (open) or lots (close) for an order; 0, or the CTP ErrorID refusing it."""

    def fill(self, account: bytes, contract: Contract, direction: int, offset: int,
             reserved_price: float, price: float, volume: int) -> float:
        """Book ``volume`` lots filled at ``price``; returns the commission charged."""

    def release(self, account: bytes, contract: Contract, direction: int, offset: int,
                reserved_price: float, volume: int) -> None:
        """Unfreeze what ``reserve`` froze for ``volume`` lots that will not fill."""

    def new_day(self) -> None:
        """A new trading day: today's lots become yesterday's."""

    def holdings(self) -> dict[tuple[str, str, int], tuple[int, int]]:
        """(account, instrument, held direction) -> (position, today's lots) of every side
        held: what a counter's position query answers."""

    def snapshot(self) -> Any:
        """Plain data (JSON-able) to rebuild this view with ``restore``."""


class _Side:
    """One direction of one instrument in one account."""

    __slots__ = ("avg_price", "frozen_today", "frozen_yesterday", "margin", "today", "yesterday")

    def __init__(self) -> None:
        self.today = self.yesterday = 0
        self.frozen_today = self.frozen_yesterday = 0
        self.avg_price = 0.0
        self.margin = 0.0


class _Account:
    __slots__ = ("balance", "commission", "frozen", "margin", "sides")

    def __init__(self, funds: float) -> None:
        self.balance = funds
        """Funds + close profit - commission."""
        self.frozen = 0.0
        """Margin and commission held for working open orders."""
        self.margin = 0.0
        """Margin of the positions."""
        self.commission = 0.0
        self.sides: dict[tuple[bytes, int], _Side] = {}

    @property
    def available(self) -> float:
        return self.balance - self.margin - self.frozen

    def side(self, instrument: bytes, direction: int) -> _Side:
        key = (instrument, direction)
        side = self.sides.get(key)
        if side is None:
            side = self.sides[key] = _Side()
        return side


def _open_cost(contract: Contract, price: float, volume: int) -> float:
    """What an open of ``volume`` lots at ``price`` needs: margin plus commission."""
    fees, multiplier = contract.fees, contract.multiplier
    return fees.margin(price, volume, multiplier) + fees.open_commission(price, volume, multiplier)


class SimpleAccounts:
    """The minimal :class:`Accounts` (module docstring)."""

    def __init__(self, funds: dict[str, float]) -> None:
        self._accounts = {name.encode(): _Account(amount) for name, amount in funds.items()}

    def reserve(self, account: bytes, contract: Contract, direction: int, offset: int,
                price: float, volume: int) -> int:
        book = self._accounts.get(account.rstrip(b"\0"))
        if book is None:
            return CtpError.INVESTOR_NOT_FOUND
        if offset == Offset.OPEN:
            cost = _open_cost(contract, price, volume)
            if cost > book.available:
                return CtpError.INSUFFICIENT_MONEY
            book.frozen += cost
            return CtpError.NONE
        held = book.side(contract.key, _held(direction))
        today, yesterday = _split(contract, offset, held, volume)
        if today < 0:
            return _close_error(contract, offset)
        held.frozen_today += today
        held.frozen_yesterday += yesterday
        return CtpError.NONE

    def fill(self, account: bytes, contract: Contract, direction: int, offset: int,
             reserved_price: float, price: float, volume: int) -> float:
        book = self._accounts[account.rstrip(b"\0")]
        fees, multiplier = contract.fees, contract.multiplier
        if offset == Offset.OPEN:
            book.frozen -= _open_cost(contract, reserved_price, volume)
            commission = fees.open_commission(price, volume, multiplier)
            side = book.side(contract.key, direction)
            held = side.today + side.yesterday
            side.avg_price = (side.avg_price * held + price * volume) / (held + volume)
            side.today += volume
            margin = fees.margin(price, volume, multiplier)
            side.margin += margin
            book.margin += margin
        else:
            side = book.side(contract.key, _held(direction))
            today, yesterday = _split(contract, offset, side, volume, frozen=True)
            side.frozen_today -= today
            side.frozen_yesterday -= yesterday
            held = side.today + side.yesterday
            released = side.margin * volume / held
            side.margin -= released
            book.margin -= released
            side.today -= today
            side.yesterday -= yesterday
            sign = 1.0 if direction == Direction.SELL else -1.0  # a sell closes a long
            book.balance += sign * (price - side.avg_price) * volume * multiplier
            commission = fees.close_commission(price, today, yesterday, multiplier)
        book.balance -= commission
        book.commission += commission
        return commission

    def release(self, account: bytes, contract: Contract, direction: int, offset: int,
                reserved_price: float, volume: int) -> None:
        book = self._accounts[account.rstrip(b"\0")]
        if offset == Offset.OPEN:
            book.frozen -= _open_cost(contract, reserved_price, volume)
            return
        side = book.side(contract.key, _held(direction))
        today, yesterday = _split(contract, offset, side, volume, frozen=True)
        side.frozen_today -= today
        side.frozen_yesterday -= yesterday

    def new_day(self) -> None:
        for book in self._accounts.values():
            for side in book.sides.values():
                side.yesterday += side.today
                side.today = 0
                side.frozen_yesterday += side.frozen_today
                side.frozen_today = 0

    # --- views for the gateway and the tests -------------------------------------------

    def available(self, account: str) -> float:
        return self._accounts[account.encode()].available

    def commission(self, account: str) -> float:
        return self._accounts[account.encode()].commission

    def margin(self, account: str) -> float:
        return self._accounts[account.encode()].margin

    def position(self, account: str, instrument: str, direction: Direction) -> tuple[int, int]:
        """(today, yesterday) lots held in ``direction``."""
        side = self._accounts[account.encode()].side(_key(instrument), int(direction))
        return side.today, side.yesterday

    def holdings(self) -> dict[tuple[str, str, int], tuple[int, int]]:
        return {(name.decode(), key.rstrip(b"\0").decode(), direction):
                (side.today + side.yesterday, side.today)
                for name, book in self._accounts.items()
                for (key, direction), side in book.sides.items() if side.today + side.yesterday}

    def set_position(self, account: str, contract: Contract, direction: Direction, *,
                     yesterday: int, price: float) -> None:
        """Load a position carried from an earlier day (start-up, tests), margin included."""
        book = self._accounts[account.encode()]
        side = book.side(contract.key, int(direction))
        side.yesterday, side.avg_price = yesterday, price
        side.margin = contract.fees.margin(price, yesterday, contract.multiplier)
        book.margin += side.margin

    # --- restarts ------------------------------------------------------------------------

    def snapshot(self) -> Any:
        return {name.decode(): {
            "balance": book.balance, "frozen": book.frozen, "margin": book.margin,
            "commission": book.commission,
            "sides": [[key.decode("latin-1"), direction, side.today, side.yesterday,
                       side.frozen_today, side.frozen_yesterday, side.avg_price, side.margin]
                      for (key, direction), side in book.sides.items()]}
            for name, book in self._accounts.items()}

    @classmethod
    def restore(cls, state: Any) -> SimpleAccounts:
        accounts = cls({})
        for name, data in state.items():
            book = accounts._accounts[name.encode()] = _Account(data["balance"])
            book.frozen, book.margin, book.commission = data["frozen"], data["margin"], data["commission"]
            for key, direction, *values in data["sides"]:
                side = book.side(key.encode("latin-1"), direction)
                (side.today, side.yesterday, side.frozen_today, side.frozen_yesterday,
                 side.avg_price, side.margin) = values
        return accounts


def _key(instrument: str) -> bytes:
    """An instrument id as records carry it."""
    return instrument.encode().ljust(32, b"\0")


def _held(direction: int) -> int:
    """The position an order of ``direction`` closes: a sell closes a long."""
    return Direction.BUY if direction == Direction.SELL else Direction.SELL


def _split(contract: Contract, offset: int, side: _Side, volume: int, *,
           frozen: bool = False) -> tuple[int, int]:
    """(today, yesterday) lots a close of ``volume`` takes: from what is free to close, or
    (``frozen``) from what its reservation froze; today = -1 when there are not enough."""
    if frozen:
        today_free, yesterday_free = side.frozen_today, side.frozen_yesterday
    else:
        today_free = side.today - side.frozen_today
        yesterday_free = side.yesterday - side.frozen_yesterday
    if contract.splits_today:
        if offset == Offset.CLOSE_TODAY:
            return (volume, 0) if volume <= today_free else (-1, 0)
        return (0, volume) if volume <= yesterday_free else (-1, 0)
    if volume > today_free + yesterday_free:
        return -1, 0
    yesterday = min(volume, yesterday_free)
    return volume - yesterday, yesterday


def _close_error(contract: Contract, offset: int) -> int:
    if contract.splits_today and offset == Offset.CLOSE_TODAY:
        return CtpError.OVER_CLOSETODAY_POSITION
    if contract.splits_today and offset == Offset.CLOSE_YESTERDAY:
        return CtpError.OVER_CLOSEYESTERDAY_POSITION
    return CtpError.OVER_CLOSE_POSITION
