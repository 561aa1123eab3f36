"""A daemon that follows several journals sleeps on all of them at once (futex_waitv): a
commit to any one wakes it, not the end of its timeout."""

from __future__ import annotations

import threading
import time
from pathlib import Path

import pytest

from hft.daemons.runtime.events import EventType, empty
from hft.daemons.runtime.journal import JournalReader, JournalWriter, wait_any

TIMEOUT_S = 30.0
"""Far beyond any wake-up: a sleeper that returns long before it was woken by the commit."""


@pytest.mark.parametrize("committed", ["first", "second"])
def test_a_commit_to_any_followed_journal_wakes_the_sleeper(tmp_path: Path,
                                                              committed: str) -> None:
    writers = {name: JournalWriter(tmp_path, name) for name in ("first", "second")}
    readers = [JournalReader(tmp_path, name, start="end") for name in writers]
    outcome: list[tuple[bool, float]] = []

    def sleep() -> None:
        started = time.monotonic()
        outcome.append((wait_any(readers, TIMEOUT_S), time.monotonic() - started))

    sleeper = threading.Thread(target=sleep)
    sleeper.start()
    time.sleep(0.3)  # the sleeper is in futex_waitv (or about to: the protocol covers that)
    writers[committed].append(empty(EventType.TIMER)[0])
    sleeper.join(TIMEOUT_S + 5)
    try:
        [(ready, waited_s)] = outcome
        assert ready and waited_s < TIMEOUT_S / 2
        assert [reader.lag for reader in readers] == ([1, 0] if committed == "first" else [0, 1])
    finally:
        for reader in readers:
            reader.close()
        for writer in writers.values():
            writer.close()


def test_with_nothing_committed_it_returns_false_at_its_timeout(tmp_path: Path) -> None:
    with JournalWriter(tmp_path, "a"), JournalWriter(tmp_path, "b"):
        readers = [JournalReader(tmp_path, name, start="end") for name in ("a", "b")]
        try:
            assert wait_any(readers, 0.05) is False
        finally:
            for reader in readers:
                reader.close()
