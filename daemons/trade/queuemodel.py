"""Where a simulated resting order stands in the real queue at its price.

The exchange's book is only seen as aggregated volume per price (a level-1 or level-5
snapshot), so the lots queued ahead of a simulated order (``ahead``) are an estimate:

- it joins behind the whole displayed volume at its price;
- volume that trades at its price takes lots from the front of the queue first
  (:meth:`QueueModel.traded`, the same for every model);
- when the displayed volume shrinks by more than what traded, the rest were cancels, and
  the model decides how many of them were ahead (:meth:`QueueModel.shrunk`). Whatever the
  model, ``ahead`` never exceeds the volume displayed: lots that are not there cannot be
  ahead of anyone.

``RiskAverse``: cancels are all behind you (only trades advance you), the conservative
bound. ``Probabilistic``: hftbacktest's idea of a probability queue model: with ``front``
lots ahead and ``back`` behind, a cancelled lot was ahead with probability
``f(front) / (f(front) + f(back))``, ``f(x) = x ** power`` (power 1: in proportion to the
lots; higher powers assume cancels come from the larger side more). The expected number
ahead is rounded up or down at random with a seeded generator, so positions stay whole lots,
the expectation is kept, and the same seed replays the same positions.
"""

from __future__ import annotations

import random
from typing import Any


class QueueModel:
    """Risk-averse: cancels never advance you (the base of the other models)."""

    name = "risk_averse"

    def shrunk(self, ahead: int, before: int, cancelled: int, now: int) -> int:
        """``ahead`` after ``cancelled`` lots left a queue of ``before`` lots (trades already
        taken out), leaving ``now`` displayed."""
        return ahead if ahead <= now else now

    @staticmethod
    def traded(ahead: int, volume: int) -> int:
        """``ahead`` after ``volume`` lots traded at the price (from the front)."""
        return ahead - volume if ahead > volume else 0

    def state(self) -> Any:
        """What restarts need to continue identically (none for a deterministic model)."""
        return None

    def restore(self, state: Any) -> None:
        """Continue from :meth:`state`."""


class Probabilistic(QueueModel):
    """Cancels shared out between the lots ahead and behind (module docstring)."""

    name = "probabilistic"

    def __init__(self, power: float, seed: int) -> None:
        self.power = power
        self._random = random.Random(seed)  # noqa: S311 (a simulation, not a secret)

    def shrunk(self, ahead: int, before: int, cancelled: int, now: int) -> int:
        back = before - ahead
        if back < 0:
            back = 0
        weight_front = ahead ** self.power
        total = weight_front + back ** self.power
        expected = cancelled * weight_front / total if total else 0.0
        whole = int(expected)
        if self._random.random() < expected - whole:
            whole += 1
        if cancelled - whole > back:  # more cancels than lots behind: the rest were ahead
            whole = cancelled - back
        ahead -= whole if whole < ahead else ahead
        return ahead if ahead <= now else now

    def state(self) -> Any:
        return _plain(self._random.getstate())

    def restore(self, state: Any) -> None:
        version, internal, gauss = state
        self._random.setstate((version, tuple(internal), gauss))


def _plain(state: Any) -> list[Any]:
    version, internal, gauss = state
    return [version, list(internal), gauss]


def make(name: str, power: float, seed: int) -> QueueModel:
    """The model ``name`` names (``risk_averse`` or ``probabilistic``)."""
    if name == QueueModel.name:
        return QueueModel()
    if name == Probabilistic.name:
        return Probabilistic(power, seed)
    raise ValueError(f"unknown queue model {name!r}: use 'risk_averse' or 'probabilistic'")
