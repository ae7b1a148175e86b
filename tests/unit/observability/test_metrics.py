"""Services' metrics: naming conventions, snapshot gauges, the refresher's logic."""

from __future__ import annotations

import ast
import inspect
import subprocess
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from faststream.nats import NatsBroker
from prometheus_client import CollectorRegistry, Counter, generate_latest

from lapor.contracts import subjects
from lapor.runtime import metrics as runtime_metrics
from lapor.runtime.broker import durable
from lapor.runtime.metrics import (
    PipelineMetrics,
    RefreshPlan,
    SnapshotGauge,
    counter,
    declared_consumers,
    jetstream_of,
    pause_after,
    refresh_consumers,
    refresh_once,
    start_refresher,
)
from services.intake.metrics import ComplaintFigures, IntakeMetrics, assigned_since, refresh_plan
from services.router.metrics import RouterMetrics
from tests.e2e.helpers import eventually
from tests.unit.observability.promql import promtool, service_registries

# Closed sets of codes; anything else (phone, id, text) must never be a label.
ALLOWED_LABELS = {
    "channel",
    "region",
    "reason",
    "agency",
    "priority",
    "state",
    "clock",
    "level",
    "status",
    "stream",
    "consumer",
    "stored_by",
    "part",
    "action",
    "kecamatan",
    # Of the services' operational families.
    "kind",
    "outcome",
    "year",
    "audience",
    "template",
    "transport",
    "change",
    "smsc",
    "where",
}


# The refresher's own families, which every service with a bus consumer exports.
PIPELINE = [
    "lapor_jetstream_consumer_backlog_messages",
    "lapor_jetstream_consumer_redelivered_messages",
    "lapor_metrics_refresh_timestamp_seconds",
    "lapor_metrics_refresh_errors",
]
# Each service exports the families it fills, and only those: a figure has one
# scrape target. Listed in the order /metrics shows them.
INTAKE_OWN = [
    "lapor_complaints_received",
    "lapor_rejections",
    "lapor_citizen_actions",
    "lapor_complaints_open",
    "lapor_complaints_open_by_kecamatan",
    "lapor_triage_queue_complaints",
    "lapor_deadlines_due_next_24h",
    "lapor_deadlines_overdue",
    "lapor_urgent_unacknowledged_complaints",
    "lapor_urgent_unacknowledged_oldest_age_seconds",
    "lapor_dead_letters",
]
INTAKE = [
    *INTAKE_OWN,
    *PIPELINE,
    "lapor_complaint_counts_drift",
    "lapor_complaint_counts_reconciled_timestamp_seconds",
    "lapor_login_failures",
]


@pytest.fixture
def metrics() -> PipelineMetrics:
    return PipelineMetrics(CollectorRegistry())


def _families(registry: CollectorRegistry) -> list[Any]:
    return [f for f in registry.collect() if f.name.startswith("lapor_")]


def test_each_service_declares_its_own_families() -> None:
    registries = service_registries()
    intake = [f.name for f in _families(registries["intake"])]
    assert intake[: len(INTAKE)] == INTAKE
    assert [f.name for f in _families(registries["router"])] == [
        "lapor_routing_decisions",
        *PIPELINE,
    ]
    for service in ("sla", "notify", "hotspots"):
        names = [f.name for f in _families(registries[service])]
        assert names[-len(PIPELINE) :] == PIPELINE, service
        assert not set(names) & set(INTAKE_OWN), service


def test_the_runtime_knows_no_service() -> None:
    """The shared refresher imports no service, reads no service's collection and
    declares no family but its own."""
    tree = ast.parse(inspect.getsource(runtime_metrics))
    imported = {
        node.module or "" for node in ast.walk(tree) if isinstance(node, ast.ImportFrom)
    } | {
        alias.name
        for node in ast.walk(tree)
        if isinstance(node, ast.Import)
        for alias in node.names
    }
    assert not {name for name in imported if name.split(".")[0] == "services"}
    texts = {node.value for node in ast.walk(tree) if isinstance(node, ast.Constant)}
    assert not texts & {"complaints", "complaint_counts", "dead_letters"}
    families = {text.removesuffix("_total") for text in texts if isinstance(text, str)}
    assert {name for name in families if name.startswith("lapor_")} == set(PIPELINE)


