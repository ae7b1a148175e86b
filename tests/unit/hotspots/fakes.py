"""Routed events and officers for the hotspot unit tests."""

from __future__ import annotations

import hashlib
from datetime import UTC, datetime, timedelta

from pydantic import BaseModel

from lapor.contracts import (
    ComplaintRouted,
    ComplaintStateChanged,
    Place,
    PlaceArea,
    Priority,
    State,
    routed_event_id,
)
from lapor.tokens import Officer
from services.hotspots.handlers import HotspotDeps
from services.hotspots.repository import InMemoryHotspots

T0 = datetime(2026, 11, 2, 1, 0, tzinfo=UTC)
GAMBUT = PlaceArea(code="63.03.03", name="Gambut")
GAMBUT_BARAT = PlaceArea(code="63.03.03.2002", name="Gambut Barat")
SUNGAI_KUPANG = PlaceArea(code="63.03.03.2003", name="Sungai Kupang")
ADMIN = Officer(role="admin", name="admin-1")
PUPR = Officer(role="agency", agency="PUPR", name="budi")
DINKES = Officer(role="agency", agency="DINKES", name="sari")
FLOODED_ROAD = ("jalan", "rendam", "banjir", "lewat")


class Commands:
    def __init__(self) -> None:
        self.sent: dict[str, BaseModel] = {}

    async def publish(self, message: BaseModel, msg_id: str) -> bool:
        new = msg_id not in self.sent
        self.sent[msg_id] = message
        return new


def deps() -> tuple[HotspotDeps, InMemoryHotspots, Commands]:
    repo, commands = InMemoryHotspots(), Commands()
    return HotspotDeps(repo=repo, commands=commands, clock=lambda: T0), repo, commands


def routed(
    complaint_id: str,
    *,
    keywords: tuple[str, ...] = FLOODED_ROAD,
    reporter: str | None = None,
    agency: str | None = "PUPR",
    desa: PlaceArea | None = GAMBUT_BARAT,
    kecamatan: PlaceArea | None = GAMBUT,
    hours: float = 0,
    round_: int = 0,
    confidential: bool = False,
) -> ComplaintRouted:
    place = Place(kecamatan=kecamatan, desa=desa, source="text", confidence=1.0)
    return ComplaintRouted(
        event_id=f"routed:{complaint_id}:{round_}",
        occurred_at=T0,
        complaint_id=complaint_id,
        region="banjar",
        received_at=T0 + timedelta(hours=hours),
        agency=agency,
        priority=Priority.NORMAL,
        category="jalan",
        confidence=0.9,
        triage=agency is None,
        place=place if kecamatan else None,
        keywords=list(keywords),
        reporter=reporter or hashlib.sha256(complaint_id.encode()).hexdigest()[:16],
        confidential=confidential,
    )


def state_changed(
    complaint_id: str,
    state: State,
    minutes: float = 1,
    *,
    actor: str = "officer",
    outcome: str | None = None,
) -> ComplaintStateChanged:
    return ComplaintStateChanged(
        event_id=f"state:{complaint_id}:{state.value}:{minutes}",
        occurred_at=T0 + timedelta(minutes=minutes),
        complaint_id=complaint_id,
        region="banjar",
        state=state,
        previous_state=State.IN_PROGRESS,
        actor=actor,
        reason="test",
        outcome=outcome,
        cause_event_id="cause",
    )


def assigned_by_routing(
    complaint_id: str, round_: int = 0, minutes: float = 0
) -> ComplaintStateChanged:
    """The state change intake publishes on storing round `round_`'s routing decision
    (dated with the decision, as `routed` dates it)."""
    cause = routed_event_id(complaint_id, round_)
    return state_changed(complaint_id, State.ASSIGNED, minutes, actor="router").model_copy(
        update={
            "event_id": f"state:{cause}",
            "cause_event_id": cause,
            "previous_state": State.RECEIVED,
        }
    )
