"""A failed attempt waits out the consumer's backoff before the next one (real nats-server).

nats-server redelivers a plain NAK at once, whatever the consumer's backoff; a
handler failing on a database that is away would use up every delivery within
seconds. The services' broker NAKs with the backoff's delay instead, and the
last attempt still ends on the dead-letter path.
"""

from __future__ import annotations

import asyncio
import itertools
import json
import time
import uuid
from typing import Any

import pytest
from prometheus_client import CollectorRegistry
from pymongo.errors import ServerSelectionTimeoutError

from lapor.runtime import broker as lapor_broker
from lapor.runtime import handling
from lapor.runtime.dead_letters import NOTES
from lapor.runtime.service import build_runtime
from lapor.runtime.settings import InfraSettings, ServiceSettings
from tests.e2e.helpers import eventually
from tools.devstack import Stack

pytestmark = [pytest.mark.integration]

SUBJECT = "lapor.event.test.unavailable"
BACKOFF = [1.0, 2.0, 3.0]


async def _no_invalid(_msg: Any, _exc: Exception) -> None:
    raise AssertionError("the test message is valid")


async def test_failed_attempts_wait_for_the_backoff_and_the_last_one_dead_letters(
    own_servers: Stack, own_nc: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(lapor_broker, "BACKOFF_S", BACKOFF)
    monkeypatch.setattr(handling, "RETRY_DELAYS_S", BACKOFF)
    monkeypatch.setattr(handling, "MAX_DELIVER", len(BACKOFF) + 1)
    consumer = f"test-backoff-{uuid.uuid4().hex[:8]}"
    infra = InfraSettings(NATS_URL=own_servers.nats)  # type: ignore[call-arg]
    broker = lapor_broker.create_broker(
        infra, service="test", registry=CollectorRegistry(), on_invalid=_no_invalid
    )
    attempts: list[float] = []

    @lapor_broker.durable(broker, SUBJECT, consumer, batch_size=1)
    async def always_unavailable(body: dict[str, Any]) -> None:
        attempts.append(time.monotonic())
        raise ServerSelectionTimeoutError("database away")

    exhausted: list[dict[str, Any]] = []

    async def on_advisory(msg: Any) -> None:
        exhausted.append(json.loads(msg.data))

    advisory = await own_nc.subscribe(
        f"$JS.EVENT.ADVISORY.CONSUMER.MAX_DELIVERIES.LAPOR_EVENTS.{consumer}", cb=on_advisory
    )
    await lapor_broker.declare_consumers(broker)
    await broker.start()
    try:
        await own_nc.jetstream().publish(SUBJECT, b'{"n": 1}', headers={"Nats-Msg-Id": consumer})
        await eventually(lambda: _ready(len(exhausted) == 1), timeout=30)
    finally:
        await advisory.unsubscribe()
        await broker.stop()
        await own_nc.jetstream().delete_consumer("LAPOR_EVENTS", consumer)

    assert len(attempts) == len(BACKOFF) + 1
    gaps = [later - earlier for earlier, later in itertools.pairwise(attempts)]
    for gap, wait in zip(gaps, BACKOFF, strict=False):
        assert gap >= wait * 0.9, (gaps, BACKOFF)
    assert exhausted[0]["deliveries"] == len(BACKOFF) + 1


async def _ready(value: bool) -> bool | None:
    await asyncio.sleep(0)
    return value or None


async def test_a_services_failing_handler_notes_its_error_for_the_dead_letter(
    own_servers: Stack, own_mongo: Any, own_nc: Any
) -> None:
    """Every service's runtime notes why a delivery failed (`delivery_failures`), so a
    dead letter says more than "failed N times"; a contract violation, kept and acked
    by the quarantine, is no failure and leaves no note."""
    db_name = f"notes_{uuid.uuid4().hex[:8]}"
    settings = ServiceSettings(infra=InfraSettings(NATS_URL=own_servers.nats))  # type: ignore[call-arg]
    runtime = build_runtime("test", settings)
    runtime.db.set(own_mongo[db_name])
    consumer = f"test-notes-{uuid.uuid4().hex[:8]}"
    subject = "lapor.event.test.noted"

    @lapor_broker.durable(runtime.broker, subject, consumer, batch_size=1)
    async def unreadable_directory(body: dict[str, int]) -> None:
        raise RuntimeError(f"agency directory unreadable for order {body['order']}")

    notes = own_mongo[db_name][NOTES]
    await runtime.broker.start()
    try:
        js = own_nc.jetstream()
        await js.publish(subject, b"not json at all")
        ack = await js.publish(subject, json.dumps({"order": 7}).encode())

        async def noted() -> list[dict[str, Any]] | None:
            found = await notes.find({}).to_list(None)
            return found or None

        found = await eventually(noted, timeout=30)
    finally:
        await runtime.broker.stop()
        await own_nc.jetstream().delete_consumer("LAPOR_EVENTS", consumer)

    assert [note["error"] for note in found] == [
        "RuntimeError: agency directory unreadable for order 7"
    ]
    assert found[0]["_id"].startswith(f"LAPOR_EVENTS:{ack.seq}:")
