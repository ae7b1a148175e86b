"""Commands on `lapor.command.complaint.<action>`: what agencies, admins and citizens ask for.

A command is a request, not a fact: intake checks it against the lifecycle rules
and either records the transition (announced as `ComplaintStateChanged`) or
answers with `CommandRejected` on `lapor.event.command.rejected`.
"""

from enum import StrEnum
from typing import Literal

from pydantic import AwareDatetime, BaseModel, Field

from lapor.contracts.events import Event, Priority


class Action(StrEnum):
    ACKNOWLEDGE = "acknowledge"
    ASK = "ask"
    ANSWER = "answer"
    FORWARD = "forward"
    CLOSE = "close"
    REPLY = "reply"
    RATE = "rate"
    REOPEN = "reopen"
    DECIDE_TRIAGE = "decide_triage"
    REJECT = "reject"
    MERGE = "merge"
    AUTO_CLOSE = "auto_close"
    WITHDRAW = "withdraw"
    NOTE = "note"  # an officer's internal note: no state change, never shown to the citizen


class Role(StrEnum):
    AGENCY = "agency"
    ADMIN = "admin"
    CITIZEN = "citizen"
    SYSTEM = "system"
    PARTNER = "partner"  # an Open311 client: may submit and read, never act


class Outcome(StrEnum):
    RESOLVED = "resolved"
    NOT_RESOLVED = "not_resolved"
    DUPLICATE = "duplicate"
    OUT_OF_SCOPE = "out_of_scope"
    WITHDRAWN = "withdrawn"
    NO_REPLY = "no_reply"


class Actor(BaseModel):
    role: Role
    id: str = Field(min_length=1, max_length=64, description="Officer, admin or system name.")
    agency: str | None = Field(default=None, description="Agency code of an officer.")


class ComplaintCommand(BaseModel):
    """One action on one complaint; `command_id` makes a retried command take effect once."""

    command_id: str = Field(min_length=1, max_length=128)
    complaint_id: str = Field(min_length=4, max_length=32)
    action: Action
    actor: Actor
    text: str | None = Field(
        default=None,
        max_length=4000,
        description="Question, answer, reply or reason (also why a citizen withdraws).",
    )
    outcome: Outcome | None = None
    agency: str | None = Field(default=None, description="Target agency (forward, triage).")
    priority: Priority | None = None
    duplicate_of: str | None = None
    score: int | None = Field(default=None, ge=1, le=5)


class CommandRejected(Event):
    command_id: str
    complaint_id: str
    action: Action
    reason: str


class ComplaintForwarded(Event):
    """An agency said "not ours" (or an admin decided): the router must decide again."""

    complaint_id: str
    region: str
    text: str
    received_at: AwareDatetime
    round: int = Field(ge=1)
    refused: list[str] = Field(default_factory=list)
    suggested_agency: str | None = None
    decided_agency: str | None = Field(
        default=None, description="Set when an admin decided a triage case."
    )
    decided_priority: Priority | None = None
    decided_by: str | None = None
    bounces: int = Field(ge=0)
    kind: Literal["forward", "triage_decision"] = "forward"
