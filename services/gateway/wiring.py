"""Gateway bootstrap: Kannel's callbacks in, outgoing SMS out through Kannel's
sendsms, delivery reports back onto the bus.

It logs in to NATS as `gateway`, which may publish received SMS and delivery
receipts and read outgoing SMS through its own consumer, but neither create
nor change a stream: intake and notify declare the streams it uses.
"""

import asyncio
import contextlib
from collections.abc import Awaitable, Callable
from datetime import timedelta
from typing import Any

import httpx
from fastapi import FastAPI
from faststream import FastStream
from pymongo.asynchronous.database import AsyncDatabase

from lapor.contracts import InboundSms, subjects
from lapor.contracts.outbound import OutboundSms, SmsDeliveryReceipt
from lapor.runtime.broker import EventPublisher, durable
from lapor.runtime.serve import serve
from lapor.runtime.service import (
    Late,
    Runtime,
    build_runtime,
    create_service_app,
    documented_broker,
)
from services.gateway import domain, handlers
from services.gateway.api import callbacks_router
from services.gateway.kannel import HttpKannel
from services.gateway.metrics import GatewayMetrics
from services.gateway.repository import MongoSubmissions
from services.gateway.settings import GatewaySettings

DESCRIPTION = (
    "The SMS gateway connector: citizens' SMS from Kannel onto the bus, replies from "
    "the bus through Kannel, delivery reports back to notify."
)
# The durable consumer the `gateway` NATS login may create and read.
CONSUMER = "gateway-sms"
# Messages fetched at once are handled together, each waiting for its turn in the
# send rate; all of a batch must be submitted well within the 10 s ack wait.
BATCH_SECONDS_OF_SENDING = 5.0


def batch_size(rate_per_s: float) -> int:
    return max(1, min(32, int(rate_per_s * BATCH_SECONDS_OF_SENDING)))


def register(
    runtime: Runtime, deps: Late[handlers.GatewayDeps], rate_per_s: float
) -> tuple[EventPublisher, EventPublisher]:
    broker = runtime.broker
    inbound = EventPublisher(broker, subjects.INBOUND_SMS, InboundSms, "SMS from a citizen")
    receipts = EventPublisher(
        broker, subjects.OUTBOUND_SMS_STATUS, SmsDeliveryReceipt, "Delivery receipt"
    )

    @durable(
        broker,
        subjects.OUTBOUND_SMS,
        CONSUMER,
        title="Submit to Kannel",
        batch_size=batch_size(rate_per_s),
    )
    async def on_outbound(sms: OutboundSms) -> None:
        await handlers.submit_sms(sms, deps.get())

    # Streams belong to the services that write their subjects first (intake,
    # notify); this login may not create them, only use them.
    for stream, _subjects in broker._stream_builder.objects.values():
        stream.declare = False
    return inbound, receipts


def create_app(settings: GatewaySettings | None = None) -> FastAPI:
    settings = settings or GatewaySettings()  # type: ignore[call-arg]
    runtime = build_runtime("gateway", settings)
    deps: Late[handlers.GatewayDeps] = Late("gateway dependencies")
    inbound, receipts = register(runtime, deps, settings.send_rate_per_s)
    metrics = GatewayMetrics(runtime.registry)
    login = domain.SendSmsLogin(
        username=settings.kannel_user,
        password=settings.kannel_password.get_secret_value(),
        sender=settings.short_code,
        callback_url=str(settings.callback_url),
        callback_token=settings.callback_token.get_secret_value(),
    )

    async def on_start(db: AsyncDatabase[dict[str, Any]]) -> Callable[[], Awaitable[None]]:
        client = httpx.AsyncClient()
        kannel = HttpKannel(
            client,
            str(settings.kannel_sendsms_url),
            str(settings.kannel_status_url),
            settings.kannel_status_password.get_secret_value(),
            settings.kannel_timeout_s,
        )
        current = handlers.GatewayDeps(
            kannel=kannel,
            submissions=MongoSubmissions(db),
            inbound=inbound,
            receipts=receipts,
            metrics=metrics,
            pace=handlers.SendPace(settings.send_rate_per_s),
            login=login,
            unanswered_wait=timedelta(seconds=settings.unanswered_wait_s),
        )
        deps.set(current)

        async def watch_link() -> None:
            while True:
                await handlers.poll_status(current)
                await asyncio.sleep(settings.status_poll_s)

        watcher = asyncio.create_task(watch_link(), name="kannel-status")

        async def stop() -> None:
            watcher.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await watcher
            await client.aclose()

        return stop

    return create_service_app(
        runtime,
        on_start=on_start,
        routers=[
            callbacks_router(
                deps.get, settings.callback_token.get_secret_value(), settings.short_code
            )
        ],
        description=DESCRIPTION,
    )


def asyncapi() -> FastStream:
    """`faststream docs gen --factory services.gateway.wiring:asyncapi`"""
    return documented_broker(
        "gateway", lambda runtime, deps: register(runtime, deps, 10.0), DESCRIPTION
    )


def main() -> None:
    settings = GatewaySettings()  # type: ignore[call-arg]
    serve(create_app(settings), settings)
