"""SLA bootstrap: consumes routing decisions, keeps clocks, publishes deadlines."""

from typing import Any

from fastapi import FastAPI
from faststream import FastStream
from pymongo.asynchronous.database import AsyncDatabase

from lapor.contracts import ComplaintRouted, DeadlinesSet, subjects
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
from services.sla import handlers
from services.sla.calendar import load_calendar
from services.sla.policy import load_policy
from services.sla.repository import ClockRepository
from services.sla.settings import SlaSettings

DESCRIPTION = "SLA holds every complaint to its deadlines on the region's working-day calendar."


def register(runtime: Runtime, deps: Late[handlers.SlaDeps]) -> EventPublisher:
    deadlines = EventPublisher(
        runtime.broker, subjects.COMPLAINT_DEADLINES, DeadlinesSet, "Deadlines set"
    )

    @durable(runtime.broker, subjects.COMPLAINT_ROUTED, "sla-routed", title="Start clocks")
    async def on_routed(event: ComplaintRouted) -> None:
        await handlers.handle_routed(event, deps.get())

    return deadlines


def create_app(settings: SlaSettings | None = None) -> FastAPI:
    settings = settings or SlaSettings()
    runtime = build_runtime("sla", settings)
    deps: Late[handlers.SlaDeps] = Late("sla dependencies")
    deadlines = register(runtime, deps)
    rules = {
        region: handlers.RegionRules(
            calendar=load_calendar(settings.region_dir(region)),
            policy=load_policy(settings.region_dir(region)),
        )
        for region in load_regions(settings.infra.data_dir)
    }

    async def on_start(db: AsyncDatabase[dict[str, Any]]) -> None:
        clocks = ClockRepository(db)
        await clocks.ensure_indexes()
        deps.set(handlers.SlaDeps(clocks=clocks, regions=rules, deadlines=deadlines))

    return create_service_app(runtime, on_start=on_start, description=DESCRIPTION)


def asyncapi() -> FastStream:
    """`faststream docs gen --factory services.sla.wiring:asyncapi`"""
    runtime = docs_runtime("sla")
    register(runtime, Late("unused"))
    return asyncapi_app(runtime.broker, "sla", DESCRIPTION)


def main() -> None:
    settings = SlaSettings()
    serve(create_app(settings), settings)
