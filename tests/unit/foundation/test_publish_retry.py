"""EventPublisher sends a publish again, with the same message id, when its PubAck
does not come; the real crash is in tests/integration/test_restarts.py."""

from __future__ import annotations

from types import SimpleNamespace
from typing import Any

import nats.errors
import pytest
from faststream.nats import NatsBroker
from nats.js.errors import BadRequestError, NoStreamResponseError
from pydantic import BaseModel

from lapor.runtime.broker import PUBACK_TIMEOUTS_S, EventPublisher


class Event(BaseModel):
    event_id: str


class FlakyPublisher:
    """Fails with the given errors first, then answers PubAcks."""

    def __init__(self, *errors: Exception, duplicate: bool = False) -> None:
        self.errors = list(errors)
        self.duplicate = duplicate
        self.calls: list[dict[str, Any]] = []

    async def publish(self, body: Any, *, headers: dict[str, str], timeout: float) -> Any:
        self.calls.append({"body": body, "headers": dict(headers), "timeout": timeout})
        if self.errors:
            raise self.errors.pop(0)
        return SimpleNamespace(duplicate=self.duplicate)


def _publisher(fake: FlakyPublisher) -> EventPublisher:
    publisher = EventPublisher(NatsBroker(), "lapor.event.test.retry", Event, "test")
    publisher._publisher = fake  # type: ignore[assignment]
    return publisher


async def test_an_unanswered_publish_is_sent_again_with_the_same_id() -> None:
    fake = FlakyPublisher(nats.errors.TimeoutError(), NoStreamResponseError())

    assert await _publisher(fake).publish(Event(event_id="e1"), "e1") is True

    assert [c["headers"]["Nats-Msg-Id"] for c in fake.calls] == ["e1", "e1", "e1"]
    assert [c["timeout"] for c in fake.calls] == list(PUBACK_TIMEOUTS_S[:3])
    assert all(c["body"] == {"event_id": "e1"} for c in fake.calls)


async def test_a_duplicate_after_a_lost_puback_is_our_own_copy() -> None:
    # The first attempt was stored, its PubAck lost: the retry is told "duplicate".
    fake = FlakyPublisher(nats.errors.TimeoutError(), duplicate=True)
    assert await _publisher(fake).publish(Event(event_id="e2"), "e2") is True
    # At the first attempt, a duplicate is an earlier publish of the same message.
    again = _publisher(FlakyPublisher(duplicate=True))
    assert await again.publish(Event(event_id="e2"), "e2") is False


async def test_the_publish_gives_up_after_the_last_wait_and_never_retries_a_refusal() -> None:
    silent = FlakyPublisher(*(nats.errors.TimeoutError() for _ in PUBACK_TIMEOUTS_S))
    with pytest.raises(nats.errors.TimeoutError):
        await _publisher(silent).publish(Event(event_id="e3"), "e3")
    assert len(silent.calls) == len(PUBACK_TIMEOUTS_S)
    # Well below the consumers' ack wait, after which the message is delivered again.
    assert sum(PUBACK_TIMEOUTS_S) + 0.5 * len(PUBACK_TIMEOUTS_S) < 10.0

    refused = FlakyPublisher(BadRequestError(code=400, description="wrong stream"))
    with pytest.raises(BadRequestError):
        await _publisher(refused).publish(Event(event_id="e4"), "e4")
    assert len(refused.calls) == 1
