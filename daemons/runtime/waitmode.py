"""How a loop waits when it has nothing to do: one vocabulary for daemons and journal readers."""

from enum import Enum, StrEnum


class WaitMode(StrEnum):
    BUSY = "busy"  # keep polling: lowest latency, burns a whole core
    YIELD = "yield"  # sched_yield() between polls: gives the core away, still ~100% CPU
    BLOCK = "block"  # spin briefly, then sleep until woken: ~0 idle CPU, a wake-up's latency


class IdleStep(Enum):
    POLL = "poll"
    YIELD = "yield"
    SLEEP = "sleep"


def idle_step(mode: WaitMode, idle_ns: int, spin_ns: int, yield_ns: int) -> IdleStep:
    """What a daemon's loop does ``idle_ns`` after its last work: poll again (busy mode, or
    within ``spin_ns``), give the core away for a moment (yield mode; block mode until
    ``yield_ns``), or sleep until woken (block mode after that). Block mode yields before it
    sleeps because a loop that slept comes back slow (a wake-up, then cold caches): while
    events come closer together than ``yield_ns`` it keeps yield's latency, and an idle
    daemon still costs no CPU."""
    if mode is WaitMode.BUSY or idle_ns < spin_ns:
        return IdleStep.POLL
    if mode is WaitMode.YIELD or idle_ns < yield_ns:
        return IdleStep.YIELD
    return IdleStep.SLEEP
