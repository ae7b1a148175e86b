"""A citizen's phone number is nowhere on disk in clear: not in any collection of
the database, not in JetStream's files, not in any event on the bus. Replies
still reach the citizen, so the number is there, sealed, where it is needed."""

from __future__ import annotations

import contextlib
import json
from pathlib import Path
from typing import Any

import httpx
import pytest
from nats.js.errors import NotFoundError

from lapor.contracts import subjects
from tests.e2e.helpers import Outbox, eventually, sms_payload
from tools.devstack import Stack

pytestmark = [pytest.mark.e2e]

SENDER = "+6281234509990"
# The number's own digits, whatever prefix (+62, 62, 0) a copy would carry.
NATIONAL = b"81234509990"


def clear_copies(blob: bytes) -> int:
    return blob.count(NATIONAL)


def test_the_scan_finds_a_number_in_any_form() -> None:
    for form in (SENDER, "6281234509990", "081234509990"):
        assert clear_copies(json.dumps({"to": form}).encode()) == 1


async def _documents_with_the_number(db: Any) -> dict[str, int]:
    found: dict[str, int] = {}
    for name in await db.list_collection_names():
        async for doc in db[name].find({}):
            if hits := clear_copies(json.dumps(doc, default=str).encode()):
                found[name] = found.get(name, 0) + hits
    return found


def _store_files_with_the_number(store: Path) -> dict[str, int]:
    return {
        str(path.relative_to(store)): hits
        for path in store.rglob("*")
        if path.is_file() and (hits := clear_copies(path.read_bytes()))
    }


async def test_phone_numbers_are_sealed_in_the_database_and_the_streams(
    stack: Stack, nc: Any, db: Any
) -> None:
    outbox = await Outbox().attach(nc)
    js = nc.jetstream()
    try:
        await js.publish(
            subjects.INBOUND_SMS,
            json.dumps(sms_payload(SENDER, "BANJAR lampu jalan mati di depan sekolah")).encode(),
        )
        await eventually(lambda: _async(outbox.to(SENDER)))
        # A payload that breaks the contract is kept as a dead letter, number and all.
        broken = await js.publish(
            subjects.INBOUND_SMS, json.dumps({"from": SENDER, "to": "1708"}).encode()
        )
        dead = await eventually(
            lambda: db.dead_letters.find_one({"_id": f"{broken.stream}:{broken.seq}"})
        )
    finally:
        await outbox.detach()

    # Intake sealed it to the public key: only the operator's private key opens it.
    assert dead["payload_sealed"].startswith("pii2.")
    contact = await db.notify_contacts.find_one({"_id": outbox.to(SENDER)[0]["complaint_id"]})
    assert contact is not None and contact["sms"].startswith("pii1.")
    assert await _documents_with_the_number(db) == {}
    # Every event, read back through JetStream as any consumer would: the received
    # event carries the number sealed only.
    events = await _stream_messages(js, "LAPOR_EVENTS")
    assert any(subject == subjects.COMPLAINT_RECEIVED for subject, _ in events)
    assert [subject for subject, data in events if clear_copies(data)] == []

    if stack.nats_url is not None:
        pytest.skip("external nats-server: its storage is not ours to inspect")
    store = stack.workdir / "nats"
    blocks = [p for p in store.rglob("*.blk") if p.stat().st_size > 0]
    assert blocks, "JetStream wrote no message blocks"
    assert _store_files_with_the_number(store) == {}


async def _async(value: Any) -> Any:
    return value


async def _stream_messages(js: Any, stream: str) -> list[tuple[str, bytes]]:
    info = await js.stream_info(stream)
    found = []
    for seq in range(info.state.first_seq, info.state.last_seq + 1):
        with contextlib.suppress(NotFoundError):  # removed by a limit
            msg = await js.get_msg(stream, seq)
            found.append((msg.subject, msg.data or b""))
    return found


async def test_a_web_reporters_email_is_sealed_wherever_it_is_kept(stack: Stack, db: Any) -> None:
    address = "rest.check@example.org"
    body = {
        "text": "Saluran air di depan Puskesmas Martapura tersumbat dan meluap ke jalan",
        "email": address,
        "client_id": "at-rest-email-1",
    }
    async with httpx.AsyncClient(base_url=stack.url("intake")) as http:
        accepted = await http.post("/api/v1/complaints", json=body)
    assert accepted.status_code == 202, accepted.text
    tracking_id = accepted.json()["tracking_id"]

    async def notified() -> list[dict[str, Any]] | None:
        found = await db.notifications.find(
            {"complaint_id": tracking_id, "audience": "citizen", "channel": "email"}
        ).to_list(None)
        return found or None

    [record] = await eventually(notified, timeout=30)
    assert record["recipient"] == "r****@example.org"
    contact = await db.notify_contacts.find_one({"_id": tracking_id})
    assert contact is not None and contact["email"].startswith("pii1.")
    complaint = await db.complaints.find_one({"_id": tracking_id})
    assert complaint is not None and complaint["submission"]["replies_by_email"] is True
    for name in await db.list_collection_names():
        async for doc in db[name].find({}):
            assert address not in json.dumps(doc, default=str), name
