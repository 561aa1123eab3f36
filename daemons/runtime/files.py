"""Files that other processes map: created whole, never replaced, blocks allocated up front,
readable by their owner only."""

from __future__ import annotations

import contextlib
import errno
import mmap
import os
import tempfile
from pathlib import Path

import numpy as np

from hft.daemons.runtime.events import LAYOUT_HASH, RECORD_SIZE


class NoSpace(OSError):
    """The filesystem has no room for the blocks a mapped file needs."""

    def __init__(self, path: Path, needed: int) -> None:
        self.path = path
        self.needed = needed
        super().__init__(errno.ENOSPC, f"{path.parent}: no space left for {needed} bytes "
                                       f"({path.name})")


def sync_directory(directory: Path) -> None:
    """Make a rename or a creation in ``directory`` durable (fsync of the directory)."""
    fd = os.open(directory, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def allocate(fd: int, path: Path, offset: int, length: int) -> None:
    """Give ``length`` bytes from ``offset`` real blocks now (``posix_fallocate``): a store
    through a mapping into a hole the filesystem cannot fill kills the process with SIGBUS,
    while this fails cleanly with NoSpace. Already allocated ranges cost next to nothing."""
    if length == 0:
        return  # posix_fallocate refuses an empty range
    try:
        os.posix_fallocate(fd, offset, length)
    except OSError as exc:
        if exc.errno in (errno.ENOSPC, errno.EDQUOT):
            raise NoSpace(path, length) from None
        raise


def create_exclusively(path: Path, header: bytes, size: int, allocated: int | None = None) -> bool:
    """Create ``path`` of ``size`` bytes starting with ``header``, its first ``allocated``
    bytes (default: all) backed by real blocks; False if ``path`` already exists.

    The file is made complete under a private temp name and linked into place, which fails
    if the name exists: a reader never maps a half-made file, and a file that exists is
    never replaced, so a lock taken on it is the lock every other opener sees (a rename
    would swap the inode under a lock holder). Mode 0600: journals and snapshots hold
    trading data."""
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        os.ftruncate(fd, size)
        allocate(fd, path, 0, size if allocated is None else allocated)
        os.pwrite(fd, header, 0)
        try:
            os.link(tmp, path)
        except FileExistsError:
            return False
        return True
    finally:
        os.close(fd)
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)


class FileTooSmall(ValueError):
    """A mapped file shorter than its header says it must be (truncated, or not ours)."""


def size_problem(path: Path, actual: int, expected: int) -> str | None:
    """What is wrong with a file of ``actual`` bytes that must hold ``expected``, or None."""
    if actual < expected:
        return f"{path}: truncated to {actual} bytes, its header needs {expected}"
    return None


def map_whole(path: Path, *, writable: bool, min_size: int) -> tuple[int, mmap.mmap]:
    """Open ``path`` and map all of it, shared; returns (fd, mapping), the caller owning
    both. FileNotFoundError if it does not exist, FileTooSmall if it is under ``min_size``
    bytes; each caller turns these into its own error."""
    fd = os.open(path, os.O_RDWR if writable else os.O_RDONLY)
    try:
        problem = size_problem(path, os.fstat(fd).st_size, min_size)
        if problem is not None:
            raise FileTooSmall(problem)
        return fd, mmap.mmap(fd, 0, access=mmap.ACCESS_WRITE if writable else mmap.ACCESS_READ)
    except BaseException:
        os.close(fd)
        raise


def identity_problem(header: np.void, magic: bytes, version: int) -> str | None:
    """What is wrong with a header's identity (its ``magic``, ``version``, ``record_size``
    and ``layout_hash`` fields) for this build, or None if it is ours: the one check journals
    and snapshots make on every open, each raising it as its own error type."""
    found_magic, found_version = bytes(header["magic"]), int(header["version"])
    record_size, layout_hash = int(header["record_size"]), int(header["layout_hash"])
    if found_magic != magic:
        return f"magic {found_magic!r}, expected {magic!r}"
    if found_version != version:
        return f"format version {found_version}, this build reads version {version}"
    if (record_size, layout_hash) != (RECORD_SIZE, LAYOUT_HASH):
        return (f"written with another record layout (record size {record_size}, layout hash "
                f"{layout_hash:#x}; this build: {RECORD_SIZE}, {LAYOUT_HASH:#x}); read it with "
                "the build that wrote it")
    return None
