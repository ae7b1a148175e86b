"""Notify's message handlers: remember what each complaint needs, answer every event.

Handlers build the notifications an event calls for and hand them to the
`Deliverer`. When something they depend on has not arrived yet (the received
event with the reply address, the routing decision) they ask for the event
again a little later; on its last delivery they go ahead with what they
have, so that a notice fails visibly rather than disappearing.

A citizen hears by SMS, by e-mail, or both: whichever addresses the complaint
came with (an e-mail from the web, Open311 or a partner channel). Events carry
those addresses sealed to notify's public key; notify alone holds the private
key that opens them.
"""

import logging
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, date, datetime
from typing import Any, Protocol

from faststream.exceptions import NackMessage

from lapor.contracts import (
    CitizenCommandAnswered,
    ComplaintReceived,
    ComplaintRouted,
    ComplaintStateChanged,
    DeadlineAlert,
    DeadlinesSet,
    EscalationRaised,
    InboundRejected,
    SmsDeliveryReceipt,
)
from lapor.contracts.events import Event, contact_context
from lapor.directory import Contacts
from lapor.regions import DEFAULT_REOPEN_WINDOW
from lapor.runtime.broker import MAX_DELIVER
from lapor.runtime.pii import PiiOpener
from services.notify import domain
from services.notify.catalog import RenderedNotice
from services.notify.channels import OutgoingMessage
from services.notify.delivery import Deliverer, Notification
from services.notify.repository import Document, NotificationRepository
from services.notify.retry import RetryPolicy

log = logging.getLogger(__name__)

# The wait, by delivery, for an event that carries what a handler needs (the
# reply address, the routing). It usually lags by milliseconds (sla announces
# deadlines while notify is still storing the routing), so the first wait is
# short: a fixed 2 s put that on 1% of acknowledgements. 0.25, 0.5, 1, 2, then
# 4 s: about 16 s in all before the last delivery, as the fixed waits gave.
DEPENDENCY_WAIT = RetryPolicy(base_s=0.25, factor=2.0, max_delay_s=4.0, jitter=0.0)


class Renderer(Protocol):
    def render_sms(self, template: str, values: Mapping[str, Any], region: str | None) -> str: ...

    def render_email(
        self, template: str, values: Mapping[str, Any], region: str | None
    ) -> RenderedNotice: ...

    def render_official(
        self, template: str, values: Mapping[str, Any], region: str | None
    ) -> RenderedNotice: ...


class Agencies(Protocol):
    def name_of(self, region: str, code: str) -> str: ...

    def guidance(self, region: str, category: str | None = None) -> str: ...

    def contacts(self, region: str, code: str) -> Contacts: ...

    def category_label(self, region: str, code: str | None, category: str) -> str: ...


@dataclass(frozen=True)
class NotifyDeps:
    repo: NotificationRepository
    deliverer: Deliverer
    renderer: Renderer
    agencies: Agencies
    # Opens the reply addresses sealed into events (the private personal-data key).
    opener: PiiOpener
    admin_agency: str = "DISKOMINFO"
    clock: Callable[[], datetime] = lambda: datetime.now(UTC)
    # Per region: how long an answered or closed complaint may be reopened, in words.
    reopen_within: Mapping[str, str] = field(default_factory=dict)


def is_last_delivery(delivery: int) -> bool:
    return delivery >= MAX_DELIVER


def opened_contact(deps: NotifyDeps, event: Event, field: str) -> str | None:
    """A reply address sealed into `event` by intake, in clear; None when absent. A
    value that does not open (another key, another event) raises: the event is
    retried and, if the keys stay wrong, kept as a dead letter, never silently
    answered nowhere."""
    sealed = getattr(event, field)
    if not sealed:
        return None
    return deps.opener.open(sealed, contact_context(event.event_id, field))


# --- what notify remembers -----------------------------------------------------------


async def handle_received(event: ComplaintReceived, deps: NotifyDeps) -> None:
    await deps.repo.save_contact(
        event.complaint_id,
        {
            "region": event.region,
            "channel": event.channel.value,
            "sms": opened_contact(deps, event, "reply_to_sealed"),
            "email": opened_contact(deps, event, "reply_email_sealed"),
            "anonymous": event.anonymous,
            "confidential": event.confidential,
            # For the assignment notice to the agency; never the reporter's identity.
            "text": event.text,
            "received_at": event.received_at,
            "text_truncated": event.text_truncated,
        },
    )


