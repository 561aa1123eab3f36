"""A CTP position in one instrument (long and short, today's and yesterday's lots), and the
orders that move its net by a given number of lots.

Closing comes before opening, so the account never holds both sides because of us. SHFE
and INE need today's and yesterday's lots closed by separate orders (CLOSE_TODAY,
CLOSE_YESTERDAY, yesterday's first, as they are usually cheaper to close); the other
exchanges take a plain CLOSE. A plain CLOSE is booked against yesterday's lots first; a
POS_UPDATE from the position manager corrects the split where an exchange decides otherwise.
"""

from __future__ import annotations

from dataclasses import dataclass

from hft.daemons.refdata.instruments import SPLIT_CLOSE_EXCHANGES
from hft.daemons.runtime.events import Direction, Offset

"""Exchanges where a close must say whether it closes today's or yesterday's lots."""

Leg = tuple[Direction, Offset, int]
"""One order: direction, offset, lots (> 0)."""


@dataclass(slots=True)
class Position:
    long_today: int = 0
    long_yesterday: int = 0
    short_today: int = 0
    short_yesterday: int = 0

    @property
    def net(self) -> int:
        return self.long_today + self.long_yesterday - self.short_today - self.short_yesterday

    def legs(self, delta: int, exchange: str) -> list[Leg]:
        """The orders that change the net position by ``delta`` lots: closes, then an open."""
        direction = Direction.BUY if delta > 0 else Direction.SELL
        lots = abs(delta)
        if delta > 0:
            yesterday, today = self.short_yesterday, self.short_today
        else:
            yesterday, today = self.long_yesterday, self.long_today
        closes = ([(Offset.CLOSE_YESTERDAY, yesterday), (Offset.CLOSE_TODAY, today)]
                  if exchange in SPLIT_CLOSE_EXCHANGES else [(Offset.CLOSE, yesterday + today)])
        legs: list[Leg] = []
        for offset, held in closes:
            volume = min(lots, held)
            if volume > 0:
                legs.append((direction, offset, volume))
                lots -= volume
        if lots:
            legs.append((direction, Offset.OPEN, lots))
        return legs

    def fill(self, direction: int, offset: int, volume: int) -> None:
        """Book a fill of ``volume`` lots."""
        if offset == Offset.OPEN:
            if direction == Direction.BUY:
                self.long_today += volume
            else:
                self.short_today += volume
            return
        closes_short = direction == Direction.BUY
        yesterday = self.short_yesterday if closes_short else self.long_yesterday
        if offset == Offset.CLOSE_TODAY:
            from_yesterday = 0
        elif offset == Offset.CLOSE_YESTERDAY:
            from_yesterday = volume
        else:
            from_yesterday = max(0, min(volume, yesterday))
        if closes_short:
            self.short_yesterday -= from_yesterday
            self.short_today -= volume - from_yesterday
        else:
            self.long_yesterday -= from_yesterday
            self.long_today -= volume - from_yesterday

    def roll(self) -> None:
        """A new trading day: today's lots become yesterday's."""
        self.long_yesterday += self.long_today
        self.short_yesterday += self.short_today
        self.long_today = self.short_today = 0
