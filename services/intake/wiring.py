"""Intake bootstrap: what it consumes, what it publishes, what it serves."""

import contextlib
import hmac
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

from fastapi import APIRouter, FastAPI
from faststream import FastStream
from faststream.nats import NatsBroker
from nats.errors import NotJSMessageError
from prometheus_client import Counter
from pydantic import SecretStr
from pymongo.asynchronous.database import AsyncDatabase

from lapor.account_store import MongoAccounts
from lapor.contracts import (
    AutoCloseDue,
    Channel,
    CitizenCommandAnswered,
    ComplaintReceived,
    ComplaintRouted,
    ComplaintStateChanged,
    DeadlinesSet,
    InboundRejected,
    InboundSms,
    InboundWeb,
    subjects,
)
from lapor.contracts.commands import CommandRejected, ComplaintCommand, ComplaintForwarded
from lapor.contracts.partners import PARTNERS
from lapor.contracts.photos import PhotoAttached, PhotoRefused
from lapor.directory import AgencyDirectory, load_directory
from lapor.regions import Region, load_regions, region_keywords
from lapor.report import report_router
from lapor.runtime.broker import Delivered, EventPublisher, durable
from lapor.runtime.metrics import declared_consumers, start_refresher
from lapor.runtime.outbox import Outbox, start_periodic, start_sweeper
from lapor.runtime.serve import serve
from lapor.runtime.service import (
    ContractViolation,
    Late,
    Runtime,
    Starter,
    build_runtime,
    create_service_app,
    documented_broker,
)
from lapor.runtime.settings import documentation_infra
from lapor.runtime.write_behind import WriteBehind
from services.intake import api, changes, domain, handlers, open311, photo_api, usecases
from services.intake.callers import AccountsContext
from services.intake.complaint_counts import MongoCountStore
from services.intake.counts import CountBuffer, start_reconciler
from services.intake.guard import RateLimit
from services.intake.metrics import IntakeMetrics, refresh_plan
from services.intake.photo_store import GridFsPhotoStore
from services.intake.photos import PhotoLimits
from services.intake.ports import IntakeDeps
from services.intake.repository import ComplaintRepository
from services.intake.sessions import login_failures_metric, start_purge
from services.intake.settings import IntakeSettings
from services.intake.sms import RegionKeywords

DESCRIPTION = (
    "Intake is the edge of Lapor: it receives complaints from SMS gateways and other "
    "channels, stores them with a tracking id and records every lifecycle change."
)


def stored_at(msg: Delivered) -> datetime | None:
    """When JetStream stored the message: the receipt time no publisher can set.
    None for a message that did not come from a stream (in-memory test brokers)."""
    with contextlib.suppress(NotJSMessageError, AttributeError, ValueError, IndexError):
        return msg.raw_message.metadata.timestamp
    return None


def register(runtime: Runtime, deps: Late[IntakeDeps]) -> dict[str, EventPublisher]:
    publishers = _publishers(runtime.broker)
    _answer_contract_violations(runtime, deps)
    # Registration order is the AsyncAPI document's order.
    for subscribe in (
        _subscribe_sms,
        _subscribe_routing,
        _subscribe_commands,
        _subscribe_partners,
        _subscribe_sla,
    ):
        subscribe(runtime.broker, deps)
    return publishers


def _publishers(broker: NatsBroker) -> dict[str, EventPublisher]:
    return {
        "received": EventPublisher(
            broker, subjects.COMPLAINT_RECEIVED, ComplaintReceived, "Complaint received"
        ),
        "rejected": EventPublisher(
            broker, subjects.INBOUND_REJECTED, InboundRejected, "Inbound message rejected"
        ),
        "state_changed": EventPublisher(
            broker,
            subjects.COMPLAINT_STATE_CHANGED,
            ComplaintStateChanged,
            "Complaint state changed",
        ),
        "state_routed": EventPublisher(
            broker,
            subjects.COMPLAINT_STATE_ROUTED,
            ComplaintStateChanged,
            "Complaint placed by its routing",
        ),
        "forwarded": EventPublisher(
            broker, subjects.COMPLAINT_FORWARDED, ComplaintForwarded, "Complaint forwarded"
        ),
        "command_rejected": EventPublisher(
            broker, subjects.COMMAND_REJECTED, CommandRejected, "Command rejected"
        ),
        "photo_attached": EventPublisher(
            broker, subjects.COMPLAINT_PHOTO_ATTACHED, PhotoAttached, "Photo attached"
        ),
        "photo_refused": EventPublisher(
            broker, subjects.PHOTO_REFUSED, PhotoRefused, "Photo refused"
        ),
        "answered": EventPublisher(
            broker,
            subjects.CITIZEN_COMMAND_ANSWERED,
            CitizenCommandAnswered,
            "Citizen command answered",
        ),
    }


