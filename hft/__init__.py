"""hft: a daemon suite for low-latency trading of Chinese futures over CTP.

The top-level folders of the repository are this package's subpackages; ``hft/`` holds one
symlink per folder, so ``daemons/runtime/bus.py`` is imported as ``hft.daemons.runtime.bus``.
"""

__version__ = "0.1.0"


def require_namespace(module_name: str) -> None:
    """Refuse a top-level folder imported by its bare name (``import daemons`` with the
    repository root on ``sys.path``): it would load a second copy of every module beside the
    ``hft.*`` one, with classes that are equal in name only, and ``watchdog`` would shadow the
    PyPI package. Each folder's ``__init__`` calls this with its ``__name__``."""
    folder = module_name.rpartition(".")[2]
    if module_name != f"hft.{folder}":
        raise ImportError(
            f"{module_name!r} must be imported as 'hft.{folder}' (the repository's top-level "
            f"folders are mapped into the hft package by the symlink hft/{folder} -> ../{folder})",
            name=module_name)
