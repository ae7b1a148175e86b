"""Notify bootstrap: consumes domain events, sends through the configured channels."""

import logging
from collections.abc import Awaitable, Callable, Mapping
from datetime import UTC, tzinfo
from typing import Any
from zoneinfo import ZoneInfo

import httpx
from fastapi import FastAPI
from faststream import FastStream
from faststream.nats import NatsBroker
from pymongo.asynchronous.database import AsyncDatabase

from lapor.contracts import (
    CitizenCommandAnswered,
    ComplaintReceived,
    ComplaintRouted,
    ComplaintStateChanged,
    DeadlineAlert,
    DeadlinesSet,
    EscalationRaised,
    InboundRejected,
    NotificationFailed,
    OutboundSms,
    SmsDeliveryReceipt,
    subjects,
)
from lapor.regions import Region, load_regions, reopen_window
from lapor.runtime.broker import Delivered, EventPublisher, durable
from lapor.runtime.metrics import PipelineMetrics, start_consumer_refresher
from lapor.runtime.outbox import start_periodic
from lapor.runtime.serve import serve
from lapor.runtime.service import (
    Late,
    Runtime,
    asyncapi_app,
    build_runtime,
    create_service_app,
    docs_runtime,
)
from lapor.runtime.write_behind import WriteBehind
from lapor.tokens import stored_tokens
from services.notify import domain, handlers
from services.notify.api import delivery_router
from services.notify.catalog import AgencyCatalog, SmsRenderer
from services.notify.channels import (
    BusSms,
    Channel,
    ChannelSet,
    HttpSmsGateway,
    LogSink,
    SmtpConfig,
    SmtpEmail,
    Tee,
    Unavailable,
    Webhook,
)
from services.notify.delivery import Deliverer, NotifyMetrics
from services.notify.repository import NotificationRepository
from services.notify.retry import RetryPolicy
from services.notify.settings import NotifySettings
from services.notify.templates import TemplateSet
from services.notify.usecases import NotifyDeps

log = logging.getLogger(__name__)

DESCRIPTION = (
    "Notify sends every outgoing message: SMS replies to citizens and agency notices "
    "by e-mail and webhook, each exactly once, retried, logged."
)
# A fetched batch is handled concurrently; official notices open connections to
# mail servers and agency systems, so take a few at a time, not 32.
OFFICIAL_BATCH = 4


def delivery_count(msg: Any) -> int:
    metadata = getattr(getattr(msg, "raw_message", None), "metadata", None)
    return int(getattr(metadata, "num_delivered", 1) or 1)


def register(runtime: Runtime, deps: Late[NotifyDeps]) -> dict[str, EventPublisher]:
    """Notify's subscribers and its publishers (which the deliverer sends through)."""
    broker = runtime.broker
    publishers = {
        "sms": EventPublisher(
            broker, subjects.OUTBOUND_SMS, OutboundSms, "SMS for the gateway connector"
        ),
        "failed": EventPublisher(
            broker, subjects.NOTIFICATION_FAILED, NotificationFailed, "Notification failed"
        ),
    }
    _subscribe_complaints(broker, deps)
    _subscribe_deadlines(broker, deps)

    @durable(broker, subjects.OUTBOUND_SMS_STATUS, "notify-receipts", title="Delivery receipts")
    async def on_receipt(receipt: SmsDeliveryReceipt) -> None:
        await handlers.handle_receipt(receipt, deps.get())

    return publishers


def _subscribe_complaints(broker: NatsBroker, deps: Late[NotifyDeps]) -> None:
    """What notify remembers of each complaint, and what the citizen is told."""

    @durable(broker, subjects.COMPLAINT_RECEIVED, "notify-received", title="Keep reply address")
    async def on_received(event: ComplaintReceived) -> None:
        await handlers.handle_received(event, deps.get())

    @durable(
        broker,
        subjects.COMPLAINT_DEADLINES,
        "notify-deadlines",
        title="Acknowledge and assign",
        batch_size=OFFICIAL_BATCH,
    )
    async def on_deadlines(event: DeadlinesSet, msg: Delivered) -> None:
        await handlers.handle_deadlines(event, deps.get(), delivery_count(msg))

    @durable(broker, subjects.COMPLAINT_ROUTED, "notify-routed", title="Out-of-scope guidance")
    async def on_routed(event: ComplaintRouted, msg: Delivered) -> None:
        await handlers.handle_routed(event, deps.get(), delivery_count(msg))

    @durable(
        broker,
        subjects.COMPLAINT_STATE_CHANGED,
        "notify-lifecycle",
        title="Question, answer, closing",
    )
    async def on_state_changed(event: ComplaintStateChanged, msg: Delivered) -> None:
        await handlers.handle_state_changed(event, deps.get(), delivery_count(msg))

    @durable(broker, subjects.INBOUND_REJECTED, "notify-rejected", title="Explain a rejection")
    async def on_rejected(event: InboundRejected, msg: Delivered) -> None:
        await handlers.handle_rejected(event, deps.get(), delivery_count(msg))

    @durable(broker, subjects.CITIZEN_COMMAND_ANSWERED, "notify-commands", title="Answer commands")
    async def on_command_answered(event: CitizenCommandAnswered, msg: Delivered) -> None:
        await handlers.handle_command_answered(event, deps.get(), delivery_count(msg))


