"""Credentials a plugin's config leaves empty, taken from the environment or a 0600 file.

A process environment or a file only its owner can read is harder to leak than a config
file. What the config sets wins; then the environment variable; then the JSON file's key.
A list field (a set of fronts) takes a comma-separated variable. Errors name fields and
files, never a value.
"""

from __future__ import annotations

import json
import os
import stat
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any, TypeVar

from pydantic import BaseModel, SecretStr

Config = TypeVar("Config", bound=BaseModel)


def with_credentials(config: Config, environment: Mapping[str, str], *, needed: Sequence[str],
                     who: str, file: Path | None = None) -> Config:
    """``config`` with each field of ``environment`` (field -> variable) it leaves empty filled
    from the environment, then from ``file``; ValueError naming each ``needed`` field still
    empty (``the {who} needs ...``)."""
    values: dict[str, Any] = {}
    for key, variable in environment.items():
        text = os.environ.get(variable)
        if text and _empty(getattr(config, key)):
            values[key] = _split(text) if isinstance(getattr(config, key), list) else text
    if file is not None:
        for key, value in _read_file(file, config, environment).items():
            if _empty(getattr(config, key)) and key not in values:
                values[key] = value
    settings = type(config).model_validate(config.model_dump() | values)
    missing = [f"{key} (or ${environment[key]})" for key in needed
               if _empty(getattr(settings, key))]
    if missing:
        raise ValueError(f"the {who} needs {', '.join(missing)}")
    return settings


def _read_file(path: Path, config: BaseModel, environment: Mapping[str, str]) -> dict[str, Any]:
    mode = stat.S_IMODE(path.stat().st_mode)
    if mode & 0o077:
        raise ValueError(f"credentials file {path} is mode {mode:o}: make it 0600")
    try:
        stored = json.loads(path.read_text())
    except ValueError:
        raise ValueError(f"credentials file {path} is not JSON") from None
    if not isinstance(stored, dict):
        raise ValueError(f"credentials file {path} must hold a JSON object")
    unknown = set(stored) - set(environment)
    if unknown:
        raise ValueError(f"credentials file {path}: unknown keys {sorted(unknown)}")
    for key, value in stored.items():
        if isinstance(getattr(config, key), list):
            if not (isinstance(value, list) and all(isinstance(v, str) for v in value)):
                raise ValueError(f"credentials file {path}: {key} must be a list of strings")
        elif not isinstance(value, str):  # the value itself is not echoed, unlike pydantic's
            raise ValueError(f"credentials file {path}: {key} must be a string")
    return stored


def _empty(value: object) -> bool:
    return not (value.get_secret_value() if isinstance(value, SecretStr) else value)


def _split(text: str) -> list[str]:
    return [item.strip() for item in text.split(",") if item.strip()]
