"""Pure rules of the complaint record: what a new complaint is, how events change it.

The record is a plain document; every change appends one history entry with
time, actor, reason and the causing event id, and the current state is the
state of the latest entry.
"""

import hashlib
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from pydantic import BaseModel

from lapor.contracts import (
    AGENCY_OUT_OF_SCOPE,
    AutoCloseDue,
    Channel,
    ComplaintReceived,
    ComplaintRouted,
    ComplaintStateChanged,
    DeadlinesSet,
    Priority,
    State,
    subjects,
)
from lapor.contracts.commands import Action, ComplaintCommand, ComplaintForwarded
from services.intake import lifecycle


@dataclass(frozen=True)
class Transition:
    """A change to a complaint: fields to set and the history entry that explains it."""

    event_id: str
    at: datetime
    actor: str
    state: State | None
    reason: str
    fields: dict[str, Any] = field(default_factory=dict)
    detail: dict[str, Any] = field(default_factory=dict)
    # What the citizen should read about this change (a question, an answer).
    message: str | None = None

    def history_entry(self) -> dict[str, Any]:
        # Entries that do not change the state (deadlines, notes) carry state None;
        # the current state is the state of the latest entry that has one.
        return {
            "at": self.at,
            "state": self.state.value if self.state else None,
            "actor": self.actor,
            "reason": self.reason,
            "event_id": self.event_id,
            **({"detail": self.detail} if self.detail else {}),
        }


def new_complaint(
    *,
    tracking_id: str,
    region: str,
    channel: Channel,
    text: str,
    received_at: datetime,
    source_key: str,
    phone_hash: str | None,
    anonymous: bool,
    confidential: bool,
    truncated: bool,
    stored_at: datetime,
    submission: dict[str, Any] | None = None,
) -> dict[str, Any]:
    received = Transition(
        event_id=received_event_id(tracking_id),
        at=stored_at,
        actor=f"intake:{channel.value}",
        state=State.RECEIVED,
        reason="complaint stored" + (f": text cut to {len(text)} characters" if truncated else ""),
        # The citizen is told in the acknowledgement; agencies see it here.
        detail={"text_truncated": True, "kept_chars": len(text)} if truncated else {},
    )
    return {
        "_id": tracking_id,
        "region": region,
        "channel": channel.value,
        "text": text,
        "text_truncated": truncated,
        "received_at": received_at,
        "source_key": source_key,
        "reporter": {"phone_hash": phone_hash},
        # The same hash at the top level: FerretDB uses an index only for top-level
        # fields, and every SMS looks up its sender's recent complaints.
        "reporter_hash": phone_hash,
        "anonymous": anonymous,
        "confidential": confidential,
        "state": State.RECEIVED.value,
        "agency": None,
        "priority": None,
        "category": None,
        "deadlines": {"routing": None, "first_response": None, "answer": None},
        "history": [received.history_entry()],
        "event_ids": [received.event_id],
        "updated_at": stored_at,
        # Raised by one with every change: a write names the version it decided on.
        "version": 1,
        # What the submitter gave besides the text (name, e-mail, location, category
        # hint); never part of a public view.
        "submission": submission or {},
    }


Announce = Callable[[dict[str, Any]], list[BaseModel]]


def no_announcement(_after: dict[str, Any]) -> list[BaseModel]:
    return []


@dataclass(frozen=True)
class Change:
    """A decided transition and the events that announce it, built from the
    complaint as it will be after the change."""

    transition: Transition
    announce: Announce = no_announcement
    # The agency's worklist entry may follow a moment later, written with others: a
    # change another service made, which no one at a screen is waiting to see listed.
    listed_later: bool = False


def state_change(transition: Transition, *, listed_later: bool = False) -> Change:
    """A transition announced as a state change (if it changes the state)."""

    def announce(after: dict[str, Any]) -> list[BaseModel]:
        changed = state_changed_event(after, transition)
        return [changed] if changed is not None else []

    return Change(transition, announce, listed_later)


def changed_fields(doc: dict[str, Any], transition: Transition, now: datetime) -> dict[str, Any]:
    """The fields `transition` sets on `doc`, the worklist's sort keys included.

    Computed from the complaint as read, which the write's version precondition
    guarantees is still the stored one; so the derived keys need no second write.
    """
    changes: dict[str, Any] = {**transition.fields, "updated_at": now}
    if transition.state is not None:
        changes["state"] = transition.state.value
    changes |= worklist_fields({**doc, **changes})
    changes["version"] = int(doc.get("version") or 0) + 1
    return changes


def after_change(doc: dict[str, Any], transition: Transition, now: datetime) -> dict[str, Any]:
    """The complaint as it is once `transition` is applied to `doc`."""
    return {
        **doc,
        **changed_fields(doc, transition, now),
        "history": [*doc.get("history", []), transition.history_entry()],
        "event_ids": [*doc.get("event_ids", []), transition.event_id],
    }


def received_event_id(tracking_id: str) -> str:
    return f"received:{tracking_id}"


