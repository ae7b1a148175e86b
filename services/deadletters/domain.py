"""Dead letters: what a record is made of, what an operator sees, how it is replayed.

Pure: no I/O. A record is keyed by `<stream>:<sequence>:<consumer>`, so a
repeated advisory for the same failure finds it already stored.
"""

from __future__ import annotations

import base64
from datetime import UTC, datetime
from typing import Protocol

from lapor.contracts import subjects
from lapor.runtime.dead_letters import Document, failure_id
from lapor.runtime.logs import mask_phones

ADVISORY_STREAM = "LAPOR_ADVISORIES"
ADVISORY_SUBJECTS = (
    "$JS.EVENT.ADVISORY.CONSUMER.MAX_DELIVERIES.>",
    "$JS.EVENT.ADVISORY.CONSUMER.MSG_TERMINATED.>",
)
ADVISORY_FILTER = "$JS.EVENT.ADVISORY.CONSUMER.>"
WATCHER = "dlq-watcher"
INBOX_PREFIX = "_INBOX.dlq"
ADVISORY_MAX_AGE_S = 30 * 24 * 3600.0
# Set by JetStream or by the publisher for one publish only; a replay must not repeat them.
NOT_REPLAYED = ("Nats-Msg-Id", "Nats-Expected-")
REASONS = {"MAX_DELIVERIES": "max_deliveries", "MSG_TERMINATED": "terminated"}
# Neither replayed nor resolved: an operator still has to decide (null matches a
# missing field).
PENDING: Document = {"replayed_at": None, "resolved_at": None}
# "lapor.inbound." for "lapor.inbound.>": the channels' own subjects.
INBOUND_SUBJECTS = tuple(s.removesuffix(">") for s in subjects.INBOUND_STREAM.subjects)
# A resolution is free text an operator typed; it is kept this long at most.
MAX_RESOLUTION = 500


def now() -> datetime:
    return datetime.now(UTC)


class StoredMessage(Protocol):
    """A message fetched from its stream by sequence (nats-py's RawStreamMsg)."""

    subject: str
    data: bytes | None
    headers: dict[str, str] | None


def advisory_kind(subject: str) -> str:
    """`MAX_DELIVERIES` of `$JS.EVENT.ADVISORY.CONSUMER.MAX_DELIVERIES.<stream>.<consumer>`."""
    return subject.split(".")[4]


def record_from_advisory(
    advisory: Document,
    kind: str,
    message: StoredMessage | None,
    error: str | None,
    stored_at: datetime | None = None,
) -> Document:
    """The dead-letter record of one advisory and the message it is about."""
    stream, consumer = advisory["stream"], advisory["consumer"]
    sequence = int(advisory["stream_seq"])
    reason = REASONS.get(kind, kind.lower())
    record: Document = {
        "_id": failure_id(stream, sequence, consumer),
        "service": consumer.split("-", 1)[0],
        "consumer": consumer,
        "stream": stream,
        "stream_sequence": sequence,
        "reason": reason,
        "deliveries": advisory.get("deliveries"),
        "error": error or _default_error(reason, advisory),
        "advisory_id": advisory.get("id"),
        "failed_at": advisory.get("timestamp"),
        "stored_at": stored_at or now(),
        "subject": None,
        "payload_b64": None,
        "headers": {},
    }
    if message is not None:
        record["subject"] = message.subject
        record["payload_b64"] = base64.b64encode(message.data or b"").decode("ascii")
        record["headers"] = dict(message.headers or {})
    return record


def _default_error(reason: str, advisory: Document) -> str:
    if reason == "max_deliveries":
        return f"handler failed {advisory.get('deliveries')} times (see the service log)"
    return f"terminated by the handler: {advisory.get('reason') or 'no reason given'}"


def public_view(record: Document) -> Document:
    """What an operator sees: everything but the raw payload, whose phone numbers are masked."""
    raw = base64.b64decode(record["payload_b64"]) if record.get("payload_b64") else b""
    return {
        "id": record["_id"],
        "reason": record.get("reason"),
        "service": record.get("service"),
        "consumer": record.get("consumer"),
        "stream": record.get("stream"),
        "stream_sequence": record.get("stream_sequence"),
        "subject": record.get("subject"),
        "deliveries": record.get("deliveries"),
        "error": mask_phones(record.get("error") or ""),
        "stored_at": record.get("stored_at"),
        "replayed_at": record.get("replayed_at"),
        "replays": record.get("replays", 0),
        "resolved_at": record.get("resolved_at"),
        "resolved_by": record.get("resolved_by"),
        "resolution": record.get("resolution"),
        "payload": mask_phones(raw.decode("utf-8", "replace")),
    }


def replay_headers(record: Document, msg_id: str) -> dict[str, str]:
    headers = {
        k: str(v)
        for k, v in (record.get("headers") or {}).items()
        if not k.startswith(NOT_REPLAYED)
    }
    headers["Nats-Msg-Id"] = msg_id
    headers["Lapor-Replay-Of"] = record["_id"]
    return headers


def replay_payload(record: Document) -> tuple[str, bytes]:
    """The subject and bytes to publish again; ValueError when the message was gone."""
    if not record.get("subject") or record.get("payload_b64") is None:
        raise ValueError(f"{record['_id']}: the message was gone, nothing to replay")
    return record["subject"], base64.b64decode(record["payload_b64"])


def console_refusal(record: Document) -> str | None:
    """Why an admin may not replay this record from the console, or None."""
    record_id = record["_id"]
    if str(record.get("subject") or "").startswith(INBOUND_SUBJECTS):
        # A channel's message says who sent it; only the channel's login may
        # publish there, so an operator replays it (`lapor dlq replay`).
        return f"a channel's inbound message: replay with `lapor dlq replay {record_id}`"
    if record.get("resolved_at") is not None:
        return f"{record_id} was resolved, not replayed"
    if record.get("replayed_at") is not None:
        return f"{record_id} was replayed before"
    return None


def resolution_note(reason: str) -> str:
    """The reason kept with a resolved record: free text that may quote the citizen's
    number, so masked, and bounded."""
    return mask_phones(reason.strip())[:MAX_RESOLUTION]
