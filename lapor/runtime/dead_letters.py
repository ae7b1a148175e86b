"""What every service needs to hand a failure over to the dead-letter service.

Two collections are shared by all processes (see lapor.runtime.db_access):

- `dead_letters`: a message that breaks its contract is kept there by the
  service that got it (the quarantine middleware of lapor.runtime.broker),
  sealed to the personal-data public key, and acked;
- `delivery_failures`: the last error of a delivery that keeps failing
  (`failure_notes`), which the dead-letter service attaches to the record it
  stores once JetStream stops redelivering.

The dead-letter service (services.deadletters) reads both; nothing here knows it.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

from lapor.runtime.db import DUPLICATE_KEY
from lapor.runtime.pii import PiiSealer

COLLECTION = "dead_letters"
NOTES = "delivery_failures"

Document = dict[str, Any]


def failure_id(stream: str | None, sequence: int | None, consumer: str | None) -> str:
    """One failed (message, consumer): the key of its note and of its dead letter."""
    return f"{stream}:{sequence}:{consumer}"


def sealed_record(record: Document, sealer: PiiSealer) -> Document:
    """The record as stored: its payload (which may carry a phone number) sealed to
    the public key and bound to the record id, never in clear."""
    stored = {k: v for k, v in record.items() if k != "payload_b64"}
    payload = record.get("payload_b64")
    stored["payload_sealed"] = None if payload is None else sealer.seal(payload, str(record["_id"]))
    return stored


async def keep_dead_letter(db: Any, record: Document, sealer: PiiSealer) -> bool:
    """Store a dead letter sealed; False when it is already there (a redelivery)."""
    try:
        await db[COLLECTION].insert_one(sealed_record(record, sealer))
    except Exception as exc:
        if getattr(exc, "code", None) == DUPLICATE_KEY:
            return False
        raise
    return True


def failure_notes(db: Callable[[], Any]) -> Any:
    """A FastStream middleware that notes the last error of each failing delivery.

    The max-deliveries advisory says only that a message failed; this note
    tells the operator why. `db` returns the service's database (it exists only
    once the service started). Control-flow exceptions (NackMessage, ...) are
    not errors and are not noted.
    """
    from faststream._internal.middlewares import BaseMiddleware
    from faststream.exceptions import HandlerException

    class FailureNotes(BaseMiddleware):
        async def consume_scope(self, call_next: Any, msg: Any) -> Any:
            try:
                return await call_next(msg)
            except HandlerException:
                raise
            except Exception as exc:
                await note_failure(db, msg, exc)
                raise

    return FailureNotes


async def note_failure(db: Callable[[], Any], msg: Any, exc: Exception) -> None:
    metadata = getattr(msg.raw_message, "metadata", None)
    if metadata is None:
        return
    note_id = failure_id(metadata.stream, metadata.sequence.stream, metadata.consumer)
    note = {
        "error": f"{type(exc).__name__}: {exc}"[:2000],
        "delivery": metadata.num_delivered,
        "at": datetime.now(UTC),
    }
    # The database may be the reason the handler failed: never let the note block
    # or replace the original error.
    with contextlib.suppress(Exception):
        await asyncio.wait_for(
            db()[NOTES].update_one({"_id": note_id}, {"$set": note}, upsert=True), 2.0
        )
