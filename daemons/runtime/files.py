"""Files that other processes map: created whole, readable by their owner only."""

from __future__ import annotations

import os
from pathlib import Path


def create_atomically(path: Path, header: bytes, size: int) -> None:
    """Create ``path`` of ``size`` bytes starting with ``header``, complete or not at all (a
    temp file renamed into place), so a reader never maps a half-made file. Mode 0600:
    journals and snapshots hold trading data."""
    tmp = path.with_name(path.name + ".tmp")
    fd = os.open(tmp, os.O_RDWR | os.O_CREAT | os.O_TRUNC, 0o600)
    try:
        os.ftruncate(fd, size)
        os.pwrite(fd, header, 0)
    finally:
        os.close(fd)
    os.rename(tmp, path)
