"""The suite's home directory and the directories below it, private to their owner.

Journals, logs, sockets and heartbeats tell other users what is traded and how much, so
``paths.home``, ``journal/``, ``run/`` and ``log/`` are created 0700, and one found more
open (made by an older version, or by ``mkdir -p``) is tightened to 0700 if it is ours.
"""

from __future__ import annotations

import os
from pathlib import Path

from hft.daemons.runtime.config import SuiteConfig

PRIVATE_MODE = 0o700


def private_dirs(suite: SuiteConfig) -> tuple[Path, ...]:
    return suite.home, suite.run_dir, suite.journal_dir, suite.log_dir


def prepare_home(suite: SuiteConfig) -> list[Path]:
    """Create the suite's directories 0700; returns those that existed more open and were
    tightened. Raises OSError (naming the path) when one cannot be made."""
    tightened = []
    for directory in private_dirs(suite):
        directory.mkdir(mode=PRIVATE_MODE, parents=True, exist_ok=True)
        info = directory.stat()
        if info.st_mode & 0o077 and info.st_uid == os.getuid():
            directory.chmod(PRIVATE_MODE)
            tightened.append(directory)
    return tightened
