"""The advisory watcher: JetStream's advisories in, dead-letter records out.

The advisories are core NATS messages, lost if nobody listens at that moment,
so the stream LAPOR_ADVISORIES keeps them; the watcher consumes it with a
durable consumer. A watcher that was down catches up when it starts; storing is
idempotent, so a repeated advisory (or a second watcher) changes nothing.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
from typing import Any

from services.deadletters import domain, usecases
from services.deadletters.repository import DeadLetterRepository

log = logging.getLogger("services.deadletters")


def message_fetcher(js: Any) -> usecases.FetchMessage:
    """The failed message, still in its stream (our streams use limits retention)."""

    async def fetch(stream: str, sequence: int) -> domain.StoredMessage | None:
        from nats.js.errors import NotFoundError

        try:
            found: domain.StoredMessage = await js.get_msg(stream, sequence)
        except NotFoundError:
            return None  # aged out or deleted before we got here
        return found

    return fetch


def jetstream_publisher(js: Any) -> usecases.Publisher:
    async def publish(subject: str, payload: bytes, headers: dict[str, str]) -> None:
        await js.publish(subject, payload, headers=headers, timeout=10.0)

    return publish


class DeadLetterWatcher:
    """Consumes LAPOR_ADVISORIES and turns each advisory into a dead-letter record."""

    def __init__(
        self, nc: Any, store: DeadLetterRepository, batch: int = 16, replicas: int = 1
    ) -> None:
        self.nc = nc
        self.js = nc.jetstream()
        self.store = store
        self.batch = batch
        # As many copies as the services' streams: a dead letter must survive a node.
        self.replicas = replicas
        self.fetch = message_fetcher(self.js)

    async def declare(self) -> None:
        from nats.js.api import AckPolicy, ConsumerConfig, DeliverPolicy, StorageType, StreamConfig
        from nats.js.errors import BadRequestError

        config = StreamConfig(
            name=domain.ADVISORY_STREAM,
            subjects=list(domain.ADVISORY_SUBJECTS),
            storage=StorageType.FILE,
            max_age=domain.ADVISORY_MAX_AGE_S,
            num_replicas=self.replicas,
        )
        try:
            await self.js.add_stream(config)
        except BadRequestError as exc:
            # Changed by an operator (limits, subjects): theirs to change, not ours.
            log.warning(
                "%s kept as it is on the server: %s", domain.ADVISORY_STREAM, exc.description
            )
        await self.js.add_consumer(
            domain.ADVISORY_STREAM,
            ConsumerConfig(
                name=domain.WATCHER,
                durable_name=domain.WATCHER,
                filter_subject=domain.ADVISORY_FILTER,
                deliver_policy=DeliverPolicy.ALL,
                ack_policy=AckPolicy.EXPLICIT,
                ack_wait=60.0,
                max_deliver=-1,
            ),
        )

    async def run(self, stop: asyncio.Event) -> None:
        """Fetch and store until `stop` is set; survives NATS and database restarts."""
        from nats.errors import TimeoutError as FetchTimeout

        sub: Any = None
        announced = False
        while not stop.is_set():
            try:
                if sub is None:
                    await self.declare()
                    sub = await self.js.pull_subscribe_bind(
                        durable=domain.WATCHER, stream=domain.ADVISORY_STREAM, inbox_prefix=None
                    )
                    if not announced:
                        log.info("dlq watcher watching %s", domain.ADVISORY_STREAM)
                        announced = True
                messages = await sub.fetch(self.batch, timeout=2.0)
            except FetchTimeout:
                continue
            except Exception as exc:
                # A fresh subscription after any other failure: the pull
                # subscription of a broken connection may never deliver again.
                log.warning("advisory fetch failed (%s); subscribing again", type(exc).__name__)
                if sub is not None:
                    with contextlib.suppress(Exception):
                        await sub.unsubscribe()
                sub = None
                await _sleep_or_stop(stop, 1.0)
                continue
            for message in messages:
                await self.handle(message)

    async def handle(self, message: Any) -> None:
        try:
            advisory = json.loads(message.data)
            kind = domain.advisory_kind(message.subject)
            stream, sequence = advisory["stream"], int(advisory["stream_seq"])
        except (ValueError, KeyError, IndexError):
            log.error("unreadable advisory on %s dropped", message.subject)
            await message.ack()
            return
        try:
            await usecases.store_advisory(self.store, self.fetch, advisory, kind)
        except Exception as exc:
            log.warning("dead letter %s:%s not stored yet (%s)", stream, sequence, exc)
            await message.nak(delay=5.0)
            return
        await message.ack()


async def _sleep_or_stop(stop: asyncio.Event, seconds: float) -> None:
    with contextlib.suppress(TimeoutError):
        await asyncio.wait_for(stop.wait(), seconds)


async def connect_nats(url: str, user: str | None, password: str | None, name: str) -> Any:
    """Connect, retrying until the server answers; reconnect forever afterwards."""
    import nats

    while True:
        try:
            return await nats.connect(
                url.split(","),
                user=user or None,
                password=password or None,
                name=name,
                inbox_prefix=domain.INBOX_PREFIX,
                max_reconnect_attempts=-1,
                reconnect_time_wait=1,
                error_cb=_log_nats_error,
            )
        except Exception as exc:
            log.warning("NATS not reachable yet (%s)", type(exc).__name__)
            await asyncio.sleep(1.0)


async def _log_nats_error(exc: Exception) -> None:
    log.warning("NATS: %s", exc)
