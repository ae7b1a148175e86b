"""Alert rules: promtool validates and unit-tests them; every metric they use exists."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest
import yaml

from tests.unit.observability.promql import known_series, metric_names, promtool

ROOT = Path(__file__).resolve().parents[3]
PROMETHEUS = ROOT / "ops" / "prometheus"
ALERTS = PROMETHEUS / "alerts.yml"

REQUIRED_ALERTS = {
    "LaporServiceDown",
    "LaporConsumerBacklogGrowing",
    "LaporDeadLetters",
    "LaporBreachRateRising",
    "LaporUrgentComplaintUnacknowledged",
    "LaporNotificationsFailing",
    "LaporSlaSweepStalled",
    "LaporSlaSweepFailing",
    "LaporDeadLetterBacklog",
    "LaporNatsDown",
    "LaporMongoDown",
    "LaporOutboundSmsBacklog",
}


def _promtool() -> str:
    tool = promtool()
    if tool is None:
        pytest.skip("promtool is not installed (Debian package `prometheus`; .ci/run installs it)")
    return tool


def _rules() -> list[dict[str, object]]:
    groups = yaml.safe_load(ALERTS.read_text())["groups"]
    return [rule for group in groups for rule in group["rules"]]


def test_required_alerts_exist_with_severity_and_summary() -> None:
    rules = _rules()
    assert REQUIRED_ALERTS <= {rule["alert"] for rule in rules}
    for rule in rules:
        assert rule["labels"]["severity"] in {"critical", "warning"}, rule["alert"]  # type: ignore[index]
        assert rule["annotations"]["summary"], rule["alert"]  # type: ignore[index]


def test_every_alert_has_a_unit_test() -> None:
    tests = yaml.safe_load((PROMETHEUS / "alerts_test.yml").read_text())["tests"]
    tested = {
        case["alertname"]
        for test in tests
        for case in test["alert_rule_test"]
        if case.get("exp_alerts")
    }
    assert {rule["alert"] for rule in _rules()} <= tested


def test_alerts_use_only_exposed_metrics() -> None:
    known = known_series()
    for rule in _rules():
        unknown = metric_names(str(rule["expr"])) - known
        assert not unknown, f"{rule['alert']}: unknown metrics {unknown}"


def test_prometheus_loads_the_rules() -> None:
    config = yaml.safe_load((PROMETHEUS / "prometheus.yml").read_text())
    assert [(PROMETHEUS / path).resolve() for path in config["rule_files"]] == [ALERTS]


def test_promtool_checks_config_and_rules() -> None:
    tool = _promtool()
    for command in (["check", "config", "prometheus.yml"], ["check", "rules", "alerts.yml"]):
        result = subprocess.run(
            [tool, *command], cwd=PROMETHEUS, capture_output=True, text=True, timeout=60
        )
        assert result.returncode == 0, result.stdout + result.stderr


def test_promtool_rule_unit_tests_pass() -> None:
    tool = _promtool()
    result = subprocess.run(
        [tool, "test", "rules", "alerts_test.yml"],
        cwd=PROMETHEUS,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0, result.stdout + result.stderr


def test_metric_name_extraction() -> None:
    expr = (
        'sum by (agency) (rate(lapor_sla_breaches_total{clock="answer"}[1h] offset 1d)) '
        "> 2 * up and on (agency) histogram_quantile(0.9, x_bucket)"
    )
    assert metric_names(expr) == {"lapor_sla_breaches_total", "up", "x_bucket"}
