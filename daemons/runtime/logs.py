"""Structured logs: one JSON object per line, with secrets masked before they are written.

Every line carries ``time`` (UTC ISO 8601), ``level``, ``daemon``, ``pid``, ``logger`` and
``message`` plus the call's ``extra`` fields, so logs can be filtered by plugin, handler or
event without parsing text. Credentials travel in plugin configs (CTP password, auth code),
so a filter on every handler masks, at any depth of the message and the extras, every value
registered in :mod:`hft.daemons.runtime.secrets` and every extra field whose name looks
secret; other text is left exactly as it was.
"""

from __future__ import annotations

import logging
import os
import sys
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from pythonjsonlogger.json import JsonFormatter

from hft.daemons.runtime.secrets import MASK, is_secret_key, mask

_RECORD_ATTRS = frozenset(vars(logging.LogRecord("", 0, "", 0, "", None, None))) | {"message"}
_TRACEBACKS = logging.Formatter()


def mask_secrets(value: Any) -> Any:
    """A copy of ``value`` with the values of secret-looking keys and every registered
    secret in its text replaced, at any depth."""
    if isinstance(value, Mapping):
        return {k: MASK if is_secret_key(str(k)) else mask_secrets(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [mask_secrets(v) for v in value]
    if isinstance(value, str):
        return mask(value)
    return value


class SecretMaskFilter(logging.Filter):
    """Masks secrets in a record's message and ``extra`` fields (never drops the record)."""

    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        masked = mask_secrets(message)
        if masked != message:
            record.msg, record.args = masked, None
        if record.exc_info:  # exception messages carry values too: format them masked here
            record.exc_text = mask(_TRACEBACKS.formatException(record.exc_info))
            record.exc_info = None
        for key in vars(record).keys() - _RECORD_ATTRS:
            value = getattr(record, key)
            setattr(record, key, MASK if is_secret_key(key) else mask_secrets(value))
        return True


def configure_logging(daemon: str, *, level: str = "INFO", stderr: bool = True,
                      file: Path | None = None) -> list[logging.Handler]:
    """Send every logger's records as JSON lines to stderr and/or ``file``.

    Returns the handlers it added to the root logger (so a caller can remove them).
    """
    formatter = JsonFormatter(
        ["levelname", "name", "message"],
        rename_fields={"levelname": "level", "name": "logger"},
        static_fields={"daemon": daemon, "pid": os.getpid()},
        timestamp="time",
        json_ensure_ascii=False,
    )
    handlers: list[logging.Handler] = []
    if stderr:
        handlers.append(logging.StreamHandler(sys.stderr))
    if file is not None:
        file.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
        file.touch(mode=0o600, exist_ok=True)
        handlers.append(logging.FileHandler(file, encoding="utf-8"))
    root = logging.getLogger()
    for handler in handlers:
        handler.setFormatter(formatter)
        handler.addFilter(SecretMaskFilter())
        root.addHandler(handler)
    root.setLevel(level)
    return handlers
