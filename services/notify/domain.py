"""Pure decisions of notify: who hears what, under which stable notification id."""

import hashlib
import re
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any, Literal

from lapor.contracts import (
    AGENCY_OUT_OF_SCOPE,
    CitizenCommandAnswered,
    ComplaintRouted,
    ComplaintStateChanged,
    DeadlineAlert,
    DeadlinesSet,
    EscalationLevel,
    EscalationRaised,
    InboundRejected,
    Priority,
    RejectionReason,
    State,
)
from lapor.directory import Contacts
from services.notify.labels import (
    clock_label,
    escalation_label,
    outcome_label,
    priority_label,
    state_label,
)


def notification_id(cause_event_id: str, recipient: str, template: str) -> str:
    """Same cause, recipient and template → same id, so a redelivery never sends twice."""
    digest = hashlib.sha256(f"{cause_event_id}|{recipient}|{template}".encode()).hexdigest()
    return f"ntf-{digest[:24]}"


@dataclass(frozen=True)
class CitizenMessage:
    template: str
    values: dict[str, Any]
    cause_event_id: str
    complaint_id: str | None
    region: str | None


# SLA announces deadlines with these states after a routing decision; any other
# state means the announcement is the end of a wait for the citizen (a reply, a
# forward, or the reply window lapsing in needs_info), which moved the answer date.
_ROUTING_STATES = frozenset({State.ASSIGNED, State.TRIAGE})


def could_acknowledge(event: DeadlinesSet) -> bool:
    """Whether the event's message depends on the answer date first told: a routing's
    deadlines with an answer date (not a reopening, not the end of a wait)."""
    return (
        not event.reopened and event.state in _ROUTING_STATES and event.deadlines.answer is not None
    )


def answer_moved(event: DeadlinesSet, acknowledged_answer: datetime | None) -> bool:
    """True when `event` tells a new answer date rather than acknowledging the complaint:
    it ends a wait for the citizen, or its date differs from the one the first
    acknowledgement gave (`acknowledged_answer`, None before that)."""
    if event.state not in _ROUTING_STATES:
        return True
    answer = event.deadlines.answer
    if acknowledged_answer is None or answer is None:
        return False
    told = acknowledged_answer
    if told.tzinfo is None:  # read back without zone information: stored as UTC
        told = told.replace(tzinfo=UTC)
    # The database keeps milliseconds: a difference below that is the same date.
    return abs(answer - told) >= timedelta(milliseconds=1)


def acknowledgement(
    event: DeadlinesSet,
    agency_name: str,
    *,
    truncated: bool = False,
    acknowledged_answer: datetime | None = None,
) -> CitizenMessage:
    if event.reopened:
        # The citizen reopened it: the agency owes a new answer, by a new date.
        again = {
            "tracking_id": event.complaint_id,
            "agency_name": agency_name or "Diskominfo",
            "answer_date": event.deadlines.answer,
        }
        return CitizenMessage(
            "reopen_deadline", again, event.event_id, event.complaint_id, event.region
        )
    if answer_moved(event, acknowledged_answer):
        extended = {
            "tracking_id": event.complaint_id,
            "agency_name": agency_name or "Diskominfo",
            "answer_date": event.deadlines.answer,
        }
        return CitizenMessage(
            "deadline_extended", extended, event.event_id, event.complaint_id, event.region
        )
    template = "ack_triage" if event.agency is None else "ack"
    # An over-long SMS was cut: the citizen learns that only its beginning counts.
    template += "_truncated" if truncated else ""
    values: dict[str, Any] = {
        "tracking_id": event.complaint_id,
        "answer_date": event.deadlines.answer,
    }
    if event.agency is not None:
        values["agency_name"] = agency_name
    return CitizenMessage(template, values, event.event_id, event.complaint_id, event.region)


def out_of_scope_reply(event: ComplaintRouted, guidance: str) -> CitizenMessage | None:
    if event.agency != AGENCY_OUT_OF_SCOPE or event.triage:
        return None
    return CitizenMessage(
        "out_of_scope",
        {"tracking_id": event.complaint_id, "guidance": guidance},
        event.event_id,
        event.complaint_id,
        event.region,
    )


