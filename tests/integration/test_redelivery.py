"""Delivery guarantees on the real nats-server and FerretDB, one service in-process.

A handler that stores its state and then dies before the ack is the classic
cause of duplicates: JetStream redelivers, and the handler must recognise the
work as done.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from datetime import datetime
from typing import Any

import pytest
from pydantic import BaseModel

from lapor.contracts import subjects
from services.intake.guard import SenderMessages
from services.intake.repository import ComplaintRepository
from tests.e2e.helpers import Collector, consumers_idle, eventually, sms_payload
from tests.integration.intake_harness import running_intake
from tools.devstack import Stack

pytestmark = [pytest.mark.integration]


class CrashAfterStore(ComplaintRepository):
    """Stores like the real repository, then fails once as a crash before the ack would."""

    def __init__(self, db: Any) -> None:
        super().__init__(db)
        self.calls = 0
        self.deliveries = 0

    async def record_sender_message(
        self, source_key: str, phone_hash: str, at: datetime
    ) -> SenderMessages:
        self.deliveries += 1  # every delivery of an SMS starts by counting it
        return await super().record_sender_message(source_key, phone_hash, at)

    async def add_complaint(
        self, doc: dict[str, Any], events: Sequence[BaseModel] = ()
    ) -> tuple[dict[str, Any], bool]:
        self.calls += 1
        stored = await super().add_complaint(doc, events)
        if self.calls == 1:
            raise ConnectionError("simulated crash after the complaint was stored")
        return stored


async def test_message_redelivered_after_a_failure_leaves_one_complaint_and_one_event(
    own_servers: Stack, own_nc: Any, own_mongo: Any
) -> None:
    servers, nc, mongo = own_servers, own_nc, own_mongo
    db = mongo["lapor_redelivery"]
    repo = CrashAfterStore(db)
    js = nc.jetstream()

    async with running_intake(servers, mongo, "lapor_redelivery", repo):
        payload = sms_payload("+6281234500101", "BANJAR lampu jalan mati sepanjang jalan A Yani")
        received = await Collector().attach(nc, subjects.COMPLAINT_RECEIVED)
        await nc.publish(subjects.INBOUND_SMS, json.dumps(payload).encode())

        doc = await eventually(
            lambda: db.complaints.find_one({"source_key": f"sms:{payload['gateway_id']}"})
        )
        # The first attempt failed after storing; wait for the redelivered attempt.
        await eventually(lambda: _ready(repo.deliveries >= 2), timeout=60)
        # Then until the SMS is acknowledged and its announcement has reached us.
        await consumers_idle(js, [(subjects.INBOUND_STREAM.name, "intake-sms")])
        await eventually(received.drained)
        await received.detach()

    assert repo.calls == 1 and repo.deliveries == 2
    assert await db.complaints.count_documents({}) == 1
    assert [e["complaint_id"] for e in received.got] == [doc["_id"]]


async def _ready(value: bool) -> bool:
    return value
