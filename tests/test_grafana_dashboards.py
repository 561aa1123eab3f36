"""ops/grafana: the dashboards are well-formed Grafana JSON with a ``datasource`` variable that
every panel uses, the provisioning files point at them, and every PromQL expression in the
dashboards and in the alert rules (ops/prometheus/rules) names only metrics the running
built-in suite really exports on /metrics."""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from prometheus_client.parser import text_string_to_metric_families
from support.daemons import wait_for
from support.suite import running_suite

OPS = Path(__file__).resolve().parents[1] / "ops"
DASHBOARDS = sorted((OPS / "grafana" / "dashboards").glob("*.json"))
RULE_FILES = sorted((OPS / "prometheus" / "rules").glob("*.yml"))

PROMETHEUS_SERIES = frozenset({"up"})
"""Series Prometheus makes itself for every target."""
_SERIES_OF_TYPE = {"counter": ("_total",), "histogram": ("_bucket", "_count", "_sum"),
                   "summary": ("", "_count", "_sum"), "gaugehistogram": ("_bucket",)}
_NOT_NAMES = frozenset({"by", "without", "on", "ignoring", "group_left", "group_right", "bool",
                        "and", "or", "unless", "offset", "inf", "nan"})


def metric_names(expression: str) -> set[str]:
    """The metric names a PromQL expression selects: every identifier that is not a
    function, a keyword, a label (in braces or by/without/on/ignoring lists), a string, a
    range or a Grafana variable."""
    text = re.sub(r'"(?:[^"\\]|\\.)*"|\'(?:[^\'\\]|\\.)*\'', " ", expression)
    text = re.sub(r"\$\{?\w+\}?", " ", text)
    text = re.sub(r"\{[^}]*\}|\[[^\]]*\]", " ", text)
    text = re.sub(r"\b(?:by|without|on|ignoring|group_left|group_right)\s*\([^)]*\)", " ", text)
    return {match[1] for match in re.finditer(r"(?<![\w.:])([a-zA-Z_:][\w:]*)(\s*\()?", text)
            if not match[2] and match[1] not in _NOT_NAMES}


def exported_series(metrics_text: str) -> set[str]:
    """The series names a /metrics text can give, from its families (so a family with no
    sample yet, a position before the first fill, counts too)."""
    names: set[str] = set()
    for family in text_string_to_metric_families(metrics_text):
        names.update(family.name + suffix for suffix in _SERIES_OF_TYPE.get(family.type, ("",)))
    return names


def dashboard(path: Path) -> dict[str, Any]:
    return dict(json.loads(path.read_text()))


def panels(board: dict[str, Any]) -> Iterator[dict[str, Any]]:
    for panel in board["panels"]:
        yield panel
        yield from panel.get("panels", ())  # a collapsed row's


def dashboard_expressions() -> list[tuple[str, str]]:
    """(where, expr) of every dashboard target."""
    return [(f"{path.name}: {panel['title']}", target["expr"]) for path in DASHBOARDS
            for panel in panels(dashboard(path)) for target in panel.get("targets", ())]


def rule_expressions() -> list[tuple[str, str]]:
    """(where, expr) of every rule: ``expr:`` on one line, or a block scalar (``|``) whose
    lines are indented deeper. The count is checked against the rules' own count."""
    found: list[tuple[str, str]] = []
    for path in RULE_FILES:
        lines = path.read_text().splitlines()
        index = 0
        while index < len(lines):
            match = re.match(r"^(\s*)expr:\s*(.*)$", lines[index])
            index += 1
            if match is None:
                continue
            indent, value = len(match[1]), match[2].strip()
            if value in ("|", "|-", ">", ">-"):
                block = []
                while index < len(lines) and (not lines[index].strip() or
                                              len(lines[index]) - len(lines[index].lstrip()) > indent):
                    block.append(lines[index].strip())
                    index += 1
                value = " ".join(block)
            found.append((path.name, value))
        rules = len(re.findall(r"^\s*- (?:alert|record):", path.read_text(), re.MULTILINE))
        assert sum(1 for where, _ in found if where == path.name) == rules, path
    return found