async def handle_routed(event: ComplaintRouted, deps: NotifyDeps, delivery: int = 1) -> None:
    await deps.repo.save_routing(
        event.event_id,
        {
            "complaint_id": event.complaint_id,
            "agency": event.agency,
            "category": event.category,
            "confidence": event.confidence,
            "triage": event.triage,
        },
    )
    message = domain.out_of_scope_reply(event, deps.agencies.guidance(event.region, event.category))
    if message is not None:
        await _deliver(deps, await _citizen(deps, message, delivery), delivery)


# --- citizens ----------------------------------------------------------------------


async def handle_deadlines(event: DeadlinesSet, deps: NotifyDeps, delivery: int = 1) -> None:
    name = deps.agencies.name_of(event.region, event.agency) if event.agency else ""
    # Read once: the acknowledgement's wording and its address come from the same
    # record, also when the received event is stored between two reads.
    contact = await _contact(deps, event.complaint_id, delivery)
    ack = domain.acknowledgement(
        event,
        name,
        truncated=bool((contact or {}).get("text_truncated")),
        acknowledged_answer=(contact or {}).get("acknowledged_answer"),
    )
    notes = _citizen_notes_for(deps, ack, contact)
    if ack.template not in _LATER_DATES and event.deadlines.answer is not None:
        # Kept once: every later announcement is compared with what the citizen was told first.
        await deps.repo.note_acknowledged_answer(event.complaint_id, event.deadlines.answer)
    if domain.is_new_assignment(event):
        facts = await _facts(deps, event.complaint_id, event.cause_event_id, delivery)
        notice = domain.assignment_notice(event, name, facts)
        if notice is not None:
            notes += _officials(deps, notice, facts)
    await _deliver(deps, notes, delivery)


# Announcements of a date after the first acknowledgement: never the date first told.
_LATER_DATES = frozenset({"deadline_extended", "reopen_deadline"})


async def handle_state_changed(
    event: ComplaintStateChanged, deps: NotifyDeps, delivery: int = 1
) -> None:
    name = deps.agencies.name_of(event.region, event.agency) if event.agency else "Diskominfo"
    within = deps.reopen_within.get(event.region) or domain.reopen_phrase(*DEFAULT_REOPEN_WINDOW)
    message = domain.lifecycle_message(event, name, within)
    notes = await _citizen(deps, message, delivery) if message is not None else []
    notes += await _citizen_action(deps, event, delivery)
    await _deliver(deps, notes, delivery)


async def _citizen_action(
    deps: NotifyDeps, event: ComplaintStateChanged, delivery: int
) -> list[Notification]:
    """The holding agency's notice that the citizen acted (`domain.citizen_action_notice`)."""
    if event.action not in domain.CITIZEN_ACTION_LABELS:
        return []
    agency = domain.responsible_agency(event.agency, deps.admin_agency)
    name = deps.agencies.name_of(event.region, agency)
    facts = await _facts(deps, event.complaint_id, None, delivery)
    notice = domain.citizen_action_notice(event, name, facts, deps.admin_agency)
    return _officials(deps, notice, facts) if notice is not None else []


async def handle_rejected(event: InboundRejected, deps: NotifyDeps, delivery: int = 1) -> None:
    if (reply_to := opened_contact(deps, event, "reply_to_sealed")) is not None:
        note = _sms(deps, domain.rejection_reply(event), reply_to)
        await _deliver(deps, [note], delivery)


async def handle_command_answered(
    event: CitizenCommandAnswered, deps: NotifyDeps, delivery: int = 1
) -> None:
    if (reply_to := opened_contact(deps, event, "reply_to_sealed")) is None:
        return
    if event.agency and event.region:
        agency_name = deps.agencies.name_of(event.region, event.agency)
    else:
        agency_name = "Diskominfo (verifikasi)"
    note = _sms(deps, domain.command_reply(event, agency_name), reply_to)
    await _deliver(deps, [note], delivery)


