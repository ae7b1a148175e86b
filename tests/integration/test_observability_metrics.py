"""Domain metrics against the real FerretDB and nats-server; promtool on the output."""

from __future__ import annotations

import asyncio
import shutil
import subprocess
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
import pytest_asyncio
from faststream.nats import NatsBroker
from faststream.nats.prometheus import NatsPrometheusMiddleware
from nats.js.api import AckPolicy, ConsumerConfig
from prometheus_client import CollectorRegistry, generate_latest

from lapor.runtime.metrics import start_refresher
from services.intake.complaint_counts import COUNTS, MongoCountStore
from services.intake.counts import reconcile
from services.intake.metrics import IntakeMetrics, complaints_in_state, refresh_plan
from tests.e2e.helpers import eventually
from tests.unit.observability.test_metrics import populate
from tools.devstack import Stack

pytestmark = [pytest.mark.integration]

STREAM, CONSUMER = "OBS_METRICS", "obs-worker"
NOW = datetime.now(UTC).replace(microsecond=0)


def _complaint(
    cid: str,
    state: str,
    agency: str | None = None,
    priority: str | None = None,
    deadlines: dict[str, datetime] | None = None,
    assigned_ago: timedelta | None = None,
) -> dict[str, Any]:
    history: list[dict[str, Any]] = [{"at": NOW - timedelta(days=2), "state": "received"}]
    if assigned_ago is not None:
        history.append({"at": NOW - assigned_ago, "state": "assigned"})
    return {
        "_id": cid,
        "region": "banjar",
        "state": state,
        "agency": agency,
        "priority": priority,
        "text": "tidak boleh jadi label",
        "deadlines": {"routing": None, "first_response": None, "answer": None, **(deadlines or {})},
        "history": history,
    }


def _seed() -> list[dict[str, Any]]:
    h = timedelta(hours=1)
    return [
        _complaint("C1", "received", deadlines={"routing": NOW + 10 * h}),
        _complaint("C2", "triage", priority="normal", deadlines={"routing": NOW - h}),
        _complaint("C3", "triage", priority="normal", deadlines={"routing": NOW - 2 * h}),
        _complaint(
            "C4",
            "assigned",
            "PUPR",
            "normal",
            {"first_response": NOW + 5 * h, "answer": NOW + 240 * h},
            assigned_ago=h,
        ),
        # Urgent, assigned 3 h ago and not acknowledged: must alert.
        _complaint(
            "C5", "assigned", "RSUD", "urgent", {"first_response": NOW + 21 * h}, assigned_ago=3 * h
        ),
        # Urgent but assigned 10 minutes ago: not yet.
        _complaint(
            "C6",
            "assigned",
            "RSUD",
            "urgent",
            {"first_response": NOW + 23 * h},
            assigned_ago=timedelta(minutes=10),
        ),
        _complaint("C7", "in_progress", "PUPR", "normal", {"answer": NOW - 24 * h}),
        # Waiting for the citizen: the agency's clock is paused.
        _complaint("C8", "needs_info", "PUPR", "normal", {"answer": NOW - 24 * h}),
        _complaint("C9", "responded", "DINKES", "high"),
        _complaint("C10", "closed", "PUPR", "normal"),
        _complaint("C11", "rejected"),
    ]