def test_five_dashboards_each_with_a_datasource_variable_every_panel_uses() -> None:
    titles = {dashboard(path)["title"] for path in DASHBOARDS}
    assert titles == {"hft: suite health", "hft: market data", "hft: trading and PnL",
                      "hft: risk", "hft: latency"}
    uids = [dashboard(path)["uid"] for path in DASHBOARDS]
    assert len(set(uids)) == len(uids)
    for path in DASHBOARDS:
        board = dashboard(path)
        variables = {v["name"]: v for v in board["templating"]["list"]}
        assert variables["datasource"]["type"] == "datasource", path
        assert variables["datasource"]["query"] == "prometheus", path
        for panel in panels(board):
            if panel["type"] == "row":
                continue
            assert panel["datasource"] == {"type": "prometheus", "uid": "${datasource}"}, (
                path, panel["title"])
            assert panel["targets"], (path, panel["title"])
            for target in panel["targets"]:
                assert target["datasource"]["uid"] == "${datasource}", (path, panel["title"])
                assert target["expr"].strip(), (path, panel["title"])


def test_the_provisioning_points_at_a_prometheus_and_loads_dashboards_from_files() -> None:
    provisioning = OPS / "grafana" / "provisioning"
    datasource = (provisioning / "datasources" / "hft.yml").read_text()
    assert re.search(r"^\s+type: prometheus$", datasource, re.MULTILINE)
    assert re.search(r"^\s+url: http://127\.0\.0\.1:9090$", datasource, re.MULTILINE)
    provider = (provisioning / "dashboards" / "hft.yml").read_text()
    assert re.search(r"^\s+type: file$", provider, re.MULTILINE)
    assert re.search(r"^\s+path: /\S+$", provider, re.MULTILINE)


def test_metric_names_are_read_from_promql() -> None:
    expression = ('histogram_quantile(0.99, sum by (le, feed) (rate(hft_md_x_bucket{feed="a b",'
                  'job=~"hft|up"}[$__rate_interval]))) / on (daemon) group_left up '
                  '> bool 1e-06 or absent(hft_y_total offset 5m) unless ALERTS')
    assert metric_names(expression) == {"hft_md_x_bucket", "up", "hft_y_total", "ALERTS"}


@pytest.fixture(scope="module")
def suite_series(tmp_path_factory: pytest.TempPathFactory) -> set[str]:
    """Every series name the four daemons of the built-in suite and a watchdog beside them
    export, once each plugin reports (the default plugins all running)."""
    with running_suite(tmp_path_factory.mktemp("suite"), watchdog=True) as suite:
        def everything() -> set[str]:
            series = set().union(*(exported_series(suite.scrape(name))
                                   for name in suite.metrics_ports))
            return series if {"hft_md_ticks_total", "hft_risk_pnl", "hft_strategy_pnl",
                              "hft_replay_lag_records", "hft_kline_bars_total",
                              "hft_watchdog_daemon_state", "hft_watchdog_alerts_sent_total",
                              } <= series else set()
        return wait_for(everything, "every plugin's metrics", 30)


def test_every_expression_names_only_exported_metrics(suite_series: set[str]) -> None:
    known = suite_series | PROMETHEUS_SERIES
    expressions = dashboard_expressions() + rule_expressions()
    assert len(expressions) > 50
    unknown = [(where, name) for where, expression in expressions
               for name in sorted(metric_names(expression)) if name not in known]
    assert not unknown, unknown
    used = {name for _, expression in expressions for name in metric_names(expression)}
    assert "hft_risk_decision_latency_seconds_bucket" in used
    assert "hft_risk_decision_latency_seconds_bucket" in suite_series


def test_a_misspelled_metric_would_be_caught(suite_series: set[str]) -> None:
    assert "hft_md_ticks_total" in suite_series
    assert "hft_md_ticks" not in suite_series  # a counter is only its _total series
    assert "hft_md_tick_to_journal_seconds" not in suite_series  # a histogram's buckets
