"""Garbage collection on the daemon's terms: between events, never over the startup heap.

CPython's cyclic collector starts on an allocation, so a collection lands inside whatever
handler allocated: an order or a tick waits for it. And a full (oldest generation) collection
walks every object alive, the 100,000 or so that imports, configs and plugins leave at
startup included: 35 to 45 ms on the engine's heap here, during which the daemon handles
nothing. So, once a daemon has started:

- :func:`freeze_startup_heap` collects once and moves everything alive into the permanent
  generation (``gc.freeze``), which no collection walks again: a full collection then costs
  what was allocated since (1 to 8 µs on a fresh engine);
- :func:`collect_when_idle` raises the allocation threshold of the automatic collector to a
  backstop, and :func:`collect_if_due`, called in a loop iteration that found no work, runs
  the collections itself, the generation CPython would have chosen (the youngest every
  ``YOUNG_ALLOCATIONS`` net allocations, the older ones every ``OLDER_EVERY`` collections
  of the one below).

The price: a reference cycle that was alive at startup and becomes garbage later is never
freed (reference counting still frees everything else). Startup objects (modules, configs,
plugins) mostly live as long as the process; a plugin loaded at startup and reloaded by hand
leaves its old instance's cycles behind, a few kilobytes a reload.
"""

from __future__ import annotations

import gc

YOUNG_ALLOCATIONS = 700
"""Net allocations of tracked objects between two collections: CPython's own default."""
OLDER_EVERY = 10
"""Collections of a generation between two of the next older one: CPython's default."""
BACKSTOP_ALLOCATIONS = 10_000
"""The automatic collector's threshold after :func:`collect_when_idle`: it collects only when a
loop is never idle for that long (an event storm), so memory stays bounded. A young
collection costs about 8 µs per 700 objects here, 80 µs per 10,000 and 1 ms per 100,000:
this bounds the pause a storm can cause to about 0.1 ms."""


def freeze_startup_heap() -> int:
    """Collect, then exempt everything alive from every later collection; how many objects
    were frozen."""
    gc.collect()
    gc.freeze()
    return gc.get_freeze_count()


def collect_when_idle() -> None:
    """Leave the automatic collector only its backstop: the loop calls :func:`collect_if_due`."""
    gc.set_threshold(BACKSTOP_ALLOCATIONS, OLDER_EVERY, OLDER_EVERY)


def collect_if_due() -> bool:
    """Collect the generation that is due, if one is; whether it did. For a loop iteration
    that found no work."""
    young, gen1_runs, gen2_runs = gc.get_count()
    if young < YOUNG_ALLOCATIONS:
        return False
    generation = 2 if gen2_runs >= OLDER_EVERY else 1 if gen1_runs >= OLDER_EVERY else 0
    gc.collect(generation)  # counted in /metrics: python_gc_collections_total
    return True


def collect_automatically() -> None:
    """Hand collection back to CPython's defaults."""
    gc.set_threshold(YOUNG_ALLOCATIONS, OLDER_EVERY, OLDER_EVERY)
