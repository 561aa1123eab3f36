"""hft: a daemon suite for low-latency trading of Chinese futures over CTP.

The top-level folders of the repository are this package's subpackages; ``hft/`` holds one
symlink per folder, so ``daemons/runtime/bus.py`` is imported as ``hft.daemons.runtime.bus``.
"""


def __getattr__(name: str) -> str:
    """``hft.__version__``: read from the installed distribution's metadata, so
    pyproject.toml's ``version`` is its one home; looked up on first use (which keeps
    importlib.metadata out of every process's start-up), then a plain module attribute."""
    if name == "__version__":
        from importlib.metadata import version

        globals()[name] = found = version("hft")
        return found
    raise AttributeError(f"module 'hft' has no attribute {name!r}")


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
