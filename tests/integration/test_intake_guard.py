"""Floods, repeats and retries at the edge, on the real servers with intake's real handlers."""

from __future__ import annotations

import json
import random
from typing import Any

import pytest

from lapor.contracts import subjects
from services.intake.guard import RateLimit
from tests.e2e.helpers import Collector, consumers_idle, eventually, sms_payload
from tests.integration.intake_harness import running_intake
from tools.devstack import Stack

pytestmark = [pytest.mark.integration, pytest.mark.security]

WORDS = (
    "jalan rusak lampu mati sampah sungai drainase sekolah guru puskesmas bidan pasar "
    "harga pupuk sapi air keruh listrik padam jembatan retak parkir liar pedagang trotoar "
    "bansos beras kartu keluarga akta ijazah izin usaha upah pabrik rumah roboh makam banjir"
).split()


def distinct_text(n: int) -> str:
    """Texts that share few words, so none is a near-duplicate of another."""
    return " ".join(random.Random(n).sample(WORDS, 7))


async def _all_handled(nc: Any, collector: Collector) -> None:
    """Intake has handled every SMS and announced what it caused, and the test's
    consumer has every announcement: nothing more is on its way."""
    await consumers_idle(nc.jetstream(), [(subjects.INBOUND_STREAM.name, "intake-sms")])
    await eventually(collector.drained)


async def test_flood_is_kept_but_answered_once(
    own_servers: Stack, own_nc: Any, own_mongo: Any
) -> None:
    db = own_mongo["lapor_flood"]
    sender = "+6281234500301"
    async with running_intake(
        own_servers, own_mongo, "lapor_flood", rate_limit=RateLimit(per_hour=5, per_day=30)
    ):
        collector = await Collector().attach(own_nc, subjects.INBOUND_REJECTED)
        for n in range(20):
            text = "BANJAR " + distinct_text(n)
            await own_nc.publish(
                subjects.INBOUND_SMS, json.dumps(sms_payload(sender, text)).encode()
            )
        await eventually(lambda: _stored(db, 20), timeout=60)
        await _all_handled(own_nc, collector)
    await collector.detach()

    limited = [r for r in collector.got if r["reason"] == "rate_limited"]
    assert await db.complaints.count_documents({}) == 5
    assert await db.rejections.count_documents({"reason": "rate_limited"}) == 15
    assert len(limited) == 15
    assert len([r for r in limited if r["reply_to_sealed"]]) == 1  # one notice, not fifteen


async def test_same_text_again_is_linked_and_a_retry_is_absorbed(
    own_servers: Stack, own_nc: Any, own_mongo: Any
) -> None:
    db = own_mongo["lapor_repeat"]
    sender = "+6281234500302"
    async with running_intake(own_servers, own_mongo, "lapor_repeat"):
        collector = await Collector().attach(own_nc, subjects.COMPLAINT_RECEIVED)
        first = sms_payload(sender, "BANJAR jembatan desa Sungai Batang retak dan miring")
        for _ in range(3):  # the gateway retries the same message
            await own_nc.publish(subjects.INBOUND_SMS, json.dumps(first).encode())
        again = sms_payload(sender, "banjar: Jembatan desa sungai batang retak dan miring!!")
        await own_nc.publish(subjects.INBOUND_SMS, json.dumps(again).encode())
        duplicate = await eventually(
            lambda: db.rejections.find_one({"source_key": f"sms:{again['gateway_id']}"})
        )
        await _all_handled(own_nc, collector)
    await collector.detach()

    complaint = await db.complaints.find_one({"source_key": f"sms:{first['gateway_id']}"})
    assert await db.complaints.count_documents({}) == 1
    assert duplicate["reason"] == "duplicate"
    assert duplicate["complaint_id"] == complaint["_id"]
    assert any(h["reason"] == "the same text was sent again" for h in complaint["history"])
    assert len({r["event_id"] for r in collector.got}) == 1


async def _stored(db: Any, n: int) -> bool:
    total = await db.complaints.count_documents({}) + await db.rejections.count_documents({})
    return total >= n
