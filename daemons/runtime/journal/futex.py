"""Cross-process sleep and wake-up on a word of shared memory (Linux futex, via ctypes).

A blocking journal reader sleeps in ``futex_wait`` on the journal's ``wake_word``; the writer
bumps the word on each commit and calls ``futex_wake`` only when a reader has raised its
sleeper flag. The operations are the shared (not process-private) ones, so they work on a
MAP_SHARED file mapping across processes.

``full_fence`` issues a locked instruction (through ``pthread_spin_trylock``), the one ordering
point pure Python cannot otherwise express: a sleeper must make its flag visible before it
re-reads the commit counter (a store then a load, which x86 may reorder).
"""

from __future__ import annotations

import ctypes
import errno
import mmap
import platform
import time
from collections.abc import Sequence

from hft.daemons.runtime.libc import libc as _libc

_SYS_FUTEX = {"x86_64": 202, "aarch64": 98}.get(platform.machine())
_SYS_FUTEX_WAITV = {"x86_64": 449, "aarch64": 449}.get(platform.machine())
_FUTEX2_SIZE_U32 = 0x02  # a 32-bit word; not FUTEX2_PRIVATE: the words are in shared files
_FUTEX_WAIT = 0
_FUTEX_WAKE = 1
_WAKE_ALL = 0x7FFFFFFF

_fence_word = ctypes.c_int(0)


class _Timespec(ctypes.Structure):
    _fields_ = [("tv_sec", ctypes.c_long), ("tv_nsec", ctypes.c_long)]


class _Waiter(ctypes.Structure):
    """``struct futex_waitv``: one word of a futex_waitv call."""

    _fields_ = [("val", ctypes.c_uint64), ("uaddr", ctypes.c_uint64), ("flags", ctypes.c_uint32),
                ("reserved", ctypes.c_uint32)]


class FutexWord:
    """A 32-bit word inside a shared mmap that processes can sleep on."""

    def __init__(self, buffer: mmap.mmap, offset: int) -> None:
        if _SYS_FUTEX is None:
            raise OSError(f"futex wait is not supported on {platform.machine()}")
        self._word = ctypes.c_uint32.from_buffer(buffer, offset)
        self.address = ctypes.addressof(self._word)
        self._address = ctypes.c_void_p(self.address)

    def wait(self, expected: int, timeout_s: float) -> None:
        """Sleep while the word equals ``expected``, at most ``timeout_s`` (returns early on a
        wake-up, a signal, or when the word already differs)."""
        whole = int(timeout_s)
        timeout = _Timespec(whole, int((timeout_s - whole) * 1e9))
        result = _libc.syscall(_SYS_FUTEX, self._address, _FUTEX_WAIT, ctypes.c_uint32(expected),
                               ctypes.byref(timeout), None, 0)
        if result == -1:
            err = ctypes.get_errno()
            if err not in (errno.EAGAIN, errno.ETIMEDOUT, errno.EINTR):
                raise OSError(err, f"futex wait failed: {errno.errorcode.get(err, err)}")

    def wake_all(self) -> None:
        _libc.syscall(_SYS_FUTEX, self._address, _FUTEX_WAKE, _WAKE_ALL, None, None, 0)

    @property
    def value(self) -> int:
        return int(self._word.value)

    def bump(self) -> None:
        """Change the word and wake its sleepers. Two threads bumping at once may both store
        the same value: still not the one a sleeper saw, which is all a wake-up needs."""
        self._word.value = (self._word.value + 1) & 0xFFFFFFFF
        self.wake_all()

    def release(self) -> None:
        """Drop the reference into the mmap so it can be closed."""
        del self._word


def wait_any(words: Sequence[tuple[FutexWord, int]], timeout_s: float) -> None:
    """Sleep while every word still equals its expected value, at most ``timeout_s``: a wake-up
    of any one ends it (``futex_waitv``, Linux 5.16+). Where the kernel lacks it, only the first
    word is waited on (the others are then noticed at the timeout)."""
    if len(words) == 1 or _SYS_FUTEX_WAITV is None:
        words[0][0].wait(words[0][1], timeout_s)
        return
    waiters = (_Waiter * len(words))(*(_Waiter(expected, word.address, _FUTEX2_SIZE_U32, 0)
                                       for word, expected in words))
    deadline = time.clock_gettime(time.CLOCK_MONOTONIC) + timeout_s
    whole = int(deadline)
    timeout = _Timespec(whole, int((deadline - whole) * 1e9))
    result = _libc.syscall(_SYS_FUTEX_WAITV, waiters, len(words), 0, ctypes.byref(timeout),
                           time.CLOCK_MONOTONIC)
    if result == -1:
        err = ctypes.get_errno()
        if err == errno.ENOSYS:
            words[0][0].wait(words[0][1], timeout_s)
        elif err not in (errno.EAGAIN, errno.ETIMEDOUT, errno.EINTR):
            raise OSError(err, f"futex_waitv failed: {errno.errorcode.get(err, err)}")


def full_fence() -> None:
    """A full memory barrier: a locked read-modify-write on a private word."""
    if _libc.pthread_spin_trylock(ctypes.byref(_fence_word)) == 0:
        _libc.pthread_spin_unlock(ctypes.byref(_fence_word))