# Reasons without a text of their own get the general explanation of the format.
_REJECTION_TEMPLATES = {
    RejectionReason.UNKNOWN_REGION: "reject_unknown_region",
    RejectionReason.TOO_SHORT: "reject_too_short",
    RejectionReason.RATE_LIMITED: "reject_rate_limited",
    RejectionReason.BAD_TRACKING_ID: "reject_bad_tracking_id",
    RejectionReason.BAD_RATING: "reject_bad_rating",
    RejectionReason.EMPTY: "reject_empty",
}


def rejection_reply(event: InboundRejected) -> CitizenMessage:
    # A resent text is linked to the complaint it repeats: tell the citizen which one.
    duplicate_of = getattr(event, "complaint_id", None)
    if event.reason == "duplicate" and duplicate_of:
        values = {"tracking_id": duplicate_of}
        return CitizenMessage("ack_duplicate", values, event.event_id, duplicate_of, event.region)
    template = _REJECTION_TEMPLATES.get(event.reason, "reject_malformed")
    return CitizenMessage(template, {}, event.event_id, None, event.region)


def command_reply(event: CitizenCommandAnswered, agency_name: str) -> CitizenMessage:
    """The answer to CEK, BALAS, NILAI, BUKA or BATAL; an unknown or foreign id reveals
    nothing."""
    values: dict[str, Any] = {"tracking_id": event.tracking_id}
    if not event.found:
        template = "status_not_found"
    elif event.command == "status":
        template = "status"
        values |= {
            "state_label": state_label(event.state or "received"),
            "agency_name": agency_name,
            "answer_date": event.answer_due or "-",
        }
    elif event.command == "reply":
        template = "reply_received"
    elif event.command == "reopen" and event.refused is None:
        template = "reopened"
        values["agency_name"] = agency_name
    elif event.command == "reopen":
        template = "reopen_refused"
        values["state_label"] = state_label(event.state or "received")
    elif event.command == "withdraw" and event.refused is None:
        template = "withdrawn"
    elif event.command == "withdraw":
        template = "withdraw_refused"
        values["state_label"] = state_label(event.state or "received")
    elif event.command == "rating" and event.refused is not None:
        template = "rating_refused"
        values["state_label"] = state_label(event.state or "received")
    else:
        template = "rating_received"
        values["score"] = str(event.score)
    return CitizenMessage(template, values, event.event_id, None, event.region)


# --- officials -----------------------------------------------------------------

# Who hears what, by escalation level of the agency's contacts. Urgent cases go
# to the head at once: a hospital refusing a patient cannot wait for a liaison.
ASSIGNMENT_LEVELS: tuple[EscalationLevel, ...] = (EscalationLevel.LIAISON,)
URGENT_ASSIGNMENT_LEVELS = (EscalationLevel.LIAISON, EscalationLevel.HEAD)
ALERT_LEVELS: tuple[EscalationLevel, ...] = (EscalationLevel.LIAISON,)

# Confidential complaints stay with the agency and the regency's administration.
_INSIDE_CIRCLE = frozenset({EscalationLevel.LIAISON, EscalationLevel.HEAD, EscalationLevel.SEKDA})


@dataclass(frozen=True)
class ComplaintFacts:
    """What notify remembers of a complaint from its received and routed events."""

    text: str = ""
    anonymous: bool = False
    confidential: bool = False
    category_label: str = "-"
    routing_note: str | None = None


@dataclass(frozen=True)
class OfficialNotice:
    template: str
    values: dict[str, Any]
    cause_event_id: str
    complaint_id: str
    region: str
    agency: str  # whose directory entry lists the recipients
    levels: tuple[EscalationLevel, ...] = ASSIGNMENT_LEVELS


@dataclass(frozen=True)
class Recipient:
    kind: Literal["email", "webhook"]
    address: str
    agency: str
    level: EscalationLevel
    name: str | None = None

    @property
    def key(self) -> str:
        """Part of the notification id: the same address at two levels is one recipient."""
        return f"{self.kind}:{self.address.lower()}"


