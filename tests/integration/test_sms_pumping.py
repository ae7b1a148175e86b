"""SMS pumping through the web form, on the real intake app, FerretDB and NATS: a
number's SMS, web and Open311 submissions share one per-number limit, and a number
that is not an Indonesian mobile is refused; neither gets anything texted."""

from __future__ import annotations

import json
import uuid
from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest
import pytest_asyncio

from lapor.contracts import subjects
from lapor.contracts.commands import Role
from services.intake.auth import new_token, token_record
from tests.e2e.helpers import eventually, sms_payload
from tests.integration.intake_harness import http_client, serving_intake
from tools.devstack import Stack

pytestmark = [pytest.mark.integration, pytest.mark.security]

DATABASE = "lapor_sms_pumping"
TEXTS = [
    "Jalan di depan SDN 2 Martapura berlubang besar dan dalam",
    "Lampu penerangan jalan Sungai Tabuk mati sejak seminggu",
    "Sampah menumpuk di pasar Gambut tidak diangkut petugas",
    "Air PDAM keruh berbau di Kertak Hanyar sejak kemarin",
    "Jembatan kayu desa Pasayangan retak dan miring berbahaya",
    "Drainase tersumbat di Jalan A Yani km 40 banjir saat hujan",
]


@pytest_asyncio.fixture(scope="module", loop_scope="session")
async def partner(own_mongo: Any) -> str:
    token = new_token()
    await own_mongo[DATABASE].api_tokens.insert_one(
        token_record(token, Role.PARTNER, "kota-app", None)
    )
    return token


@pytest_asyncio.fixture(scope="module", loop_scope="session")
async def rejected(own_nc: Any) -> AsyncIterator[list[dict[str, Any]]]:
    seen: list[dict[str, Any]] = []

    async def keep(msg: Any) -> None:
        seen.append(json.loads(msg.data))

    sub = await own_nc.subscribe(subjects.INBOUND_REJECTED, cb=keep)
    yield seen
    await sub.unsubscribe()


@pytest_asyncio.fixture(scope="module", loop_scope="session")
async def http(own_servers: Stack, partner: str) -> AsyncIterator[httpx.AsyncClient]:
    async with (
        serving_intake(own_servers, DATABASE, http_rate_per_minute=0, rate_per_hour=3) as app,
        http_client(app) as client,
    ):
        yield client


async def test_a_numbers_sms_web_and_open311_submissions_share_one_limit(
    http: httpx.AsyncClient,
    own_nc: Any,
    own_mongo: Any,
    partner: str,
    rejected: list[dict[str, Any]],
) -> None:
    db = own_mongo[DATABASE]
    number = "+6281234500777"
    for text in TEXTS[:2]:
        payload = sms_payload(number, f"BANJAR {text}")
        await own_nc.publish(subjects.INBOUND_SMS, json.dumps(payload).encode())

    async def both_sms_stored() -> bool:
        return await db.complaints.count_documents({"channel": "sms"}) == 2

    await eventually(both_sms_stored, timeout=30)

    def form(text: str, phone: str = "0812-3450-0777") -> dict[str, Any]:
        return {"region": "banjar", "text": text, "phone": phone, "client_id": uuid.uuid4().hex}

    third = await http.post("/api/v1/complaints", json=form(TEXTS[2]))
    assert third.status_code == 202, third.text
    fourth = await http.post("/api/v1/complaints", json=form(TEXTS[3]))
    assert fourth.status_code == 422, fourth.text
    assert fourth.json()["detail"]["reason"] == "rate_limited"
    services = (await http.get("/open311/v2/services.json")).json()
    code = next(s["service_code"] for s in services if s["service_code"].startswith("PUPR-"))
    fifth = await http.post(
        "/open311/v2/requests.json",
        data={
            "api_key": partner,
            "service_code": code,
            "description": TEXTS[4],
            "request_id": uuid.uuid4().hex,
            "phone": number,
        },
    )
    assert fifth.status_code == 400 and "too many" in fifth.text, fifth.text
    # Another number is not held back by this one.
    other = await http.post("/api/v1/complaints", json=form(TEXTS[5], "+6281234500778"))
    assert other.status_code == 202, other.text

    assert await db.complaints.count_documents({}) == 4
    limited = await db.rejections.find({"reason": "rate_limited"}).to_list(None)
    assert sorted(r["channel"] for r in limited) == ["open311", "web"]
    assert all(r["answered"] is False for r in limited)

    async def announced() -> bool:
        return len([r for r in rejected if r["reason"] == "rate_limited"]) == 2

    await eventually(announced, timeout=10)
    assert all(r["reply_to_sealed"] is None for r in rejected)


async def test_a_number_that_is_not_an_indonesian_mobile_is_refused(
    http: httpx.AsyncClient, own_mongo: Any, rejected: list[dict[str, Any]]
) -> None:
    db = own_mongo[DATABASE]
    before = await db.complaints.count_documents({})
    for phone in ("+447400123456", "+62215551234"):
        answer = await http.post(
            "/api/v1/complaints",
            json={"region": "banjar", "text": TEXTS[0], "phone": phone},
        )
        assert answer.status_code == 422, answer.text
        assert answer.json()["detail"]["reason"] == "phone_not_allowed"
        assert phone not in answer.text
    assert await db.complaints.count_documents({}) == before
    assert await db.rejections.count_documents({"reason": "phone_not_allowed"}) == 2

    async def announced() -> bool:
        return len([r for r in rejected if r["reason"] == "phone_not_allowed"]) == 2

    await eventually(announced, timeout=10)
    assert all(r["reply_to_sealed"] is None for r in rejected)
