"""After a PII key rotation, `lapor keys rotate` re-seals every stored personal value
under the new key, so that the old key can be removed: notify's contacts, dead
letters, intake's kept rejected payloads and the reply addresses in pending
announcements. Before the rotation, none of them opens without the old key."""

from __future__ import annotations

import asyncio
import base64
from datetime import UTC, datetime
from typing import Any

import pytest
from typer.testing import CliRunner

from lapor.contracts.events import InboundRejected, contact_context
from lapor.runtime.outbox import outbox_key
from lapor.runtime.pii import PiiCipher, PiiKeyError, PiiOpener, PiiSealer, new_key, public_key_of
from services.deadletters.repository import DeadLetterStore
from services.notify.repository import NotificationRepository
from tools.cli import app
from tools.devstack import DEV_DIR_ENV, Stack

pytestmark = [pytest.mark.integration]

DB = "lapor_keys"
PHONE = "+6281234500888"
EMAIL = "warga@example.id"
OLD, NEW = new_key(), new_key()


async def _seed(db: Any) -> None:
    """Personal data as the services store it, sealed under the old key."""
    await NotificationRepository(db, PiiCipher(OLD)).save_contact(
        "BJR-K1", {"sms": PHONE, "email": EMAIL, "region": "banjar"}
    )
    old_sealer = PiiSealer(public_key_of(OLD))
    await DeadLetterStore(db, old_sealer).add(
        {
            "_id": "LAPOR_INBOUND:7:intake-sms",
            "stored_at": datetime.now(UTC),
            "payload_b64": base64.b64encode(f'{{"from": "{PHONE}"}}'.encode()).decode(),
        }
    )
    event_id = "rejected:REJ-k1"
    announcement = InboundRejected(
        event_id=event_id,
        occurred_at=datetime.now(UTC),
        rejection_id="REJ-k1",
        channel="sms",
        reason="malformed",
        reply_to_sealed=old_sealer.seal(PHONE, contact_context(event_id, "reply_to_sealed")),
    )
    await db.rejections.insert_one(
        {
            "_id": "REJ-k1",
            "source_key": "bus:LAPOR_INBOUND:8",
            "payload": {
                "payload_sealed": old_sealer.seal_bytes(PHONE.encode(), "bus:LAPOR_INBOUND:8")
            },
            "stored_at": datetime.now(UTC),
            "announce": "pending",
            "outbox": {
                outbox_key(event_id): {
                    "event_id": event_id,
                    "subject": "lapor.event.inbound.rejected",
                    "at": datetime.now(UTC),
                    "body": announcement.model_dump_json(by_alias=True),
                }
            },
        }
    )


async def _opened_with(db: Any, key: str) -> dict[str, str]:
    """Every seeded value, opened with `key` alone (no old keys); "refused" where it
    does not open."""
    opener = PiiOpener(key)
    cipher = PiiCipher(key)
    contact = await db.notify_contacts.find_one({"_id": "BJR-K1"})
    dead = await db.dead_letters.find_one({"_id": "LAPOR_INBOUND:7:intake-sms"})
    rejection = await db.rejections.find_one({"_id": "REJ-k1"})
    (entry,) = rejection["outbox"].values()
    event = InboundRejected.model_validate_json(entry["body"])
    assert event.reply_to_sealed
    openings = {
        "sms": lambda: cipher.open(contact["sms"], "BJR-K1"),
        "email": lambda: cipher.open(contact["email"], "BJR-K1"),
        "dead letter": lambda: base64.b64decode(
            opener.open(dead["payload_sealed"], dead["_id"])
        ).decode(),
        "kept payload": lambda: opener.open(
            rejection["payload"]["payload_sealed"], rejection["source_key"]
        ),
        "announcement": lambda: opener.open(
            str(event.reply_to_sealed), contact_context(event.event_id, "reply_to_sealed")
        ),
    }
    opened = {}
    for name, opening in openings.items():
        try:
            opened[name] = opening()
        except PiiKeyError:
            opened[name] = "refused"
    return opened


def _lapor(servers: Stack, monkeypatch: pytest.MonkeyPatch, *args: str) -> Any:
    monkeypatch.setenv(DEV_DIR_ENV, str(servers.workdir / "no-stack"))
    monkeypatch.setenv("LAPOR_PII_KEY", NEW)
    monkeypatch.setenv("LAPOR_PII_OLD_KEYS", OLD)
    return CliRunner().invoke(app, [*args, "--mongo", servers.mongo, "--db", DB])


async def test_after_rotation_the_old_key_can_go(
    own_servers: Stack, own_mongo: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    db = own_mongo[DB]
    await _seed(db)
    # Sealed under the old key: the new one alone opens none of it.
    assert set((await _opened_with(db, NEW)).values()) == {"refused"}
    assert set((await _opened_with(db, OLD)).values()) != {"refused"}
    before = await asyncio.to_thread(_lapor, own_servers, monkeypatch, "keys", "check")
    assert before.exit_code == 1 and "still sealed under old keys" in before.stderr

    rotated = await asyncio.to_thread(_lapor, own_servers, monkeypatch, "keys", "rotate")

    assert rotated.exit_code == 0, rotated.output
    assert "notify_contacts: 2 re-sealed" in rotated.stdout
    assert "dead_letters: 1 re-sealed" in rotated.stdout
    assert "rejections: 2 re-sealed" in rotated.stdout
    assert "LAPOR_PII_OLD_KEYS can be emptied" in rotated.stdout
    assert PHONE not in rotated.output
    assert await _opened_with(db, NEW) == {
        "sms": PHONE,
        "email": EMAIL,
        "dead letter": f'{{"from": "{PHONE}"}}',
        "kept payload": PHONE,
        "announcement": PHONE,
    }
    # Notify still reads its contacts in the symmetric form it writes.
    assert (await db.notify_contacts.find_one({"_id": "BJR-K1"}))["sms"].startswith("pii1.")
    # A second run finds nothing left to do.
    again = await asyncio.to_thread(_lapor, own_servers, monkeypatch, "keys", "rotate")
    assert again.exit_code == 0 and "0 re-sealed, 2 already current" in again.stdout
