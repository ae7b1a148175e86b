"""Pure decisions of notify: who hears what, under which stable notification id."""

import hashlib
from dataclasses import dataclass
from typing import Any

from lapor.contracts import (
    AGENCY_OUT_OF_SCOPE,
    CitizenCommandAnswered,
    ComplaintRouted,
    DeadlinesSet,
    InboundRejected,
    RejectionReason,
)
from services.notify.templates import state_label


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


def acknowledgement(event: DeadlinesSet, agency_name: str) -> CitizenMessage:
    template = "ack_triage" if event.agency is None else "ack"
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
}


def rejection_reply(event: InboundRejected) -> CitizenMessage:
    template = _REJECTION_TEMPLATES.get(event.reason, "reject_malformed")
    return CitizenMessage(template, {}, event.event_id, None, event.region)


def command_reply(event: CitizenCommandAnswered, agency_name: str) -> CitizenMessage:
    """The answer to CEK, BALAS or NILAI; an unknown or foreign id reveals nothing."""
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
    else:
        template = "rating_received"
        values["score"] = str(event.score)
    return CitizenMessage(template, values, event.event_id, None, event.region)