def _subscribe_deadlines(broker: NatsBroker, deps: Late[NotifyDeps]) -> None:
    """Officials hear of deadlines at risk, breached and escalated."""

    @durable(
        broker,
        subjects.SLA_ALERT,
        "notify-alerts",
        title="Warn officials of deadlines",
        batch_size=OFFICIAL_BATCH,
    )
    async def on_alert(event: DeadlineAlert, msg: Delivered) -> None:
        await handlers.handle_alert(event, deps.get(), delivery_count(msg))

    @durable(
        broker,
        subjects.SLA_ESCALATION,
        "notify-escalations",
        title="Escalate to officials",
        batch_size=OFFICIAL_BATCH,
    )
    async def on_escalation(event: EscalationRaised, msg: Delivered) -> None:
        await handlers.handle_escalation(event, deps.get(), delivery_count(msg))


def retry_policy(settings: NotifySettings) -> RetryPolicy:
    return RetryPolicy(
        base_s=settings.retry_base_s,
        factor=settings.retry_factor,
        max_delay_s=settings.retry_max_delay_s,
        max_attempts=settings.retry_max_attempts,
        inline_max_s=settings.retry_inline_max_s,
    )


def build_channels(
    settings: NotifySettings, sms_outbox: EventPublisher, client: httpx.AsyncClient
) -> ChannelSet:
    sink = LogSink()
    if settings.channel == "log":
        return ChannelSet(sms=Tee(BusSms(sms_outbox), sink), email=sink, webhook=sink)
    sms: Channel = BusSms(sms_outbox)
    if settings.channel == "http":
        assert settings.sms_gateway_url is not None  # enforced by the settings
        sms = HttpSmsGateway(
            client,
            str(settings.sms_gateway_url),
            auth_header=settings.sms_gateway_auth_header,
            auth_value=settings.sms_gateway_auth_value,
            timeout_s=settings.sms_gateway_timeout_s,
        )
    email: Channel = Unavailable("e-mail is not configured (NOTIFY_SMTP_HOST)")
    if settings.smtp_host:
        email = SmtpEmail(
            SmtpConfig(
                host=settings.smtp_host,
                port=settings.smtp_port,
                user=settings.smtp_user,
                password=settings.smtp_password,
                sender=settings.smtp_from,
                starttls=settings.smtp_starttls,
                timeout_s=settings.smtp_timeout_s,
            )
        )
    webhook = Webhook(client, settings.webhook_secrets, timeout_s=settings.webhook_timeout_s)
    return ChannelSet(sms=sms, email=email, webhook=webhook)


def send_timeout(settings: NotifySettings) -> float:
    return max(settings.sms_gateway_timeout_s, settings.smtp_timeout_s, settings.webhook_timeout_s)


def make_deliverer(
    settings: NotifySettings,
    publishers: dict[str, EventPublisher],
    repo: NotificationRepository,
    client: httpx.AsyncClient,
    metrics: NotifyMetrics,
    zones: Mapping[str, tzinfo] | None = None,
) -> Deliverer:
    local = dict(zones or {})
    return Deliverer(
        repo,
        build_channels(settings, publishers["sms"], client),
        publishers["failed"],
        metrics,
        retry_policy(settings),
        send_timeout_s=send_timeout(settings),
        sms_budget=settings.sms_budget,
        budget_zone=lambda region: local.get(region or "", UTC),
    )


