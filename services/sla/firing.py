"""What a firing is made of: the timer document, the ledger entry with the event built
for the bus, and the breach it records. Pure: the engine stores and publishes them.
"""

from collections.abc import Mapping
from datetime import datetime
from typing import Any

from lapor.calendar import WorkingCalendar
from lapor.contracts import (
    AutoCloseDue,
    DeadlineAlert,
    DeadlinesSet,
    EscalationLevel,
    EscalationRaised,
    Event,
    subjects,
)
from services.sla.announcements import lapse_announcement
from services.sla.breach_store import BreachUpdate, breach_id
from services.sla.clocks import Plan, Timer, TimerKind
from services.sla.repository import PENDING, Document

MODELS: dict[str, type[Event]] = {
    subjects.SLA_ALERT: DeadlineAlert,
    subjects.SLA_ESCALATION: EscalationRaised,
    subjects.SLA_AUTO_CLOSE: AutoCloseDue,
    subjects.COMPLAINT_DEADLINES: DeadlinesSet,
}
SUBJECTS: dict[TimerKind, str] = {
    TimerKind.WARNING: subjects.SLA_ALERT,
    TimerKind.BREACH: subjects.SLA_ALERT,
    TimerKind.ESCALATION: subjects.SLA_ESCALATION,
    TimerKind.AUTO_CLOSE: subjects.SLA_AUTO_CLOSE,
    TimerKind.REPLY_LAPSED: subjects.COMPLAINT_DEADLINES,
}
SKIPPED = "skipped"
PUBLISHED = "published"
# The fields of a pending timer that follow the plan.
COMPARED = ("due_at", "deadline", "agency", "priority")


def _identity(timer: Timer) -> Document:
    """What the timer document and the ledger entry both say of a timer, first."""
    return {
        "_id": timer.id,
        "complaint_id": timer.complaint_id,
        "clock": timer.clock.value,
        "point": timer.point,
        "round": timer.round,
        "kind": timer.kind.value,
        "due_at": timer.due_at,
    }


def timer_doc(timer: Timer, now: datetime) -> Document:
    return {
        **_identity(timer),
        "deadline": timer.deadline,
        "agency": timer.agency,
        "priority": timer.priority.value,
        "status": PENDING,
        "updated_at": now,
    }


def moved_fields(timer: Timer, now: datetime) -> Document:
    """What a pending timer's document takes from the timer when the plan moved it."""
    wanted = timer_doc(timer, now)
    return {key: wanted[key] for key in (*COMPARED, "updated_at")}


def differs(stored: Mapping[str, Any], wanted: Mapping[str, Any]) -> bool:
    return any(stored.get(key) != wanted[key] for key in COMPARED)


def ledger_entry(timer: Timer, now: datetime, replica: str, *, outcome: str) -> Document:
    """The claim of a firing; `with_event` adds what a published one carries."""
    return {
        **_identity(timer),
        "claimed_at": now,
        "claimed_by": replica,
        "outcome": outcome,
        "subject": None,
        "payload": None,
        "breach": None,
        "settled_at": now if outcome == SKIPPED else None,
    }


def with_event(
    entry: Document, timer: Timer, plan: Plan, now: datetime, calendar: WorkingCalendar
) -> Document:
    event, breach = firing_event(timer, plan, now, calendar)
    return {
        **entry,
        "subject": SUBJECTS[timer.kind],
        "payload": event.model_dump(mode="json"),
        "breach": breach,
    }


def firing_event(
    timer: Timer, plan: Plan, now: datetime, calendar: WorkingCalendar
) -> tuple[Event, Document | None]:
    """The event a due timer publishes, and the breach it records (breach, escalation)."""
    occurred_at = calendar.local(now)
    if timer.kind is TimerKind.AUTO_CLOSE:
        assert timer.responded_at is not None
        closing = AutoCloseDue(
            event_id=timer.id,
            occurred_at=occurred_at,
            complaint_id=timer.complaint_id,
            region=plan.region,
            responded_at=timer.responded_at,
        )
        return closing, None
    if timer.kind is TimerKind.REPLY_LAPSED:
        return lapse_announcement(plan, timer, occurred_at), None
    run = plan.run(timer.clock, timer.round)
    stopped = run.stopped_at if run is not None else None
    late_by = max(((min(now, stopped) if stopped else now) - timer.deadline).total_seconds(), 0)
    event = _deadline_event(timer, plan, occurred_at, calendar.local(timer.deadline), late_by)
    if timer.kind is TimerKind.WARNING:
        return event, None
    return event, _breach(timer, plan, late_by, stopped)


def _deadline_event(
    timer: Timer, plan: Plan, occurred_at: datetime, deadline: datetime, late_by: float
) -> Event:
    common: dict[str, Any] = {
        "event_id": timer.id,
        "occurred_at": occurred_at,
        "complaint_id": timer.complaint_id,
        "region": plan.region,
        "agency": timer.agency,
        "official": plan.official_for(timer.agency),
        "priority": timer.priority,
        "clock": timer.clock,
        "due_at": deadline,
        "round": timer.round,
    }
    if timer.kind is TimerKind.ESCALATION:
        assert timer.level is not None
        return EscalationRaised(**common, level=timer.level, late_by_s=late_by)
    kind = "breach" if timer.kind is TimerKind.BREACH else "warning"
    return DeadlineAlert(**common, kind=kind, percent=timer.percent or 0)


def _breach(timer: Timer, plan: Plan, late_by: float, stopped: datetime | None) -> Document:
    return {
        "breach_id": breach_id(timer.complaint_id, timer.clock.value, timer.round),
        "complaint_id": timer.complaint_id,
        "region": plan.region,
        "agency": timer.agency,
        "official": plan.official_for(timer.agency),
        "clock": timer.clock.value,
        "round": timer.round,
        "priority": timer.priority.value,
        "due_at": timer.deadline,
        "late_by_s": late_by,
        "level": timer.level.value if timer.level else None,
        "resolved_at": stopped,
    }


def breach_update(ledger: Mapping[str, Any]) -> BreachUpdate | None:
    """The breach a stored firing records, as the accountability record merges it."""
    breach = ledger.get("breach")
    if breach is None:
        return None
    level = breach.get("level")
    return BreachUpdate(
        breach_id=breach["breach_id"],
        complaint_id=breach["complaint_id"],
        region=breach["region"],
        agency=breach["agency"],
        official=breach.get("official"),
        clock=breach["clock"],
        round=int(breach["round"]),
        priority=breach["priority"],
        due_at=breach["due_at"],
        seen_at=ledger["claimed_at"],
        late_by_s=float(breach["late_by_s"]),
        level=EscalationLevel(level) if level else None,
        level_at=ledger["claimed_at"] if level else None,
        resolved_at=breach.get("resolved_at"),
    )