def received_event(
    doc: dict[str, Any],
    *,
    reply_to_sealed: str | None = None,
    reply_email_sealed: str | None = None,
) -> ComplaintReceived:
    return ComplaintReceived(
        event_id=received_event_id(doc["_id"]),
        occurred_at=doc["history"][0]["at"],
        complaint_id=doc["_id"],
        region=doc["region"],
        channel=Channel(doc["channel"]),
        text=doc["text"],
        received_at=doc["received_at"],
        reply_to_sealed=reply_to_sealed,
        reply_email_sealed=reply_email_sealed,
        anonymous=doc["anonymous"],
        confidential=doc["confidential"],
        text_truncated=doc.get("text_truncated", False),
        reporter=reporter_ref(doc.get("reporter_hash")),
    )


def reporter_ref(phone_hash: str | None) -> str | None:
    """The reporter's pseudonym on the bus: tells complaints of one number apart from
    others' (hotspots) without being the hash intake keys its own records by."""
    if not phone_hash:
        return None
    return hashlib.sha256(b"lapor-reporter\0" + phone_hash.encode()).hexdigest()[:16]


PRIORITY_RANK = {Priority.URGENT: 0, Priority.HIGH: 1, Priority.NORMAL: 2}


def current_state(history: list[dict[str, Any]]) -> State:
    for entry in reversed(sorted(history, key=lambda h: h["at"])):
        if entry.get("state"):
            return State(entry["state"])
    return State.RECEIVED


def routed_transition(event: ComplaintRouted) -> Transition:
    if event.agency == AGENCY_OUT_OF_SCOPE and not event.triage:
        state, reason = State.CLOSED, "out of LAPOR's scope"
    elif event.triage:
        state, reason = State.TRIAGE, "routing unsure: waiting for Diskominfo"
    else:
        state, reason = State.ASSIGNED, f"assigned to {event.agency}"
    fields: dict[str, Any] = {
        "agency": event.agency if not event.triage else None,
        "priority": event.priority.value,
        "priority_rank": PRIORITY_RANK[event.priority],
        "category": event.category,
        "routing": {
            "confidence": event.confidence,
            "candidates": event.candidates,
            "reasons": event.reasons,
        },
    }
    if event.place is not None:
        fields["place"] = event.place.model_dump(mode="json")
    if state is State.CLOSED:
        fields["outcome"] = "out_of_scope"
        fields["closed_at"] = event.occurred_at
        fields |= reply_window_fields(state, event.event_id)
    return Transition(
        event_id=event.event_id,
        at=event.occurred_at,
        actor=event.decided_by,
        state=state,
        reason=reason,
        fields=fields,
        detail={"confidence": event.confidence, "reasons": event.reasons[:10]},
    )


def deadlines_transition(event: DeadlinesSet) -> Transition:
    deadlines = event.deadlines.model_dump()
    return Transition(
        event_id=event.event_id,
        at=event.occurred_at,
        actor="sla",
        state=None,
        reason="new answer deadline after reopening" if event.reopened else "deadlines set",
        fields={"deadlines": deadlines},
        detail={
            **{k: v.isoformat() for k, v in deadlines.items() if v is not None},
            # Which answer the date is for: 0 the first, n after the n-th reopening.
            **({"answer_round": event.answer_round} if event.answer_round else {}),
        },
    )


def filed_by(doc: dict[str, Any], phone_hash: str | None) -> bool:
    """Only the number that filed a complaint may see its detail or act on it by SMS."""
    return phone_hash is not None and doc.get("reporter", {}).get("phone_hash") == phone_hash


def citizen_reply_transition(event_id: str, at: datetime, text: str) -> Transition:
    return Transition(
        event_id=event_id,
        at=at,
        actor="citizen",
        state=None,
        reason="citizen added information",
        fields={"replied_at": at},
        detail={"text": text},
    )


def state_event_id(transition_event_id: str) -> str:
    """The id of the `ComplaintStateChanged` that announces a transition."""
    return f"state:{transition_event_id}"


def reply_window_fields(state: State | None, transition_event_id: str) -> dict[str, Any]:
    """An answer or a closing opens a new reply window.

    SLA counts it from the announcement of this transition and says until when;
    until then no window is known, and the one of an earlier answer no longer
    applies.
    """
    if state not in (State.RESPONDED, State.CLOSED):
        return {}
    return {"reopen_from": state_event_id(transition_event_id), "reopen_until": None}


def reopen_window_transition(event: AutoCloseDue) -> Transition:
    assert event.reopen_until is not None
    return Transition(
        event_id=event.event_id,
        at=event.occurred_at,
        actor="sla",
        state=None,
        reason="reopen window set",
        fields={"reopen_until": event.reopen_until},
        detail={"reopen_until": event.reopen_until.isoformat()},
    )


# The agency's clocks still to meet in each state: not yet acknowledged, both the
# first response and the answer; acknowledged (or asked), the answer. Answered or
# closed, none.
_PENDING_CLOCKS = {
    State.ASSIGNED.value: ("first_response", "answer"),
    State.IN_PROGRESS.value: ("answer",),
    State.NEEDS_INFO.value: ("answer",),
}


