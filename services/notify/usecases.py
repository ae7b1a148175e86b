"""Notify's use cases: remember what each complaint needs, answer every event.

Each use case builds the notifications an event calls for and hands them to
the delivery. When something it depends on has not arrived yet (the received
event with the reply address, the routing decision) it raises `NotYetKnown`,
and the entry point asks for the event again a little later; on the last
chance it goes ahead with what it has, so that a notice fails visibly rather
than disappearing. A delivery that must be retried later raises `RetryLater`.

A citizen hears by SMS, by e-mail, or both: whichever addresses the complaint
came with (an e-mail from the web, Open311 or a partner channel). Events carry
those addresses sealed to notify's public key; notify alone holds the private
key that opens them. Each use case reads the complaint's contact at most once.
"""

import logging
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from typing import Protocol

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
    State,
    routed_event_id,
)
from lapor.contracts.events import Event, contact_context
from lapor.directory import Contacts
from lapor.regions import DEFAULT_REOPEN_WINDOW
from lapor.runtime.pii import PiiOpener
from services.notify import domain
from services.notify.delivery import Notification
from services.notify.outgoing import (
    Renderer,
    citizen_notes,
    citizen_sms,
    official_notes,
    unreachable_citizen,
)
from services.notify.repository import Document, NotifyRecords

log = logging.getLogger(__name__)


class NotYetKnown(Exception):
    """An event this one depends on (received, routed) has not been stored yet."""


class RetryLater(Exception):
    """Some notifications could not go out yet; the event must come back after `delay_s`."""

    def __init__(self, delay_s: float) -> None:
        super().__init__(f"retry in {delay_s:.1f} s")
        self.delay_s = delay_s


class Delivery(Protocol):
    async def deliver_all(
        self, notifications: Sequence[Notification], *, last_chance: bool = False
    ) -> float | None: ...

    async def mark_delivered(self, notification_id: str, at: datetime) -> bool: ...

    async def fail_by_receipt(
        self, record: Document, error: str, reason: str = "receipt"
    ) -> None: ...


class Agencies(Protocol):
    def name_of(self, region: str, code: str) -> str: ...

    def guidance(self, region: str, category: str | None = None) -> str: ...

    def contacts(self, region: str, code: str) -> Contacts: ...

    def category_label(self, region: str, code: str | None, category: str) -> str: ...


@dataclass(frozen=True)
class NotifyDeps:
    repo: NotifyRecords
    deliverer: Delivery
    renderer: Renderer
    agencies: Agencies
    # Opens the reply addresses sealed into events (the private personal-data key).
    opener: PiiOpener
    admin_agency: str = "DISKOMINFO"
    clock: Callable[[], datetime] = lambda: datetime.now(UTC)
    # Per region: how long an answered or closed complaint may be reopened, in words.
    reopen_within: Mapping[str, str] = field(default_factory=dict)


# Announcements of a date after the first acknowledgement: never the date first told.
_LATER_DATES = frozenset({"deadline_extended", "reopen_deadline"})


# --- what notify remembers -----------------------------------------------------------


async def remember_contact(event: ComplaintReceived, deps: NotifyDeps) -> None:
    await deps.repo.save_contact(
        event.complaint_id,
        {
            "region": event.region,
            "channel": event.channel.value,
            "sms": _opened(deps, event, "reply_to_sealed"),
            "email": _opened(deps, event, "reply_email_sealed"),
            "anonymous": event.anonymous,
            "confidential": event.confidential,
            # For the assignment notice to the agency; never the reporter's identity.
            "text": event.text,
            "received_at": event.received_at,
            "text_truncated": event.text_truncated,
        },
    )


async def remember_routing(
    event: ComplaintRouted, deps: NotifyDeps, *, last_chance: bool = False
) -> None:
    """Guide the citizen when out of scope. What the agency's notice says of the
    routing comes with the deadlines it set (`DeadlinesSet.category`), not from here."""
    message = domain.out_of_scope_reply(event, deps.agencies.guidance(event.region, event.category))
    if message is not None:
        contact = await _contact(deps, event.complaint_id, last_chance)
        await _deliver(deps, _to_citizen(deps, message, contact), last_chance)


# --- citizens ----------------------------------------------------------------------


