"""hftctl config default / check: the built-in config as shipped; every bad key named."""

from __future__ import annotations

from pathlib import Path

from click.testing import CliRunner, Result

from hft.ctl.cli import main
from hft.daemons.runtime.config import DaemonConfig, default_config_path


def hftctl(*args: str) -> Result:
    return CliRunner().invoke(main, ["config", *args])


def config_file(tmp_path: Path, body: str, mode: int = 0o600) -> Path:
    path = tmp_path / "hft.toml"
    path.write_text(f'[paths]\nhome = "{tmp_path / "home"}"\n{body}')
    path.chmod(mode)
    return path


def test_default_prints_the_built_in_config_exactly_and_it_checks_ok(tmp_path: Path) -> None:
    shown = hftctl("default")
    assert shown.exit_code == 0
    assert shown.stdout_bytes == default_config_path().read_bytes()
    copy = tmp_path / "mine.toml"
    copy.write_bytes(shown.stdout_bytes)
    copy.chmod(0o600)
    checked = hftctl("check", str(copy))
    assert (checked.exit_code, checked.output) == (0, f"{copy}: ok\n")


def test_check_names_every_bad_key_one_line_each(tmp_path: Path) -> None:
    path = config_file(tmp_path, """
[logging]
level = "LOUD"
[daemons.engine]
metrics_prot = 9102
heartbeat_interval_s = -1
[daemons.risk]
metrics_port = 9102
[watchdog]
start_limit_burst = 0
""")
    checked = hftctl("check", str(path))
    assert checked.exit_code == 1
    assert checked.output.splitlines() == [
        f"{path}: logging.level: Input should be 'DEBUG', 'INFO', 'WARNING' or 'ERROR' "
        "(got 'LOUD')",
        f"{path}: daemons.engine.heartbeat_interval_s: Input should be greater than 0 (got -1)",
        f"{path}: daemons.engine.metrics_prot: unknown key; expected one of: "
        f"{', '.join(DaemonConfig.model_fields)}",
        f"{path}: watchdog.start_limit_burst: Input should be greater than or equal to 1 "
        "(got 0)",
    ]
    ports = config_file(tmp_path, "[daemons.risk]\nmetrics_port = 9102\n")
    clash = hftctl("check", str(ports))
    assert (clash.exit_code, clash.output) == (
        1, f"{ports}: daemons.risk.metrics_port: port 9102 is also daemons.engine's\n")


def test_check_of_a_file_that_is_not_there_or_not_toml(tmp_path: Path) -> None:
    missing = tmp_path / "nothere.toml"
    checked = hftctl("check", str(missing))
    assert (checked.exit_code, checked.output) == (1, f"{missing}: the file does not exist\n")
    broken = config_file(tmp_path, "[daemons.engine\n")
    checked = hftctl("check", str(broken))
    assert checked.exit_code == 1
    assert checked.output.startswith(f"{broken}: TOML syntax error: ")


WEBHOOK_TOKEN = "9f8e7d6c5b4a39281706"
SIGNING_SECRET = "SECa1b2c3d4e5f6a7b8c9"


def test_a_refused_table_never_echoes_its_secrets(tmp_path: Path) -> None:
    path = config_file(tmp_path, f"""
[watchdog]
control_tcp = "127.0.0.1:7000"
[[watchdog.webhooks]]
kind = "dingtalk"
url = "https://oapi.dingtalk.com/robot/send?access_token={WEBHOOK_TOKEN}"
secret = "{SIGNING_SECRET}"
""")
    checked = hftctl("check", str(path))
    assert checked.exit_code == 1
    assert checked.output == (f"{path}: watchdog: Value error, control_tcp needs "
                              "control_token_file: the TCP listener checks every call against "
                              "that token\n")


def test_check_warns_about_what_is_valid_but_unsafe(tmp_path: Path) -> None:
    path = config_file(tmp_path, f"""
[watchdog]
control_tcp = "0.0.0.0:7000"
control_token_file = "watchdog.token"
[[watchdog.webhooks]]
kind = "dingtalk"
url = "http://oapi.dingtalk.com/robot/send?access_token={WEBHOOK_TOKEN}"
secret = "{SIGNING_SECRET}"
[[watchdog.webhooks]]
kind = "generic"
url = "http://127.0.0.1:9000/alerts"
[[watchdog.webhooks]]
kind = "wecom"
url = "http://localhost:9000/alerts"
""", mode=0o644)
    checked = hftctl("check", str(path))
    assert checked.exit_code == 0
    assert checked.output.splitlines() == [
        f"{path}: warning: watchdog.webhooks.0.url: plain http to oapi.dingtalk.com: alerts "
        "(and any token in the url) cross the network unencrypted; use https",
        f"{path}: warning: watchdog.control_tcp: 0.0.0.0:7000 is reachable beyond this "
        "machine over plain TCP (no TLS): bind it to a private network or tunnel it",
        f"{path}: warning: watchdog.webhooks.0.secret, watchdog.webhooks.0.url: secrets in a "
        f"file every user can read (mode 0644): chmod o-rwx {path}",
        f"{path}: ok",
    ]
    assert WEBHOOK_TOKEN not in checked.output and SIGNING_SECRET not in checked.output