def use_case_deps(
    settings: NotifySettings,
    repo: NotificationRepository,
    deliverer: Deliverer,
    *,
    renderer: SmsRenderer,
    catalog: AgencyCatalog,
) -> NotifyDeps:
    return NotifyDeps(
        repo=repo,
        deliverer=deliverer,
        renderer=renderer,
        agencies=catalog,
        opener=settings.pii.opener(),
        admin_agency=settings.admin_agency,
        reopen_within={
            region: domain.reopen_phrase(*reopen_window(settings.infra.data_dir, region))
            for region in catalog.directories
        },
    )


def make_deps(
    settings: NotifySettings,
    publishers: dict[str, EventPublisher],
    repo: NotificationRepository,
    client: httpx.AsyncClient,
    *,
    renderer: SmsRenderer,
    catalog: AgencyCatalog,
    metrics: NotifyMetrics,
    zones: Mapping[str, tzinfo] | None = None,
) -> NotifyDeps:
    deliverer = make_deliverer(settings, publishers, repo, client, metrics, zones)
    return use_case_deps(settings, repo, deliverer, renderer=renderer, catalog=catalog)


def _warn_about_gaps(settings: NotifySettings, catalog: AgencyCatalog) -> None:
    if settings.channel == "log":
        return
    if not settings.smtp_host:
        log.warning("NOTIFY_SMTP_HOST is not set: every e-mail notice to officials will fail")
    unsigned = sorted(catalog.webhook_agencies() - settings.webhook_secrets.keys())
    if unsigned:
        log.warning(
            "no webhook secret for %s: their webhook notices will fail", ", ".join(unsigned)
        )


def _load_directory(
    settings: NotifySettings,
) -> tuple[dict[str, Region], SmsRenderer, AgencyCatalog]:
    """The regions, the templates and the agencies, validated before any message is taken."""
    regions = load_regions(settings.infra.data_dir)
    renderer = SmsRenderer(
        TemplateSet.load(citizen_max_segments=settings.max_sms_segments), regions
    )
    catalog = AgencyCatalog.load(settings.infra.data_dir, regions)
    missing = catalog.missing_agency(settings.admin_agency)
    if missing:
        raise ValueError(
            f"NOTIFY_ADMIN_AGENCY={settings.admin_agency} is not in the directory of "
            + ", ".join(missing)
        )
    return regions, renderer, catalog


def create_app(settings: NotifySettings | None = None) -> FastAPI:
    settings = settings or NotifySettings()
    runtime = build_runtime("notify", settings)
    deps: Late[NotifyDeps] = Late("notify dependencies")
    records: Late[NotificationRepository] = Late("notify records")
    publishers = register(runtime, deps)
    regions, renderer, catalog = _load_directory(settings)
    metrics = NotifyMetrics(runtime.registry)
    pipeline_metrics = PipelineMetrics(runtime.registry)
    zones = {rid: ZoneInfo(region.timezone) for rid, region in regions.items()}

    async def on_start(db: AsyncDatabase[dict[str, Any]]) -> Callable[[], Awaitable[None]]:
        # Noting a failure announced goes out with others (lapor/runtime/write_behind).
        deferred = WriteBehind(db, every_s=settings.deferred_writes_s)
        repo = NotificationRepository(db, settings.pii.cipher(), deferred)
        await repo.ensure_indexes()
        stop_deferred = deferred.start()
        records.set(repo)
        client = httpx.AsyncClient(follow_redirects=False)
        deliverer = make_deliverer(settings, publishers, repo, client, metrics, zones)
        deps.set(use_case_deps(settings, repo, deliverer, renderer=renderer, catalog=catalog))
        _warn_about_gaps(settings, catalog)
        stop_refresher = start_consumer_refresher(
            pipeline_metrics, runtime.broker, settings.metrics_interval_s
        )
        # A failure is stored with its announcement pending; this publishes what a
        # crash or an outage left unannounced.
        stop_sweeper = start_periodic(
            "failure", deliverer.announce_failures, settings.outbox_sweep_s
        )

        async def stop() -> None:
            await stop_sweeper()
            await stop_refresher()
            await stop_deferred()
            await client.aclose()

        return stop

    return create_service_app(
        runtime,
        on_start=on_start,
        routers=[
            delivery_router(
                records.get,
                zones,
                settings.default_region,
                stored_tokens(runtime.db.get),
            )
        ],
        description=DESCRIPTION,
    )


def asyncapi() -> FastStream:
    """`faststream docs gen --factory services.notify.wiring:asyncapi`"""
    runtime = docs_runtime("notify")
    register(runtime, Late("unused"))
    return asyncapi_app(runtime.broker, "notify", DESCRIPTION)


def main() -> None:
    settings = NotifySettings()
    serve(create_app(settings), settings)
