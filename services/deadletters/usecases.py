"""Use cases of the dead-letter service: store what JetStream gave up on, replay a
record on its subject, settle one without a replay. The same for the watcher,
the admins' HTTP API and the operator's commands."""

from __future__ import annotations

import logging
import uuid
from collections.abc import Awaitable, Callable
from typing import Protocol

from lapor.runtime.dead_letters import Document
from services.deadletters import domain
from services.deadletters.repository import DeadLetterRepository

log = logging.getLogger("services.deadletters")

# The failed message by stream and sequence; None once it aged out or was deleted.
FetchMessage = Callable[[str, int], Awaitable[domain.StoredMessage | None]]


class Publisher(Protocol):
    async def __call__(self, subject: str, payload: bytes, headers: dict[str, str]) -> None: ...


async def store_advisory(
    store: DeadLetterRepository, fetch: FetchMessage, advisory: Document, kind: str
) -> bool:
    """Keep the message an advisory is about, with the last error its service noted;
    False when it was kept before (a repeated advisory)."""
    stream, sequence = advisory["stream"], int(advisory["stream_seq"])
    original = await fetch(stream, sequence)
    error = await store.last_error(stream, sequence, advisory["consumer"])
    record = domain.record_from_advisory(advisory, kind, original, error)
    if not await store.add(record):
        return False
    log.warning(
        "dead letter %s: %s on %s after %s deliveries",
        record["_id"],
        record["reason"],
        record["subject"],
        record["deliveries"],
    )
    return True


async def replay_one(publish: Publisher, store: DeadLetterRepository, record: Document) -> str:
    """Publish the stored payload again on its subject with a new message id (the
    old one would be dropped as a duplicate); returns that id."""
    subject, payload = domain.replay_payload(record)
    msg_id = f"replay-{uuid.uuid4().hex}"
    await publish(subject, payload, domain.replay_headers(record, msg_id))
    await store.mark_replayed(record["_id"], msg_id, domain.now())
    return msg_id


async def resolve(store: DeadLetterRepository, record_id: str, reason: str, by: str) -> str:
    """Settle a record without a replay: "resolved", or "already" / "missing"."""
    return await store.mark_resolved(record_id, domain.resolution_note(reason), by, domain.now())
