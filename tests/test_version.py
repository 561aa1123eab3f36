"""The version number has one home, pyproject.toml; the package reports the installed one."""

from __future__ import annotations

import tomllib
from pathlib import Path

import hft


def test_the_package_version_is_pyprojects() -> None:
    pyproject = Path(__file__).resolve().parents[1] / "pyproject.toml"
    assert hft.__version__ == tomllib.loads(pyproject.read_text("utf-8"))["project"]["version"]