def test_check_warns_about_an_engine_pinned_beside_another_daemon(tmp_path: Path) -> None:
    path = config_file(tmp_path, """
[daemons.hft_md]
cpu_affinity = [0]
[daemons.engine]
cpu_affinity = [0]
[daemons.risk]
cpu_affinity = [0]
[daemons.monitor]
enabled = false
cpu_affinity = [0]
""", mode=0o600)
    checked = hftctl("check", str(path))
    assert checked.exit_code == 0
    assert checked.output.splitlines() == [
        f"{path}: warning: daemons.engine.cpu_affinity: CPU 0 is also daemons.{name}'s: the "
        f"engine waits whenever {name} runs there; give the engine a CPU of its own"
        for name in ("hft_md", "risk")] + [f"{path}: ok"]


def test_no_warning_for_the_recommended_two_core_layout(tmp_path: Path) -> None:
    path = config_file(tmp_path, """
[daemons.hft_md]
cpu_affinity = [1]
[daemons.engine]
cpu_affinity = [0]
[daemons.risk]
cpu_affinity = [1]
""", mode=0o600)
    checked = hftctl("check", str(path))
    assert (checked.exit_code, checked.output) == (0, f"{path}: ok\n")


def test_no_warning_for_local_listeners_and_a_private_file(tmp_path: Path) -> None:
    path = config_file(tmp_path, f"""
[daemons.engine]
control_tcp = "[::1]:7001"
control_token_file = "engine.token"
[[watchdog.webhooks]]
kind = "feishu"
url = "https://open.feishu.cn/open-apis/bot/v2/hook/{WEBHOOK_TOKEN}"
secret = "{SIGNING_SECRET}"
""", mode=0o640)  # root:hft 0640: the service's group reads it
    checked = hftctl("check", str(path))
    assert (checked.exit_code, checked.output) == (0, f"{path}: ok\n")


def test_check_names_every_bad_key_of_the_plugins_configs(tmp_path: Path) -> None:
    """Plugin configs are checked against their plugins' models, as each daemon does when it
    loads them: a typo is found before the start, not by a plugin FAILED at it."""
    (tmp_path / "mine.py").write_text("raise SystemExit('a plugin file is not run by check')\n")
    path = config_file(tmp_path, f"""
[daemons.engine.plugins.kline]
spec = "kline"
config = {{ periods = ["1m", "7x"], pariods = 1 }}
[daemons.engine.plugins.typo]
spec = "klien"
[daemons.engine.plugins.mine]
spec = "{tmp_path / 'mine.py'}"
[daemons.risk]
enabled = false
[daemons.risk.plugins.never]
spec = "not_checked_while_disabled"
""")
    checked = hftctl("check", str(path))
    assert checked.exit_code == 1
    assert checked.output.splitlines() == [
        f"{path}: daemons.engine.plugins.kline.config.periods: Value error, bad period '7x': "
        "expected N followed by m (minutes), h (hours) or d (days), e.g. 1m, 5m, 15m, 30m, "
        "1h, 1d",
        f"{path}: daemons.engine.plugins.kline.config.pariods: Extra inputs are not permitted",
        f"{path}: daemons.engine.plugins.typo.spec: cannot load 'klien': PluginError: no entry "
        "point 'klien' in group 'hft.plugins'; use 'module:Class'",
    ]


def test_a_plugins_refused_secret_is_not_echoed(tmp_path: Path) -> None:
    path = config_file(tmp_path, f"""
[daemons.risk.plugins.td]
spec = "ctp_trader"
config = {{ password = ["{SIGNING_SECRET}"], user_id = 218001 }}
""")
    checked = hftctl("check", str(path))
    assert checked.exit_code == 1
    assert [line.split(": ")[1] for line in checked.output.splitlines()] == [
        "daemons.risk.plugins.td.config.user_id", "daemons.risk.plugins.td.config.password"]
    assert SIGNING_SECRET not in checked.output