def _answer_contract_violations(runtime: Runtime, deps: Late[IntakeDeps]) -> None:
    for subject, channel in (
        (subjects.INBOUND_SMS, Channel.SMS),
        *((subjects.inbound_partner(partner), Channel.WEB) for partner in PARTNERS),
    ):

        async def on_violation(violation: ContractViolation, channel: Channel = channel) -> None:
            await handlers.handle_contract_violation(violation, channel, deps.get())

        runtime.on_contract_violation(subject, on_violation)


def _subscribe_sms(broker: NatsBroker, deps: Late[IntakeDeps]) -> None:
    @durable(
        broker,
        subjects.INBOUND_SMS,
        "intake-sms",
        title="Inbound SMS",
        description=(
            "An SMS sent by a citizen to the short code, published by the SMS gateway "
            "(core NATS or JetStream) with the `gateway` login, the only one allowed to "
            "name a sender's phone number. Text format: "
            "`<REGION> <complaint>`, e.g. `BANJAR jalan rusak di depan pasar`. Set the "
            "`Nats-Msg-Id` header to `gateway_id`: JetStream then drops a resend. Limits "
            "and the complaint's time use the time the server stored the message, not "
            "`received_at`. A message that is not JSON or breaks this schema is kept as a "
            "`malformed` rejection, and a readable sender is told the format by SMS."
        ),
    )
    async def on_sms(sms: InboundSms, msg: Delivered) -> None:
        await handlers.handle_sms(sms, deps.get(), stored_at(msg))


def _subscribe_routing(broker: NatsBroker, deps: Late[IntakeDeps]) -> None:
    @durable(broker, subjects.COMPLAINT_ROUTED, "intake-routed", title="Record routing")
    async def on_routed(event: ComplaintRouted) -> None:
        await handlers.handle_routed(event, deps.get())

    @durable(broker, subjects.COMPLAINT_DEADLINES, "intake-deadlines", title="Record deadlines")
    async def on_deadlines(event: DeadlinesSet) -> None:
        await handlers.handle_deadlines(event, deps.get())


def _subscribe_commands(broker: NatsBroker, deps: Late[IntakeDeps]) -> None:
    @durable(
        broker,
        subjects.COMMANDS,
        "intake-commands",
        title="Complaint commands",
        description=(
            "Actions of agency officers, Diskominfo admins and citizens on one complaint: "
            "`lapor.command.complaint.<action>` with action acknowledge, ask, answer, "
            "forward, close, reply, rate, reopen, decide_triage, reject, merge. A refused "
            "command is answered on `lapor.event.command.rejected` and changes nothing."
        ),
    )
    async def on_command(command: ComplaintCommand) -> None:
        await handlers.handle_command(command, deps.get())


def _subscribe_partners(broker: NatsBroker, deps: Late[IntakeDeps]) -> None:
    @durable(
        broker,
        subjects.INBOUND_PARTNERS,
        "intake-partners",
        title="Inbound complaint from a partner system",
        description=(
            "A complaint from a partner system (WhatsApp bot, SP4N), published on "
            "`lapor.inbound.partner.<name>` with its own login `partner-<name>`, the only "
            "one allowed to publish there. The subject names the partner: the complaint "
            "is stored as `partner:<name>` whatever `source` says, so `message_id` is "
            "the partner's own; a resend is the same complaint. A partner only files "
            "complaints: `phone` is where replies go. Set the `Nats-Msg-Id` header to "
            "`partner:<name>:<message_id>`: JetStream then drops a resend. The complaint's "
            "time is when the server stored the message. A message that is not JSON or "
            "breaks this schema is kept as a `malformed` rejection."
        ),
    )
    async def on_partner(submission: InboundWeb, msg: Delivered) -> None:
        partner = subjects.partner_of(msg.raw_message.subject)
        if partner is None:
            raise ValueError(f"not a partner subject: {msg.raw_message.subject!r}")
        await handlers.handle_partner(submission, partner, deps.get(), stored_at(msg))


def _subscribe_sla(broker: NatsBroker, deps: Late[IntakeDeps]) -> None:
    @durable(
        broker,
        subjects.SLA_AUTO_CLOSE,
        "intake-auto-close",
        title="Auto-close and reopen window",
        description=(
            "From SLA. `kind` auto_close: the answer's reply window is over; the complaint "
            "closes as no_reply, or with the citizen's rating as resolved (3-5) or "
            "not_resolved (1-2); one the citizen replied to stays open for an officer. "
            "`kind` reopen_window: until when the citizen may reopen after the latest "
            "answer or closing; stored on the complaint, BUKA and reopen after it are refused."
        ),
    )
    async def on_auto_close(event: AutoCloseDue) -> None:
        await handlers.handle_auto_close(event, deps.get())


