"""Options several ``hftctl`` modules share (kept apart from cli.py so those modules can
use them without importing the command group that registers them)."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

import click

F = TypeVar("F", bound=Callable[..., Any])


def config_option(command: F) -> F:
    """``--config FILE`` (or $HFT_CONFIG): the suite config; the built-in default if unset."""
    return click.option(
        "--config", "config_file", metavar="FILE", envvar="HFT_CONFIG",
        type=click.Path(exists=True, dir_okay=False, path_type=Path),
        help="Suite config (TOML) [env HFT_CONFIG; default: the built-in daemons/default.toml].",
    )(command)
