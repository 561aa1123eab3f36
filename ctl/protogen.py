"""Generates the Python code for ``protos/*.proto`` (``hftctl gen-protos``).

protoc runs with the directory holding the ``hft`` package as its include root and each
file named ``hft/protos/NAME.proto``, so the generated gRPC module imports
``from hft.protos import NAME_pb2`` and the code works under the ``hft`` namespace. The
same command can write into a scratch directory, which is how staleness is detected: the
committed files must equal freshly generated ones byte for byte (grpcio-tools is pinned
for that reason).
"""

from __future__ import annotations

import filecmp
import tempfile
from importlib import resources
from pathlib import Path

import hft

SOURCE_ROOT = Path(hft.__file__).resolve().parent.parent
"""The include root: the directory that contains the ``hft`` package."""

PROTO_PACKAGE = Path("hft", "protos")
GENERATED_SUFFIXES = ("_pb2.py", "_pb2_grpc.py", "_pb2.pyi")


class ProtoGenError(Exception):
    """protoc is missing or refused a .proto file."""


def proto_files() -> list[Path]:
    """The .proto files, relative to SOURCE_ROOT (as protoc must see them)."""
    return sorted(p.relative_to(SOURCE_ROOT) for p in (SOURCE_ROOT / PROTO_PACKAGE).glob("*.proto"))


def generated_files(protos: list[Path]) -> list[Path]:
    """The files protoc writes for ``protos``, relative to the output root."""
    return [p.with_name(p.stem + suffix) for p in protos for suffix in GENERATED_SUFFIXES]


def generate(out_root: Path = SOURCE_ROOT) -> list[Path]:
    """Run protoc for every .proto file, writing below ``out_root``; returns the files written.

    With the default ``out_root`` the files land next to the .proto files.
    """
    try:
        from grpc_tools import protoc
    except ImportError:
        raise ProtoGenError("grpcio-tools is not installed; install the dev extra: "
                            "pip install -e '.[dev]'") from None
    protos = proto_files()
    if not protos:
        raise ProtoGenError(f"no .proto files in {SOURCE_ROOT / PROTO_PACKAGE}")
    (out_root / PROTO_PACKAGE).mkdir(parents=True, exist_ok=True)
    well_known_types = resources.files("grpc_tools") / "_proto"
    args = ["grpc_tools.protoc", f"-I{SOURCE_ROOT}", f"-I{well_known_types}",
            f"--python_out={out_root}", f"--pyi_out={out_root}",
            f"--grpc_python_out={out_root}", *map(str, protos)]
    if protoc.main(args) != 0:
        raise ProtoGenError(f"protoc failed on {[str(p) for p in protos]} (see its message above)")
    return [out_root / p for p in generated_files(protos)]


def stale_files(root: Path = SOURCE_ROOT) -> list[Path]:
    """Generated files below ``root`` that are missing or differ from a fresh generation."""
    with tempfile.TemporaryDirectory(prefix="hft-protos-") as scratch:
        generate(Path(scratch))
        return [root / rel for rel in generated_files(proto_files())
                if not (root / rel).is_file()
                or not filecmp.cmp(Path(scratch, rel), root / rel, shallow=False)]
