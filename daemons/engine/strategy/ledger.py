"""Who owns what: each child's target, attributed lots and cost per instrument, and how the
container's fills are shared out among them.

The attribution rule. When the container sends the orders that move its net position by
``delta`` lots, child *i* contributes ``c_i = weight_i * target_i - lots_i`` (what it wants
minus what it already holds; a disabled, unloaded or failed child wants 0). Its share of
every fill of those orders is ``c_i / delta``; the house (unattributed) takes the rest,
``1 - sum(c_i) / delta``, which is the rounding to whole lots and any position no child
claims. A fill of ``q`` lots (signed: + bought, - sold) at price ``P`` adds ``q * share``
lots to each party and ``q * share * P * multiplier`` to its cost, so the parties' lots
always add up to the container's position. A party's PnL is ``lots * mark * multiplier -
cost`` over its instruments, marked at the latest price.

Children on opposite sides cross inside the container at the fill price: A wants +3 and B
wants -1, the container buys 2, and of each lot bought A gets 3/2 and B -1/2.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass, field

INSTRUMENT_SIZE = 32
"""Bytes of a record's instrument field: holdings are keyed by it, NUL padded, as read."""

FLAT = 1e-9
"""Attributed lots this close to zero are zero."""

HOUSE = "(unattributed)"
"""The house party's name (not a valid plugin name, so no child can take it)."""

Share = tuple["Holding", float]
Mark = Callable[[bytes], tuple[float, float]]
"""Instrument key -> (latest price, contract multiplier)."""


def instrument_key(instrument: str | bytes) -> bytes:
    """The key of an instrument id as records carry it: ASCII, NUL padded to 32 bytes."""
    raw = instrument.encode() if isinstance(instrument, str) else instrument
    if len(raw) == INSTRUMENT_SIZE:
        return raw
    if not raw or len(raw) > INSTRUMENT_SIZE:
        raise ValueError(f"instrument id {instrument!r} must be 1 to {INSTRUMENT_SIZE} bytes")
    return raw.ljust(INSTRUMENT_SIZE, b"\0")


def instrument_id(key: bytes) -> str:
    return key.rstrip(b"\0").decode(errors="replace")


@dataclass(slots=True)
class Holding:
    """One party in one instrument."""

    target: float = 0.0
    """Lots the party wants, before its weight."""
    lots: float = 0.0
    """Lots attributed to it (fractional: fills are shared in proportion)."""
    cost: float = 0.0
    """CNY paid for those lots (negative when it received more than it paid)."""

    def pnl(self, mark: float, multiplier: float) -> float:
        return (self.lots * mark * multiplier if self.lots else 0.0) - self.cost


@dataclass(slots=True, eq=False)
class Party:
    """A child strategy's (or the house's) share of the container's book."""

    name: str
    weight: float = 1.0
    enabled: bool = True
    counts: bool = False
    """Its targets count in the net: enabled and running (set by the container)."""
    holdings: dict[bytes, Holding] = field(default_factory=dict)

    def wanted(self, key: bytes) -> float:
        """Its weighted target in the instrument; 0 when it does not count."""
        holding = self.holdings.get(key)
        return self.weight * holding.target if self.counts and holding is not None else 0.0

    def holding(self, key: bytes) -> Holding:
        holding = self.holdings.get(key)
        if holding is None:
            holding = self.holdings[key] = Holding()
        return holding

    def pnl(self, mark: Mark) -> float:
        """Marked-to-market PnL over every instrument, CNY (NaN while a held instrument has
        no price yet)."""
        total = 0.0
        for key, holding in list(self.holdings.items()):
            total += holding.pnl(*mark(key))
        return total


def shares(parties: Iterable[Party], house: Party, key: bytes, delta: int) -> tuple[Share, ...]:
    """Each party's share of the fills of orders moving the net position by ``delta``."""
    result: list[Share] = []
    rest = 1.0
    for party in parties:
        holding = party.holding(key)
        share = (party.wanted(key) - holding.lots) / delta
        if share:
            result.append((holding, share))
            rest -= share
    if abs(rest) > FLAT:
        result.append((house.holding(key), rest))
    return tuple(result)


def allocate(order_shares: Iterable[Share], lots: int, price: float, multiplier: float) -> None:
    """Share out a fill of ``lots`` (signed) at ``price``. A holding left within FLAT of zero
    is flat: fractional shares leave rounding dust that would otherwise never go away."""
    for holding, share in order_shares:
        quantity = lots * share
        held = holding.lots + quantity
        holding.lots = held if abs(held) > FLAT else 0.0
        holding.cost += quantity * price * multiplier