@pytest_asyncio.fixture(scope="module", loop_scope="session")
async def seeded(own_mongo: Any, own_nc: Any) -> AsyncIterator[Any]:
    db = own_mongo["lapor_obs_metrics"]
    await db["complaints"].insert_many(_seed())
    # Loaded in bulk, past intake: the reconciliation counts them (as it does for
    # complaints stored before the counters existed).
    await reconcile(MongoCountStore(db), lambda state: complaints_in_state(db, state), settle_s=0)
    await db["dead_letters"].insert_many(
        [
            {"_id": "d1", "service": "router", "reason": "contract_violation"},
            {"_id": "d2", "service": "router", "reason": "contract_violation"},
            {"_id": "d3", "service": "router", "resolved_at": NOW},
            {"_id": "d4", "service": "intake", "reason": "contract_violation"},
        ]
    )
    # A consumer with 3 messages pending and 2 delivered, unacked and redelivered.
    js = own_nc.jetstream()
    await js.add_stream(name=STREAM, subjects=["obs.metrics.>"])
    for index in range(5):
        await js.publish("obs.metrics.work", f"{index}".encode())
    await js.add_consumer(
        STREAM,
        ConsumerConfig(
            durable_name=CONSUMER,
            ack_policy=AckPolicy.EXPLICIT,
            ack_wait=1,
            max_ack_pending=2,
        ),
    )
    sub = await js.pull_subscribe("obs.metrics.work", durable=CONSUMER, stream=STREAM)
    await sub.fetch(2, timeout=5)
    # At its limit of unacknowledged messages the consumer hands out nothing new:
    # the next fetches get the same two back, once their ack wait has run out.
    redelivered: set[int] = set()
    while len(redelivered) < 2:
        for msg in await sub.fetch(2, timeout=5):
            assert msg.metadata.num_delivered == 2
            redelivered.add(msg.metadata.sequence.stream)
    yield db


async def test_refresher_exposes_the_database_and_jetstream_state(seeded: Any, own_nc: Any) -> None:
    registry = CollectorRegistry()
    metrics = IntakeMetrics(registry)
    plan = refresh_plan(metrics, seeded, [(STREAM, CONSUMER)])
    stop = start_refresher(metrics, own_nc.jetstream(), plan, interval_s=0.2)
    try:
        await eventually(lambda: _refreshed(registry), timeout=20)
    finally:
        await stop()

    def value(name: str, **labels: str) -> float | None:
        return registry.get_sample_value(name, labels)

    assert metrics.open_complaints.samples() == {
        ("received", "none", "none"): 1,
        ("triage", "none", "normal"): 2,
        ("assigned", "PUPR", "normal"): 1,
        ("assigned", "RSUD", "urgent"): 2,
        ("in_progress", "PUPR", "normal"): 1,
        ("needs_info", "PUPR", "normal"): 1,
        ("responded", "DINKES", "high"): 1,
    }
    assert value("lapor_triage_queue_complaints") == 2
    assert metrics.deadlines_due.samples() == {
        ("routing",): 1,
        ("first_response",): 3,
        ("answer",): 0,
    }
    assert metrics.deadlines_overdue.samples() == {
        ("routing",): 2,
        ("first_response",): 0,
        ("answer",): 1,
    }
    assert metrics.urgent_unacknowledged.samples() == {("RSUD",): 1}
    oldest = value("lapor_urgent_unacknowledged_oldest_age_seconds")
    # NOW is fixed when the module is imported, possibly long before this test runs.
    since_seed = (datetime.now(UTC) - NOW).total_seconds()
    assert oldest is not None and 3 * 3600 <= oldest <= 3 * 3600 + since_seed + 1
    assert metrics.dead_letters.samples() == {("router",): 2, ("intake",): 1}
    assert value("lapor_jetstream_consumer_backlog_messages", stream=STREAM, consumer=CONSUMER) == 5
    assert (
        value("lapor_jetstream_consumer_redelivered_messages", stream=STREAM, consumer=CONSUMER)
        == 2
    )
    assert "tidak boleh" not in generate_latest(registry).decode()