@pytest.mark.parametrize("service", ["intake", "router", "sla", "notify", "hotspots", "gateway"])
def test_names_units_and_labels_follow_conventions(service: str) -> None:
    registry = service_registries()[service]
    families = _families(registry)
    assert families
    for family in families:
        assert family.documentation, family.name
        if family.type == "counter":
            # prometheus_client strips `_total` from the family name.
            assert f"{family.name}_total" in registry._names_to_collectors
        else:
            assert not family.name.endswith("_total"), family.name
        assert "_seconds" not in family.name or family.name.endswith("_seconds")
    labels = {
        label
        for collector in set(registry._names_to_collectors.values())
        for label in getattr(collector, "_labelnames", getattr(collector, "labelnames", ()))
    }
    assert labels <= ALLOWED_LABELS, labels - ALLOWED_LABELS


def test_each_registry_gets_its_own_metrics() -> None:
    first, second = CollectorRegistry(), CollectorRegistry()
    IntakeMetrics(first).received.labels(channel="sms", region="banjar").inc()
    IntakeMetrics(second)
    assert (
        first.get_sample_value(
            "lapor_complaints_received_total", {"channel": "sms", "region": "banjar"}
        )
        == 1
    )
    assert (
        second.get_sample_value(
            "lapor_complaints_received_total", {"channel": "sms", "region": "banjar"}
        )
        is None
    )


def test_a_counter_of_the_same_fact_is_adopted() -> None:
    registry = CollectorRegistry()
    # As another metrics class may register it, labels in another order.
    own = Counter("lapor_sla_breaches", "doc", ["clock", "agency"], registry=registry)
    breaches = counter(registry, "lapor_sla_breaches_total", "doc", ["agency", "clock"])
    assert breaches is own
    breaches.labels(agency="PUPR", clock="answer").inc()
    assert (
        registry.get_sample_value("lapor_sla_breaches_total", {"agency": "PUPR", "clock": "answer"})
        == 1
    )


def test_a_clashing_registration_is_refused() -> None:
    registry = CollectorRegistry()
    Counter("lapor_routing_decisions", "doc", ["agency"], registry=registry)
    with pytest.raises(ValueError, match="other labels"):
        RouterMetrics(registry)


def test_snapshot_gauge_replaces_the_whole_family() -> None:
    registry = CollectorRegistry()
    gauge = SnapshotGauge("x_open", "doc", ["agency"], registry)
    gauge.replace({("PUPR",): 3, ("DINKES",): 1})
    gauge.replace({("PUPR",): 2})
    assert registry.get_sample_value("x_open", {"agency": "PUPR"}) == 2
    assert registry.get_sample_value("x_open", {"agency": "DINKES"}) is None
    with pytest.raises(ValueError):
        gauge.replace({("PUPR", "extra"): 1})


def test_assigned_since_takes_the_latest_assignment() -> None:
    t = datetime(2026, 3, 2, tzinfo=UTC)
    history = [
        {"at": t, "state": "received"},
        {"at": t + timedelta(hours=1), "state": "assigned"},
        {"at": t + timedelta(hours=2), "state": None},
        {"at": (t + timedelta(hours=5)).replace(tzinfo=None), "state": "assigned"},
    ]
    assert assigned_since(history) == t + timedelta(hours=5)
    assert assigned_since([{"at": t, "state": "received"}]) is None


