"""The ALERT records of the ``alert_journals`` (LOST orders, position mismatch, kill switch,
limit changes ...), turned into alerts.

Each journal is followed from the seq the state file remembers, so a restarted watchdog
neither repeats nor skips one. Without a remembered seq, a journal that already exists is
followed from its end (its history is not news); one not there yet is looked for again on
every poll and read from its beginning once it appears (remembered as such).
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from itertools import islice
from pathlib import Path

from hft.daemons.runtime.events import AlertLevel, EventType
from hft.daemons.runtime.journal import JournalError, JournalReader, if_there
from hft.watchdog.alerts import Alert

_ALERT = int(EventType.ALERT)
FROM_THE_BEGINNING = 0
"""The position of a journal that did not exist yet: all of it is news (saved as such, so a
restarted watchdog reads it from the beginning too)."""
MAX_PER_POLL = 1000
"""Records read per journal per poll, so a long backlog never stalls the supervisor."""
log = logging.getLogger("hft.watchdog.journals")


def _text(raw: bytes) -> str:
    return raw.rstrip(b"\0").decode("utf-8", errors="replace")


class JournalAlerts:
    """Follows the alert journals; ``poll`` returns the ALERT records committed since."""

    def __init__(self, directory: Path, names: Sequence[str], saved: Mapping[str, int]) -> None:
        self._directory = directory
        self._next_seq = {name: saved[name] for name in names if name in saved}
        self._readers: dict[str, JournalReader | None] = {name: None for name in names}
        for name in names:
            if self._open(name) is None:
                self._next_seq.setdefault(name, FROM_THE_BEGINNING)

    @property
    def positions(self) -> dict[str, int]:
        """Per journal, the next seq to read (for the state file)."""
        return dict(self._next_seq)

    def poll(self) -> list[Alert]:
        alerts: list[Alert] = []
        for name, reader in self._readers.items():
            if reader is None:
                reader = self._open(name)
                if reader is None:
                    continue
            try:
                for event_type, record in islice(reader.committed(), MAX_PER_POLL):
                    if event_type == _ALERT:
                        alerts.append(self._alert(name, reader.next_seq - 1, record))
            except JournalError as exc:  # a hole: the writer mends it or the next poll skips it
                log.warning("alert journal unreadable for now", extra={"journal": name,
                                                                       "error": str(exc)})
            self._next_seq[name] = reader.next_seq
        return alerts

    def close(self) -> None:
        for reader in self._readers.values():
            if reader is not None:
                reader.close()

    def _open(self, name: str) -> JournalReader | None:
        """A reader from the remembered seq; without one, from the journal's end."""
        seq = self._next_seq.get(name)
        start = "end" if seq is None else "begin" if seq == FROM_THE_BEGINNING else seq
        reader = if_there(lambda: JournalReader(self._directory, name, start=start), log)
        self._readers[name] = reader
        if reader is not None:
            self._next_seq[name] = reader.next_seq
        return reader

    @staticmethod
    def _alert(journal: str, seq: int, record: Mapping[str, object]) -> Alert:
        level = int(record["level"])  # type: ignore[call-overload]
        code = _text(record["code"]) or "alert"  # type: ignore[arg-type]
        origin = _text(record["origin"])  # type: ignore[arg-type]
        return Alert(kind=code, level=AlertLevel(level) if level in set(AlertLevel)
                     else AlertLevel.CRITICAL, daemon=journal,
                     summary=_text(record["message"]) or code,  # type: ignore[arg-type]
                     details={"origin": origin, "journal": journal, "seq": str(seq)},
                     time_ns=int(record["ts_ns"]))  # type: ignore[call-overload]
