"""How a loop waits when it has nothing to do: one vocabulary for daemons and journal readers."""

from enum import StrEnum


class WaitMode(StrEnum):
    BUSY = "busy"  # keep polling: lowest latency, burns a whole core
    YIELD = "yield"  # sched_yield() between polls: gives the core away, still ~100% CPU
    BLOCK = "block"  # spin briefly, then sleep until woken: ~0 idle CPU, a wake-up's latency