async def acknowledge_and_assign(
    event: DeadlinesSet, deps: NotifyDeps, *, last_chance: bool = False
) -> None:
    """Tell the citizen the deadlines (first, or a later date); a new assignment also
    goes to the agency's officials."""
    name = deps.agencies.name_of(event.region, event.agency) if event.agency else ""
    # Read once: the acknowledgement's wording, its address and the agency's notice
    # come from the same record, also when the received event is stored meanwhile.
    contact = await _contact(deps, event.complaint_id, last_chance)
    ack = domain.acknowledgement(
        event,
        name,
        truncated=bool((contact or {}).get("text_truncated")),
        acknowledged_answer=await _acknowledged_answer(deps, event),
    )
    # Every later announcement is compared with what the citizen was told first: an
    # acknowledgement keeps the date it tells with its record (the first one counts).
    told = None if ack.template in _LATER_DATES else event.deadlines.answer
    notes = [replace(note, acknowledges=told) for note in _to_citizen(deps, ack, contact)]
    if domain.is_new_assignment(event):
        facts = await _facts(
            deps, event.complaint_id, contact, event.cause_event_id, last_chance, _routing(event)
        )
        notice = domain.assignment_notice(event, name, facts)
        if notice is not None:
            notes += _to_officials(deps, notice, facts)
    await _deliver(deps, notes, last_chance)


async def tell_state_change(
    event: ComplaintStateChanged, deps: NotifyDeps, *, last_chance: bool = False
) -> None:
    """The citizen hears a question, an answer or a closing; the holding agency hears
    that the citizen acted (replied, reopened, withdrew)."""
    name = deps.agencies.name_of(event.region, event.agency) if event.agency else "Diskominfo"
    within = deps.reopen_within.get(event.region) or domain.reopen_phrase(*DEFAULT_REOPEN_WINDOW)
    message = domain.lifecycle_message(event, name, within)
    citizen_acted = event.action in domain.CITIZEN_ACTION_LABELS
    if message is None and not citizen_acted:
        return
    contact = await _contact(deps, event.complaint_id, last_chance)
    notes = _to_citizen(deps, message, contact) if message is not None else []
    if citizen_acted:
        agency = domain.responsible_agency(event.agency, deps.admin_agency)
        facts = await _facts(deps, event.complaint_id, contact, None, last_chance)
        notice = domain.citizen_action_notice(
            event, deps.agencies.name_of(event.region, agency), facts, deps.admin_agency
        )
        if notice is not None:
            notes += _to_officials(deps, notice, facts)
    await _deliver(deps, notes, last_chance)


async def explain_rejection(
    event: InboundRejected, deps: NotifyDeps, *, last_chance: bool = False
) -> None:
    if (reply_to := _opened(deps, event, "reply_to_sealed")) is not None:
        note = citizen_sms(deps.renderer, domain.rejection_reply(event), reply_to)
        await _deliver(deps, [note], last_chance)


async def answer_command(
    event: CitizenCommandAnswered, deps: NotifyDeps, *, last_chance: bool = False
) -> None:
    """The answer to a citizen's SMS command (status, reply, rating, withdrawal)."""
    if (reply_to := _opened(deps, event, "reply_to_sealed")) is None:
        return
    if event.agency and event.region:
        agency_name = deps.agencies.name_of(event.region, event.agency)
    else:
        agency_name = "Diskominfo (verifikasi)"
    note = citizen_sms(deps.renderer, domain.command_reply(event, agency_name), reply_to)
    await _deliver(deps, [note], last_chance)


# --- officials -----------------------------------------------------------------------


async def warn_officials(
    event: DeadlineAlert, deps: NotifyDeps, *, last_chance: bool = False
) -> None:
    agency = domain.responsible_agency(event.agency, deps.admin_agency)
    name = deps.agencies.name_of(event.region, agency)
    notice = domain.alert_notice(event, name, deps.admin_agency)
    await _notify_officials(deps, notice, event.complaint_id, last_chance)


async def escalate(event: EscalationRaised, deps: NotifyDeps, *, last_chance: bool = False) -> None:
    agency = domain.responsible_agency(event.agency, deps.admin_agency)
    name = deps.agencies.name_of(event.region, agency)
    notice = domain.escalation_notice(event, name, deps.admin_agency)
    await _notify_officials(deps, notice, event.complaint_id, last_chance)