async def _citizen(
    deps: NotifyDeps, message: domain.CitizenMessage, delivery: int
) -> list[Notification]:
    assert message.complaint_id is not None
    return _citizen_notes_for(deps, message, await _contact(deps, message.complaint_id, delivery))


async def _contact(deps: NotifyDeps, complaint_id: str, delivery: int) -> Document | None:
    """The complaint's contact; waits (redelivery) while the received event that
    carries it is still on its way, None on the last delivery."""
    contact = await deps.repo.contact(complaint_id)
    if contact is None and not is_last_delivery(delivery):
        raise NackMessage(delay=DEPENDENCY_WAIT.delay_after(delivery))
    return contact


def _citizen_notes_for(
    deps: NotifyDeps, message: domain.CitizenMessage, contact: Document | None
) -> list[Notification]:
    if contact is None:
        return [_unreachable_citizen(deps, message)]
    return citizen_notes(deps, message, sms=contact.get("sms"), email=contact.get("email"))


def citizen_notes(
    deps: NotifyDeps, message: domain.CitizenMessage, *, sms: str | None, email: str | None
) -> list[Notification]:
    """The citizen's message by SMS and by e-mail, to whichever addresses they gave.

    Confidential and anonymous complaints included: the reporter is the one
    person who may always hear about their own complaint.
    """
    notes = [_sms(deps, message, sms)] if sms else []
    if email:
        notes.append(_email(deps, message, email))
    return notes


def _sms(deps: NotifyDeps, message: domain.CitizenMessage, to: str) -> Notification:
    text = deps.renderer.render_sms(message.template, message.values, message.region)
    outgoing = OutgoingMessage(
        notification_id=domain.notification_id(message.cause_event_id, to, message.template),
        kind="sms",
        to=to,
        text=text,
        complaint_id=message.complaint_id,
        template=message.template,
    )
    return Notification(outgoing, "citizen", message.cause_event_id, region=message.region)


def _email(deps: NotifyDeps, message: domain.CitizenMessage, to: str) -> Notification:
    rendered = deps.renderer.render_email(message.template, message.values, message.region)
    outgoing = OutgoingMessage(
        notification_id=domain.notification_id(message.cause_event_id, to, message.template),
        kind="email",
        to=to,
        text=rendered.body,
        subject=rendered.subject,
        complaint_id=message.complaint_id,
        template=message.template,
        personal=True,
    )
    return Notification(outgoing, "citizen", message.cause_event_id)


def _unreachable_citizen(deps: NotifyDeps, message: domain.CitizenMessage) -> Notification:
    outgoing = OutgoingMessage(
        notification_id=domain.notification_id(message.cause_event_id, "?", message.template),
        kind="sms",
        to="-",
        text="",
        complaint_id=message.complaint_id,
        template=message.template,
    )
    reason = "reply address unknown: the complaint's received event never reached notify"
    return Notification(outgoing, "citizen", message.cause_event_id, undeliverable=reason)


# --- officials -----------------------------------------------------------------------


async def handle_alert(event: DeadlineAlert, deps: NotifyDeps, delivery: int = 1) -> None:
    agency = domain.responsible_agency(event.agency, deps.admin_agency)
    name = deps.agencies.name_of(event.region, agency)
    notice = domain.alert_notice(event, name, deps.admin_agency)
    facts = await _facts(deps, event.complaint_id, None, delivery)
    await _deliver(deps, _officials(deps, notice, facts), delivery)


async def handle_escalation(event: EscalationRaised, deps: NotifyDeps, delivery: int = 1) -> None:
    agency = domain.responsible_agency(event.agency, deps.admin_agency)
    name = deps.agencies.name_of(event.region, agency)
    notice = domain.escalation_notice(event, name, deps.admin_agency)
    facts = await _facts(deps, event.complaint_id, None, delivery)
    await _deliver(deps, _officials(deps, notice, facts), delivery)


