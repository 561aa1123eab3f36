"""The suite config: the built-in default, HFT_HOME, and errors that name key, reason, file."""

from __future__ import annotations

from pathlib import Path

import pytest

from hft.daemons.runtime.config import (
    DAEMON_NAMES,
    ConfigError,
    WaitMode,
    default_config_path,
    load_config,
)


def load_text(tmp_path: Path, text: str) -> ConfigError:
    """Load ``text`` as a config file and return the error it must raise."""
    path = tmp_path / "suite.toml"
    path.write_text(text)
    with pytest.raises(ConfigError) as caught:
        load_config(path)
    assert str(path) in str(caught.value)
    return caught.value


def test_default_config_loads_every_daemon(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("HFT_HOME", raising=False)
    config = load_config(None)
    assert config.source == default_config_path()
    assert config.home == Path("~/.hft").expanduser()
    assert config.enabled_daemons() == list(DAEMON_NAMES)
    assert [config.daemon(n).metrics_port for n in DAEMON_NAMES] == [9101, 9102, 9103, 9104]
    assert config.socket_path("engine") == config.home / "run" / "engine.sock"
    assert config.heartbeat_path("risk") == config.home / "run" / "risk.hb"
    assert config.daemon("monitor").wait_mode is WaitMode.BLOCK


def test_hft_home_overrides_the_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = tmp_path / "suite.toml"
    path.write_text('[paths]\nhome = "/somewhere/else"\n')
    monkeypatch.setenv("HFT_HOME", str(tmp_path / "h"))
    assert load_config(path).run_dir == tmp_path / "h" / "run"


def test_relative_paths(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("HFT_HOME", raising=False)
    path = tmp_path / "suite.toml"
    path.write_text('[paths]\nhome = "state"\n[daemons.engine]\ngrpc_socket = "e.sock"\n')
    config = load_config(path)
    assert config.home == tmp_path / "state"
    assert config.socket_path("engine") == tmp_path / "state" / "e.sock"


def test_defaults_fill_what_a_file_leaves_out(tmp_path: Path) -> None:
    path = tmp_path / "suite.toml"
    path.write_text('[daemons.risk]\nenabled = false\n'
                    '[daemons.engine.plugins.strat]\nspec = "pkg.mod:Strat"\n'
                    'config = { instrument = "IF2101", levels = [1, 2] }\n')
    config = load_config(path)
    assert config.enabled_daemons() == ["hft_md", "engine", "monitor"]
    assert config.daemon("risk").metrics_port == 9103
    plugin = config.daemon("engine").plugins["strat"]
    assert (plugin.spec, plugin.config) == ("pkg.mod:Strat", {"instrument": "IF2101",
                                                              "levels": [1, 2]})


def test_unknown_key_is_named_with_the_allowed_ones(tmp_path: Path) -> None:
    error = load_text(tmp_path, "[daemons.engine]\nmetrics_prot = 9000\n")
    assert error.problems[0][0] == "daemons.engine.metrics_prot"
    assert "unknown key" in error.problems[0][1] and "metrics_port" in error.problems[0][1]


def test_bad_type_is_named_with_the_value(tmp_path: Path) -> None:
    error = load_text(tmp_path, '[daemons.engine]\nmetrics_port = "9102"\n')
    assert error.problems == [("daemons.engine.metrics_port",
                               "Input should be a valid integer (got '9102')")]


def test_out_of_range_and_bad_choice(tmp_path: Path) -> None:
    error = load_text(tmp_path, '[daemons.risk]\nmetrics_port = 70000\nwait_mode = "nap"\n')
    keys = dict(error.problems)
    assert "less than or equal to 65535" in keys["daemons.risk.metrics_port"]
    assert "'busy', 'yield' or 'block'" in keys["daemons.risk.wait_mode"]


def test_toml_syntax_error_names_line_and_column(tmp_path: Path) -> None:
    error = load_text(tmp_path, "[daemons.engine]\nenabled = \n")
    assert "TOML syntax error" in str(error)
    assert "line 2, column 11" in str(error)


def test_unknown_daemon_lists_the_daemons(tmp_path: Path) -> None:
    error = load_text(tmp_path, "[daemons.gateway]\nenabled = true\n")
    assert error.problems[0][0] == "daemons.gateway"
    assert "hft_md, engine, risk, monitor" in error.problems[0][1]


def test_plugin_without_spec_and_bad_plugin_name(tmp_path: Path) -> None:
    error = load_text(tmp_path, '[daemons.engine.plugins.a]\nconfig = {}\n'
                                '[daemons.engine.plugins."b c"]\nspec = "x:Y"\n')
    keys = dict(error.problems)
    assert keys["daemons.engine.plugins.a.spec"] == "Field required"
    assert "should match pattern" in keys['daemons.engine.plugins."b c" (the key itself)']


def test_shared_metrics_port_is_refused(tmp_path: Path) -> None:
    error = load_text(tmp_path, "[daemons.engine]\nmetrics_port = 9101\n")
    assert error.problems == [("daemons.engine.metrics_port",
                               "port 9101 is also daemons.hft_md's")]


def test_port_zero_may_be_shared(tmp_path: Path) -> None:
    path = tmp_path / "suite.toml"
    path.write_text("".join(f"[daemons.{n}]\nmetrics_port = 0\n" for n in DAEMON_NAMES))
    assert {load_config(path).daemon(n).metrics_port for n in DAEMON_NAMES} == {0}


def test_socket_path_too_long_for_a_unix_socket(tmp_path: Path,
                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HFT_HOME", "/" + "h" * 100)
    error = load_text(tmp_path, "")
    assert error.problems[0][0] == "daemons.hft_md.grpc_socket"
    assert "Unix sockets allow 107" in error.problems[0][1]


def test_missing_file(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="does not exist"):
        load_config(tmp_path / "nope.toml")


def test_unknown_daemon_name_in_code() -> None:
    with pytest.raises(KeyError, match="unknown daemon 'gateway'"):
        load_config(None).daemon("gateway")
