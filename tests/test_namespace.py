"""The repository's top-level folders are imported only as subpackages of ``hft``: a bare
``import daemons`` from the repository root (which would make a second copy of every class,
and let ``watchdog/`` shadow the PyPI package) fails at once, saying what to import."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
FOLDERS = ("daemons", "watchdog", "ctl", "protos", "bench")


def python_in_repo_root(code: str) -> subprocess.CompletedProcess[str]:
    """``python -c CODE`` from the repository root, where the folders are on sys.path."""
    return subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True,
                          timeout=120)


@pytest.mark.parametrize("module", [*FOLDERS, "daemons.runtime.bus"])
def test_a_folder_imported_by_its_bare_name_fails_loudly(module: str) -> None:
    folder = module.partition(".")[0]
    done = python_in_repo_root(f"import {module}")
    assert done.returncode == 1
    assert done.stderr.splitlines()[-1] == (
        f"ImportError: '{folder}' must be imported as 'hft.{folder}' (the repository's top-level "
        f"folders are mapped into the hft package by the symlink hft/{folder} -> ../{folder})")


def test_the_folders_import_as_hft_subpackages_from_the_repo_root() -> None:
    done = python_in_repo_root("import hft.daemons.runtime.bus, hft.watchdog, hft.ctl.cli, "
                               "hft.protos.control_pb2, hft.bench, hft.api")
    assert (done.returncode, done.stderr) == (0, "")


def test_this_test_run_imports_each_module_under_one_name() -> None:
    """pytest runs in importlib mode: no folder is imported by its bare name, and conftest is
    loaded once, under its package path, not also as a top-level ``conftest`` module."""
    assert not set(FOLDERS) & {name.partition(".")[0] for name in sys.modules}
    assert "conftest" not in sys.modules
