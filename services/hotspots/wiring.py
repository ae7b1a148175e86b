"""Hotspots bootstrap: routed complaints in, hotspot changes and answer commands out,
the officers' API over HTTP."""

from collections.abc import Awaitable, Callable
from datetime import timedelta
from time import monotonic
from typing import Any

from fastapi import FastAPI
from faststream import FastStream
from pymongo.asynchronous.database import AsyncDatabase

from lapor.contracts import ComplaintRouted, ComplaintStateChanged, subjects
from lapor.contracts.commands import Action, CommandRejected, ComplaintCommand
from lapor.contracts.hotspots import HotspotChanged
from lapor.runtime.broker import EventPublisher, durable
from lapor.runtime.metrics import PipelineMetrics, start_consumer_refresher
from lapor.runtime.outbox import Outbox, start_periodic, start_sweeper
from lapor.runtime.serve import serve
from lapor.runtime.service import (
    Late,
    Runtime,
    build_runtime,
    create_service_app,
    documented_broker,
)
from lapor.runtime.settings import documentation_infra
from lapor.runtime.write_behind import WriteBehind
from lapor.tokens import stored_tokens
from services.hotspots import handlers
from services.hotspots.api import hotspots_router
from services.hotspots.domain import Rules
from services.hotspots.lease import MongoLease
from services.hotspots.metrics import HotspotMetrics
from services.hotspots.repository import HOTSPOTS, LEASES, MongoHotspots
from services.hotspots.settings import HotspotSettings

DESCRIPTION = (
    "Hotspots group complaints of different citizens about one problem at one place "
    "within days, for officers to confirm, split, merge and answer at once."
)
ANSWER_SUBJECT = f"{subjects.COMMAND_PREFIX}.{Action.ANSWER.value}"
# The open-hotspots gauge is read again at most this often after this replica's changes.
GAUGE_CHECK_S = 5.0


def register(
    runtime: Runtime, deps: Late[handlers.HotspotDeps]
) -> tuple[EventPublisher, EventPublisher]:
    broker = runtime.broker
    changed = EventPublisher(broker, subjects.HOTSPOT_CHANGED, HotspotChanged, "Hotspot changed")
    commands = EventPublisher(
        broker, ANSWER_SUBJECT, ComplaintCommand, "Answer every member of a hotspot"
    )

    @durable(
        broker,
        subjects.COMPLAINT_ROUTED,
        "hotspots-routed",
        title="Group routed complaints",
        description="A complaint joins the open hotspot of the same problem (agency, place, "
        "similar keywords, within the window, another reporter) or forms one with a "
        "complaint in none; a re-routed member leaves its hotspot.",
    )
    async def on_routed(event: ComplaintRouted) -> None:
        await handlers.handle_routed(event, deps.get())

    @durable(
        broker,
        subjects.COMPLAINT_STATE_CHANGED,
        "hotspots-state",
        title="Follow the members' complaints",
        description="A member's state is kept (closed, withdrawn, a duplicate...); a hotspot "
        "whose members are all closed is closed, and confirmed again when one is reopened.",
    )
    async def on_state_changed(event: ComplaintStateChanged) -> None:
        await handlers.handle_state_changed(event, deps.get())

    @durable(
        broker,
        subjects.COMMAND_REJECTED,
        "hotspots-rejected",
        title="Keep intake's refusals of hotspot answers",
        description="A refused `hotspot-answer:<hotspot>:<round>:<complaint>` command is "
        "kept with its member and shown in the hotspot; other commands are ignored.",
    )
    async def on_command_rejected(event: CommandRejected) -> None:
        await handlers.handle_command_rejected(event, deps.get())

    return changed, commands


def create_app(settings: HotspotSettings | None = None) -> FastAPI:
    settings = settings or HotspotSettings()
    runtime = build_runtime("hotspots", settings)
    deps: Late[handlers.HotspotDeps] = Late("hotspots dependencies")
    changed, commands = register(runtime, deps)
    metrics = HotspotMetrics(runtime.registry)
    pipeline_metrics = PipelineMetrics(runtime.registry)
    rules = Rules(similarity=settings.similarity, window=timedelta(days=settings.window_days))

    async def on_start(db: AsyncDatabase[dict[str, Any]]) -> Callable[[], Awaitable[None]]:
        deferred = WriteBehind(db, every_s=settings.deferred_writes_s)
        outbox = Outbox([changed], deferred)
        stop_deferred = deferred.start()
        repo = MongoHotspots(db, outbox)
        await repo.ensure_indexes()
        # Replicas group one complaint at a time between them (see HotspotDeps).
        lease = MongoLease(db[LEASES], "grouping")
        current = handlers.HotspotDeps(
            repo=repo, commands=commands, rules=rules, metrics=metrics, lease=lease
        )
        deps.set(current)
        stop_sweeper = start_sweeper(outbox, {HOTSPOTS: db[HOTSPOTS]})
        stop_refresher = start_consumer_refresher(
            pipeline_metrics, runtime.broker, settings.metrics_interval_s
        )

        read_at = -settings.metrics_interval_s

        async def refresh_gauge() -> int:
            # Read again soon after this replica changed a hotspot, and on every
            # interval for the other replicas' changes: at most every GAUGE_CHECK_S.
            nonlocal read_at
            if current.gauge_stale or monotonic() - read_at >= settings.metrics_interval_s:
                current.gauge_stale = False
                read_at = monotonic()
                metrics.set_open(await repo.open_hotspots())
            return 0

        stop_gauge = start_periodic("hotspot-gauge", refresh_gauge, GAUGE_CHECK_S)

        async def stop() -> None:
            await stop_gauge()
            await stop_refresher()
            await stop_sweeper()
            await lease.close()
            await stop_deferred()
            deps.set(None)

        return stop

    return create_service_app(
        runtime,
        on_start=on_start,
        routers=[hotspots_router(deps.get, stored_tokens(runtime.db.get))],
        description=DESCRIPTION,
    )


def asyncapi() -> FastStream:
    """`faststream docs gen --factory services.hotspots.wiring:asyncapi`"""
    return documented_broker("hotspots", register, DESCRIPTION)


def main() -> None:
    settings = HotspotSettings()
    serve(create_app(settings), settings)


def openapi_document() -> dict[str, Any]:
    """The officers' HTTP API as OpenAPI, built from the code with built-in defaults."""
    settings = HotspotSettings.model_construct(infra=documentation_infra())
    return create_app(settings).openapi()
