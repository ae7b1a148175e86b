"""Storing, replaying and resolving dead letters against the in-memory repository."""

from __future__ import annotations

from dataclasses import dataclass

import pytest

from lapor.runtime.dead_letters import failure_id
from services.deadletters import usecases
from services.deadletters.repository import InMemoryDeadLetters

PHONE = "+6281234500777"
ADVISORY = {
    "id": "adv-1",
    "stream": "LAPOR_EVENTS",
    "consumer": "sla-clocks",
    "stream_seq": 7,
    "deliveries": 8,
}
RECORD_ID = "LAPOR_EVENTS:7:sla-clocks"


@dataclass
class Stored:
    subject: str
    data: bytes | None
    headers: dict[str, str] | None


class Stream:
    """The services' streams: messages by (stream, sequence)."""

    def __init__(self) -> None:
        self.messages: dict[tuple[str, int], Stored] = {}
        self.fetched = 0

    async def __call__(self, stream: str, sequence: int) -> Stored | None:
        self.fetched += 1
        return self.messages.get((stream, sequence))


class Bus:
    def __init__(self) -> None:
        self.published: list[tuple[str, bytes, dict[str, str]]] = []

    async def __call__(self, subject: str, payload: bytes, headers: dict[str, str]) -> None:
        self.published.append((subject, payload, headers))


async def test_an_advisory_is_stored_once_with_the_noted_error() -> None:
    store, stream = InMemoryDeadLetters(), Stream()
    stream.messages[("LAPOR_EVENTS", 7)] = Stored("lapor.event.x", b"{}", {"Nats-Msg-Id": "m"})
    store.notes[failure_id("LAPOR_EVENTS", 7, "sla-clocks")] = "KeyError: 'clock'"

    first = await usecases.store_advisory(store, stream, ADVISORY, "MAX_DELIVERIES")
    again = await usecases.store_advisory(store, stream, ADVISORY, "MAX_DELIVERIES")

    assert (first, again) == (True, False)
    assert list(store.records) == [RECORD_ID]
    record = store.records[RECORD_ID]
    assert record["error"] == "KeyError: 'clock'" and record["subject"] == "lapor.event.x"


async def test_a_replay_publishes_the_payload_under_a_new_id_and_marks_the_record() -> None:
    store, bus = InMemoryDeadLetters(), Bus()
    stream = Stream()
    original = Stored("lapor.event.x", b'{"n": 1}', {"Nats-Msg-Id": "m"})
    stream.messages[("LAPOR_EVENTS", 7)] = original
    await usecases.store_advisory(store, stream, ADVISORY, "MAX_DELIVERIES")
    record = await store.get(RECORD_ID)
    assert record is not None

    msg_id = await usecases.replay_one(bus, store, record)

    assert bus.published == [
        (
            "lapor.event.x",
            b'{"n": 1}',
            {"Nats-Msg-Id": msg_id, "Lapor-Replay-Of": RECORD_ID},
        )
    ]
    assert msg_id.startswith("replay-") and msg_id != "m"
    stored = store.records[RECORD_ID]
    assert stored["replay_msg_id"] == msg_id and stored["replays"] == 1
    assert await store.count(pending_only=True) == 0


async def test_a_record_whose_message_was_gone_is_not_published_nor_marked() -> None:
    store, bus = InMemoryDeadLetters(), Bus()
    await usecases.store_advisory(store, Stream(), ADVISORY, "MAX_DELIVERIES")
    record = await store.get(RECORD_ID)
    assert record is not None

    with pytest.raises(ValueError, match="the message was gone"):
        await usecases.replay_one(bus, store, record)

    assert bus.published == [] and store.records[RECORD_ID].get("replayed_at") is None


async def test_resolving_keeps_a_masked_reason_once() -> None:
    store = InMemoryDeadLetters()
    await usecases.store_advisory(store, Stream(), ADVISORY, "MAX_DELIVERIES")

    first = await usecases.resolve(store, RECORD_ID, f"test order of {PHONE}", "ops")
    again = await usecases.resolve(store, RECORD_ID, "twice", "ops")
    missing = await usecases.resolve(store, "LAPOR_EVENTS:0:nobody", "x", "ops")

    assert (first, again, missing) == ("resolved", "already", "missing")
    record = store.records[RECORD_ID]
    assert PHONE not in record["resolution"] and record["resolved_by"] == "ops"


async def test_pages_follow_each_other_without_gaps() -> None:
    store, stream = InMemoryDeadLetters(), Stream()
    for sequence in range(1, 6):
        stream.messages[("LAPOR_EVENTS", sequence)] = Stored("lapor.event.x", b"x", None)
        advisory = {**ADVISORY, "stream_seq": sequence}
        await usecases.store_advisory(store, stream, advisory, "MAX_DELIVERIES")

    first, more = await store.page(limit=3)
    rest, none = await store.page(after=first[-1]["_id"], limit=3)

    assert (len(first), more, len(rest), none) == (3, 2, 2, 0)
    assert {r["_id"] for r in first + rest} == set(store.records)
