"""SLA's message handlers: start each complaint's clocks and announce its deadlines."""

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime

from lapor.contracts import AGENCY_OUT_OF_SCOPE, ComplaintRouted, DeadlinesSet, State
from lapor.runtime.broker import EventPublisher
from services.sla.calendar import WorkingCalendar
from services.sla.domain import compute_deadlines
from services.sla.policy import SlaPolicy
from services.sla.repository import ClockRepository


@dataclass(frozen=True)
class RegionRules:
    calendar: WorkingCalendar
    policy: SlaPolicy


@dataclass(frozen=True)
class SlaDeps:
    clocks: ClockRepository
    regions: Mapping[str, RegionRules]
    deadlines: EventPublisher
    clock: Callable[[], datetime] = lambda: datetime.now(UTC)


async def handle_routed(event: ComplaintRouted, deps: SlaDeps) -> None:
    if event.agency == AGENCY_OUT_OF_SCOPE and not event.triage:
        return  # closed at once: no clock runs
    rules = deps.regions.get(event.region)
    if rules is None:
        raise LookupError(f"no SLA rules for region {event.region!r}")
    deadlines = compute_deadlines(
        rules.policy,
        rules.calendar,
        event.priority,
        received_at=event.received_at,
        assigned_at=None if event.triage else event.occurred_at,
    )
    await deps.clocks.set_deadlines(
        complaint_id=event.complaint_id,
        cause_event_id=event.event_id,
        region=event.region,
        agency=event.agency,
        priority=event.priority.value,
        received_at=event.received_at,
        deadlines=deadlines,
        now=deps.clock(),
    )
    announced = DeadlinesSet(
        event_id=f"deadlines:{event.event_id}",
        occurred_at=deps.clock(),
        complaint_id=event.complaint_id,
        region=event.region,
        agency=event.agency,
        priority=event.priority,
        state=State.TRIAGE if event.triage else State.ASSIGNED,
        received_at=event.received_at,
        deadlines=deadlines,
        cause_event_id=event.event_id,
    )
    await deps.deadlines.publish(announced, msg_id=announced.event_id)
