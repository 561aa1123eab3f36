"""hft: a daemon suite for low-latency trading of Chinese futures over CTP.

The top-level folders of the repository are this package's subpackages; ``hft/`` holds one
symlink per folder, so ``daemons/runtime/bus.py`` is imported as ``hft.daemons.runtime.bus``.
"""

__version__ = "0.1.0"
