"""Idempotency keys of new complaints on the real intake app, FerretDB and NATS.

`client_id` (web API) and `request_id` (Open311) belong to the caller that used
them and to what it sent: the same key with the same submission is the same
complaint, announced once; the same key with anything else changed is refused
with 409 and changes nothing; another caller's use of a token holder's key is
a submission of its own and never answers with the holder's complaint or its
secret citizen link.
"""

from __future__ import annotations

import json
import uuid
from collections import Counter
from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest
import pytest_asyncio

from lapor.contracts import subjects
from lapor.contracts.commands import Role
from lapor.runtime.outbox import FLAG
from services.intake.auth import new_token, token_record
from tests.e2e.helpers import eventually
from tests.integration.intake_harness import http_client, serving_intake
from tools.devstack import Stack

pytestmark = [pytest.mark.integration, pytest.mark.security]

DATABASE = "lapor_submission_keys"
TEXT = "Jalan di depan SDN 2 Martapura berlubang besar, dua pengendara motor jatuh minggu ini"


@pytest_asyncio.fixture(scope="module", loop_scope="session")
async def received(own_nc: Any) -> AsyncIterator[Counter[str]]:
    """How often each complaint was announced as received."""
    seen: Counter[str] = Counter()

    async def count(msg: Any) -> None:
        seen[json.loads(msg.data)["complaint_id"]] += 1

    sub = await own_nc.subscribe(subjects.COMPLAINT_RECEIVED, cb=count)
    yield seen
    await sub.unsubscribe()


@pytest_asyncio.fixture(scope="module", loop_scope="session")
async def tokens(own_mongo: Any) -> dict[str, str]:
    made = {"kota-app": new_token(), "sp4n": new_token()}
    await own_mongo[DATABASE].api_tokens.insert_many(
        [token_record(token, Role.PARTNER, name, None) for name, token in made.items()]
    )
    return made


@pytest_asyncio.fixture(scope="module", loop_scope="session")
async def http(own_servers: Stack, tokens: dict[str, str]) -> AsyncIterator[httpx.AsyncClient]:
    async with (
        serving_intake(
            own_servers,
            DATABASE,
            http_rate_per_minute=0,
            # Every case here submits as the same number: the per-number limit is not the subject.
            rate_per_hour=1000,
            rate_per_day=1000,
        ) as app,
        http_client(app) as client,
    ):
        yield client


@pytest.fixture
def db(own_mongo: Any) -> Any:
    return own_mongo[DATABASE]


def body(client_id: str, **changes: Any) -> dict[str, Any]:
    return {
        "region": "banjar",
        "text": TEXT,
        "name": "Siti",
        "phone": "+6281234500001",
        "email": "siti@example.org",
        "location": {"lat": -3.41, "lon": 114.85, "address": "Jl. A. Yani km 39"},
        "client_id": client_id,
        **changes,
    }


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


async def settled(db: Any, nc: Any, received: Counter[str], tracking_id: str) -> int:
    """The announcements of a complaint once nothing of it is left to announce: its
    outbox is empty, and a round trip to NATS has brought in what was published."""

    async def announced() -> bool:
        doc = await db.complaints.find_one({"_id": tracking_id}, {FLAG: 1})
        return doc is not None and FLAG not in doc

    await eventually(announced, timeout=30)
    await nc.flush()
    return received[tracking_id]


@pytest.mark.parametrize("caller", ["anonymous", "token"])
async def test_the_same_key_and_submission_is_the_same_complaint_announced_once(
    http: httpx.AsyncClient,
    db: Any,
    received: Counter[str],
    own_nc: Any,
    tokens: dict[str, str],
    caller: str,
) -> None:
    headers = bearer(tokens["kota-app"]) if caller == "token" else {}
    form = body(f"form-{uuid.uuid4().hex}")
    first = await http.post("/api/v1/complaints", json=form, headers=headers)
    again = await http.post("/api/v1/complaints", json=form, headers=headers)
    assert first.status_code == 202, first.text
    assert again.status_code == 202, again.text
    # The original answer: the submitter's retry after a lost answer gets its link back.
    assert again.json() == first.json()
    tracking_id = first.json()["tracking_id"]
    assert await db.complaints.count_documents({"text": TEXT, "_id": tracking_id}) == 1
    assert await db.complaints.count_documents({"source_key": {"$regex": form["client_id"]}}) == 1
    assert await settled(db, own_nc, received, tracking_id) == 1


