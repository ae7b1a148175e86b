"""Helpers for end-to-end tests: publish like a gateway, wait like a citizen."""

from __future__ import annotations

import asyncio
import json
import time
import uuid
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime
from typing import Any, TypeVar

from lapor.contracts import subjects

T = TypeVar("T")


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
