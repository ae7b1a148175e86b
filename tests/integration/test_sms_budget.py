"""The daily SMS budget on the real FerretDB: two notify replicas delivering at once
never send more citizen SMS of a region than its budget; the rest are withheld."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime
from typing import Any

import pytest
from prometheus_client import CollectorRegistry
from pymongo import AsyncMongoClient, monitoring

from lapor.runtime.pii import PiiCipher, new_key
from services.notify.channels import ChannelSet, DeliveryResult, OutgoingMessage
from services.notify.delivery import Deliverer, Notification, NotifyMetrics
from services.notify.repository import BUDGET_UNITS_AT_ONCE, NotificationRepository
from services.notify.retry import RetryPolicy
from tools.devstack import Stack

pytestmark = [pytest.mark.integration, pytest.mark.security]

DATABASE = "lapor_sms_budget"
BUDGET = 7
NOW = datetime(2026, 12, 6, 3, 0, tzinfo=UTC)


class Gateway:
    name = "bus"

    def __init__(self) -> None:
        self.sent: list[str] = []

    async def send(self, message: OutgoingMessage) -> DeliveryResult:
        await asyncio.sleep(0)
        self.sent.append(message.notification_id)
        return DeliveryResult.sent()


def replica(
    client: Any, gateway: Gateway, registry: CollectorRegistry, budget: int = BUDGET
) -> Deliverer:
    repo = NotificationRepository(client[DATABASE], PiiCipher(new_key()))
    return Deliverer(
        repo,
        ChannelSet(sms=gateway, email=gateway, webhook=gateway),  # type: ignore[arg-type]
        None,  # type: ignore[arg-type]
        NotifyMetrics(registry),
        RetryPolicy(base_s=1, factor=2, max_delay_s=5, max_attempts=2, jitter=0),
        send_timeout_s=1.0,
        clock=lambda: NOW,
        sms_budget=lambda region: budget if region == "banjar" else 1000,
    )


def sms(n: int, region: str = "banjar") -> Notification:
    message = OutgoingMessage(
        f"ntf-{region}-{n}", "sms", f"+6281234{n:06d}", "Laporan diterima", template="ack"
    )
    return Notification(message, "citizen", f"received:LPR-{n}", region=region)


async def test_two_replicas_never_send_beyond_the_budget(
    own_servers: Stack, own_mongo: Any
) -> None:
    await own_mongo.drop_database(DATABASE)
    second: AsyncMongoClient[dict[str, Any]] = AsyncMongoClient(own_servers.mongo, tz_aware=True)
    gateway, registries = Gateway(), (CollectorRegistry(), CollectorRegistry())
    try:
        a = replica(own_mongo, gateway, registries[0])
        b = replica(second, gateway, registries[1])
        notes = [sms(n) for n in range(30)]
        # Each replica gets every SMS (as after a redelivery) and they race for them.
        await asyncio.gather(
            *(a.deliver(n) for n in notes),
            *(b.deliver(n) for n in reversed(notes)),
            *(a.deliver(sms(n, "tapin")) for n in range(3)),
        )
    finally:
        await second.close()

    banjar = [nid for nid in gateway.sent if "-banjar-" in nid]
    assert len(set(banjar)) == BUDGET
    assert len({nid for nid in gateway.sent if "-tapin-" in nid}) == 3
    db = own_mongo[DATABASE]
    counter = await db.notify_sms_budget.find_one({"_id": f"banjar:{NOW.date().isoformat()}"})
    assert counter is not None and counter["sent"] == BUDGET
    assert counter["held"] == 30 - BUDGET
    withheld = await db.notifications.count_documents(
        {"status": "withheld", "withheld_reason": "budget_exhausted"}
    )
    assert withheld == 30 - BUDGET
    held = sum(
        r.get_sample_value(
            "lapor_notifications_withheld_total",
            {"channel": "sms", "region": "banjar", "reason": "budget_exhausted"},
        )
        or 0
        for r in registries
    )
    assert held == 30 - BUDGET


class CountingUpdates(monitoring.CommandListener):
    def __init__(self) -> None:
        self.budget_writes = 0

    def started(self, event: monitoring.CommandStartedEvent) -> None:
        if event.command_name == "update" and event.command.get("update") == "notify_sms_budget":
            self.budget_writes += 1

    def succeeded(self, event: monitoring.CommandSucceededEvent) -> None:
        pass

    def failed(self, event: monitoring.CommandFailedEvent) -> None:
        pass


async def test_units_of_the_budget_are_taken_many_at_once_and_the_last_ones_singly(
    own_servers: Stack, own_mongo: Any
) -> None:
    await own_mongo.drop_database(DATABASE)
    listener = CountingUpdates()
    client: AsyncMongoClient[dict[str, Any]] = AsyncMongoClient(
        own_servers.mongo, tz_aware=True, event_listeners=[listener]
    )
    budget = 3 * BUDGET_UNITS_AT_ONCE + 5
    gateway = Gateway()
    try:
        a = replica(client, gateway, CollectorRegistry(), budget)
        for n in range(budget + 10):
            await a.deliver(sms(n))
    finally:
        await client.close()
    assert len(set(gateway.sent)) == budget
    counter = await own_mongo[DATABASE].notify_sms_budget.find_one(
        {"_id": f"banjar:{NOW.date().isoformat()}"}
    )
    assert counter is not None and (counter["sent"], counter["held"]) == (budget, 10)
    # Three takes of many, the refused take, five singly, ten refused (each counted held).
    assert listener.budget_writes < 3 + 2 + 5 + 10 * 2 + 2


async def test_replicas_taking_units_at_once_never_send_beyond_the_budget(
    own_servers: Stack, own_mongo: Any
) -> None:
    await own_mongo.drop_database(DATABASE)
    second: AsyncMongoClient[dict[str, Any]] = AsyncMongoClient(own_servers.mongo, tz_aware=True)
    budget = 2 * BUDGET_UNITS_AT_ONCE + 3
    gateway = Gateway()
    try:
        a = replica(own_mongo, gateway, CollectorRegistry(), budget)
        b = replica(second, gateway, CollectorRegistry(), budget)
        notes = [sms(n) for n in range(3 * budget)]
        await asyncio.gather(*(a.deliver(n) for n in notes), *(b.deliver(n) for n in notes))
    finally:
        await second.close()
    counter = await own_mongo[DATABASE].notify_sms_budget.find_one(
        {"_id": f"banjar:{NOW.date().isoformat()}"}
    )
    assert counter is not None and counter["sent"] <= budget
    # Units one replica still holds when the other is refused are not sent by anyone.
    assert budget - 2 * (BUDGET_UNITS_AT_ONCE - 1) <= len(set(gateway.sent)) <= budget
