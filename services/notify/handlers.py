"""Notify's message handlers: remember how to reach the citizen, answer every event."""

import logging
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Protocol

from faststream.exceptions import NackMessage

from lapor.contracts import (
    CitizenCommandAnswered,
    ComplaintReceived,
    ComplaintRouted,
    DeadlinesSet,
    InboundRejected,
    OutboundSms,
)
from lapor.runtime.broker import EventPublisher
from lapor.runtime.logs import mask_phones
from services.notify import domain
from services.notify.repository import NotificationRepository

log = logging.getLogger(__name__)


class Renderer(Protocol):
    def render_sms(self, template: str, values: Mapping[str, Any], region: str | None) -> str: ...


class AgencyNames(Protocol):
    def name_of(self, region: str, code: str) -> str: ...

    def guidance(self, region: str, category: str | None = None) -> str: ...


@dataclass(frozen=True)
class NotifyDeps:
    repo: NotificationRepository
    outbox: EventPublisher
    renderer: Renderer
    agencies: AgencyNames
    echo: bool = False
    clock: Callable[[], datetime] = lambda: datetime.now(UTC)


async def handle_received(event: ComplaintReceived, deps: NotifyDeps) -> None:
    await deps.repo.save_contact(
        event.complaint_id,
        {
            "region": event.region,
            "channel": event.channel.value,
            "sms": event.reply_to,
            "anonymous": event.anonymous,
            "confidential": event.confidential,
        },
    )


async def handle_deadlines(event: DeadlinesSet, deps: NotifyDeps) -> None:
    name = deps.agencies.name_of(event.region, event.agency) if event.agency else ""
    await _to_citizen(deps, domain.acknowledgement(event, name))


async def handle_routed(event: ComplaintRouted, deps: NotifyDeps) -> None:
    message = domain.out_of_scope_reply(event, deps.agencies.guidance(event.region, event.category))
    if message is not None:
        await _to_citizen(deps, message)


async def handle_rejected(event: InboundRejected, deps: NotifyDeps) -> None:
    if event.reply_to:
        await _send_sms(deps, domain.rejection_reply(event), event.reply_to)


async def handle_command_answered(event: CitizenCommandAnswered, deps: NotifyDeps) -> None:
    if not event.reply_to:
        return
    if event.agency and event.region:
        agency_name = deps.agencies.name_of(event.region, event.agency)
    else:
        agency_name = "Diskominfo (verifikasi)"
    await _send_sms(deps, domain.command_reply(event, agency_name), event.reply_to)


async def _to_citizen(deps: NotifyDeps, message: domain.CitizenMessage) -> None:
    assert message.complaint_id is not None
    contact = await deps.repo.contact(message.complaint_id)
    if contact is None:
        # The received event that carries the address is still on its way.
        raise NackMessage(delay=2.0)
    if contact.get("sms"):
        await _send_sms(deps, message, contact["sms"])


async def _send_sms(deps: NotifyDeps, message: domain.CitizenMessage, to: str) -> None:
    text = deps.renderer.render_sms(message.template, message.values, message.region)
    ntf_id = domain.notification_id(message.cause_event_id, to, message.template)
    now = deps.clock()
    record = await deps.repo.begin(
        {
            "_id": ntf_id,
            "complaint_id": message.complaint_id,
            "channel": "sms",
            "template": message.template,
            "cause_event_id": message.cause_event_id,
            "status": "pending",
            "attempts": 0,
            "created_at": now,
        }
    )
    if record is None:
        return  # already sent for this cause
    sms = OutboundSms(to=to, text=text, complaint_id=message.complaint_id, notification_id=ntf_id)
    await deps.outbox.publish(sms, msg_id=ntf_id)
    await deps.repo.mark_sent(ntf_id, deps.clock())
    if deps.echo:
        log.info(
            "SMS to %s: %s", mask_phones(to), text, extra={"complaint_id": message.complaint_id}
        )
