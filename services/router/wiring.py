"""Router bootstrap: consumes received complaints, publishes routing decisions."""

from collections.abc import Awaitable, Callable
from typing import Any

from fastapi import FastAPI
from faststream import FastStream
from pymongo.asynchronous.database import AsyncDatabase

from lapor.contracts import ComplaintReceived, ComplaintRouted, subjects
from lapor.contracts.commands import ComplaintForwarded
from lapor.regions import load_regions
from lapor.runtime.broker import EventPublisher, durable
from lapor.runtime.metrics import RefreshPlan, declared_consumers, start_refresher
from lapor.runtime.serve import serve
from lapor.runtime.service import (
    Late,
    Runtime,
    build_runtime,
    create_service_app,
    documented_broker,
)
from services.router import handlers
from services.router.domain import Router
from services.router.metrics import RouterMetrics
from services.router.places import PlaceFinder
from services.router.settings import RouterSettings

DESCRIPTION = "Router decides which agency handles a complaint and how urgent it is."


def register(runtime: Runtime, deps: Late[handlers.RouterDeps]) -> EventPublisher:
    routed = EventPublisher(
        runtime.broker, subjects.COMPLAINT_ROUTED, ComplaintRouted, "Complaint routed"
    )

    @durable(runtime.broker, subjects.COMPLAINT_RECEIVED, "router-received", title="Route")
    async def on_received(event: ComplaintReceived) -> None:
        await handlers.handle_received(event, deps.get())

    @durable(runtime.broker, subjects.COMPLAINT_FORWARDED, "router-forwarded", title="Re-route")
    async def on_forwarded(event: ComplaintForwarded) -> None:
        await handlers.handle_forwarded(event, deps.get())

    return routed


def create_app(settings: RouterSettings | None = None) -> FastAPI:
    settings = settings or RouterSettings()
    runtime = build_runtime("router", settings)
    deps: Late[handlers.RouterDeps] = Late("router dependencies")
    routed = register(runtime, deps)
    # Load and validate every region's rules before accepting any message.
    routers = {
        region: Router.load(settings.region_dir(region))
        for region in load_regions(settings.infra.data_dir)
    }

    places = {
        region: finder
        for region in routers
        if (finder := PlaceFinder.load(settings.region_dir(region))) is not None
    }

    metrics = RouterMetrics(runtime.registry)

    async def on_start(_db: AsyncDatabase[dict[str, Any]]) -> Callable[[], Awaitable[None]]:
        deps.set(
            handlers.RouterDeps(routers=routers, routed=routed, metrics=metrics, places=places)
        )
        plan = RefreshPlan(consumers=declared_consumers(runtime.broker))
        return start_refresher(metrics, runtime.broker, plan, 30.0)

    return create_service_app(runtime, on_start=on_start, description=DESCRIPTION)


def asyncapi() -> FastStream:
    """`faststream docs gen --factory services.router.wiring:asyncapi`"""
    return documented_broker("router", register, DESCRIPTION)


def main() -> None:
    settings = RouterSettings()
    serve(create_app(settings), settings)