# The events intake announces through the outbox of the record they change.
ANNOUNCED = (
    "received",
    "rejected",
    "state_changed",
    "state_routed",
    "forwarded",
    "photo_attached",
    "photo_refused",
)


def announcements(
    publishers: dict[str, EventPublisher], deferred: WriteBehind | None = None
) -> Outbox:
    return Outbox([publishers[name] for name in ANNOUNCED], deferred, domain.subject_of)


@dataclass(frozen=True)
class Assembly:
    """What intake's application is built from (see `create_app`); the `Late` parts
    exist once the lifespan has opened the database."""

    settings: IntakeSettings
    runtime: Runtime
    publishers: dict[str, EventPublisher]
    deps: Late[IntakeDeps]
    regions: dict[str, Region]
    keywords: RegionKeywords
    zones: dict[str, ZoneInfo]
    directories: dict[str, AgencyDirectory]
    metrics: IntakeMetrics
    photo_metrics: photo_api.PhotoMetrics
    accounts: Late[MongoAccounts]
    photos: Late[photo_api.PhotoDeps]

    def agencies(self) -> dict[str, frozenset[str]]:
        return {rid: frozenset(d.codes) for rid, d in self.directories.items()}


def create_app(settings: IntakeSettings | None = None) -> FastAPI:
    settings = settings or IntakeSettings()  # type: ignore[call-arg]
    runtime = build_runtime("intake", settings)
    deps: Late[IntakeDeps] = Late("intake dependencies")
    publishers = register(runtime, deps)
    regions = load_regions(settings.infra.data_dir)
    # The registry lists metrics in the order they are declared.
    metrics = IntakeMetrics(runtime.registry)
    login_failures = login_failures_metric(runtime.registry)
    parts = Assembly(
        settings=settings,
        runtime=runtime,
        publishers=publishers,
        deps=deps,
        regions=regions,
        keywords=RegionKeywords(region_keywords(regions)),
        zones={rid: ZoneInfo(region.timezone) for rid, region in regions.items()},
        directories={rid: load_directory(settings.region_dir(rid)) for rid in regions},
        metrics=metrics,
        photo_metrics=photo_api.PhotoMetrics(runtime.registry),
        accounts=Late("accounts"),
        photos=Late("photo dependencies"),
    )
    return create_service_app(
        runtime,
        on_start=_on_start(parts),
        routers=_routers(parts, _accounts_context(parts, login_failures)),
        description=DESCRIPTION,
    )


def _accounts_context(parts: Assembly, login_failures: Counter) -> AccountsContext:
    settings = parts.settings
    return AccountsContext(
        store=parts.accounts.get,
        agencies=parts.agencies(),
        default_region=settings.default_region,
        session_hours=settings.session_hours,
        # A keyed hash, so that stored failures do not reveal officers' addresses.
        address_key=hmac.new(
            settings.phone_hash_key.get_secret_value().encode(), b"login-address", "sha256"
        ).digest(),
        proxies=settings.login_proxy_networks(),
        count_failure=lambda reason: login_failures.labels(reason=reason).inc(),
    )


def _on_start(parts: Assembly) -> Starter:
    settings = parts.settings

    async def on_start(db: AsyncDatabase[dict[str, Any]]) -> Callable[[], Awaitable[None]]:
        counts = CountBuffer(MongoCountStore(db))
        # Clears after a publish or a listing go out together (lapor/runtime/write_behind).
        deferred = WriteBehind(db, every_s=settings.deferred_writes_s)
        repo = ComplaintRepository(
            db, announcements(parts.publishers, deferred), counts, deferred=deferred
        )
        await repo.ensure_indexes()
        account_store = MongoAccounts(db)
        await account_store.ensure_indexes()
        parts.accounts.set(account_store)
        photo_store = GridFsPhotoStore(db, announcements(parts.publishers))
        await photo_store.ensure_indexes()
        parts.photos.set(
            photo_api.PhotoDeps(
                repository=lambda: repo,
                store=lambda: photo_store,
                metrics=parts.photo_metrics,
                limits=PhotoLimits(max_bytes=settings.photo_max_bytes),
            )
        )
        parts.deps.set(_intake_deps(parts, repo))
        return _start_background(parts, db, repo, photo_store)

    return on_start


