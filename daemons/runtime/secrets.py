"""Secrets: the one type for credentials, and the registry of values no log line may show.

:class:`Secret` is pydantic's SecretStr with ``reveal()``: a plugin config declares
``password: Secret`` and gets validation, ``***`` in repr, str and JSON dumps, and the value
registered here. The log filter (``logs.py``) replaces exactly the registered values,
wherever they appear, so it never garbles unrelated text the way masking every
``token: <word>`` pattern did. Values are registered as they become known: every Secret
made, everything under a secret-looking key of a plugin config (``register_config``, before
validation, so a password given as a number is known too), the control token and the
/metrics password.

Values shorter than MIN_LENGTH are not registered: masking every ``1`` or ``ab`` in the
logs would garble them and guard nothing a guess could not find.
"""

from __future__ import annotations

import re
import threading
from collections.abc import Mapping
from typing import Any

from pydantic import SecretStr

MASK = "***"
MIN_LENGTH = 4
_SECRET_NAME = re.compile(
    r"passw(?:or)?d|pwd|secret|token|auth_?code|api_?key|private_?key|credential", re.IGNORECASE)
_known: tuple[str, ...] = ()
"""Registered values, longest first (so a secret containing another is masked whole);
replaced, never mutated, so a logging thread reads a consistent tuple without a lock."""
_register_lock = threading.Lock()


class Secret(SecretStr):
    """A credential that shows as ``***`` everywhere; ``reveal()`` is the one way to read it."""

    def __init__(self, secret_value: str) -> None:
        super().__init__(secret_value)
        register(secret_value)

    def reveal(self) -> str:
        return self.get_secret_value()


def is_secret_key(key: str) -> bool:
    """True for names like password, AuthCode, api_key, access_token."""
    return bool(_SECRET_NAME.search(key))


def register(value: object) -> None:
    """Mask ``value`` (as text) in every log line from now on."""
    global _known
    if isinstance(value, bool) or not isinstance(value, str | int | float):
        return
    text = str(value)
    if len(text) < MIN_LENGTH or text in _known:
        return
    with _register_lock:
        _known = tuple(sorted({*_known, text}, key=len, reverse=True))


def register_config(config: Any, *, secret: bool = False) -> None:
    """Register every value under a secret-looking key of ``config``, at any depth (every
    value below such a key: ``credentials = {user, password}`` is secret as a whole)."""
    if isinstance(config, Mapping):
        for key, value in config.items():
            register_config(value, secret=secret or is_secret_key(str(key)))
    elif isinstance(config, list | tuple):
        for value in config:
            register_config(value, secret=secret)
    elif isinstance(config, SecretStr):
        register(config.get_secret_value())
    elif secret:
        register(config)


def mask(text: str) -> str:
    """``text`` with every registered secret value replaced by MASK."""
    for value in _known:
        if value in text:
            text = text.replace(value, MASK)
    return text
