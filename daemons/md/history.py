"""Reading an md journal's ticks back, one instrument at a time.

The one filter that ``hftctl ticks`` and the batch bars (``hftctl bars``, barbatch) use: the
journal's MARKET_DATA records of one instrument, a batch at a time, and an error that names
the instruments the journal does hold when it holds none of the one asked for.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import numpy as np

from hft.daemons.runtime.events import EventType, concatenate
from hft.daemons.runtime.journal import JournalReader

_MARKET_DATA = int(EventType.MARKET_DATA)


class NoTicks(ValueError):
    """A journal that holds no tick of the instrument asked for."""


def instrument_ticks(directory: Path, name: str, instrument: str,
                     batch: int = 65_536) -> Iterator[np.ndarray]:
    """The MARKET_DATA records of ``instrument`` in journal ``directory/name``, in journal
    order, a batch at a time (copies, never empty). JournalNotFound when there is no such
    journal; NoTicks, after the last batch, when none was of the instrument."""
    wanted = instrument.encode()
    held: set[bytes] = set()
    found = False
    with JournalReader(directory, name, start="begin") as reader:
        while len(chunk := reader.read_batch(batch, EventType.MARKET_DATA)):
            chunk = chunk[chunk["type"] == _MARKET_DATA]
            matching = chunk[chunk["instrument"] == wanted]
            if len(matching):
                found = True
                yield matching
            elif not found:
                held.update(np.unique(chunk["instrument"]).tolist())
    if not found:
        names = ", ".join(sorted(i.decode("ascii", "replace") for i in held)) or "no ticks at all"
        raise NoTicks(f"journal {directory / name} has no ticks of {instrument!r} (it has: {names})")


def journal_ticks(directory: Path, name: str, instrument: str) -> np.ndarray:
    """Every MARKET_DATA record of ``instrument`` in journal ``directory/name``, as one array
    (see :func:`instrument_ticks` for the errors)."""
    return concatenate(list(instrument_ticks(directory, name, instrument)), EventType.MARKET_DATA)