def _intake_deps(parts: Assembly, repo: ComplaintRepository) -> IntakeDeps:
    settings, regions = parts.settings, parts.regions
    return IntakeDeps(
        repo=repo,
        answered=parts.publishers["answered"],
        command_rejected=parts.publishers["command_rejected"],
        region_keywords=parts.keywords,
        phone_key=settings.phone_hash_key.get_secret_value().encode(),
        sealer=settings.infra.pii.sealer(),
        min_words=settings.min_words,
        region_ids=frozenset(regions),
        agencies=parts.agencies(),
        sms_countries={rid: frozenset(r.allowed_sms_countries) for rid, r in regions.items()},
        rate_limit=RateLimit(settings.rate_per_hour, settings.rate_per_day),
        duplicate_window=timedelta(hours=settings.duplicate_window_hours),
        duplicate_similarity=settings.duplicate_similarity,
        metrics=parts.metrics,
    )


def _start_background(
    parts: Assembly,
    db: AsyncDatabase[dict[str, Any]],
    repo: ComplaintRepository,
    photo_store: GridFsPhotoStore,
) -> Callable[[], Awaitable[None]]:
    """The periodic tasks of a running intake; returns what stops them."""
    settings, broker = parts.settings, parts.runtime.broker
    plan = refresh_plan(parts.metrics, db, declared_consumers(broker))
    stop_refresher = start_refresher(parts.metrics, broker, plan, settings.metrics_interval_s)
    # The complaint gauges' counters: flushed each second, reconciled now and then.
    assert repo.counts is not None and repo.deferred is not None
    stop_counts = repo.counts.start(settings.counts_flush_s)
    stop_deferred = repo.deferred.start()
    stop_reconciler = start_reconciler(
        db,
        repo.counts.store,
        timedelta(minutes=settings.counts_reconcile_minutes),
        settle_s=3 * settings.counts_flush_s,
    )
    stop_sweeper = start_sweeper(
        repo.outbox_or_fail(),
        {**repo.outbox_collections(), **photo_store.outbox_collections()},
        interval_s=settings.outbox_sweep_s,
    )

    # Worklist entries a crash left behind, or complaints loaded in bulk: all of them
    # at start-up, then those written longer ago than the deferred writes may take.
    grace = timedelta(seconds=5 + 3 * settings.deferred_writes_s)
    rounds = 0

    async def list_marked() -> int:
        nonlocal rounds
        rounds += 1
        return await repo.sync_worklist(grace=grace if rounds > 1 else timedelta(0))

    stop_lister = start_periodic("worklist", list_marked, settings.outbox_sweep_s)
    stop_purge = start_purge(
        parts.accounts.get, settings.login_purge_s, timedelta(days=settings.login_failure_days)
    )

    async def stop() -> None:
        await stop_purge()
        await stop_lister()
        await stop_sweeper()
        await stop_reconciler()
        await stop_counts()
        await stop_deferred()
        await stop_refresher()

    return stop


def _routers(parts: Assembly, accounts: AccountsContext) -> list[APIRouter]:
    settings, deps = parts.settings, parts.deps

    async def submit(submission: InboundWeb) -> dict[str, Any]:
        return await usecases.accept_submission(submission, Channel.WEB, deps.get())

    return [
        api.build_router(
            lambda: deps.get().repo,
            parts.zones,
            lambda command: changes.execute(command, deps.get()),
            submit,
            # A key of its own, never the phone-hash key (see auth.py).
            *settings.citizen_link_keys(),
            accounts=accounts,
        ),
        photo_api.build_router(parts.photos.get, *settings.citizen_link_keys()),
        report_router(lambda: parts.runtime.db.get(), settings.infra.data_dir),
        open311.build_router(
            open311.Open311Context(
                repository=lambda: deps.get().repo,
                submit=lambda s: usecases.accept_submission(s, Channel.OPEN311, deps.get()),
                directories=parts.directories,
                zones=parts.zones,
                default_region=settings.default_region,
                photos=parts.photos.get,
            )
        ),
    ]


def asyncapi() -> FastStream:
    """`faststream docs gen --factory services.intake.wiring:asyncapi`"""
    return documented_broker("intake", register, DESCRIPTION)


def main() -> None:
    settings = IntakeSettings()  # type: ignore[call-arg]
    serve(create_app(settings), settings)


def openapi_document() -> dict[str, Any]:
    """The HTTP API's OpenAPI document, built from the code with built-in defaults."""
    root = Path(__file__).resolve().parents[2]
    infra = documentation_infra(data_dir=root / "data")
    settings = IntakeSettings.model_construct(
        infra=infra,
        phone_hash_key=SecretStr("x" * 32),
        citizen_link_key=SecretStr("y" * 32),
        citizen_link_old_keys=(),
        default_region="banjar",
    )
    return create_app(settings).openapi()
