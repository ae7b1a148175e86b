"""The dead-letter service's HTTP API (services/deadletters/api.py) on the real NATS and FerretDB.

A test-only durable consumer always fails until told otherwise; the watcher
process (`python -m services.deadletters`, which also serves the API) stores what
JetStream gave up on, and an admin's bearer token lists, replays and resolves
it over HTTP. An agency officer's token is refused.
"""

from __future__ import annotations

import json
import secrets
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pytest
import pytest_asyncio

from lapor.tokens import hash_token
from tests.e2e.helpers import eventually
from tests.integration.dead_letters import Poison, poison_consumer, start_watcher
from tools.devstack import DLQ, Stack

pytestmark = [pytest.mark.integration]

SUBJECT = "lapor.event.test.poison_api"
DURABLE = "test-poison-api"
DB = "lapor_dlq_api"
PHONE = "+6281234500888"
ADMIN = "lpt_admin_" + secrets.token_urlsafe(16)
OFFICER = "lpt_officer_" + secrets.token_urlsafe(16)


@pytest.fixture(scope="module")
def dlq_stack(own_servers: Stack) -> Stack:
    # Replays open the sealed payloads: this watcher is given the key (make run's is not).
    return start_watcher(own_servers, DB, opens_payloads=True)


@pytest_asyncio.fixture(scope="module", loop_scope="session")
async def tokens(own_mongo: Any) -> None:
    expires = datetime.now(UTC) + timedelta(days=1)
    await own_mongo[DB].api_tokens.insert_many(
        [
            {"_id": hash_token(ADMIN), "role": "admin", "name": "Admin Diskominfo",
             "expires_at": expires},
            {"_id": hash_token(OFFICER), "role": "agency", "agency": "PUPR",
             "name": "Petugas PUPR", "expires_at": expires},
        ]
    )  # fmt: skip


@pytest_asyncio.fixture(scope="module", loop_scope="session")
async def poison(dlq_stack: Stack, own_mongo: Any) -> AsyncIterator[Poison]:
    async with poison_consumer(dlq_stack, own_mongo[DB], SUBJECT, DURABLE, 2) as state:
        yield state


async def _dead_letter(nc: Any, own_mongo: Any, order: int) -> str:
    payload = {"order": order, "reply_to": PHONE}
    ack = await nc.jetstream().publish(
        SUBJECT, json.dumps(payload).encode(), headers={"Nats-Msg-Id": f"poison-api-{order}"}
    )
    record_id = f"LAPOR_EVENTS:{ack.seq}:{DURABLE}"
    await eventually(lambda: own_mongo[DB].dead_letters.find_one({"_id": record_id}), 30)
    return record_id


def _api(stack: Stack, token: str | None) -> httpx.AsyncClient:
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    return httpx.AsyncClient(base_url=stack.url(DLQ), headers=headers, timeout=15)


async def _true(value: bool) -> bool:
    return value


async def test_an_admin_lists_replays_and_resolves_dead_letters(
    dlq_stack: Stack, poison: Poison, tokens: None, own_nc: Any, own_mongo: Any
) -> None:
    to_replay = await _dead_letter(own_nc, own_mongo, 1)
    to_resolve = await _dead_letter(own_nc, own_mongo, 2)
    async with _api(dlq_stack, ADMIN) as api:
        listed = await api.get("/api/v1/dead-letters")
        assert listed.status_code == 200, listed.text
        page = listed.json()
        assert {to_replay, to_resolve} <= {item["id"] for item in page["items"]}
        assert page["replay_available"] is True
        # The payload is shown with the phone number masked, the error its handler noted.
        assert PHONE not in listed.text
        shown = next(item for item in page["items"] if item["id"] == to_replay)
        assert json.loads(shown["payload"]) == {"order": 1, "reply_to": "+628****"}
        assert "cannot handle order 1" in shown["error"]
        one = await api.get("/api/v1/dead-letters", params={"limit": 1})
        assert len(one.json()["items"]) == 1 and one.json()["more"] >= 1

        poison.failing = False
        seen = len(poison.seen)
        replayed = await api.post(f"/api/v1/dead-letters/{to_replay}/replay")

        assert replayed.status_code == 200, replayed.text
        await eventually(lambda: _true(len(poison.seen) > seen), 20)
        body, headers = poison.seen[-1]
        assert body["order"] == 1 and headers["Lapor-Replay-Of"] == to_replay
        assert headers["Nats-Msg-Id"] == replayed.json()["msg_id"]
        # Once only: a second click is refused, nothing is published again.
        again = await api.post(f"/api/v1/dead-letters/{to_replay}/replay")
        assert again.status_code == 409

        resolved = await api.post(
            f"/api/v1/dead-letters/{to_resolve}/resolve",
            json={"reason": f"test order of {PHONE}, dropped"},
        )
        assert resolved.status_code == 200, resolved.text
        stored = await own_mongo[DB].dead_letters.find_one({"_id": to_resolve})
        assert stored["resolved_by"] == "Admin Diskominfo" and PHONE not in stored["resolution"]
        assert (
            await api.post(f"/api/v1/dead-letters/{to_resolve}/resolve", json={"reason": "x"})
        ).status_code == 409
        assert (await api.post(f"/api/v1/dead-letters/{to_resolve}/replay")).status_code == 409
        missing = await api.post("/api/v1/dead-letters/LAPOR_EVENTS:0:nobody/replay")
        assert missing.status_code == 404

        pending = (await api.get("/api/v1/dead-letters", params={"state": "pending"})).json()
        assert not {to_replay, to_resolve} & {item["id"] for item in pending["items"]}
        settled = (await api.get("/api/v1/dead-letters", params={"state": "settled"})).json()
        assert {to_replay, to_resolve} <= {item["id"] for item in settled["items"]}


@pytest.mark.security
async def test_an_officer_or_a_stranger_is_refused(
    dlq_stack: Stack, poison: Poison, tokens: None, own_nc: Any, own_mongo: Any
) -> None:
    poison.failing = True
    record_id = await _dead_letter(own_nc, own_mongo, 3)
    async with _api(dlq_stack, OFFICER) as officer:
        assert (await officer.get("/api/v1/dead-letters")).status_code == 403
        assert (await officer.post(f"/api/v1/dead-letters/{record_id}/replay")).status_code == 403
        refused = await officer.post(
            f"/api/v1/dead-letters/{record_id}/resolve", json={"reason": "mine"}
        )
        assert refused.status_code == 403
    async with _api(dlq_stack, None) as stranger:
        assert (await stranger.get("/api/v1/dead-letters")).status_code == 401
    async with _api(dlq_stack, "lpt_unknown") as stranger:
        assert (await stranger.post(f"/api/v1/dead-letters/{record_id}/replay")).status_code == 401
    stored = await own_mongo[DB].dead_letters.find_one({"_id": record_id})
    assert stored.get("replayed_at") is None and stored.get("resolved_at") is None


async def test_health_readiness_and_metrics(dlq_stack: Stack) -> None:
    async with _api(dlq_stack, None) as api:
        assert (await api.get("/healthz")).json()["service"] == "dlq"
        ready = await api.get("/readyz")
        assert ready.status_code == 200 and ready.json()["checks"] == {
            "nats": True,
            "database": True,
        }
        assert (await api.get("/metrics")).status_code == 200
