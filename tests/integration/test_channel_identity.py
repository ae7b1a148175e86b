"""Who sent a message is decided by the login, never by the payload, on the real
nats-server, FerretDB and intake app.

Only the SMS gateway's login may publish SMS (and so name a sender's number); a
partner system publishes on its own subject and its complaints are stored under
the partner that subject names; every time window uses the time JetStream
stored the message, not the `received_at` a publisher wrote.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from typing import Any

import nats
import pytest
import pytest_asyncio
from fastapi import FastAPI

from lapor.contracts import subjects
from tests.e2e.helpers import eventually, sms_payload
from tests.integration.intake_harness import serving_intake
from tools.devstack import Stack

pytestmark = [pytest.mark.integration, pytest.mark.security]

DATABASE = "lapor_channel_identity"
RATE_PER_HOUR = 3
TEXTS = [
    "Jalan di depan SDN 2 Martapura berlubang besar dan dalam",
    "Lampu penerangan jalan Sungai Tabuk mati sejak seminggu",
    "Sampah menumpuk di pasar Gambut tidak diangkut petugas",
    "Air PDAM keruh berbau di Kertak Hanyar sejak kemarin",
    "Jembatan kayu desa Pasayangan retak dan miring berbahaya",
]


@pytest_asyncio.fixture(scope="module", loop_scope="session")
async def intake(own_servers: Stack) -> AsyncIterator[FastAPI]:
    """Intake with its consumers running, and a low per-number limit."""
    async with serving_intake(own_servers, DATABASE, rate_per_hour=RATE_PER_HOUR) as app:
        yield app


class Login:
    """A connection as one NATS user, keeping the errors the server reports to it."""

    def __init__(self, stack: Stack, user: str) -> None:
        self.stack, self.user = stack, user
        self.errors: list[str] = []

    async def __aenter__(self) -> Any:
        async def on_error(exc: Exception) -> None:
            self.errors.append(str(exc).lower())

        self.nc = await nats.connect(
            self.stack.nats_url_for(self.user),
            inbox_prefix=f"_INBOX.{self.user}",
            error_cb=on_error,
            allow_reconnect=False,
        )
        return self

    async def __aexit__(self, *_exc: object) -> None:
        await self.nc.close()

    async def publish(self, subject: str, body: dict[str, Any], msg_id: str) -> None:
        await self.nc.jetstream().publish(
            subject, json.dumps(body).encode(), headers={"Nats-Msg-Id": msg_id}, timeout=10
        )


def _partner_message(message_id: str, text: str, **fields: Any) -> dict[str, Any]:
    return {
        "source": "web",
        "message_id": message_id,
        "region": "banjar",
        "text": text,
        "received_at": datetime.now(UTC).isoformat(),
        **fields,
    }


async def test_a_partner_cannot_submit_sms_in_a_citizens_name(
    own_servers: Stack, own_mongo: Any, intake: FastAPI
) -> None:
    db = own_mongo[DATABASE]
    victim = "+6281234500881"
    forged = sms_payload(victim, f"BANJAR {TEXTS[0]}")
    async with Login(own_servers, "partner-whatsapp") as partner:
        await partner.nc.publish(subjects.INBOUND_SMS, json.dumps(forged).encode())
        await partner.nc.flush(timeout=5)

        async def refused() -> bool:
            wanted = f'permissions violation for publish to "{subjects.INBOUND_SMS}"'
            return any(wanted in error for error in partner.errors)

        await eventually(refused, timeout=10)
    # The gateway's own SMS after it, on the same consumer: once it is stored, the
    # forged one would have been too.
    genuine = sms_payload("+6281234500882", f"BANJAR {TEXTS[1]}")
    async with Login(own_servers, "gateway") as gateway:
        await gateway.publish(subjects.INBOUND_SMS, genuine, genuine["gateway_id"])

    async def genuine_stored() -> dict[str, Any] | None:
        return await db.complaints.find_one({"source_key": f"sms:{genuine['gateway_id']}"})

    await eventually(genuine_stored, timeout=30)
    forged_key = f"sms:{forged['gateway_id']}"
    assert await db.complaints.count_documents({"source_key": forged_key}) == 0
    assert await db.rejections.count_documents({"source_key": forged_key}) == 0


async def test_a_partners_complaints_are_stored_under_the_partner_of_the_subject(
    own_servers: Stack, own_mongo: Any, intake: FastAPI
) -> None:
    db = own_mongo[DATABASE]
    message_id = f"m-{uuid.uuid4().hex[:8]}"
    # WhatsApp claims to be SP4N, and takes a message id SP4N will use.
    claimed = _partner_message(message_id, TEXTS[2], source="partner:sp4n")
    own = _partner_message(message_id, TEXTS[3], source="partner:sp4n")
    async with Login(own_servers, "partner-whatsapp") as whatsapp:
        await whatsapp.publish(
            subjects.inbound_partner("whatsapp"), claimed, f"partner:whatsapp:{message_id}"
        )
    async with Login(own_servers, "partner-sp4n") as sp4n:
        await sp4n.publish(subjects.inbound_partner("sp4n"), own, f"partner:sp4n:{message_id}")

    async def both_stored() -> list[dict[str, Any]] | None:
        found = await db.complaints.find({"submission.binding": {"$exists": True}}).to_list(None)
        mine = [doc for doc in found if doc["source_key"].endswith(f":{message_id}")]
        return mine if len(mine) == 2 else None

    stored = {doc["source_key"]: doc for doc in await eventually(both_stored, timeout=30)}
    assert set(stored) == {
        f"web:partner:whatsapp:{message_id}",
        f"web:partner:sp4n:{message_id}",
    }
    by_whatsapp = stored[f"web:partner:whatsapp:{message_id}"]
    by_sp4n = stored[f"web:partner:sp4n:{message_id}"]
    assert by_whatsapp["submission"]["source"] == "partner:whatsapp"
    assert by_sp4n["submission"]["source"] == "partner:sp4n"
    assert by_whatsapp["_id"] != by_sp4n["_id"]
    assert "Kertak Hanyar" in by_sp4n["text"] and "Gambut" in by_whatsapp["text"]


async def test_a_claimed_receipt_time_neither_escapes_the_limit_nor_dates_the_complaint(
    own_servers: Stack, own_mongo: Any, intake: FastAPI
) -> None:
    db = own_mongo[DATABASE]
    sender = "+6281234500883"
    now = datetime.now(UTC)
    # One more than the hourly limit, each claiming to be from another day (or year).
    claimed = [now - timedelta(days=2 * i + 1) for i in range(RATE_PER_HOUR)]
    claimed.append(now + timedelta(days=365))
    sent = []
    async with Login(own_servers, "gateway") as gateway:
        for when, text in zip(claimed, TEXTS, strict=False):
            payload = sms_payload(sender, f"BANJAR {text}")
            payload["received_at"] = when.isoformat()
            await gateway.publish(subjects.INBOUND_SMS, payload, payload["gateway_id"])
            sent.append(f"sms:{payload['gateway_id']}")

    async def all_decided() -> tuple[list[dict[str, Any]], list[dict[str, Any]]] | None:
        complaints = await db.complaints.find({"source_key": {"$in": sent}}).to_list(None)
        rejections = await db.rejections.find({"source_key": {"$in": sent}}).to_list(None)
        return (complaints, rejections) if len(complaints) + len(rejections) == len(sent) else None

    complaints, rejections = await eventually(all_decided, timeout=30)
    # Which one is refused depends on the order intake handled them in (a retried
    # delivery comes after the next); that one of the four is, does not.
    assert [r["reason"] for r in rejections] == ["rate_limited"]
    assert len(complaints) == RATE_PER_HOUR
    for doc in complaints:
        assert abs(doc["received_at"] - now) < timedelta(minutes=5), doc["received_at"]


async def test_a_partners_complaint_naming_a_phone_does_not_swallow_that_phones_sms(
    own_servers: Stack, own_mongo: Any, intake: FastAPI
) -> None:
    """A number a partner gives is only a reply contact: the citizen's own SMS about
    the same problem is a complaint of its own, not a duplicate of the partner's."""
    db = own_mongo[DATABASE]
    citizen = "+6281234500884"
    message_id = f"m-{uuid.uuid4().hex[:8]}"
    filed = _partner_message(message_id, TEXTS[4], phone=citizen)
    async with Login(own_servers, "partner-whatsapp") as whatsapp:
        await whatsapp.publish(
            subjects.inbound_partner("whatsapp"), filed, f"partner:whatsapp:{message_id}"
        )

    async def partner_stored() -> dict[str, Any] | None:
        return await db.complaints.find_one({"source_key": f"web:partner:whatsapp:{message_id}"})

    await eventually(partner_stored, timeout=30)
    sms = sms_payload(citizen, f"BANJAR {TEXTS[4]}")
    async with Login(own_servers, "gateway") as gateway:
        await gateway.publish(subjects.INBOUND_SMS, sms, sms["gateway_id"])
    key = f"sms:{sms['gateway_id']}"

    async def decided() -> str | None:
        if await db.complaints.count_documents({"source_key": key}):
            return "complaint"
        rejection = await db.rejections.find_one({"source_key": key})
        return None if rejection is None else rejection["reason"]

    assert await eventually(decided, timeout=30) == "complaint"
