"""The templates notify's code renders, and the variables it supplies to each: a
template file must declare exactly these (services/notify/templates.py checks it).
"""

from collections.abc import Mapping
from dataclasses import dataclass
from enum import StrEnum
from types import MappingProxyType


class Audience(StrEnum):
    CITIZEN = "citizen"  # SMS, segment budget applies
    OFFICIAL = "official"  # e-mail / webhook, needs a subject, may be long


@dataclass(frozen=True, slots=True)
class TemplateSpec:
    """What the code supplies for one template: the file must declare exactly these."""

    audience: Audience
    required: frozenset[str]
    optional: frozenset[str] = frozenset()

    @property
    def variables(self) -> frozenset[str]:
        return self.required | self.optional


def _citizen(*required: str, optional: tuple[str, ...] = ()) -> TemplateSpec:
    return TemplateSpec(Audience.CITIZEN, frozenset(required), frozenset(optional))


def _official(*required: str, optional: tuple[str, ...] = ()) -> TemplateSpec:
    return TemplateSpec(Audience.OFFICIAL, frozenset(required), frozenset(optional))


_ASSIGNMENT = (
    "tracking_id",
    "agency_name",
    "category",
    "priority_label",
    "received_at",
    "first_response_date",
    "answer_date",
    "complaint_text",
)

CONTRACT: Mapping[str, TemplateSpec] = MappingProxyType(
    {
        "ack": _citizen("tracking_id", "agency_name", "answer_date"),
        "ack_triage": _citizen("tracking_id", "answer_date"),
        "ack_truncated": _citizen("tracking_id", "agency_name", "answer_date"),
        "ack_triage_truncated": _citizen("tracking_id", "answer_date"),
        "ack_duplicate": _citizen("tracking_id"),
        # The file may give the region keyword a default, so callers can leave it out.
        "reject_unknown_region": _citizen(optional=("region_keyword",)),
        "reject_too_short": _citizen(optional=("region_keyword",)),
        "reject_malformed": _citizen(optional=("region_keyword",)),
        "reject_rate_limited": _citizen(),
        "reject_bad_tracking_id": _citizen(),
        "reject_bad_rating": _citizen(),
        "reject_empty": _citizen(optional=("region_keyword",)),
        "status": _citizen("tracking_id", "state_label", "agency_name", "answer_date"),
        "status_not_found": _citizen("tracking_id"),
        "reply_received": _citizen("tracking_id"),
        "rating_received": _citizen("tracking_id", "score"),
        "rating_refused": _citizen("tracking_id", "state_label"),
        "reopened": _citizen("tracking_id", "agency_name"),
        "reopen_refused": _citizen("tracking_id", "state_label"),
        "withdrawn": _citizen("tracking_id"),
        "reopen_deadline": _citizen("tracking_id", "agency_name", "answer_date"),
        "withdraw_refused": _citizen("tracking_id", "state_label"),
        "question": _citizen("tracking_id", "agency_name", "question"),
        "answer": _citizen("tracking_id", "agency_name", "answer", "reopen_until"),
        "closed": _citizen("tracking_id", "outcome_label", "reopen_until", optional=("note",)),
        "out_of_scope": _citizen("tracking_id", "guidance"),
        "deadline_extended": _citizen("tracking_id", "agency_name", "answer_date"),
        "official_assignment": _official(*_ASSIGNMENT, optional=("routing_note",)),
        "official_assignment_urgent": _official(*_ASSIGNMENT, optional=("routing_note",)),
        "official_warning": _official(
            "tracking_id",
            "agency_name",
            "clock_label",
            "percent",
            "due_date",
            optional=("official",),
        ),
        "official_breach": _official(
            "tracking_id", "agency_name", "clock_label", "due_date", optional=("official",)
        ),
        "official_escalation": _official(
            "tracking_id",
            "agency_name",
            "clock_label",
            "due_date",
            "level_label",
            optional=("official",),
        ),
        "official_citizen_action": _official(
            "tracking_id",
            "agency_name",
            "action_label",
            optional=("official", "citizen_text"),
        ),
    }
)
