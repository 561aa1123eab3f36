"""ops/prometheus checked by promtool (config, rules, the rules' unit tests) and by a real
Prometheus server (the Debian package's binary) scraping the running built-in suite: every
daemon is up, every rule evaluates, and a daemon killed with SIGKILL raises HftDaemonDown."""

from __future__ import annotations

import json
import signal
import subprocess
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from support.daemons import wait_for
from support.servers import ServerProcess
from support.suite import Suite, free_port, running_suite

PROMETHEUS_DIR = Path(__file__).resolve().parents[1] / "ops" / "prometheus"
RULE_FILES = sorted(str(path) for path in (PROMETHEUS_DIR / "rules").glob("*.yml"))
RULE_TESTS = sorted(str(path) for path in (PROMETHEUS_DIR / "tests").glob("*.yml"))
DEFAULT_PORTS = {"hft_md": 9101, "engine": 9102, "risk": 9103, "monitor": 9104}


def promtool(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(["promtool", *args], cwd=PROMETHEUS_DIR, capture_output=True,
                          text=True, timeout=60)


@pytest.mark.parametrize("args", [("check", "config", "prometheus.yml"),
                                  ("check", "rules", *RULE_FILES),
                                  ("test", "rules", *RULE_TESTS)],
                         ids=["check config", "check rules", "test rules"])
def test_promtool_passes_the_config_the_rules_and_their_unit_tests(args: tuple[str, ...]) -> None:
    assert RULE_FILES and RULE_TESTS
    done = promtool(*args)
    assert done.returncode == 0, done.stdout + done.stderr


def test_promtool_fails_a_rule_unit_test_whose_alert_does_not_fire(tmp_path: Path) -> None:
    """The unit tests can fail: the same test file against rules with a threshold no series
    reaches."""
    (tmp_path / "rules").mkdir()
    for rule_file in RULE_FILES:
        text = Path(rule_file).read_text()
        (tmp_path / "rules" / Path(rule_file).name).write_text(
            text.replace('expr: up{job="hft"} == 0', 'expr: up{job="hft"} == 2'))
    (tmp_path / "tests").mkdir()
    for test_file in RULE_TESTS:
        (tmp_path / "tests" / Path(test_file).name).write_text(Path(test_file).read_text())
    done = subprocess.run(["promtool", "test", "rules", *(str(path) for path in
                                                          (tmp_path / "tests").glob("*.yml"))],
                          capture_output=True, text=True, timeout=60)
    assert done.returncode != 0
    assert "HftDaemonDown" in done.stdout + done.stderr


def server_config(directory: Path, ports: dict[str, int]) -> Path:
    """The checked-in prometheus.yml with the test's ports, a 1 s scrape and evaluation
    interval and its rule files by absolute path; the rules themselves are the checked-in
    ones (their ``for:`` durations too)."""
    text = (PROMETHEUS_DIR / "prometheus.yml").read_text()
    replacements = {"scrape_interval: 5s": "scrape_interval: 1s",
                    "evaluation_interval: 5s": "evaluation_interval: 1s",
                    "- rules/*.yml": f"- {PROMETHEUS_DIR / 'rules'}/*.yml",
                    **{f'"127.0.0.1:{DEFAULT_PORTS[name]}"': f'"127.0.0.1:{port}"'
                       for name, port in ports.items()},
                    '"127.0.0.1:9100"': f'"127.0.0.1:{free_port()}"'}  # no watchdog here
    for old, new in replacements.items():
        assert text.count(old) == 1, f"{old!r} not once in prometheus.yml"
        text = text.replace(old, new)
    path = directory / "prometheus.yml"
    path.write_text(text)
    return path


class Prometheus(ServerProcess):
    """A prometheus server process on a free port, its data in a temp directory."""

    def __init__(self, directory: Path, config: Path) -> None:
        super().__init__("prometheus", directory, lambda port: [
            "prometheus", f"--config.file={config}", f"--storage.tsdb.path={directory / 'data'}",
            f"--web.listen-address=127.0.0.1:{port}"])

    def api(self, path: str) -> Any:
        """The ``data`` of a /api/v1 answer; None while the server is not answering yet."""
        self.check_running()
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{self.port}/api/v1/{path}",
                                        timeout=5) as response:
                answer = json.loads(response.read())
        except OSError:
            return None
        assert answer["status"] == "success", answer
        return answer["data"]


@pytest.fixture
def suite(tmp_path: Path) -> Iterator[Suite]:
    with running_suite(tmp_path) as running:
        yield running


@pytest.fixture
def prometheus(tmp_path: Path, suite: Suite) -> Iterator[Prometheus]:
    server = Prometheus(tmp_path, server_config(tmp_path, suite.metrics_ports))
    yield server
    server.stop()


def target_health(prometheus: Prometheus) -> dict[str, str]:
    """daemon label -> "up" / "down" / "unknown" of the hft job's targets."""
    targets = prometheus.api("targets") or {"activeTargets": []}
    return {target["labels"]["daemon"]: target["health"] for target in targets["activeTargets"]
            if target["labels"]["job"] == "hft"}


def firing(prometheus: Prometheus, alert_name: str) -> set[str]:
    """The daemons ``alert_name`` fires for."""
    alerts = (prometheus.api("alerts") or {"alerts": []})["alerts"]
    return {alert["labels"]["daemon"] for alert in alerts
            if alert["labels"]["alertname"] == alert_name and alert["state"] == "firing"}


def test_a_real_prometheus_scrapes_the_suite_and_a_killed_daemon_fires_daemon_down(
        suite: Suite, prometheus: Prometheus) -> None:
    everything_up = {name: "up" for name in DEFAULT_PORTS}
    wait_for(lambda: target_health(prometheus) == everything_up, "every daemon scraped", 30)

    def evaluated_rules() -> list[dict[str, Any]]:
        groups = (prometheus.api("rules") or {"groups": []})["groups"]
        rules = [rule for group in groups for rule in group["rules"]]
        never = "0001-01-01T00:00:00Z"  # the zero time of a rule not evaluated yet
        return rules if rules and all(rule["lastEvaluation"] != never for rule in rules) else []

    rules = wait_for(evaluated_rules, "every rule evaluated once", 30)
    assert {rule["name"] for rule in rules} >= {"HftDaemonDown", "HftDaemonFatal",
                                                "HftJournalLag", "HftRejectSpike",
                                                "HftLossLimitNear", "HftFeedGap",
                                                "HftHeartbeatStale"}
    assert all(rule["health"] == "ok" for rule in rules), [
        (rule["name"], rule.get("lastError")) for rule in rules if rule["health"] != "ok"]
    assert not firing(prometheus, "HftDaemonDown")

    suite.daemons["monitor"].process.send_signal(signal.SIGKILL)
    suite.daemons["monitor"].process.wait()
    wait_for(lambda: firing(prometheus, "HftDaemonDown"), "HftDaemonDown to fire", 60)
    assert firing(prometheus, "HftDaemonDown") == {"monitor"}
    assert target_health(prometheus) == {**everything_up, "monitor": "down"}
