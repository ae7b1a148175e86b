"""Notify bootstrap: consumes domain events, publishes SMS for the gateway connector."""

from typing import Any

from fastapi import FastAPI
from faststream import FastStream
from pymongo.asynchronous.database import AsyncDatabase

from lapor.contracts import (
    CitizenCommandAnswered,
    ComplaintReceived,
    ComplaintRouted,
    DeadlinesSet,
    InboundRejected,
    OutboundSms,
    subjects,
)
from lapor.regions import load_regions
from lapor.runtime.broker import EventPublisher, durable
from lapor.runtime.serve import serve
from lapor.runtime.service import (
    Late,
    Runtime,
    asyncapi_app,
    build_runtime,
    create_service_app,
    docs_runtime,
)
from services.notify import handlers
from services.notify.catalog import AgencyCatalog, SmsRenderer
from services.notify.repository import NotificationRepository
from services.notify.settings import NotifySettings
from services.notify.templates import TemplateSet

DESCRIPTION = "Notify sends every outgoing message: SMS replies to citizens and agency notices."


def register(runtime: Runtime, deps: Late[handlers.NotifyDeps]) -> EventPublisher:
    broker = runtime.broker
    outbox = EventPublisher(
        broker, subjects.OUTBOUND_SMS, OutboundSms, "SMS for the gateway connector"
    )

    @durable(broker, subjects.COMPLAINT_RECEIVED, "notify-received", title="Keep reply address")
    async def on_received(event: ComplaintReceived) -> None:
        await handlers.handle_received(event, deps.get())

    @durable(broker, subjects.COMPLAINT_DEADLINES, "notify-deadlines", title="Acknowledge")
    async def on_deadlines(event: DeadlinesSet) -> None:
        await handlers.handle_deadlines(event, deps.get())

    @durable(broker, subjects.COMPLAINT_ROUTED, "notify-routed", title="Out-of-scope guidance")
    async def on_routed(event: ComplaintRouted) -> None:
        await handlers.handle_routed(event, deps.get())

    @durable(broker, subjects.INBOUND_REJECTED, "notify-rejected", title="Explain a rejection")
    async def on_rejected(event: InboundRejected) -> None:
        await handlers.handle_rejected(event, deps.get())

    @durable(broker, subjects.CITIZEN_COMMAND_ANSWERED, "notify-commands", title="Answer commands")
    async def on_command_answered(event: CitizenCommandAnswered) -> None:
        await handlers.handle_command_answered(event, deps.get())

    return outbox


def create_app(settings: NotifySettings | None = None) -> FastAPI:
    settings = settings or NotifySettings()
    runtime = build_runtime("notify", settings)
    deps: Late[handlers.NotifyDeps] = Late("notify dependencies")
    outbox = register(runtime, deps)
    # Templates and the directory are validated before any message is taken.
    regions = load_regions(settings.infra.data_dir)
    renderer = SmsRenderer(
        TemplateSet.load(citizen_max_segments=settings.max_sms_segments), regions
    )
    catalog = AgencyCatalog.load(settings.infra.data_dir, regions)

    async def on_start(db: AsyncDatabase[dict[str, Any]]) -> None:
        repo = NotificationRepository(db)
        await repo.ensure_indexes()
        deps.set(
            handlers.NotifyDeps(
                repo=repo,
                outbox=outbox,
                renderer=renderer,
                agencies=catalog,
                echo=settings.channel == "log",
            )
        )

    return create_service_app(runtime, on_start=on_start, description=DESCRIPTION)


def asyncapi() -> FastStream:
    """`faststream docs gen --factory services.notify.wiring:asyncapi`"""
    runtime = docs_runtime("notify")
    register(runtime, Late("unused"))
    return asyncapi_app(runtime.broker, "notify", DESCRIPTION)


def main() -> None:
    settings = NotifySettings()
    serve(create_app(settings), settings)
