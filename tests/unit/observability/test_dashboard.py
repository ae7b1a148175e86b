"""The provisioned Grafana dashboard: its queries name real metrics, its files line up."""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.unit.observability.promql import (
    known_series,
    lapor_series,
    metric_names,
    series_with_label,
)

ROOT = Path(__file__).resolve().parents[3]
GRAFANA = ROOT / "ops" / "grafana"
DASHBOARDS = sorted((GRAFANA / "dashboards").glob("*.json"))


def _panels(node: dict[str, Any]) -> Iterator[dict[str, Any]]:
    for panel in node.get("panels", []):
        yield panel
        yield from _panels(panel)


def _dashboard(path: Path) -> dict[str, Any]:
    return json.loads(path.read_text())


def _compose() -> dict[str, Any]:
    return yaml.safe_load((ROOT / "docker-compose.yml").read_text())


def _mounts(service: dict[str, Any]) -> dict[str, str]:
    return {v.split(":")[1]: v.split(":")[0] for v in service["volumes"]}


def test_there_is_a_dashboard() -> None:
    assert DASHBOARDS, "no dashboard JSON under ops/grafana/dashboards"


@pytest.mark.parametrize("path", DASHBOARDS, ids=lambda p: p.name)
def test_every_query_names_exposed_metrics(path: Path) -> None:
    known = known_series()
    exprs = [
        target["expr"] for panel in _panels(_dashboard(path)) for target in panel.get("targets", [])
    ]
    assert exprs
    for expr in exprs:
        names = metric_names(expr)
        assert names, f"no metric in {expr!r}"
        assert not names - known, f"unknown metrics {names - known} in {expr!r}"


@pytest.mark.parametrize("path", DASHBOARDS, ids=lambda p: p.name)
def test_dashboard_covers_the_operators_questions(path: Path) -> None:
    exprs = " ".join(
        target["expr"] for panel in _panels(_dashboard(path)) for target in panel.get("targets", [])
    )
    for needed in (
        "faststream_received_processed_messages_total",  # throughput
        "faststream_received_processed_messages_duration_seconds_bucket",  # latency
        "lapor_jetstream_consumer_backlog_messages",  # backlog
        "lapor_complaints_open",  # open complaints by agency
        "lapor_sla_breaches_total",  # breaches
        "lapor_notifications_total",  # notifications
    ):
        assert needed in exprs, needed


@pytest.mark.parametrize("path", DASHBOARDS, ids=lambda p: p.name)
def test_panels_are_well_formed(path: Path) -> None:
    dashboard = _dashboard(path)
    assert dashboard["uid"] and dashboard["title"]
    datasource = yaml.safe_load(
        (GRAFANA / "provisioning" / "datasources" / "prometheus.yml").read_text()
    )["datasources"][0]
    ids = [panel["id"] for panel in _panels(dashboard)]
    assert len(ids) == len(set(ids)), "panel ids must be unique"
    for panel in _panels(dashboard):
        if panel["type"] == "row":
            continue
        assert panel["datasource"]["uid"] == datasource["uid"], panel["title"]
        grid = panel["gridPos"]
        assert 0 <= grid["x"] and grid["x"] + grid["w"] <= 24, panel["title"]
        ref_ids = [target["refId"] for target in panel["targets"]]
        assert len(ref_ids) == len(set(ref_ids)), panel["title"]


# Dashboard variable → the label it filters, and the series that carry it.
FILTERS = {
    "service": ("service", lapor_series),
    "agency": ("agency", lambda: series_with_label("agency")),
}


def _selectors(expr: str, name: str) -> list[str]:
    """The label matchers of every selector of series `name` in `expr` ("" for none)."""
    pattern = rf"(?<![\w:]){re.escape(name)}(?![\w:])\s*(\{{[^}}]*\}})?"
    return [match.group(1) or "" for match in re.finditer(pattern, expr)]


@pytest.mark.parametrize("path", DASHBOARDS, ids=lambda p: p.name)
def test_dashboard_has_service_and_agency_variables(path: Path) -> None:
    variables = {v["name"]: v for v in _dashboard(path)["templating"]["list"]}
    known = known_series()
    for name, (label, _) in FILTERS.items():
        variable = variables[name]
        assert variable["type"] == "query" and variable["datasource"]["uid"] == "lapor-prometheus"
        # All by default, and "All" must match every value, not only those listed.
        assert variable["includeAll"] and variable["multi"] and variable["allValue"] == ".*"
        query = re.fullmatch(r"label_values\((.+),\s*(\w+)\)", variable["query"])
        assert query and query.group(2) == label, variable["query"]
        assert metric_names(query.group(1)) <= known, variable["query"]


@pytest.mark.parametrize("path", DASHBOARDS, ids=lambda p: p.name)
@pytest.mark.parametrize("variable", sorted(FILTERS))
def test_every_query_on_a_labelled_series_filters_by_the_variable(
    path: Path, variable: str
) -> None:
    label, carriers = FILTERS[variable]
    matcher = f'{label}=~"${variable}"'
    series = carriers()
    assert series, f"no series carries {label}"
    filtered = 0
    for panel in _panels(_dashboard(path)):
        for target in panel.get("targets", []):
            expr = target["expr"]
            for name in metric_names(expr) & series:
                for selector in _selectors(expr, name):
                    assert matcher in selector, f"{panel['title']}: {name} in {expr!r}"
                    filtered += 1
    assert filtered, f"no panel filters by ${variable}"


def test_provisioning_matches_the_compose_mounts() -> None:
    services = _compose()["services"]
    grafana = services["grafana"]
    mounts = _mounts(grafana)
    assert mounts["/etc/grafana/provisioning"] == "./ops/grafana/provisioning"

    provider = yaml.safe_load((GRAFANA / "provisioning" / "dashboards" / "lapor.yml").read_text())[
        "providers"
    ][0]
    dashboards_dir = provider["options"]["path"]
    assert mounts[dashboards_dir] == "./ops/grafana/dashboards"
    home = grafana["environment"]["GF_DASHBOARDS_DEFAULT_HOME_DASHBOARD_PATH"]
    assert Path(home).parent.as_posix() == dashboards_dir
    assert (GRAFANA / "dashboards" / Path(home).name).is_file()

    datasource = yaml.safe_load(
        (GRAFANA / "provisioning" / "datasources" / "prometheus.yml").read_text()
    )["datasources"][0]
    assert datasource["url"] == "http://prometheus:9090"
    assert "prometheus" in services
