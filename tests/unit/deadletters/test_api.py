"""Admins' dead-letter routes over the in-memory repository: what an admin sees and
may do, what an officer is refused."""

from __future__ import annotations

import asyncio
import base64
import json
from datetime import UTC, datetime

import httpx
import pytest
from fastapi import FastAPI
from prometheus_client import CollectorRegistry, Counter

from lapor.tokens import in_memory_tokens
from services.deadletters.api import DeadLetterDeps, dead_letters_router
from services.deadletters.repository import InMemoryDeadLetters

ADMIN, OFFICER = "lpt_admin_unit", "lpt_officer_unit"
REPLAY = "/api/v1/dead-letters/LAPOR_EVENTS:1:sla-clocks/replay"
PHONE = "+6281234500777"
T0 = datetime(2026, 12, 7, 5, 0, tzinfo=UTC)


class Bus:
    def __init__(self) -> None:
        self.published: list[tuple[str, bytes, dict[str, str]]] = []

    async def __call__(self, subject: str, payload: bytes, headers: dict[str, str]) -> None:
        self.published.append((subject, payload, headers))


def _record(record_id: str, subject: str) -> dict[str, object]:
    payload = json.dumps({"reply_to": PHONE}).encode()
    return {
        "_id": record_id,
        "reason": "max_deliveries",
        "subject": subject,
        "error": "boom",
        "stored_at": T0,
        "payload_b64": base64.b64encode(payload).decode(),
        "headers": {},
    }


def _client(store: InMemoryDeadLetters, bus: Bus) -> httpx.AsyncClient:
    actions = Counter("a", "a", ["action", "outcome"], registry=CollectorRegistry())
    deps = DeadLetterDeps(store, bus, actions, asyncio.Lock())
    tokens = in_memory_tokens(
        {ADMIN: {"role": "admin", "name": "Admin"}, OFFICER: {"role": "agency", "agency": "PUPR"}}
    )
    app = FastAPI()
    app.include_router(dead_letters_router(lambda: deps, tokens))
    return httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://dlq")


def _store() -> InMemoryDeadLetters:
    store = InMemoryDeadLetters()
    for record in (
        _record("LAPOR_EVENTS:1:sla-clocks", "lapor.event.x"),
        _record("LAPOR_INBOUND:2:intake-sms", "lapor.inbound.sms"),
    ):
        store.records[str(record["_id"])] = record
    return store


async def test_an_admin_lists_masked_records_and_replays_one_once() -> None:
    store, bus = _store(), Bus()
    admin = {"Authorization": f"Bearer {ADMIN}"}
    async with _client(store, bus) as api:
        listed = await api.get("/api/v1/dead-letters", headers=admin)
        first = await api.post(REPLAY, headers=admin)
        again = await api.post(REPLAY, headers=admin)

    assert listed.status_code == 200 and PHONE not in listed.text
    assert len(listed.json()["items"]) == 2 and listed.json()["replay_available"] is True
    assert first.status_code == 200 and again.status_code == 409
    assert [subject for subject, _payload, _headers in bus.published] == ["lapor.event.x"]


async def test_a_channels_inbound_message_is_left_to_the_operator() -> None:
    store, bus = _store(), Bus()
    async with _client(store, bus) as api:
        answer = await api.post(
            "/api/v1/dead-letters/LAPOR_INBOUND:2:intake-sms/replay",
            headers={"Authorization": f"Bearer {ADMIN}"},
        )

    assert answer.status_code == 409 and "lapor dlq replay" in answer.json()["detail"]
    assert bus.published == []


async def test_without_the_private_key_nothing_is_replayed() -> None:
    store, bus = InMemoryDeadLetters(opens_payloads=False), Bus()
    store.records["LAPOR_EVENTS:1:sla-clocks"] = _record("LAPOR_EVENTS:1:sla-clocks", "a.b")
    async with _client(store, bus) as api:
        answer = await api.post(
            "/api/v1/dead-letters/LAPOR_EVENTS:1:sla-clocks/replay",
            headers={"Authorization": f"Bearer {ADMIN}"},
        )

    assert answer.status_code == 409 and "LAPOR_PII_KEY" in answer.json()["detail"]
    assert bus.published == []


async def test_an_admin_resolves_with_a_reason() -> None:
    store = _store()
    admin = {"Authorization": f"Bearer {ADMIN}"}
    async with _client(store, Bus()) as api:
        done = await api.post(
            "/api/v1/dead-letters/LAPOR_EVENTS:1:sla-clocks/resolve",
            json={"reason": f"test of {PHONE}"},
            headers=admin,
        )
        again = await api.post(
            "/api/v1/dead-letters/LAPOR_EVENTS:1:sla-clocks/resolve",
            json={"reason": "twice"},
            headers=admin,
        )
        missing = await api.post(
            "/api/v1/dead-letters/S:0:x/resolve", json={"reason": "x"}, headers=admin
        )

    assert (done.status_code, again.status_code, missing.status_code) == (200, 409, 404)
    record = store.records["LAPOR_EVENTS:1:sla-clocks"]
    assert record["resolved_by"] == "Admin" and PHONE not in str(record["resolution"])


@pytest.mark.security
@pytest.mark.parametrize("token", [OFFICER, None])
async def test_only_admins_see_or_touch_dead_letters(token: str | None) -> None:
    store, bus = _store(), Bus()
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    async with _client(store, bus) as api:
        listed = await api.get("/api/v1/dead-letters", headers=headers)
        replay = await api.post(REPLAY, headers=headers)

    expected = 403 if token else 401
    assert (listed.status_code, replay.status_code) == (expected, expected)
    assert bus.published == []
