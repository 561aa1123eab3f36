"""The control plane's TCP token: read from a file only its owner can read, checked in
constant time, never logged or shown.

Errors name the file and what is wrong with it, never the token.
"""

from __future__ import annotations

import hmac
import os
import stat
import string
from pathlib import Path

from hft.daemons.runtime import secrets

MIN_TOKEN_LENGTH = 16
_TOKEN_CHARACTERS = frozenset((string.ascii_letters + string.digits + string.punctuation).encode())
METADATA_KEY = "authorization"
"""gRPC metadata key of the token: ``authorization: Bearer <token>``."""


class TokenError(Exception):
    """A token file that cannot be used; the message says why, without the token."""


def read_token(path: Path, what: str = "token file") -> bytes:
    """The token in ``path``: a regular file of the current user, unreadable by others,
    holding MIN_TOKEN_LENGTH or more printable characters (a final newline is ignored).
    ``what`` names the file in errors (the /metrics password file is read the same way)."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW)
    except OSError as exc:
        raise TokenError(f"{what} {path}: {exc.strerror}") from None
    try:
        info = os.fstat(fd)
        if not stat.S_ISREG(info.st_mode):
            raise TokenError(f"{what} {path} is not a regular file")
        if info.st_uid != os.getuid():
            raise TokenError(f"{what} {path} belongs to uid {info.st_uid}, not to this user")
        if info.st_mode & 0o077:
            raise TokenError(f"{what} {path} has mode {stat.S_IMODE(info.st_mode):o}: others "
                             f"may read it; chmod 600 {path}")
        data = os.read(fd, 4096)
    finally:
        os.close(fd)
    token = data.rstrip(b"\r\n")
    if len(token) < MIN_TOKEN_LENGTH:
        raise TokenError(f"{what} {path} holds {len(token)} characters; at least "
                         f"{MIN_TOKEN_LENGTH} are needed")
    if not set(token) <= _TOKEN_CHARACTERS:
        raise TokenError(f"{what} {path} holds characters other than printable ASCII "
                         "without spaces")
    secrets.register(token.decode())
    return token


def bearer(token: bytes | str) -> str:
    """The metadata value that carries ``token``."""
    return "Bearer " + (token.decode() if isinstance(token, bytes) else token)


def matches(supplied: str, expected: str) -> bool:
    """Whether the supplied metadata value carries the expected token; constant time."""
    return hmac.compare_digest(supplied.encode(), expected.encode())
