"""What SLA hears about a complaint, as facts: routing decisions and state changes,
each under its event id, with times to the millisecond the database keeps."""

from dataclasses import dataclass, field
from datetime import datetime

from lapor.contracts import (
    AGENCY_OUT_OF_SCOPE,
    ComplaintRouted,
    ComplaintStateChanged,
    Priority,
    State,
    routing_round,
)


def to_ms(moment: datetime) -> datetime:
    """`moment` truncated to milliseconds, the precision MongoDB keeps."""
    return moment.replace(microsecond=moment.microsecond - moment.microsecond % 1000)


@dataclass(frozen=True)
class Routed:
    """A routing decision: round n assigned the complaint (or sent it to triage)."""

    event_id: str
    at: datetime
    round: int
    region: str
    received_at: datetime
    agency: str | None
    priority: Priority
    triage: bool
    # Passed on with the deadlines this decision sets; not kept with the facts.
    category: str | None = field(default=None, compare=False)
    confidence: float | None = field(default=None, compare=False)

    @property
    def out_of_scope(self) -> bool:
        return not self.triage and self.agency == AGENCY_OUT_OF_SCOPE

    @property
    def assigned(self) -> bool:
        return not self.triage and self.agency is not None and not self.out_of_scope


@dataclass(frozen=True)
class StateChange:
    event_id: str
    at: datetime
    state: State
    previous_state: State | None = None
    # Who made the change (`agency:<officer>` for an officer) and the agency holding it.
    actor: str | None = None
    agency: str | None = None


Fact = Routed | StateChange


def routed_fact(event: ComplaintRouted) -> Routed:
    return Routed(
        event_id=event.event_id,
        at=to_ms(event.occurred_at),
        round=routing_round(event.event_id),
        region=event.region,
        received_at=to_ms(event.received_at),
        agency=event.agency,
        priority=event.priority,
        triage=event.triage,
        category=event.category,
        confidence=event.confidence,
    )


def state_fact(event: ComplaintStateChanged) -> StateChange:
    return StateChange(
        event_id=event.event_id,
        at=to_ms(event.occurred_at),
        state=event.state,
        previous_state=event.previous_state,
        actor=event.actor,
        agency=event.agency,
    )
