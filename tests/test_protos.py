"""The generated gRPC code in protos/ is what `hftctl gen-protos` makes now, byte for byte."""

from __future__ import annotations

from pathlib import Path

from click.testing import CliRunner

from hft.ctl import protogen
from hft.ctl.cli import main


def test_committed_generated_code_is_fresh(tmp_path: Path) -> None:
    written = protogen.generate(tmp_path)
    assert sorted(p.name for p in written) == [
        "control_pb2.py", "control_pb2.pyi", "control_pb2_grpc.py",
        "watchdog_pb2.py", "watchdog_pb2.pyi", "watchdog_pb2_grpc.py"]
    for fresh in written:
        committed = protogen.SOURCE_ROOT / fresh.relative_to(tmp_path)
        assert committed.read_bytes() == fresh.read_bytes(), (
            f"{committed} is stale: run `hftctl gen-protos` and commit the result")


def test_generated_grpc_module_imports_through_the_hft_namespace() -> None:
    grpc_module = protogen.SOURCE_ROOT / "hft" / "protos" / "control_pb2_grpc.py"
    assert "from hft.protos import control_pb2 as" in grpc_module.read_text()


def test_stale_and_missing_files_are_detected(tmp_path: Path) -> None:
    by_name = {path.name: path for path in protogen.generate(tmp_path)}
    stub, grpc_module = by_name["control_pb2.pyi"], by_name["control_pb2_grpc.py"]
    assert protogen.stale_files(tmp_path) == []
    stub.write_bytes(stub.read_bytes() + b"\n")
    grpc_module.unlink()
    assert sorted(protogen.stale_files(tmp_path)) == sorted([stub, grpc_module])


def test_check_command_passes_on_the_committed_code() -> None:
    result = CliRunner().invoke(main, ["gen-protos", "--check"])
    assert result.exit_code == 0, result.output
    assert "up to date" in result.output