def next_deadline(doc: dict[str, Any]) -> datetime | None:
    """The nearest deadline the agency still has to meet, None if it has none."""
    deadlines = doc.get("deadlines") or {}
    pending = [deadlines.get(clock) for clock in _PENDING_CLOCKS.get(doc.get("state") or "", ())]
    return min((due for due in pending if due is not None), default=None)


def worklist_fields(doc: dict[str, Any]) -> dict[str, Any]:
    """The stored sort keys of the agency worklist, derived from state and deadlines.

    Stored because FerretDB cannot sort by a computed expression. The flag
    sorts descending so that complaints without a deadline come last, also
    those stored before the flag existed (a missing field sorts lowest).
    """
    due = next_deadline(doc)
    listed = open_agency(doc)
    return {
        "next_deadline": due,
        "has_next_deadline": 0 if due is None else 1,
        "open_agency": listed,
        # The complaint's worklist entry is to be brought up to date (the repository
        # clears this once it has); a complaint loaded in bulk is listed by the sweep.
        "worklist_sync": "pending" if listed else None,
    }


# The states an agency's worklist shows by default: the complaint is its to handle.
WORKLIST_STATES = frozenset(
    {State.ASSIGNED.value, State.IN_PROGRESS.value, State.NEEDS_INFO.value, State.RESPONDED.value}
)


def open_agency(doc: dict[str, Any]) -> str | None:
    """The agency whose open worklist holds the complaint, None once it left it.

    Stored so that an agency's worklist reads its open complaints through an index
    (an equality on one field) without touching the many it has closed.
    """
    return doc.get("agency") if doc.get("state") in WORKLIST_STATES else None


def state_changed_event(
    doc: dict[str, Any], transition: Transition
) -> ComplaintStateChanged | None:
    """The announcement of a state change, derived from the stored history.

    Derived rather than remembered, so a redelivery after a crash between
    storing and publishing announces the same change again under the same id.
    The reopen window of an answer or closing is not known yet at this moment:
    SLA computes it from this very announcement.
    """
    if transition.state is None:
        return None
    history = sorted(doc["history"], key=lambda h: h["at"])
    position = next(
        (i for i, h in enumerate(history) if h["event_id"] == transition.event_id), None
    )
    if position is None:
        return None
    previous = next((h["state"] for h in reversed(history[:position]) if h.get("state")), None)
    return ComplaintStateChanged(
        event_id=state_event_id(transition.event_id),
        occurred_at=transition.at,
        complaint_id=doc["_id"],
        region=doc["region"],
        state=transition.state,
        previous_state=State(previous) if previous else None,
        actor=transition.actor,
        reason=transition.reason,
        agency=doc.get("agency"),
        priority=doc.get("priority"),
        outcome=doc.get("outcome"),
        message=transition.message,
        action=transition.detail.get("action"),
        officer=doc.get("officer"),
        cause_event_id=transition.event_id,
    )


def subject_of(event: BaseModel) -> str | None:
    """Where an announcement goes when its schema's own subject is not the place: a
    routing's move to `assigned` or `triage` apart from the changes services act on."""
    if isinstance(event, ComplaintStateChanged) and event.follows_routing:
        return subjects.COMPLAINT_STATE_ROUTED
    return None


def command_transition(
    command: ComplaintCommand, decision: lifecycle.Decision, at: datetime
) -> Transition:
    message = None
    if command.action in (Action.ASK, Action.ANSWER):
        message = decision.detail.get("text")
    elif command.action is Action.CLOSE:
        message = decision.fields.get("outcome_note")
    elif command.action in _CITIZEN_TEXTS:
        # The agency reads what the citizen wrote with the notice that they acted.
        message = decision.detail.get("text")
    event_id = command_event_id(command.command_id)
    return Transition(
        event_id=event_id,
        at=at,
        actor=f"{command.actor.role.value}:{command.actor.id}",
        state=decision.state,
        reason=decision.reason,
        fields={**decision.fields, **reply_window_fields(decision.state, event_id)},
        detail={"action": command.action.value, **decision.detail},
        message=message,
    )


_CITIZEN_TEXTS = frozenset({Action.REPLY, Action.REOPEN, Action.WITHDRAW})


def command_event_id(command_id: str) -> str:
    return f"command:{command_id}"


def forwarded_event(
    doc: dict[str, Any], command: ComplaintCommand, at: datetime
) -> ComplaintForwarded:
    round_ = int(doc.get("routing_round", 1))
    triage = command.action is Action.DECIDE_TRIAGE
    return ComplaintForwarded(
        event_id=f"forwarded:{doc['_id']}:{round_}",
        occurred_at=at,
        complaint_id=doc["_id"],
        region=doc["region"],
        text=doc["text"],
        received_at=doc["received_at"],
        round=round_,
        refused=list(doc.get("refused_by", [])),
        suggested_agency=None if triage else command.agency,
        decided_agency=command.agency if triage else None,
        decided_priority=command.priority if triage else None,
        decided_by=f"admin:{command.actor.id}" if triage else None,
        bounces=int(doc.get("bounces", 0)),
        kind="triage_decision" if triage else "forward",
    )
