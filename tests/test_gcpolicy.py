"""Garbage collection on the daemon's terms (runtime/gcpolicy.py): a started daemon has frozen
its startup heap, and the cyclic collector runs between a loop's callbacks, never inside one."""

from __future__ import annotations

import gc
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from support.daemons import Daemon, wait_for, write_config

from hft.daemons.runtime.gcpolicy import (
    BACKSTOP_ALLOCATIONS,
    OLDER_EVERY,
    YOUNG_ALLOCATIONS,
    collect_automatically,
    collect_if_due,
    collect_when_idle,
    freeze_startup_heap,
)

StartDaemon = Callable[[str, Path], Daemon]

ALLOCATOR = """
import gc
from hft.daemons.runtime.plugins import Plugin

class Allocator(Plugin):
    '''Makes garbage only the cyclic collector frees, in its poller; counts where each
    collection started.'''

    def init(self, ctx):
        super().init(ctx)
        self.polling = False
        self.started = {"inside": 0, "between": 0}
        gc.callbacks.append(self.on_gc)
        ctx.add_poller(self.poll)

    def on_gc(self, phase, info):
        if phase == "start":
            self.started["inside" if self.polling else "between"] += 1

    def poll(self):
        self.polling = True
        try:
            for _ in range(300):
                cycle = []
                cycle.append(cycle)
        finally:
            self.polling = False
        return 0

    def command(self, name, args):
        return self.started

    def stop(self):
        gc.callbacks.remove(self.on_gc)
"""


@pytest.fixture
def idle_collection() -> Iterator[None]:
    """Collection left to collect_if_due in this process; CPython's thresholds restored after."""
    before = gc.get_threshold()
    collect_when_idle()
    try:
        yield
    finally:
        gc.set_threshold(*before)


def collections_started() -> tuple[list[int], Callable[[str, dict[str, int]], None]]:
    started: list[int] = []

    def on_gc(phase: str, info: dict[str, int]) -> None:
        if phase == "start":
            started.append(info["generation"])

    return started, on_gc


@pytest.mark.usefixtures("idle_collection")
def test_the_collector_runs_between_callbacks_not_on_an_allocation() -> None:
    started, on_gc = collections_started()
    gc.collect()
    gc.callbacks.append(on_gc)
    try:
        kept = [[] for _ in range(5 * YOUNG_ALLOCATIONS)]  # a handler's allocations
        assert started == []  # CPython alone would have collected 5 times by now
        assert collect_if_due()
        assert started == [0]
        assert not collect_if_due()  # nothing allocated since
        del kept
    finally:
        gc.callbacks.remove(on_gc)
    assert gc.get_threshold() == (BACKSTOP_ALLOCATIONS, OLDER_EVERY, OLDER_EVERY)


@pytest.mark.usefixtures("idle_collection")
def test_older_generations_are_collected_as_cpython_would() -> None:
    started, on_gc = collections_started()
    gc.collect()
    gc.callbacks.append(on_gc)
    try:
        for _ in range(OLDER_EVERY * (OLDER_EVERY + 1) + 1):
            keep = [[] for _ in range(2 * YOUNG_ALLOCATIONS)]  # some come from free lists
            assert collect_if_due()
            del keep
    finally:
        gc.callbacks.remove(on_gc)
    assert started.count(1) == OLDER_EVERY  # every OLDER_EVERY-th young collection ...
    assert started.count(2) == 1  # ... and every OLDER_EVERY-th of those
    assert started.index(1) == OLDER_EVERY  # after OLDER_EVERY young ones
    assert started.index(2) == OLDER_EVERY * (OLDER_EVERY + 1)


def test_collection_is_handed_back_to_cpython() -> None:
    before = gc.get_threshold()
    collect_when_idle()
    collect_automatically()
    try:
        assert gc.get_threshold() == (YOUNG_ALLOCATIONS, OLDER_EVERY, OLDER_EVERY)
    finally:
        gc.set_threshold(*before)


def test_a_frozen_heap_is_walked_by_no_collection() -> None:
    heap = [{"i": [i]} for i in range(20_000)]  # a startup heap: configs, tables, plugins
    try:
        assert freeze_startup_heap() >= len(heap)
        walked = {id(o) for generation in range(3) for o in gc.get_objects(generation)}
        assert not any(id(o) in walked for o in (heap, heap[0], heap[-1]["i"]))
        later = [{"i": [0]}]
        assert id(later[0]) in {id(o) for o in gc.get_objects(0)}  # what comes after is
    finally:
        gc.unfreeze()


def test_a_daemon_collects_between_its_pollers_only(start_daemon: StartDaemon,
                                                    tmp_path: Path) -> None:
    (tmp_path / "allocator.py").write_text(ALLOCATOR)
    daemon = start_daemon("engine", write_config(tmp_path, f"""
[daemons.engine]
metrics_port = 0
[daemons.engine.plugins.allocator]
spec = "{tmp_path / 'allocator.py'}"
"""))
    [started] = [line for line in daemon.logs() if line["message"] == "daemon started"]
    assert started["gc_frozen_objects"] > 10_000  # the imports, config and plugins

    def counts() -> dict[str, int]:
        with daemon.client() as client:
            result: dict[str, int] = client.plugin_command("allocator", "count")
            return result

    wait_for(lambda: counts()["between"] >= 100, "the daemon to collect its garbage")
    assert counts()["inside"] == 0