def assignment_template(priority: Priority) -> str:
    return "official_assignment_urgent" if priority is Priority.URGENT else "official_assignment"


def is_new_assignment(event: DeadlinesSet) -> bool:
    return (
        event.state is State.ASSIGNED
        and event.agency is not None
        and event.agency != AGENCY_OUT_OF_SCOPE
    )


# Indonesian mobile numbers as people type them: 0812…, 62812…, +62 812-3456-7890.
_TYPED_MOBILE = re.compile(r"(?<![\w+])(?:\+?62|0)[\s.\-]?8(?:[\s.\-]?\d){7,12}(?!\d)")


def shareable_text(facts: ComplaintFacts) -> str:
    """The complaint as agencies may read it: an anonymous reporter's number is masked
    even when typed into the text itself."""
    text = " ".join(facts.text.split()) or "-"
    if not facts.anonymous:
        return text
    return _TYPED_MOBILE.sub("[nomor disembunyikan]", text)


def assignment_notice(
    event: DeadlinesSet, agency_name: str, facts: ComplaintFacts
) -> OfficialNotice | None:
    if not is_new_assignment(event):
        return None
    assert event.agency is not None
    values: dict[str, Any] = {
        "tracking_id": event.complaint_id,
        "agency_name": agency_name,
        "category": facts.category_label,
        "priority_label": priority_label(event.priority),
        "received_at": event.received_at,
        "first_response_date": event.deadlines.first_response or "-",
        "answer_date": event.deadlines.answer or "-",
        "complaint_text": shareable_text(facts),
    }
    if facts.routing_note:
        values["routing_note"] = facts.routing_note
    urgent = event.priority is Priority.URGENT
    return OfficialNotice(
        template=assignment_template(event.priority),
        values=values,
        cause_event_id=event.event_id,
        complaint_id=event.complaint_id,
        region=event.region,
        agency=event.agency,
        levels=URGENT_ASSIGNMENT_LEVELS if urgent else ASSIGNMENT_LEVELS,
    )


def responsible_agency(agency: str | None, admin_agency: str) -> str:
    """Before an agency owns a complaint its clock (routing) is the administrator's."""
    return agency if agency and agency != AGENCY_OUT_OF_SCOPE else admin_agency


def alert_template(event: DeadlineAlert) -> str:
    return "official_breach" if event.kind == "breach" else "official_warning"


def alert_notice(event: DeadlineAlert, agency_name: str, admin_agency: str) -> OfficialNotice:
    values: dict[str, Any] = {
        "tracking_id": event.complaint_id,
        "agency_name": agency_name,
        "clock_label": clock_label(event.clock.value),
        "due_date": event.due_at,
    }
    if event.kind == "warning":
        values["percent"] = str(event.percent)
    if event.official:
        values["official"] = event.official
    return OfficialNotice(
        template=alert_template(event),
        values=values,
        cause_event_id=event.event_id,
        complaint_id=event.complaint_id,
        region=event.region,
        agency=responsible_agency(event.agency, admin_agency),
        levels=ALERT_LEVELS,
    )


def escalation_notice(
    event: EscalationRaised, agency_name: str, admin_agency: str
) -> OfficialNotice:
    values: dict[str, Any] = {
        "tracking_id": event.complaint_id,
        "agency_name": agency_name,
        "clock_label": clock_label(event.clock.value),
        "due_date": event.due_at,
        "level_label": escalation_label(event.level.value),
    }
    if event.official:
        values["official"] = event.official
    return OfficialNotice(
        template="official_escalation",
        values=values,
        cause_event_id=event.event_id,
        complaint_id=event.complaint_id,
        region=event.region,
        agency=responsible_agency(event.agency, admin_agency),
        levels=(event.level,),
    )


# What the holding agency is told when the citizen acts on the complaint.
CITIZEN_ACTION_LABELS = {
    "reply": "menjawab pertanyaan instansi",
    "reopen": "membuka kembali laporan",
    "withdraw": "mencabut laporan",
}


