"""Trading-session templates and their precomputed minute tables.

Times inside a trading day are counted on the *trading-day clock* of clock.py: minutes since
18:00 of the evening before, so a trading day's minutes increase monotonically from its night
session (21:00 = 180, 00:00 = 360, 02:30 = 510) through its day session (09:00 = 900).

Each template precomputes, once, which 1-minute bar every minute of the trading-day clock
falls into, following the bar conventions of docs/ARCHITECTURE.md: the call-auction minute
folds into the first bar of its session, a section's end minute folds into that section's
last bar, any other minute outside the sections has no bar.
"""

from __future__ import annotations

import functools
import json
from dataclasses import dataclass, field
from importlib import resources

import numpy as np

from hft.daemons.refdata.clock import MINUTES_PER_DAY as MINUTES_PER_DAY  # re-exported
from hft.daemons.refdata.clock import NIGHT_END_MINUTE, tday_minute
from hft.daemons.refdata.clock import local_minute as local_minute  # re-exported

NO_BAR = -1


def _hhmm_to_tday(hhmm: int) -> int:
    return tday_minute(hhmm // 100 * 60 + hhmm % 100)


@dataclass(frozen=True)
class Section:
    """Continuous trading from ``start`` to ``end`` (trading-day minutes, end exclusive)."""

    start: int
    end: int

    @property
    def is_night(self) -> bool:
        """Night sections start in the evening: before 06:00 local."""
        return self.start < NIGHT_END_MINUTE


@dataclass(frozen=True)
class SessionTemplate:
    name: str
    auction: Section | None
    sections: tuple[Section, ...]
    bar_of_minute: np.ndarray = field(repr=False, compare=False)
    """Trading-day minute -> index of its 1-minute bar among the day's bars, or NO_BAR."""
    bar_starts: np.ndarray = field(repr=False, compare=False)
    """Trading-day minute each bar starts at (its label), by bar index."""

    @property
    def has_night(self) -> bool:
        return any(s.is_night for s in self.sections)


def build_template(name: str, auction: Section | None, sections: tuple[Section, ...]) -> SessionTemplate:
    bar_starts = np.array([m for s in sections for m in range(s.start, s.end)], dtype=np.int32)
    bar_of_minute = np.full(MINUTES_PER_DAY, NO_BAR, dtype=np.int32)
    bar_of_minute[bar_starts] = np.arange(len(bar_starts), dtype=np.int32)
    for section in sections:
        if bar_of_minute[section.end % MINUTES_PER_DAY] == NO_BAR:
            bar_of_minute[section.end % MINUTES_PER_DAY] = bar_of_minute[section.end - 1]
    if auction is not None:
        first = next(s for s in sections if s.start >= auction.start)
        for minute in range(auction.start, auction.end):
            bar_of_minute[minute] = bar_of_minute[first.start]
    return SessionTemplate(name, auction, sections, bar_of_minute, bar_starts)


@functools.cache
def day_only(template: SessionTemplate) -> SessionTemplate:
    """The template on a trading day without a night session (the first day after a holiday):
    day sections only, the call auction in the minute before the first of them."""
    sections = tuple(s for s in template.sections if not s.is_night)
    first = sections[0].start
    return build_template(f"{template.name}-day", Section(first - 1, first), sections)


def load_templates(text: str | None = None) -> dict[str, SessionTemplate]:
    """Templates from sessions.json (the shipped copy unless ``text`` is given)."""
    if text is None:
        text = resources.files("hft.daemons.refdata").joinpath("data/sessions.json").read_text("utf-8")
    templates = {}
    for name, spec in json.loads(text).items():
        auction = spec.get("auction")
        templates[name] = build_template(
            name,
            Section(_hhmm_to_tday(auction["from"]), _hhmm_to_tday(auction["to"])) if auction else None,
            tuple(Section(_hhmm_to_tday(s["from"]), _hhmm_to_tday(s["to"])) for s in spec["sections"]),
        )
    return templates
