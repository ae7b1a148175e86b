"""SLA bootstrap: consumes routing decisions and state changes, keeps timers as data,
sweeps what is due, publishes deadlines, alerts, escalations and auto-close."""

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable, Mapping
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from fastapi import FastAPI
from faststream import FastStream
from pymongo.asynchronous.database import AsyncDatabase

from lapor.calendar import load_calendar, years_without_days_off
from lapor.contracts import (
    AutoCloseDue,
    ComplaintRouted,
    ComplaintStateChanged,
    DeadlineAlert,
    DeadlinesSet,
    EscalationRaised,
    subjects,
)
from lapor.regions import load_regions
from lapor.runtime.broker import EventPublisher, durable
from lapor.runtime.metrics import PipelineMetrics, start_consumer_refresher
from lapor.runtime.outbox import Outbox
from lapor.runtime.serve import serve
from lapor.runtime.service import (
    Late,
    Runtime,
    build_runtime,
    create_service_app,
    documented_broker,
)
from lapor.runtime.write_behind import WriteBehind
from lapor.tokens import stored_tokens
from services.sla import handlers
from services.sla.api import breaches_router
from services.sla.engine import SlaEngine
from services.sla.metrics import SlaMetrics
from services.sla.plan import RegionRules
from services.sla.policy import load_policy
from services.sla.repository import MongoSlaStore
from services.sla.settings import SlaSettings

log = logging.getLogger(__name__)

DESCRIPTION = (
    "SLA holds every complaint to its deadlines on the region's working-day calendar: "
    "warnings at 50% and 80%, the breach, escalation up the chain, auto-close after an "
    "unanswered response, and the record of every breach."
)


def register(runtime: Runtime, deps: Late[handlers.SlaDeps]) -> dict[str, EventPublisher]:
    broker = runtime.broker
    publishers = {
        "deadlines": EventPublisher(
            broker, subjects.COMPLAINT_DEADLINES, DeadlinesSet, "Deadlines set"
        ),
        "alert": EventPublisher(broker, subjects.SLA_ALERT, DeadlineAlert, "Deadline alert"),
        "escalation": EventPublisher(
            broker, subjects.SLA_ESCALATION, EscalationRaised, "Escalation raised"
        ),
        "auto_close": EventPublisher(
            broker, subjects.SLA_AUTO_CLOSE, AutoCloseDue, "Auto-close due"
        ),
    }

    @durable(broker, subjects.COMPLAINT_ROUTED, "sla-routed", title="Start clocks")
    async def on_routed(event: ComplaintRouted) -> None:
        await handlers.handle_routed(event, deps.get())

    @durable(
        broker,
        subjects.COMPLAINT_STATE_CHANGED,
        "sla-state",
        title="Stop, pause and resume clocks",
        description=(
            "in_progress (or later) stops first_response; needs_info pauses the answer "
            "clock and leaving it, or its reply window lapsing, extends the answer "
            "deadline (announced as a new DeadlinesSet); responded stops the answer clock "
            "and schedules auto-close; closed and rejected stop everything. Responded and "
            "closed each open a new reopen window, announced on lapor.event.sla.auto_close "
            "(kind reopen_window)."
        ),
    )
    async def on_state(event: ComplaintStateChanged) -> None:
        await handlers.handle_state_changed(event, deps.get())

    return publishers


def load_rules(settings: SlaSettings) -> dict[str, RegionRules]:
    return {
        region: RegionRules(
            calendar=load_calendar(settings.region_dir(region)),
            policy=load_policy(settings.region_dir(region)),
        )
        for region in load_regions(settings.infra.data_dir)
    }


