"""The mmap journal: one writer, many readers in any process, each with its own cursor."""

from hft.daemons.runtime.journal.format import (
    JournalError,
    JournalFormatError,
    JournalFull,
    JournalHole,
    JournalLapped,
    JournalNotFound,
)
from hft.daemons.runtime.journal.reader import (
    ATTACH_INTERVAL_S,
    JournalReader,
    if_there,
    seq_at_time,
    wait_any,
)
from hft.daemons.runtime.journal.writer import JournalWriter
from hft.daemons.runtime.waitmode import WaitMode

__all__ = [
    "ATTACH_INTERVAL_S",
    "JournalError",
    "JournalFormatError",
    "JournalFull",
    "JournalHole",
    "JournalLapped",
    "JournalNotFound",
    "JournalReader",
    "JournalWriter",
    "WaitMode",
    "if_there",
    "seq_at_time",
    "wait_any",
]
