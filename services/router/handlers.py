"""Router's message handlers: decide agency and urgency, publish the decision."""

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime

from lapor.contracts import ComplaintReceived, ComplaintRouted
from lapor.runtime.broker import EventPublisher
from services.router.domain import Router


@dataclass(frozen=True)
class RouterDeps:
    routers: Mapping[str, Router]
    routed: EventPublisher
    clock: Callable[[], datetime] = lambda: datetime.now(UTC)


def routed_event_id(complaint_id: str, round_: int) -> str:
    return f"routed:{complaint_id}:{round_}"


async def handle_received(event: ComplaintReceived, deps: RouterDeps) -> None:
    router = deps.routers.get(event.region)
    if router is None:
        raise LookupError(f"no routing rules for region {event.region!r}")
    decision = router.decide(event.text)
    routed = ComplaintRouted(
        event_id=routed_event_id(event.complaint_id, 0),
        occurred_at=deps.clock(),
        complaint_id=event.complaint_id,
        region=event.region,
        received_at=event.received_at,
        agency=decision.agency,
        priority=decision.priority,
        category=decision.category,
        confidence=decision.confidence,
        triage=decision.triage,
        candidates=list(decision.candidates),
        reasons=list(decision.reasons),
    )
    await deps.routed.publish(routed, msg_id=routed.event_id)
