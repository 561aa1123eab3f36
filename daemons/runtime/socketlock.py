"""One daemon per control socket.

gRPC unlinks whatever sits at a Unix socket path before it binds, so a second daemon started
by mistake would silently steal the first one's socket. Before binding, a daemon therefore
takes an exclusive ``flock`` on ``<socket>.lock`` (released by the kernel when the process
dies, so a crash never leaves it held) and probes the path: a socket that still accepts
connections belongs to a live server and is refused; one that does not is stale and removed.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import socket
import stat
from pathlib import Path

PROBE_TIMEOUT_S = 1.0
"""How long anything that only asks whether a daemon is there waits for it: this stale-socket
probe, and hftctl's status, start and stop probes over gRPC."""


class SocketInUseError(Exception):
    """Another live process serves on, or holds the lock of, the socket path."""


class SocketClaim:
    """The exclusive right to serve on ``path``, held until ``release`` or process exit."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.lock_path = path.with_name(path.name + ".lock")
        path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
        self._fd = os.open(self.lock_path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
        try:
            self._lock()
            _remove_stale_socket(path)
        except BaseException:
            os.close(self._fd)
            raise

    def _lock(self) -> None:
        try:
            fcntl.flock(self._fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            owner = os.pread(self._fd, 32, 0).decode(errors="replace").strip() or "unknown"
            raise SocketInUseError(f"{self.path} belongs to a running daemon (pid {owner}, "
                                   f"lock {self.lock_path})") from None
        os.ftruncate(self._fd, 0)
        os.pwrite(self._fd, f"{os.getpid()}\n".encode(), 0)

    def release(self) -> None:
        """Remove the socket and drop the lock (the lock file stays: unlinking it would
        let two processes lock different files of the same name)."""
        self.path.unlink(missing_ok=True)
        os.close(self._fd)


def _remove_stale_socket(path: Path) -> None:
    try:
        mode = path.lstat().st_mode
    except FileNotFoundError:
        return
    if not stat.S_ISSOCK(mode):
        raise SocketInUseError(f"{path} exists and is not a socket; move it away")
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as probe:
        probe.settimeout(PROBE_TIMEOUT_S)
        with contextlib.suppress(ConnectionRefusedError, FileNotFoundError):
            probe.connect(os.fspath(path))
            raise SocketInUseError(f"{path} is served by another process that does not take "
                                   "the hft lock; stop it first")
    path.unlink(missing_ok=True)
