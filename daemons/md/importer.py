"""Import tick CSV files into an md journal, all or nothing.

Every file is read and checked before anything is written, so one bad file leaves the
journal as it was. The ticks of all files are merged into time order (a journal is in time
order: replay merges and time seeks rely on it), which is also why an import that would land
before what the journal already holds is refused. Each trading day starts a new segment.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from hft.daemons.md.csvfile import read_ticks
from hft.daemons.refdata.instruments import InstrumentTable
from hft.daemons.runtime.events import TICK_DTYPE, EventType, concatenate
from hft.daemons.runtime.journal import JournalError, JournalReader, JournalWriter


@dataclass(frozen=True)
class ImportResult:
    ticks: int
    trading_days: tuple[int, ...]
    first_seq: int
    last_seq: int


def import_files(paths: Sequence[Path], directory: Path, name: str, instruments: InstrumentTable,
                 progress: Callable[[Path, int], None] = lambda path, count: None) -> ImportResult:
    """Read ``paths`` (CsvTickError on the first bad one), then append their ticks to journal
    ``directory/name`` in time order. ``progress(path, ticks)`` is called as each file is read."""
    parts = []
    for path in paths:
        ticks = read_ticks(path, instruments)
        progress(path, len(ticks))
        parts.append(ticks)
    merged = concatenate(parts, EventType.MARKET_DATA)
    # sort whole rows as bytes: fancy indexing a padded record dtype leaves the padding
    # uninitialized, and a journal's bytes must not depend on the heap
    rows = merged.view(np.uint8).reshape(len(merged), -1)
    merged = rows[np.argsort(merged["ts_ns"], kind="stable")].reshape(-1).view(TICK_DTYPE)
    _check_after_journal(directory, name, int(merged["ts_ns"][0]))
    with JournalWriter(directory, name) as writer:
        first_seq = writer.last_seq + 1
        days = merged["trading_day"]
        starts = np.flatnonzero(np.r_[True, days[1:] != days[:-1]])
        for begin, end in zip(starts, [*starts[1:], len(merged)], strict=True):
            writer.roll(int(days[begin]))
            writer.append_batch(merged[begin:end])
        return ImportResult(len(merged), tuple(int(days[i]) for i in starts), first_seq,
                            writer.last_seq)


def _check_after_journal(directory: Path, name: str, first_ns: int) -> None:
    """Refuse ticks older than the journal's last record: appending them would break its
    time order (and is most often the same file imported twice)."""
    try:
        with JournalReader(directory, name, start="end") as probe:
            last_seq = probe.next_seq - 1
        if last_seq == 0:
            return
        with JournalReader(directory, name, start=last_seq) as reader:
            last = reader.read()
    except JournalError as exc:
        if isinstance(exc, FileNotFoundError):
            return
        raise
    if last is not None and first_ns <= int(last["ts_ns"]):
        raise JournalError(
            f"journal {directory / name} already holds records up to ts_ns {int(last['ts_ns'])}; "
            f"these ticks start at {first_ns}. A journal is in time order: import into a new "
            "journal (another --name or --journal), or only newer files")