def test_complaint_figures_are_tallied_in_one_pass() -> None:
    now = datetime(2026, 12, 2, 9, tzinfo=UTC)
    h = timedelta(hours=1)
    figures = ComplaintFigures(now)
    for complaint in (
        {"state": "triage", "priority": "normal", "deadlines": {"routing": now - h}},
        {"state": "received", "deadlines": {"routing": now + 2 * h}},
        {
            "state": "assigned",
            "agency": "RSUD",
            "priority": "urgent",
            # Stored without a zone, as pymongo returns dates by default.
            "deadlines": {"first_response": (now + 3 * h).replace(tzinfo=None)},
            "history": [{"at": now - 2 * h, "state": "assigned"}],
        },
        {
            "state": "assigned",
            "agency": "RSUD",
            "priority": "urgent",
            "deadlines": {"first_response": now + 30 * h, "answer": now - h},
            "history": [{"at": now - timedelta(minutes=5), "state": "assigned"}],
        },
        # The answer clock is paused while the agency waits for the citizen.
        {
            "state": "needs_info",
            "agency": "PUPR",
            "priority": "normal",
            "deadlines": {"answer": now - h},
        },
        {"state": "in_progress", "agency": "PUPR", "priority": "normal", "deadlines": None},
    ):
        figures.add(complaint)
    assert figures.open == {
        ("triage", "none", "normal"): 1,
        ("received", "none", "none"): 1,
        ("assigned", "RSUD", "urgent"): 2,
        ("needs_info", "PUPR", "normal"): 1,
        ("in_progress", "PUPR", "normal"): 1,
    }
    assert figures.triage_queue == 1
    assert figures.deadlines_overdue == {("routing",): 1, ("first_response",): 0, ("answer",): 1}
    assert figures.deadlines_due == {("routing",): 1, ("first_response",): 1, ("answer",): 0}
    assert figures.urgent_unacknowledged == {("RSUD",): 1}
    assert figures.urgent_oldest_age_s == 2 * 3600


@dataclass
class _Info:
    num_pending: int
    num_ack_pending: int
    num_redelivered: int


class _FakeJetStream:
    def __init__(self, infos: dict[tuple[str, str], _Info]) -> None:
        self.infos = infos
        self.asked = 0

    async def consumer_info(self, stream: str, consumer: str) -> _Info:
        self.asked += 1
        try:
            return self.infos[(stream, consumer)]
        except KeyError:
            raise LookupError(consumer) from None


async def test_consumer_backlog_is_pending_plus_unacked(metrics: PipelineMetrics) -> None:
    js = _FakeJetStream({("LAPOR_EVENTS", "sla-routed"): _Info(7, 3, 2)})
    await refresh_consumers(
        metrics, js, [("LAPOR_EVENTS", "sla-routed"), ("LAPOR_EVENTS", "not-yet")]
    )
    assert metrics.consumer_backlog.samples() == {("LAPOR_EVENTS", "sla-routed"): 10}
    assert metrics.consumer_redelivered.samples() == {("LAPOR_EVENTS", "sla-routed"): 2}


async def test_a_failing_part_is_counted_not_raised() -> None:
    class Broken:
        def __getitem__(self, name: str) -> Any:
            raise ConnectionError("database down")

    js = _FakeJetStream({("S", "c"): _Info(1, 0, 0)})
    metrics = IntakeMetrics(CollectorRegistry())
    plan = refresh_plan(metrics, Broken(), [("S", "c")])  # type: ignore[arg-type]
    await refresh_once(metrics, jetstream_of(js), plan)
    assert metrics.refresh_errors.labels("complaints")._value.get() == 1
    assert metrics.refresh_errors.labels("dead_letters")._value.get() == 1
    stamps = metrics.refresh_timestamp.samples()
    assert set(stamps) == {("consumers",)}


async def test_a_broker_not_yet_connected_is_skipped(metrics: PipelineMetrics) -> None:
    broker = NatsBroker("nats://127.0.0.1:1")
    plan = RefreshPlan(consumers=[("S", "c")])
    await refresh_once(metrics, jetstream_of(broker), plan)
    assert metrics.refresh_timestamp.samples() == {}
    assert metrics.consumer_backlog.samples() == {}