CHANGES = {
    "another phone": {"phone": "+6281299900002"},
    "another e-mail": {"email": "someone@example.org"},
    "another text": {"text": TEXT + ", tolong segera diperbaiki"},
    "another location": {"location": {"lat": -3.42, "lon": 114.85}},
    "confidential": {"confidential": True},
}


@pytest.mark.parametrize("caller", ["anonymous", "token"])
@pytest.mark.parametrize("change", list(CHANGES), ids=list(CHANGES))
async def test_the_same_key_with_another_submission_is_refused_and_changes_nothing(
    http: httpx.AsyncClient,
    db: Any,
    received: Counter[str],
    own_nc: Any,
    tokens: dict[str, str],
    caller: str,
    change: str,
) -> None:
    headers = bearer(tokens["kota-app"]) if caller == "token" else {}
    client_id = f"form-{uuid.uuid4().hex}"
    first = await http.post("/api/v1/complaints", json=body(client_id), headers=headers)
    assert first.status_code == 202, first.text
    tracking_id = first.json()["tracking_id"]
    await settled(db, own_nc, received, tracking_id)
    before = await db.complaints.find_one({"_id": tracking_id})
    total = await db.complaints.count_documents({})

    other = await http.post(
        "/api/v1/complaints", json=body(client_id, **CHANGES[change]), headers=headers
    )

    assert other.status_code == 409, other.text
    assert "client_id" in other.json()["detail"]
    assert tracking_id not in other.text and "key=" not in other.text
    assert await db.complaints.find_one({"_id": tracking_id}) == before
    assert await db.complaints.count_documents({}) == total
    assert await settled(db, own_nc, received, tracking_id) == 1


async def test_another_caller_reusing_a_token_holders_key_never_gets_its_complaint(
    http: httpx.AsyncClient,
    db: Any,
    received: Counter[str],
    own_nc: Any,
    tokens: dict[str, str],
) -> None:
    form = body(f"kota-app-{uuid.uuid4().hex}")
    mine = await http.post("/api/v1/complaints", json=form, headers=bearer(tokens["kota-app"]))
    assert mine.status_code == 202, mine.text
    tracking_id, link = mine.json()["tracking_id"], mine.json()["citizen_url"]
    key = link.split("key=", 1)[1]

    # The whole submission and its key, even the phone: still someone else's complaint.
    anonymous = await http.post("/api/v1/complaints", json=form)
    partner = await http.post("/api/v1/complaints", json=form, headers=bearer(tokens["sp4n"]))
    for answer in (anonymous, partner):
        assert answer.status_code in (202, 409), answer.text
        assert tracking_id not in answer.text and key not in answer.text
    again = await http.post("/api/v1/complaints", json=form, headers=bearer(tokens["kota-app"]))
    assert again.json() == mine.json()
    assert await settled(db, own_nc, received, tracking_id) == 1
    unknown = await http.post("/api/v1/complaints", json=form, headers=bearer(new_token()))
    assert unknown.status_code == 401 and tracking_id not in unknown.text


async def test_open311_request_id_is_bound_to_the_request(
    http: httpx.AsyncClient,
    db: Any,
    received: Counter[str],
    own_nc: Any,
    tokens: dict[str, str],
) -> None:
    services = (await http.get("/open311/v2/services.json")).json()
    code = next(s["service_code"] for s in services if s["service_code"].startswith("PUPR-"))
    form = {
        "api_key": tokens["kota-app"],
        "service_code": code,
        "description": TEXT,
        "request_id": f"req-{uuid.uuid4().hex}",
        "phone": "+6281234500003",
    }
    first = await http.post("/open311/v2/requests.json", data=form)
    again = await http.post("/open311/v2/requests.json", data=form)
    assert first.status_code == 201 and again.status_code == 201, (first.text, again.text)
    tracking_id = first.json()[0]["service_request_id"]
    assert again.json()[0]["service_request_id"] == tracking_id
    before = await db.complaints.find_one({"_id": tracking_id})

    other = await http.post("/open311/v2/requests.json", data={**form, "phone": "+6281299900004"})

    assert other.status_code == 409, other.text
    assert "request_id" in other.json()[0]["description"] and tracking_id not in other.text
    assert await db.complaints.find_one({"_id": tracking_id}) == before
    assert await settled(db, own_nc, received, tracking_id) == 1
