"""hft: a daemon suite for low-latency trading of Chinese futures over CTP.

The top-level folders of the repository are this package's subpackages; ``hft/`` holds one
symlink per folder, so ``daemons/runtime/bus.py`` is imported as ``hft.daemons.runtime.bus``.
"""

from importlib.metadata import version

__version__ = version("hft")
"""The installed distribution's version: pyproject.toml is its one home."""
