"""The dead-letter service's pure rules: records from advisories, the operator's
view, replay headers, what the console may replay."""

from __future__ import annotations

import base64
import json
from dataclasses import dataclass
from datetime import UTC, datetime

import pytest

from services.deadletters import domain

PHONE = "+6281234500777"
T0 = datetime(2026, 12, 7, 5, 0, tzinfo=UTC)
ADVISORY = {
    "id": "adv-1",
    "stream": "LAPOR_EVENTS",
    "consumer": "notify-deadlines",
    "stream_seq": "42",
    "deliveries": 8,
    "timestamp": "2026-12-07T04:59:00Z",
}


@dataclass
class Stored:
    subject: str
    data: bytes | None
    headers: dict[str, str] | None


def _b64(value: object) -> str:
    return base64.b64encode(json.dumps(value).encode()).decode()


def test_a_record_names_the_failure_and_keeps_the_message() -> None:
    message = Stored("lapor.event.sla.deadlines_set", b'{"a": 1}', {"Nats-Msg-Id": "m-1"})

    record = domain.record_from_advisory(
        ADVISORY, "MAX_DELIVERIES", message, "RuntimeError: boom", T0
    )

    assert record["_id"] == "LAPOR_EVENTS:42:notify-deadlines"
    assert record["service"] == "notify" and record["stream_sequence"] == 42
    assert record["reason"] == "max_deliveries" and record["deliveries"] == 8
    assert record["error"] == "RuntimeError: boom" and record["stored_at"] == T0
    assert record["subject"] == "lapor.event.sla.deadlines_set"
    assert base64.b64decode(record["payload_b64"]) == b'{"a": 1}'
    assert record["headers"] == {"Nats-Msg-Id": "m-1"}


def test_a_message_gone_from_its_stream_leaves_a_record_without_payload() -> None:
    record = domain.record_from_advisory(
        {**ADVISORY, "reason": "bad input"}, "MSG_TERMINATED", None, None, T0
    )

    assert record["reason"] == "terminated"
    assert record["subject"] is None and record["payload_b64"] is None
    assert record["error"] == "terminated by the handler: bad input"


def test_without_a_noted_error_the_record_points_at_the_service_log() -> None:
    record = domain.record_from_advisory(ADVISORY, "MAX_DELIVERIES", None, None, T0)

    assert record["error"] == "handler failed 8 times (see the service log)"


def test_the_advisory_kind_is_the_fifth_token_of_its_subject() -> None:
    subject = "$JS.EVENT.ADVISORY.CONSUMER.MSG_TERMINATED.LAPOR_EVENTS.notify-deadlines"

    assert domain.advisory_kind(subject) == "MSG_TERMINATED"


def test_the_operators_view_masks_phone_numbers() -> None:
    record = {
        "_id": "LAPOR_EVENTS:1:x",
        "error": f"cannot reach {PHONE}",
        "payload_b64": _b64({"reply_to": PHONE}),
    }

    view = domain.public_view(record)

    assert PHONE not in json.dumps(view)
    assert json.loads(view["payload"]) == {"reply_to": "+628****"}
    assert view["id"] == "LAPOR_EVENTS:1:x" and view["replays"] == 0


def test_a_replay_gets_a_new_message_id_and_drops_publish_only_headers() -> None:
    record = {
        "_id": "LAPOR_EVENTS:1:x",
        "headers": {
            "Nats-Msg-Id": "old",
            "Nats-Expected-Last-Sequence": "7",
            "Lapor-Trace": "t-1",
        },
    }

    headers = domain.replay_headers(record, "replay-1")

    assert headers == {
        "Lapor-Trace": "t-1",
        "Nats-Msg-Id": "replay-1",
        "Lapor-Replay-Of": "LAPOR_EVENTS:1:x",
    }


def test_a_record_without_its_message_cannot_be_replayed() -> None:
    with pytest.raises(ValueError, match="the message was gone"):
        domain.replay_payload({"_id": "S:1:c", "subject": None, "payload_b64": None})
    assert domain.replay_payload({"_id": "S:1:c", "subject": "a.b", "payload_b64": _b64(1)}) == (
        "a.b",
        b"1",
    )


@pytest.mark.parametrize(
    ("record", "refusal"),
    [
        ({"subject": "lapor.inbound.sms"}, "a channel's inbound message"),
        ({"subject": "lapor.event.x", "resolved_at": T0}, "was resolved, not replayed"),
        ({"subject": "lapor.event.x", "replayed_at": T0}, "was replayed before"),
    ],
)
def test_the_console_does_not_replay_inbound_or_settled_records(
    record: dict[str, object], refusal: str
) -> None:
    found = domain.console_refusal({"_id": "S:1:c", **record})

    assert found is not None and refusal in found


def test_the_console_replays_a_pending_event() -> None:
    assert domain.console_refusal({"_id": "S:1:c", "subject": "lapor.event.x"}) is None


def test_a_resolution_is_masked_and_bounded() -> None:
    note = domain.resolution_note(f"  test order of {PHONE} {'x' * 600}  ")

    assert PHONE not in note and len(note) == domain.MAX_RESOLUTION
