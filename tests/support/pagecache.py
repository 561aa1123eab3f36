"""Whether the page cache still holds unwritten changes of a file's page: the kernel's
PG_dirty flag, read through /proc/self/pagemap and /proc/kpageflags (root only). A durable
write leaves its pages clean (written out); a plain one leaves them dirty for the kernel's
writeback, so the tests of the durable options look at the flag, not at a clock. Use files
on a disk filesystem (/var/tmp): tmpfs pages are never written out."""

from __future__ import annotations

import mmap
import os
from pathlib import Path

import numpy as np

PAGE = mmap.PAGESIZE


def page_is_dirty(mapping: mmap.mmap, offset: int) -> bool:
    """The flag of the mapped page at ``offset``."""
    address = np.frombuffer(mapping, np.uint8).ctypes.data + offset
    mapping[offset]  # fault the page in, so pagemap has its frame
    with open("/proc/self/pagemap", "rb") as pagemap:
        pagemap.seek(address // PAGE * 8)
        entry = int.from_bytes(pagemap.read(8), "little")
    assert entry >> 63, "page not present"
    frame = entry & ((1 << 55) - 1)
    with open("/proc/kpageflags", "rb") as flags:
        flags.seek(frame * 8)
        return bool(int.from_bytes(flags.read(8), "little") >> 4 & 1)


def file_page_is_dirty(path: Path, offset: int) -> bool:
    """The flag of the page of ``path`` that holds byte ``offset``."""
    fd = os.open(path, os.O_RDONLY)
    try:
        view = mmap.mmap(fd, 0, access=mmap.ACCESS_READ)
        try:
            return page_is_dirty(view, offset)
        finally:
            view.close()
    finally:
        os.close(fd)
