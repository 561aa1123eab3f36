"""ALERT events out of a plugin: one record, reused, packed and published on its bus.

In the risk daemon the order desk journals every ALERT published there, and the watchdog
turns journaled ALERTs into webhooks; so a plugin raises an alarm by publishing one.
"""

from __future__ import annotations

import time

import numpy as np

from hft.daemons.runtime.bus import EventBus
from hft.daemons.runtime.events import DTYPES, AlertLevel, EventType, empty, fields_struct

_ALERT = int(EventType.ALERT)
_PACK = fields_struct(DTYPES[EventType.ALERT],
                      ("ts_ns", "type", "level", "origin", "code", "message")).pack_into
ORIGIN_SIZE, CODE_SIZE, MESSAGE_SIZE = (DTYPES[EventType.ALERT][name].itemsize
                                        for name in ("origin", "code", "message"))


class AlertPublisher:
    """Publishes ALERTs from ``origin`` (a plugin's name) on ``bus``."""

    def __init__(self, bus: EventBus, origin: str) -> None:
        self._bus = bus
        self._origin = origin.encode()[:ORIGIN_SIZE]
        records = empty(EventType.ALERT)
        self._record, self._bytes = records[0], records.view(np.uint8).data

    def publish(self, level: AlertLevel, code: bytes, text: str) -> None:
        """An ALERT now; ``text`` is cut to the record's message field (UTF-8 bytes)."""
        _PACK(self._bytes, 0, time.time_ns(), _ALERT, int(level), self._origin,
              code[:CODE_SIZE], text.encode()[:MESSAGE_SIZE])
        self._bus.publish(_ALERT, self._record)