def test_declared_consumers_come_from_the_broker() -> None:
    broker = NatsBroker("nats://127.0.0.1:1")

    @durable(broker, subjects.COMPLAINT_ROUTED, "sla-routed")
    async def on_routed(body: dict[str, Any]) -> None: ...

    assert declared_consumers(broker) == [("LAPOR_EVENTS", "sla-routed")]


async def test_refresher_runs_until_stopped(metrics: PipelineMetrics) -> None:
    js = _FakeJetStream({("S", "c"): _Info(1, 1, 0)})
    stop = start_refresher(metrics, js, RefreshPlan(consumers=[("S", "c")]), interval_s=0.01)
    await _asked_twice(js)
    await stop()
    assert metrics.consumer_backlog.value("S", "c") == 2
    asked = js.asked
    js.infos[("S", "c")] = _Info(5, 0, 0)

    # A second refresher on the same interval has gone round twice since: the
    # first would have gone round again by now, had it not stopped.
    witness = _FakeJetStream({("S", "w"): _Info(0, 0, 0)})
    stop_witness = start_refresher(
        PipelineMetrics(CollectorRegistry()),
        witness,
        RefreshPlan(consumers=[("S", "w")]),
        interval_s=0.01,
    )
    await _asked_twice(witness)
    await stop_witness()
    assert js.asked == asked, "stopped means stopped"
    assert metrics.consumer_backlog.value("S", "c") == 2


async def _asked_twice(js: _FakeJetStream) -> None:
    async def twice() -> bool:
        return js.asked >= 2

    await eventually(twice, timeout=5, interval=0.005)


def test_slow_refreshes_wait_longer_so_they_take_a_tenth_of_the_time_at_most() -> None:
    assert pause_after(0.2, 30.0) == 30.0
    assert pause_after(3.0, 30.0) == 30.0
    assert pause_after(10.0, 30.0) == pytest.approx(90.0)  # 10 s of every 100 s
    assert pause_after(0.0, 0.5) == 0.5


def test_promtool_accepts_every_service_metric() -> None:
    tool = promtool()
    if tool is None:
        pytest.skip("promtool is not installed (Debian package `prometheus`; .ci/run installs it)")
    intake, router = CollectorRegistry(), CollectorRegistry()
    populate(IntakeMetrics(intake))
    RouterMetrics(router).routing_decisions.labels(agency="PUPR", priority="normal").inc()
    for registry in (intake, router):
        result = subprocess.run(
            [tool, "check", "metrics"],
            input=generate_latest(registry),
            capture_output=True,
            timeout=60,
        )
        assert result.returncode == 0, result.stdout + result.stderr


def populate(m: IntakeMetrics) -> None:
    """One sample in every family of intake."""
    m.received.labels(channel="sms", region="banjar").inc()
    m.rejections.labels(channel="sms", reason="too_short").inc()
    m.citizen_actions.labels(action="rate", region="banjar").inc()
    m.refresh_errors.labels(part="complaints").inc()
    m.open_complaints.replace({("assigned", "PUPR", "normal"): 4})
    m.triage_queue.set(2)
    m.deadlines_due.replace({("answer",): 1})
    m.deadlines_overdue.replace({("answer",): 1})
    m.urgent_unacknowledged.replace({("RSUD",): 1})
    m.urgent_oldest_age.set(4000)
    m.dead_letters.replace({("router",): 1})
    m.consumer_backlog.replace({("LAPOR_EVENTS", "sla-routed"): 3})
    m.consumer_redelivered.replace({("LAPOR_EVENTS", "sla-routed"): 1})
    m.refresh_timestamp.replace({("complaints",): 1.7e9})
    m.open_by_kecamatan.replace({("63.03.01",): 1})
    m.counts_drift.set(0)
    m.counts_reconciled.set(1.7e9)
