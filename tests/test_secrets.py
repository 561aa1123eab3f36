"""A credential given to a plugin never comes back out: not in the load error, the daemon's
logs (stderr and JSON file) or ``hftctl plugins list``, whatever its type."""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pydantic
import pytest
from support.daemons import Daemon, write_config

from hft.daemons.runtime.config import ConfigError, load_config
from hft.daemons.runtime.secrets import Secret, mask

StartDaemon = Callable[[str, Path], Daemon]


@pytest.mark.parametrize("plugin_config", [
    {"password": 98765432123},
    {"password": "wrong-type-elsewhere-77", "md_fronts": 5},
    {"auth_code": ["auth-code-in-a-list-55"]},
])
def test_a_plugin_config_error_never_echoes_the_secret(start_daemon: StartDaemon, tmp_path: Path,
                                                       plugin_config: dict[str, object]) -> None:
    [secret] = [str(v if not isinstance(v, list) else v[0]) for k, v in plugin_config.items()
                if k in ("password", "auth_code")]
    config = write_config(tmp_path, "[logging]\nfile = true\n[daemons.hft_md]\nmetrics_port = 0\n")
    daemon = start_daemon("hft_md", config)
    loaded = subprocess.run(
        [sys.executable, "-m", "hft.ctl", "plugins", "load", "--config", str(config),
         "--plugin-config", json.dumps(plugin_config), "hft_md", "c", "ctp_feed"],
        capture_output=True, text=True, timeout=60)
    assert loaded.returncode == 1
    assert "hft_md: plugin c failed: config failed: PluginConfigError: CtpFeedConfig:" \
        in loaded.stderr
    listed = subprocess.run(
        [sys.executable, "-m", "hft.ctl", "plugins", "list", "--config", str(config), "hft_md"],
        capture_output=True, text=True, timeout=60)
    assert listed.returncode == 0 and "config failed" in listed.stdout
    json_log = daemon.suite.json_log_path("hft_md")
    assert "plugin failed" in json_log.read_text()
    for text in (loaded.stdout + loaded.stderr, listed.stdout, daemon.stderr_path.read_text(),
                 json_log.read_text()):
        assert secret not in text


def test_secret_is_one_type_hidden_everywhere_and_readable_on_purpose() -> None:
    class Login(pydantic.BaseModel):
        password: Secret = Secret("")

    login = Login.model_validate({"password": "one-home-secret-9"})
    assert isinstance(login.password, Secret) and login.password.reveal() == "one-home-secret-9"
    shown = f"{login} {login!r} {login.model_dump_json()} {login.password}"
    assert "one-home-secret-9" not in shown
    assert mask("says one-home-secret-9") == "says ***"  # made, hence registered


def test_a_suite_config_error_under_a_secret_key_does_not_echo_it(tmp_path: Path) -> None:
    config = write_config(tmp_path, '[daemons.engine]\ncontrol_token_file = 31415926535\n')
    with pytest.raises(ConfigError) as refused:
        load_config(config)
    assert "daemons.engine.control_token_file" in str(refused.value)
    assert "31415926535" not in str(refused.value)