async def test_the_gauges_read_counters_and_the_recount_reads_through_intakes_index(
    own_servers: Stack,
) -> None:
    """A refresh reads the counters alone, never a complaint. The reconciliation's
    recount sends one equality query per open state: on FerretDB a `$in` or an
    aggregation is a scan decoding every stored complaint, minutes each with a
    million stored."""
    from pymongo import AsyncMongoClient, monitoring

    from services.intake.metrics import OPEN_STATES, refresh_complaints
    from services.intake.repository import ComplaintRepository

    class Finds(monitoring.CommandListener):
        def __init__(self) -> None:
            self.filters: list[dict[str, Any]] = []
            self.collections: set[str] = set()

        def started(self, event: monitoring.CommandStartedEvent) -> None:
            if event.command_name in ("find", "aggregate", "count"):
                collection = str(event.command.get(event.command_name))
                self.collections.add(collection)
                if collection == "complaints":
                    self.filters.append(dict(event.command.get("filter", {"aggregate": True})))

        def succeeded(self, event: monitoring.CommandSucceededEvent) -> None: ...

        def failed(self, event: monitoring.CommandFailedEvent) -> None: ...

    finds = Finds()
    client: AsyncMongoClient[dict[str, Any]] = AsyncMongoClient(
        own_servers.mongo, tz_aware=True, event_listeners=[finds]
    )
    db = client["lapor_obs_index"]
    try:
        await ComplaintRepository(db).ensure_indexes()
        await db.complaints.insert_many([{**c, "source_key": f"seed:{c['_id']}"} for c in _seed()])
        metrics = IntakeMetrics(CollectorRegistry())
        finds.filters.clear()
        await reconcile(MongoCountStore(db), lambda s: complaints_in_state(db, s), settle_s=0)
        assert finds.filters == [{"state": state} for state in OPEN_STATES]
        finds.filters.clear()
        finds.collections.clear()
        await refresh_complaints(metrics, db, NOW)
        assert finds.collections == {COUNTS} and finds.filters == []
        assert sum(metrics.open_complaints.samples().values()) == 9
        for query in ({"state": state} for state in OPEN_STATES):
            explained = await db.command("explain", {"find": "complaints", "filter": query})
            if "ferretdbVersion" in explained.get("serverInfo", {}):
                plan = " ".join(explained["queryPlanner"]["Plan"])
                assert "USING INDEX" in plan and "SCAN" not in plan, plan
            else:
                assert "IXSCAN" in str(explained["queryPlanner"]["winningPlan"])
    finally:
        await client.drop_database("lapor_obs_index")
        await client.close()


async def _refreshed(registry: CollectorRegistry) -> bool | None:
    parts = ("complaints", "dead_letters", "consumers")
    done = all(
        registry.get_sample_value("lapor_metrics_refresh_timestamp_seconds", {"part": p})
        for p in parts
    )
    return done or None


async def test_promtool_accepts_a_service_registry_with_faststream_metrics(
    own_servers: Stack, seeded: Any
) -> None:
    tool = shutil.which("promtool")
    if tool is None:
        pytest.skip("promtool is not installed (Debian package `prometheus`; .ci/run installs it)")
    registry = CollectorRegistry()
    metrics = IntakeMetrics(registry)
    broker = NatsBroker(
        own_servers.nats,
        middlewares=[NatsPrometheusMiddleware(registry=registry, app_name="obs")],
    )
    handled = asyncio.Event()

    @broker.subscriber("obs.core.ok")
    async def ok(body: dict[str, Any]) -> None:
        handled.set()

    @broker.subscriber("obs.core.fail")
    async def fail(body: dict[str, Any]) -> None:
        raise RuntimeError("handler failure for the exceptions metric")

    await broker.start()
    try:
        await broker.publish({"n": 1}, "obs.core.fail")
        await broker.publish({"n": 1}, "obs.core.ok")
        await asyncio.wait_for(handled.wait(), 10)
        # The refresher reads consumer info over the broker's own connection.
        stop = start_refresher(
            metrics, broker, refresh_plan(metrics, seeded, [(STREAM, CONSUMER)]), 0.2
        )
        try:
            await eventually(lambda: _refreshed(registry), timeout=20)
        finally:
            await stop()
    finally:
        await broker.stop()
    populate(metrics)

    text = generate_latest(registry)
    for family in (
        "faststream_received_processed_messages_duration_seconds_bucket",
        "faststream_received_processed_messages_exceptions_total",
        "faststream_published_messages_total",
        "lapor_jetstream_consumer_backlog_messages",
        "lapor_complaints_open",
    ):
        assert family.encode() in text, family
    result = await asyncio.to_thread(_check_metrics, tool, text)
    assert result.returncode == 0, (result.stdout + result.stderr).decode()


def _check_metrics(tool: str, text: bytes) -> subprocess.CompletedProcess[bytes]:
    return subprocess.run([tool, "check", "metrics"], input=text, capture_output=True, timeout=60)
