"""The token-checked TCP control listener: a real daemon, real gRPC over a real TCP socket,
hftctl against it; token files that are refused, and a token that never reaches the logs."""

from __future__ import annotations

import socket
import stat
from collections.abc import Callable
from pathlib import Path

import pytest
from click.testing import CliRunner
from support.daemons import Daemon, spawn_daemon, wait_for, write_config

from hft.ctl.cli import main
from hft.ctl.client import ControlError, DaemonClient
from hft.daemons.runtime.config import ConfigError, load_config
from hft.daemons.runtime.token import TokenError, read_token

TOKEN = "s3cret-Token-0123456789"
StartDaemon = Callable[[str, Path], Daemon]


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


def _token_file(path: Path, text: str = TOKEN, mode: int = 0o600) -> Path:
    path.write_text(text + "\n")
    path.chmod(mode)
    return path


def _config(tmp_path: Path, port: int, token_file: Path) -> Path:
    return write_config(tmp_path, f"""
[daemons.engine]
metrics_port = 0
control_tcp = "127.0.0.1:{port}"
control_token_file = "{token_file}"
""")


@pytest.fixture
def listening(start_daemon: StartDaemon, tmp_path: Path) -> tuple[Daemon, str]:
    port = _free_port()
    daemon = start_daemon("engine", _config(tmp_path, port, _token_file(tmp_path / "token")))
    return daemon, f"127.0.0.1:{port}"


def test_the_token_opens_the_tcp_listener(listening: tuple[Daemon, str]) -> None:
    daemon, address = listening
    with DaemonClient(address, token=TOKEN) as client:
        assert client.health() == "SERVING"
        assert client.status().pid == daemon.process.pid
        assert client.list_plugins() == []
    with daemon.client() as local:  # the Unix socket needs no token
        assert local.health() == "SERVING"


@pytest.mark.parametrize("token", [None, "wrong-token-0123456789", TOKEN + "x", TOKEN[:-1]])
def test_a_call_without_the_token_is_refused_before_any_handler(
        listening: tuple[Daemon, str], token: str | None) -> None:
    daemon, address = listening
    with DaemonClient(address, token=token) as client:
        for call in (client.health, client.status, client.list_plugins):
            with pytest.raises(ControlError) as refused:
                call()
            assert refused.value.code == "UNAUTHENTICATED"
        with pytest.raises(ControlError, match="UNAUTHENTICATED"):
            client.stop()
    assert daemon.process.poll() is None  # the refused Stop did not stop it


def test_the_token_never_reaches_the_logs(listening: tuple[Daemon, str]) -> None:
    daemon, address = listening
    with DaemonClient(address, token="wrong-token-0123456789") as client, \
            pytest.raises(ControlError):
        client.status()
    started = wait_for(lambda: [line for line in daemon.logs()
                                if line.get("message") == "daemon started"], "the start log")
    assert "token required" in started[0]["control_tcp"]
    assert daemon.stop() == 0
    assert TOKEN not in daemon.stderr_path.read_text()


def test_hftctl_plugins_over_tcp(listening: tuple[Daemon, str], tmp_path: Path) -> None:
    _, address = listening
    token_file = tmp_path / "token"
    listed = CliRunner().invoke(main, ["plugins", "--connect", address, "--token-file",
                                       str(token_file), "list", "engine", "--json"])
    assert listed.exit_code == 0, listed.output
    wrong = _token_file(tmp_path / "wrong", "another-token-0123456789")
    refused = CliRunner().invoke(main, ["plugins", "--connect", address, "--token-file",
                                        str(wrong), "list", "engine"])
    assert refused.exit_code == 1 and "UNAUTHENTICATED" in refused.output
    assert "another-token" not in refused.output
    alone = CliRunner().invoke(main, ["plugins", "--connect", address, "list", "engine"])
    assert alone.exit_code == 2 and "--connect and --token-file go together" in alone.output


def test_a_daemon_refuses_a_token_file_others_can_read(tmp_path: Path) -> None:
    token_file = _token_file(tmp_path / "token", mode=0o644)
    daemon = spawn_daemon("engine", _config(tmp_path, _free_port(), token_file))
    assert daemon.process.wait(timeout=30) != 0
    output = daemon.stderr_path.read_text()
    assert f"token file {token_file} has mode 644" in output
    assert "control_token_file" in output and TOKEN not in output


@pytest.mark.parametrize(("text", "mode", "reason"), [
    (TOKEN, 0o640, "others may read it"),
    ("short-token", 0o600, "holds 11 characters; at least 16"),
    ("token with spaces in it", 0o600, "printable ASCII without spaces"),
])
def test_token_files_are_checked(tmp_path: Path, text: str, mode: int, reason: str) -> None:
    path = _token_file(tmp_path / "token", text, mode)
    with pytest.raises(TokenError, match=reason) as refused:
        read_token(path)
    assert text not in str(refused.value)


def test_a_good_token_file_is_read_without_its_newline(tmp_path: Path) -> None:
    path = _token_file(tmp_path / "token")
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert read_token(path) == TOKEN.encode()
    with pytest.raises(TokenError, match="No such file"):
        read_token(tmp_path / "missing")


def test_a_tcp_listener_without_a_token_file_is_a_config_error(tmp_path: Path) -> None:
    path = write_config(tmp_path, '[daemons.engine]\ncontrol_tcp = "127.0.0.1:9000"\n')
    with pytest.raises(ConfigError, match=r"daemons\.engine.*control_tcp needs control_token_file"):
        load_config(path)