def citizen_action_notice(
    event: ComplaintStateChanged, agency_name: str, facts: ComplaintFacts, admin_agency: str
) -> OfficialNotice | None:
    """The holding agency (Diskominfo before routing) hears that the citizen answered its
    question, reopened or withdrew: its liaison's address, naming the officer who holds it.

    A reply is announced only when it answers a question (the state changes); a note
    outside the rules waits in the history.
    """
    label = CITIZEN_ACTION_LABELS.get(event.action or "")
    if label is None:
        return None
    values: dict[str, Any] = {
        "tracking_id": event.complaint_id,
        "agency_name": agency_name,
        "action_label": label,
    }
    if event.message:
        values["citizen_text"] = shareable_text(
            ComplaintFacts(text=event.message, anonymous=facts.anonymous)
        )
    if event.officer:
        values["official"] = event.officer
    return OfficialNotice(
        template="official_citizen_action",
        values=values,
        cause_event_id=event.event_id,
        complaint_id=event.complaint_id,
        region=event.region,
        agency=responsible_agency(event.agency, admin_agency),
        levels=ALERT_LEVELS,
    )


def recipients(
    contacts: Contacts, levels: Sequence[EscalationLevel], agency: str
) -> list[Recipient]:
    """Every e-mail address and webhook of the contacts at `levels`, each once."""
    found: dict[str, Recipient] = {}
    for level in levels:
        for contact in contacts.at(level):
            if contact.email:
                email = Recipient("email", contact.email, agency, level, contact.name)
                found.setdefault(email.key, email)
            if contact.webhook:
                hook = Recipient("webhook", contact.webhook, agency, level, contact.name)
                found.setdefault(hook.key, hook)
    return list(found.values())


def unreachable_levels(
    contacts: Contacts, levels: Sequence[EscalationLevel]
) -> list[EscalationLevel]:
    """Levels with nobody reachable by e-mail or webhook (a phone alone does not do)."""
    return [level for level in levels if not any(c.email or c.webhook for c in contacts.at(level))]


def withheld_reason(level: EscalationLevel, confidential: bool) -> str | None:
    if confidential and level not in _INSIDE_CIRCLE:
        return f"confidential complaint: not sent to {level}, outside the agency/admin circle"
    return None


def routing_note(confidence: float, triage: bool) -> str:
    if triage:
        return "diverifikasi oleh admin Diskominfo"
    return f"disposisi otomatis, tingkat keyakinan {round(confidence * 100)}%"


_WINDOW_UNITS = {
    "working_days": "hari kerja",
    "calendar_days": "hari",
    "clock_hours": "jam",
    "clock_minutes": "menit",
}


def reopen_phrase(unit: str, amount: int) -> str:
    """How long the citizen may still reopen, as the answer and closing SMS say it.

    The exact date is counted by SLA from the very state change this SMS reports,
    after it is sent; the length of the window is known now and does not mislead.
    """
    return f"{amount} {_WINDOW_UNITS.get(unit, unit)} sejak pesan ini"


# Out of scope has its own message (from the routing decision); a withdrawal was the
# citizen's own act, confirmed by the answer to BATAL or on the citizen link.
_NO_CLOSING_SMS = frozenset({"out_of_scope", "withdrawn"})


def lifecycle_message(
    event: ComplaintStateChanged, agency_name: str, reopen_within: str
) -> CitizenMessage | None:
    """What the citizen hears when an agency asks, answers or closes."""
    values: dict[str, Any] = {"tracking_id": event.complaint_id}
    if event.state is State.NEEDS_INFO and event.message:
        template = "question"
        values |= {"agency_name": agency_name, "question": event.message}
    elif event.state is State.RESPONDED and event.message:
        template = "answer"
        values |= {
            "agency_name": agency_name,
            "answer": event.message,
            "reopen_until": reopen_within,
        }
    elif event.state is State.CLOSED and event.outcome and event.outcome not in _NO_CLOSING_SMS:
        template = "closed"
        values |= {
            "outcome_label": outcome_label(event.outcome),
            "reopen_until": reopen_within,
        }
        if event.message:
            values["note"] = event.message
    else:
        return None
    return CitizenMessage(template, values, event.event_id, event.complaint_id, event.region)
