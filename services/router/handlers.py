"""Router's message handlers: decide agency and urgency, publish the decision."""

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from lapor.contracts import ComplaintReceived, ComplaintRouted, Place, routed_event_id
from lapor.contracts.commands import ComplaintForwarded
from lapor.runtime.broker import EventPublisher
from services.router.domain import Decision, Router
from services.router.metrics import RouterMetrics
from services.router.places import PlaceFinder


@dataclass(frozen=True)
class RouterDeps:
    routers: Mapping[str, Router]
    routed: EventPublisher
    metrics: RouterMetrics | None = None
    clock: Callable[[], datetime] = lambda: datetime.now(UTC)
    # Regions without a gazetteer publish decisions without a place.
    places: Mapping[str, PlaceFinder] = field(default_factory=dict)


async def handle_received(event: ComplaintReceived, deps: RouterDeps) -> None:
    router = deps.routers.get(event.region)
    if router is None:
        raise LookupError(f"no routing rules for region {event.region!r}")
    decision = router.decide(event.text)
    place = _place(deps, event.region, event.text)
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
        place=place,
        keywords=_keywords(deps, router, event.region, event.text, place),
        reporter=event.reporter,
        confidential=event.confidential,
    )
    await _publish(deps, routed)


def _place(deps: RouterDeps, region: str, text: str) -> Place | None:
    finder = deps.places.get(region)
    return finder.find(text) if finder is not None else None


def _keywords(
    deps: RouterDeps, router: Router, region: str, text: str, place: Place | None
) -> list[str]:
    """What the complaint is about, without the words that say where."""
    finder = deps.places.get(region)
    leave_out = set(finder.marker_words) if finder is not None else set()
    for area in (place.kecamatan, place.desa) if place is not None else ():
        if area is not None:
            leave_out.add(area.name)
    return router.keywords(text, leave_out)


# After this many refusals an agency's "not ours" goes to a person, not to rules.
MAX_BOUNCES = 2


async def handle_forwarded(event: ComplaintForwarded, deps: RouterDeps) -> None:
    router = deps.routers.get(event.region)
    if router is None:
        raise LookupError(f"no routing rules for region {event.region!r}")
    refused = frozenset(event.refused)
    decision = router.decide(event.text, exclude=refused)
    fields = _decided_by_admin(event, decision) or _decided_again(event, decision)
    place = _place(deps, event.region, event.text)
    routed = ComplaintRouted(
        event_id=routed_event_id(event.complaint_id, event.round),
        occurred_at=deps.clock(),
        complaint_id=event.complaint_id,
        region=event.region,
        received_at=event.received_at,
        bounces=event.bounces,
        place=place,
        keywords=_keywords(deps, router, event.region, event.text, place),
        **fields,
    )
    await _publish(deps, routed)


def _decided_by_admin(event: ComplaintForwarded, decision: Decision) -> dict[str, Any] | None:
    if event.kind != "triage_decision" or not event.decided_agency or not event.decided_priority:
        return None
    same = decision.agency == event.decided_agency
    return {
        "agency": event.decided_agency,
        "priority": event.decided_priority,
        "category": decision.category if same else "ditetapkan_admin",
        "confidence": 1.0,
        "triage": False,
        "candidates": [event.decided_agency],
        "reasons": [f"triage decision by {event.decided_by}"],
        "decided_by": event.decided_by or "admin",
    }


def _decided_again(event: ComplaintForwarded, decision: Decision) -> dict[str, Any]:
    reasons = [f"refused by {', '.join(event.refused)}", *decision.reasons]
    candidates = list(decision.candidates)
    if event.suggested_agency and event.suggested_agency not in event.refused:
        reasons.append(f"the refusing agency suggested {event.suggested_agency}")
        candidates = [
            event.suggested_agency,
            *(c for c in candidates if c != event.suggested_agency),
        ]
    triage = decision.triage or event.bounces >= MAX_BOUNCES
    if event.bounces >= MAX_BOUNCES:
        reasons.append(f"{event.bounces} refusals: a person decides")
    return {
        "agency": None if triage else decision.agency,
        "priority": decision.priority,
        "category": decision.category,
        "confidence": decision.confidence,
        "triage": triage,
        "candidates": candidates[:3],
        "reasons": reasons,
    }


async def _publish(deps: RouterDeps, routed: ComplaintRouted) -> None:
    # Counted once per decision: a duplicate publish (redelivery) is not a new decision.
    if await deps.routed.publish(routed, msg_id=routed.event_id) and deps.metrics is not None:
        agency = "TRIAGE" if routed.triage else routed.agency or "NONE"
        deps.metrics.routing_decisions.labels(agency=agency, priority=routed.priority.value).inc()
