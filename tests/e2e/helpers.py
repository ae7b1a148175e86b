"""Helpers for end-to-end tests: publish like a gateway, wait like a citizen."""

from __future__ import annotations

import asyncio
import json
import time
import uuid
from collections.abc import Awaitable, Callable, Iterable
from datetime import UTC, datetime
from typing import Any, TypeVar

import nats
from nats.js.api import AckPolicy, ConsumerConfig, DeliverPolicy
from nats.js.errors import ServiceUnavailableError

from lapor.contracts import subjects

T = TypeVar("T")

# A durable consumer, named as JetStream does: (stream, durable name).
Consumer = tuple[str, str]

# The services' consumers an SMS passes, upstream before downstream.
SMS_PATH: tuple[Consumer, ...] = (
    ("LAPOR_INBOUND", "intake-sms"),
    ("LAPOR_EVENTS", "router-received"),
    ("LAPOR_EVENTS", "notify-received"),
    ("LAPOR_EVENTS", "intake-routed"),
    ("LAPOR_EVENTS", "sla-routed"),
    ("LAPOR_EVENTS", "notify-routed"),
    ("LAPOR_EVENTS", "intake-deadlines"),
    ("LAPOR_EVENTS", "notify-deadlines"),
    ("LAPOR_EVENTS", "notify-rejected"),
    ("LAPOR_EVENTS", "notify-commands"),
)


def sms_payload(sender: str, text: str, gateway_id: str | None = None) -> dict[str, Any]:
    return {
        "from": sender,
        "to": "1708",
        "text": text,
        "gateway_id": gateway_id or f"gw-{uuid.uuid4().hex}",
        "received_at": datetime.now(UTC).isoformat(),
    }


class Outbox:
    """Collects every SMS notify puts on lapor.outbound.sms (core subscription)."""

    def __init__(self) -> None:
        self.messages: list[dict[str, Any]] = []

    async def attach(self, nc: Any) -> Outbox:
        async def on_msg(msg: Any) -> None:
            self.messages.append(json.loads(msg.data))

        self._sub = await nc.subscribe(subjects.OUTBOUND_SMS, cb=on_msg)
        return self

    def to(self, number: str) -> list[dict[str, Any]]:
        return [m for m in self.messages if m["to"] == number]

    async def detach(self) -> None:
        await self._sub.unsubscribe()


class Collector:
    """Every message stored on a subject from now on, as the test's own JetStream consumer
    receives it; `drained` says when it has received all there is so far."""

    def __init__(self) -> None:
        self.got: list[dict[str, Any]] = []

    async def attach(self, nc: Any, subject: str) -> Collector:
        self._sub = await nc.jetstream().subscribe(subject, deliver_policy=DeliverPolicy.NEW)
        self._task = asyncio.create_task(self._pump())
        return self

    async def _pump(self) -> None:
        async for msg in self._sub.messages:
            self.got.append(json.loads(msg.data))
            await msg.ack()

    async def drained(self) -> bool:
        info = await self._sub.consumer_info()
        return info.num_pending == 0 and info.num_ack_pending == 0

    async def detach(self) -> None:
        self._task.cancel()
        await self._sub.unsubscribe()


async def eventually(
    probe: Callable[[], Awaitable[T | None]], timeout: float = 30.0, interval: float = 0.1
) -> T:
    deadline = time.monotonic() + timeout
    while True:
        value = await probe()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"condition not met within {timeout:.0f}s")
        await asyncio.sleep(interval)


async def consumers_idle(js: Any, consumers: Iterable[Consumer], timeout: float = 30.0) -> None:
    """Wait until each consumer has been handed, and has acknowledged, everything
    its stream holds for it: the positive signal that lets a test assert that
    something did NOT happen.

    It covers what JetStream has acknowledged before the call: a core NATS
    publish may not be stored yet, so a test publishes its last message with a
    PubAck. Consumers are checked in the order given, within one pass: a
    handler publishes what it causes before it acknowledges, so listing a path
    upstream first covers the messages its handlers publish while the test waits.
    """
    path = list(consumers)

    async def idle() -> bool:
        for stream, durable in path:
            try:
                info = await js.consumer_info(stream, durable)
            except (nats.errors.TimeoutError, ServiceUnavailableError):
                return False  # a server restarting or electing a leader: ask again
            if info.num_pending or info.num_ack_pending:
                return False
        return True

    await eventually(idle, timeout=timeout)


async def stored_messages(js: Any, subject: str, *, after_seq: int = 0) -> list[Any]:
    """Every message its stream holds on `subject` (after stream sequence `after_seq`),
    read until the reading consumer has none pending: the end is a count the server
    gives, not a pause in the flow that a slow machine could also cause."""
    config = ConsumerConfig(
        deliver_policy=DeliverPolicy.BY_START_SEQUENCE if after_seq else DeliverPolicy.ALL,
        opt_start_seq=after_seq + 1 if after_seq else None,
        ack_policy=AckPolicy.NONE,
    )
    sub = await js.pull_subscribe(subject, config=config)
    messages: list[Any] = []
    try:
        while pending := (await sub.consumer_info()).num_pending:
            messages += await sub.fetch(min(pending, 256), timeout=10)
    finally:
        await sub.unsubscribe()
    return messages
