"""The advisory watcher's handling of one advisory: store then ack, nak on failure,
drop what cannot be read."""

from __future__ import annotations

import json
from typing import Any

from services.deadletters.handlers import DeadLetterWatcher
from services.deadletters.repository import InMemoryDeadLetters

SUBJECT = "$JS.EVENT.ADVISORY.CONSUMER.MAX_DELIVERIES.LAPOR_EVENTS.sla-clocks"
ADVISORY = {"stream": "LAPOR_EVENTS", "consumer": "sla-clocks", "stream_seq": 7, "deliveries": 8}


class Advisory:
    def __init__(self, data: bytes, subject: str = SUBJECT) -> None:
        self.data, self.subject = data, subject
        self.settled: list[Any] = []

    async def ack(self) -> None:
        self.settled.append("ack")

    async def nak(self, delay: float | None = None) -> None:
        self.settled.append(("nak", delay))


class JetStream:
    async def get_msg(self, stream: str, sequence: int) -> Any:
        from nats.js.errors import NotFoundError

        raise NotFoundError


class Connection:
    def jetstream(self) -> JetStream:
        return JetStream()


class BrokenStore(InMemoryDeadLetters):
    async def add(self, record: dict[str, Any]) -> bool:
        raise ConnectionError("database away")


async def test_an_advisory_is_acked_once_its_dead_letter_is_stored() -> None:
    store = InMemoryDeadLetters()
    message = Advisory(json.dumps(ADVISORY).encode())

    await DeadLetterWatcher(Connection(), store).handle(message)

    assert message.settled == ["ack"]
    assert list(store.records) == ["LAPOR_EVENTS:7:sla-clocks"]


async def test_an_advisory_not_stored_comes_back_later() -> None:
    message = Advisory(json.dumps(ADVISORY).encode())

    await DeadLetterWatcher(Connection(), BrokenStore()).handle(message)

    assert message.settled == [("nak", 5.0)]


async def test_an_unreadable_advisory_is_dropped() -> None:
    store = InMemoryDeadLetters()
    message = Advisory(b"not json")

    await DeadLetterWatcher(Connection(), store).handle(message)

    assert message.settled == ["ack"] and store.records == {}
