"""A subscriber that takes the message itself (for its delivery count or stream
timestamp) gets it without a worker thread: one thread hand-off per message was
a measurable share of a busy service's CPU."""

from typing import Any

import anyio.to_thread
import pytest
from faststream.nats import TestNatsBroker
from faststream.nats.message import NatsMessage
from prometheus_client import CollectorRegistry

from lapor.runtime.broker import Delivered, create_broker, durable
from lapor.runtime.settings import documentation_infra

RECEIVED = "lapor.event.complaint.received"


async def _keep(_msg: Any, exc: Exception) -> None:
    raise AssertionError(f"not a dead letter: {exc}")


async def test_the_message_is_handed_over_in_the_event_loop(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    threaded: list[Any] = []
    run_sync = anyio.to_thread.run_sync

    async def counted(func: Any, *args: Any, **kwargs: Any) -> Any:
        threaded.append(func)
        return await run_sync(func, *args, **kwargs)

    monkeypatch.setattr(anyio.to_thread, "run_sync", counted)
    broker = create_broker(
        documentation_infra(), service="notify", registry=CollectorRegistry(), on_invalid=_keep
    )
    seen: list[tuple[dict[str, Any], Any]] = []

    @durable(broker, RECEIVED, "notify-received")
    async def handle(body: dict[str, Any], msg: Delivered) -> None:
        seen.append((body, msg))

    async with TestNatsBroker(broker) as test_broker:
        await test_broker.publish({"event_id": "ev-1", "complaint_id": "LPR-1"}, RECEIVED)

    [(body, msg)] = seen
    assert body == {"event_id": "ev-1", "complaint_id": "LPR-1"}
    assert isinstance(msg, NatsMessage) and msg.raw_message.subject == RECEIVED
    assert threaded == []