def check_calendars(
    rules: Mapping[str, RegionRules],
    now: datetime,
    metrics: SlaMetrics,
    data_dir: Path = Path("data"),
) -> dict[str, list[int]]:
    """Warn about regions whose days_off.yaml has nothing for this or next year.

    The file is read at start-up only, so this is the moment to say it; the
    gauge keeps it visible to Prometheus after the log line has scrolled away.
    """
    incomplete: dict[str, list[int]] = {}
    for region, rule in rules.items():
        today = rule.calendar.local(now).date()
        for year in (today.year, today.year + 1):
            count = rule.calendar.extra_days_off_in(year)
            metrics.calendar_days_off.labels(region=region, year=str(year)).set(count)
        missing = years_without_days_off(rule.calendar, today)
        if missing:
            incomplete[region] = missing
            log.warning(
                "calendar of region %s is incomplete: %s lists no days off (cuti bersama, "
                "regional days) for %s; working-day deadlines count those days as working "
                "days until the file is updated and sla restarted",
                region,
                data_dir / "regions" / region / "days_off.yaml",
                " and ".join(str(year) for year in missing),
            )
    return incomplete


def build_engine(
    db: AsyncDatabase[dict[str, Any]],
    rules: Mapping[str, RegionRules],
    publishers: Mapping[str, EventPublisher],
    settings: SlaSettings,
    *,
    clock: Callable[[], datetime],
    metrics: SlaMetrics | None = None,
    replica: str | None = None,
    deferred: WriteBehind | None = None,
) -> SlaEngine:
    return SlaEngine(
        # Deadline announcements carry no personal data: stored unsealed.
        MongoSlaStore(db, Outbox([publishers["deadlines"]], deferred)),
        rules,
        [
            publishers["alert"],
            publishers["escalation"],
            publishers["auto_close"],
            # The answer deadline a lapsed reply window fixes is announced by the sweep.
            publishers["deadlines"],
        ],
        clock,
        metrics,
        replica=replica,
        batch_size=settings.sweep_batch,
        concurrency=settings.sweep_concurrency,
        republish_after=timedelta(seconds=settings.republish_after_s),
    )


def create_app(
    settings: SlaSettings | None = None, *, clock: Callable[[], datetime] | None = None
) -> FastAPI:
    settings = settings or SlaSettings()
    runtime = build_runtime("sla", settings)
    deps: Late[handlers.SlaDeps] = Late("sla dependencies")
    publishers = register(runtime, deps)
    rules = load_rules(settings)
    metrics = SlaMetrics(runtime.registry)
    pipeline_metrics = PipelineMetrics(runtime.registry)
    now = clock or (lambda: datetime.now(UTC))
    check_calendars(rules, now(), metrics, settings.infra.data_dir)

    async def on_start(db: AsyncDatabase[dict[str, Any]]) -> Callable[[], Awaitable[None]]:
        # Clears after a publish go out together (lapor/runtime/write_behind).
        deferred = WriteBehind(db, every_s=settings.deferred_writes_s)
        engine = build_engine(
            db, rules, publishers, settings, clock=now, metrics=metrics, deferred=deferred
        )
        stop_deferred = deferred.start()
        await engine.store.ensure_indexes()
        deps.set(
            handlers.SlaDeps(
                engine=engine,
                reply_windows=publishers["auto_close"],
                default_region=settings.default_region,
            )
        )
        # Publishing needs the broker, which starts right after this hook.
        sweeping = asyncio.create_task(
            engine.run_forever(settings.sweep_interval_s, ready=lambda: runtime.broker.running),
            name="sla-sweep",
        )
        stop_refresher = start_consumer_refresher(
            pipeline_metrics, runtime.broker, settings.metrics_interval_s
        )

        async def stop() -> None:
            await stop_refresher()
            sweeping.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await sweeping
            await stop_deferred()
            deps.set(None)

        return stop

    return create_service_app(
        runtime,
        on_start=on_start,
        routers=[breaches_router(deps.get, stored_tokens(runtime.db.get))],
        description=DESCRIPTION,
    )


def asyncapi() -> FastStream:
    """`faststream docs gen --factory services.sla.wiring:asyncapi`"""
    return documented_broker("sla", register, DESCRIPTION)


def main() -> None:
    settings = SlaSettings()
    serve(create_app(settings), settings)