async def _facts(
    deps: NotifyDeps, complaint_id: str, routed_event_id: str | None, delivery: int
) -> domain.ComplaintFacts:
    contact = await deps.repo.contact(complaint_id)
    routing = await deps.repo.routing(routed_event_id) if routed_event_id else {}
    if contact is None or routing is None:
        if not is_last_delivery(delivery):
            raise NackMessage(delay=DEPENDENCY_WAIT.delay_after(delivery))
        log.error(
            "complaint facts incomplete on the last delivery; treating it as confidential",
            extra={"complaint_id": complaint_id},
        )
    # Unknown flags are read the strict way: nothing leaves the agency circle.
    contact = contact or {"confidential": True}
    routing = routing or {}
    category = routing.get("category")
    return domain.ComplaintFacts(
        text=contact.get("text", ""),
        anonymous=bool(contact.get("anonymous", False)),
        confidential=bool(contact.get("confidential", False)),
        category_label=(
            deps.agencies.category_label(contact.get("region", ""), routing.get("agency"), category)
            if category
            else "-"
        ),
        routing_note=(
            domain.routing_note(routing["confidence"], routing.get("triage", False))
            if "confidence" in routing
            else None
        ),
    )


def _officials(
    deps: NotifyDeps, notice: domain.OfficialNotice, facts: domain.ComplaintFacts
) -> list[Notification]:
    contacts = deps.agencies.contacts(notice.region, notice.agency)
    rendered = deps.renderer.render_official(notice.template, notice.values, notice.region)
    data = {key: _plain(value) for key, value in notice.values.items()}
    notes = [
        Notification(
            OutgoingMessage(
                notification_id=domain.notification_id(
                    notice.cause_event_id, recipient.key, notice.template
                ),
                kind=recipient.kind,
                to=recipient.address,
                text=rendered.body,
                subject=rendered.subject,
                complaint_id=notice.complaint_id,
                template=notice.template,
                agency=notice.agency,
                recipient_name=recipient.name,
                data={**data, "level": recipient.level, "region": notice.region},
            ),
            "official",
            notice.cause_event_id,
            level=recipient.level,
            withheld=domain.withheld_reason(recipient.level, facts.confidential),
        )
        for recipient in domain.recipients(contacts, notice.levels, notice.agency)
    ]
    for level in domain.unreachable_levels(contacts, notice.levels):
        notes.append(_unreachable_official(notice, level, facts))
    return notes


def _unreachable_official(
    notice: domain.OfficialNotice, level: Any, facts: domain.ComplaintFacts
) -> Notification:
    key = f"level:{notice.agency}:{level}"
    outgoing = OutgoingMessage(
        notification_id=domain.notification_id(notice.cause_event_id, key, notice.template),
        kind="email",
        to=f"{level} of {notice.agency}",
        text="",
        complaint_id=notice.complaint_id,
        template=notice.template,
        agency=notice.agency,
    )
    return Notification(
        outgoing,
        "official",
        notice.cause_event_id,
        level=level,
        undeliverable=f"no e-mail or webhook for {level} of {notice.agency} in the directory",
        withheld=domain.withheld_reason(level, facts.confidential),
    )


def _plain(value: Any) -> Any:
    return value.isoformat() if isinstance(value, date) else value


async def _deliver(deps: NotifyDeps, notes: list[Notification], delivery: int) -> None:
    if not notes:
        return
    retry_in = await deps.deliverer.deliver_all(notes, last_chance=is_last_delivery(delivery))
    if retry_in is not None:
        raise NackMessage(delay=retry_in)


# --- delivery receipts ---------------------------------------------------------------


async def handle_receipt(receipt: SmsDeliveryReceipt, deps: NotifyDeps) -> None:
    record = await deps.repo.get(receipt.notification_id)
    if record is None:
        # A receipt for something we never sent is the connector's problem, not a reason
        # to retry forever; keep a trace for whoever investigates.
        log.warning(
            "delivery receipt for unknown notification %s",
            receipt.notification_id,
            extra={"notification_id": receipt.notification_id},
        )
        return
    if receipt.status == "delivered":
        await deps.deliverer.mark_delivered(record, receipt.at)
    elif receipt.status == "expired":
        await deps.deliverer.fail_by_receipt(
            record, receipt.error or "expired at the SMSC", reason="expired"
        )
    else:
        await deps.deliverer.fail_by_receipt(record, receipt.error or "gateway reported failure")
