"""The desk's published positions against a counter's, as a gateway checks them.

A gateway sees every POS_UPDATE the order desk publishes (and reads the ones journaled before
a restart); given what its counter holds (CTP's InvestorPosition query, the simulated
exchange's accounts), each side where the two differ is an ALERT ``position_mismatch``, once:
the same difference found again is not alerted again.
"""

from __future__ import annotations

from typing import Any

from hft.daemons.runtime.alerts import AlertPublisher
from hft.daemons.runtime.events import AlertLevel
from hft.daemons.trade.book import Mismatch, Sides, mismatches


class PositionCheck:
    """Published (position, today_position) per side, compared with a counter's."""

    def __init__(self, alerts: AlertPublisher) -> None:
        self._alerts = alerts
        self.published: dict[tuple[str, str, int], tuple[int, int]] = {}
        """(account, instrument, direction) -> (position, today_position) as last published."""
        self.alerted = 0
        self._found: set[Mismatch] = set()

    def on_published(self, record: Any) -> None:
        """Bus handler (and journal reader): one POS_UPDATE."""
        key = (bytes(record["account"]).decode(), bytes(record["instrument"]).decode(),
               int(record["direction"]))
        self.published[key] = (int(record["position"]), int(record["today_position"]))

    def compare(self, counter: Sides) -> list[Mismatch]:
        """ALERT each side that differs from ``counter`` now and did not at the last compare;
        returns those."""
        found = mismatches(self.published, counter)
        new = [mismatch for mismatch in found if mismatch not in self._found]
        self._found = set(found)
        for mismatch in new:
            self.alerted += 1
            self._alerts.publish(
                AlertLevel.WARNING, b"position_mismatch",
                f"{mismatch.account} {mismatch.instrument} {mismatch.direction.name.lower()}: "
                f"desk {mismatch.ours} counter {mismatch.counter} (position, today)")
        return new
