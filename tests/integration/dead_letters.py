"""What the dead-letter tests share: the watcher process on the test servers, and a
test-only durable consumer whose handler fails until told otherwise."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator
from typing import Any

from faststream import AckPolicy
from faststream.nats import NatsBroker, PullSub
from faststream.nats.annotations import NatsMessage
from nats.js.api import AckPolicy as AckPolicyJS
from nats.js.api import ConsumerConfig

from lapor.runtime.broker import stream_for
from lapor.runtime.dead_letters import failure_notes
from tools.devstack import DLQ, Stack


class Poison:
    """The test handler: fails while `failing`, records what it saw."""

    def __init__(self) -> None:
        self.failing = True
        self.seen: list[tuple[dict[str, Any], dict[str, str]]] = []


def start_watcher(stack: Stack, db: str, *, opens_payloads: bool = False) -> Stack:
    """The dead-letter service on `db`; `opens_payloads` gives it the private key
    (replays from its API), which `make run`'s does not get."""
    stack.mongo_db = db
    # The operator file names the database, for `lapor dlq` without settings.
    stack.write_operator_file()
    holders = stack.pii_key_holders
    if opens_payloads:
        stack.pii_key_holders = holders | {DLQ}
    try:
        stack.start_dlq()
    finally:
        stack.pii_key_holders = holders
    return stack


@contextlib.asynccontextmanager
async def poison_consumer(
    stack: Stack, db: Any, subject: str, durable: str, max_deliver: int
) -> AsyncIterator[Poison]:
    """A durable consumer on `subject` whose failures are noted in `db`, as every
    service notes its own, so that the dead letter carries the handler's error."""
    state = Poison()
    broker = NatsBroker(stack.nats, middlewares=[failure_notes(lambda: db)])

    @broker.subscriber(
        subject,
        stream=stream_for(subject),
        durable=durable,
        pull_sub=PullSub(batch_size=1, timeout=1.0),
        config=ConsumerConfig(
            durable_name=durable,
            filter_subject=subject,
            ack_policy=AckPolicyJS.EXPLICIT,
            max_deliver=max_deliver,
            ack_wait=5.0,
        ),
        ack_policy=AckPolicy.NACK_ON_ERROR,
    )
    async def handler(order: int, reply_to: str, msg: NatsMessage) -> None:
        state.seen.append(({"order": order, "reply_to": reply_to}, dict(msg.headers)))
        if state.failing:
            raise RuntimeError(f"cannot handle order {order}")

    await broker.start()
    try:
        yield state
    finally:
        await broker.stop()