async def _notify_officials(
    deps: NotifyDeps, notice: domain.OfficialNotice, complaint_id: str, last_chance: bool
) -> None:
    contact = await _contact(deps, complaint_id, last_chance)
    facts = await _facts(deps, complaint_id, contact, None, last_chance)
    await _deliver(deps, _to_officials(deps, notice, facts), last_chance)


# --- delivery receipts ---------------------------------------------------------------


async def record_receipt(receipt: SmsDeliveryReceipt, deps: NotifyDeps) -> None:
    if receipt.status == "delivered" and await deps.deliverer.mark_delivered(
        receipt.notification_id, receipt.at
    ):
        return  # the usual receipt: one conditional write, nothing read
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
        return  # already delivered or final: a receipt never downgrades
    if receipt.status == "expired":
        await deps.deliverer.fail_by_receipt(
            record, receipt.error or "expired at the SMSC", reason="expired"
        )
    else:
        await deps.deliverer.fail_by_receipt(record, receipt.error or "gateway reported failure")


async def _acknowledged_answer(deps: NotifyDeps, event: DeadlinesSet) -> datetime | None:
    """The answer date the citizen was first told, where the acknowledgement depends
    on it: not for the first routing's own deadlines, which nothing told before."""
    first = f"deadlines:{routed_event_id(event.complaint_id, 0)}"
    if event.event_id == first or not domain.could_acknowledge(event):
        return None
    return await deps.repo.first_acknowledged(event.complaint_id)


# --- shared steps ------------------------------------------------------------------


def _opened(deps: NotifyDeps, event: Event, field: str) -> str | None:
    """A reply address sealed into `event` by intake, in clear; None when absent. A
    value that does not open (another key, another event) raises: the event is
    retried and, if the keys stay wrong, kept as a dead letter, never silently
    answered nowhere."""
    sealed = getattr(event, field)
    if not sealed:
        return None
    return deps.opener.open(sealed, contact_context(event.event_id, field))


async def _contact(deps: NotifyDeps, complaint_id: str, last_chance: bool) -> Document | None:
    """The complaint's contact; not yet known while the received event that carries
    it is still on its way, None on the last chance."""
    contact = await deps.repo.contact(complaint_id)
    if contact is None and not last_chance:
        raise NotYetKnown(f"no contact for {complaint_id} yet")
    return contact


def _routing(event: DeadlinesSet) -> Document | None:
    """The routing decision the deadlines came from, as they carry it (None: from an
    SLA that did not pass it on; then the routing notify kept before is read)."""
    if event.category is None:
        return None
    routing: Document = {
        "agency": event.agency,
        "category": event.category,
        "triage": event.state is State.TRIAGE,
    }
    if event.routing_confidence is not None:
        routing["confidence"] = event.routing_confidence
    return routing


async def _facts(
    deps: NotifyDeps,
    complaint_id: str,
    contact: Document | None,
    routed_event_id: str | None,
    last_chance: bool,
    routing: Document | None = None,
) -> domain.ComplaintFacts:
    """What officials may learn of the complaint, from its contact and its routing."""
    if routing is None:
        routing = await deps.repo.routing(routed_event_id, contact) if routed_event_id else {}
    if contact is None or routing is None:
        if not last_chance:
            raise NotYetKnown(f"no routing {routed_event_id} for {complaint_id} yet")
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


def _to_citizen(
    deps: NotifyDeps, message: domain.CitizenMessage, contact: Document | None
) -> list[Notification]:
    if contact is None:
        return [unreachable_citizen(message)]
    return citizen_notes(deps.renderer, message, sms=contact.get("sms"), email=contact.get("email"))


def _to_officials(
    deps: NotifyDeps, notice: domain.OfficialNotice, facts: domain.ComplaintFacts
) -> list[Notification]:
    contacts = deps.agencies.contacts(notice.region, notice.agency)
    return official_notes(deps.renderer, contacts, notice, facts)


async def _deliver(deps: NotifyDeps, notes: list[Notification], last_chance: bool) -> None:
    if not notes:
        return
    retry_in = await deps.deliverer.deliver_all(notes, last_chance=last_chance)
    if retry_in is not None:
        raise RetryLater(retry_in)
