"""A complaint as each audience may see it (`lapor.audience.POLICY`): the views
intake's HTTP API answers with, times in the region's own offset."""

from datetime import datetime
from typing import Any
from zoneinfo import ZoneInfo

from pydantic import BaseModel, Field

from lapor.audience import Access, Audience, access, mask_contacts, reveal
from lapor.contracts import Place, State
from lapor.contracts.commands import Role
from services.intake.photo_api import PhotoView, photo_views


class HistoryEntryView(BaseModel):
    at: datetime
    state: State | None
    actor: str
    reason: str
    event_id: str
    detail: dict[str, Any] | None = None


class DeadlinesView(BaseModel):
    routing: datetime | None = None
    first_response: datetime | None = None
    answer: datetime | None = Field(
        default=None, description="The answer owed now: after a reopening, the new one."
    )
    first_answer: datetime | None = Field(
        default=None, description="The first answer's deadline; kept after a reopening."
    )


class LocationView(BaseModel):
    address: str | None = None
    lat: float | None = None
    lon: float | None = None


class ComplaintView(BaseModel):
    tracking_id: str
    region: str
    channel: str
    state: State
    agency: str | None
    priority: str | None
    category: str | None
    received_at: datetime
    deadlines: DeadlinesView
    reopen_until: datetime | None = Field(
        default=None,
        description="Responded or closed: the last moment the citizen may reopen, counted "
        "by SLA on the region's working-day calendar from the latest answer or closing; "
        "null while not yet known and in every other state.",
    )
    text: str | None
    anonymous: bool
    location: LocationView | None = Field(
        default=None,
        description="Where: hidden outside the reporter, the holding agency and admins "
        "when the reporter is anonymous; phone numbers and e-mail addresses masked there.",
    )
    reporter_name: str | None = Field(
        default=None, description="The holding agency and admins only, never when anonymous."
    )
    place: Place | None = Field(
        default=None,
        description="The kecamatan and desa/kelurahan (Kemendagri codes) the complaint is "
        "about, as the router found it; hidden like the location when the reporter is "
        "anonymous.",
    )
    photos: list[PhotoView] = Field(
        default_factory=list,
        description="The complaint's photos (metadata removed) for the reporter, the "
        "holding agency and admins; empty for everyone else.",
    )
    routing: "RoutingView | None" = Field(
        default=None,
        description="The router's confidence, candidate agencies and reasons: the holding "
        "agency and admins only.",
    )
    history: list[HistoryEntryView]


def complaint_view(doc: dict[str, Any], zone: ZoneInfo, audience: Audience) -> ComplaintView:
    """The complaint as `audience` may see it (`lapor.audience.POLICY`), times in the
    region's own offset. The reporter's phone and e-mail are never part of it."""
    anonymous = bool(doc.get("anonymous"))
    submitted = doc.get("submission") or {}
    history = sorted(doc["history"], key=lambda h: h["at"])
    deadlines = {
        k: v.astimezone(zone) if v else None for k, v in (doc.get("deadlines") or {}).items()
    }
    return ComplaintView(
        tracking_id=doc["_id"],
        region=doc["region"],
        channel=doc["channel"],
        state=State(doc["state"]),
        agency=doc.get("agency"),
        priority=doc.get("priority"),
        category=doc.get("category"),
        received_at=doc["received_at"].astimezone(zone),
        deadlines=DeadlinesView(**deadlines),
        reopen_until=in_zone(doc.get("reopen_until"), zone),
        text=reveal(audience, "text", doc["text"]),
        anonymous=anonymous,
        location=_location_view(submitted.get("location"), audience, anonymous),
        reporter_name=reveal(audience, "reporter_name", submitted.get("name"), anonymous=anonymous),
        place=place_view(doc.get("place"), audience, anonymous),
        photos=photo_views(doc, audience),
        routing=_routing_view(doc.get("routing"), audience),
        history=[_entry_view(h, zone, audience) for h in history],
    )


def public_view(doc: dict[str, Any], zone: ZoneInfo, *, actors: bool = False) -> ComplaintView:
    """The complaint as the public sees it; with `actors`, as an admin sees it."""
    return complaint_view(doc, zone, Audience.ADMIN if actors else Audience.PUBLIC)


def _location_view(
    location: dict[str, Any] | None, audience: Audience, anonymous: bool
) -> LocationView | None:
    if not location:
        return None
    view = LocationView(
        address=reveal(audience, "address", location.get("address"), anonymous=anonymous),
        lat=reveal(audience, "coordinates", location.get("lat"), anonymous=anonymous),
        lon=reveal(audience, "coordinates", location.get("lon"), anonymous=anonymous),
    )
    return view if view.model_dump(exclude_none=True) else None


def place_view(place: dict[str, Any] | None, audience: Audience, anonymous: bool) -> Place | None:
    shown = access(audience, "place")
    if not place or not shown.shown or (anonymous and shown is not Access.FULL):
        return None
    return Place.model_validate(place)


class RoutingView(BaseModel):
    confidence: float | None = None
    candidates: list[str] = Field(default_factory=list)
    reasons: list[str] = Field(default_factory=list)


def _routing_view(routing: dict[str, Any] | None, audience: Audience) -> RoutingView | None:
    if not routing or not access(audience, "routing").shown:
        return None
    return RoutingView(
        confidence=routing.get("confidence"),
        candidates=list(routing.get("candidates") or []),
        reasons=list(routing.get("reasons") or []),
    )


ComplaintView.model_rebuild()


def in_zone(moment: datetime | None, zone: ZoneInfo) -> datetime | None:
    return moment.astimezone(zone) if moment else None


def public_actor(actor: str) -> str:
    """Who acted, as a view outside the admins shows a citizen.

    A citizen's actor id is derived from their number's hash (or names the
    complaint): the same for all of one sender's complaints, anonymous ones
    too, so it would link them. Every citizen is just `citizen`.
    """
    return Role.CITIZEN.value if actor.split(":", 1)[0] == Role.CITIZEN.value else actor


def actor_for(audience: Audience, actor: str) -> str:
    """Who acted, as `audience` may see it: a citizen by role for everyone but admins,
    officers and admins by role for everyone but the holding agency and admins."""
    role = actor.split(":", 1)[0]
    if role == Role.CITIZEN.value:
        return actor if access(audience, "citizen_actor") is Access.FULL else role
    if role in _OFFICERS and access(audience, "officer") is not Access.FULL:
        return role
    return actor


_OFFICERS = frozenset({Role.AGENCY.value, Role.ADMIN.value})
# A history entry's texts belong to a part of the policy: by the action that made it
# (`detail.action`) or, for entries no command made, by what they record. Where the
# part is hidden, the entry keeps its time, state, actor's role and these keys only.
_ACTION_PART = {
    "answer": "answer",
    "close": "answer",
    "ask": "question",
    "reply": "citizen_reply",
    "rate": "citizen_reply",
    "reopen": "citizen_reply",
    "withdraw": "citizen_reply",
    "auto_close": "citizen_reply",
    "forward": "internal_note",
    "note": "internal_note",
    "reject": "internal_note",
    "decide_triage": "officer",
    "attach_photo": "photos",
}
_PUBLIC_DETAIL = frozenset({"action", "outcome", "agency", "priority", "duplicate_of", "round"})
# The reason shown instead of one that quotes a hidden part (a name, a text, a score).
_HIDDEN_REASON = {
    "rate": "citizen rated the answer",
    "reject": "archived",
    "decide_triage": "triage decided",
    "note": "internal note",
}


def _entry_part(entry: dict[str, Any]) -> tuple[str | None, str | None]:
    """(the policy's part, the action) of a history entry's reason and detail."""
    detail = entry.get("detail") or {}
    action = detail.get("action")
    if action in _ACTION_PART:
        return _ACTION_PART[action], action
    if entry.get("actor", "").split(":", 1)[0] == Role.CITIZEN.value or "text" in detail:
        return "citizen_reply", "reply"  # a citizen's note kept outside the rules
    if "reasons" in detail or "confidence" in detail:
        return "routing", None
    return None, None


def _entry_view(entry: dict[str, Any], zone: ZoneInfo, audience: Audience) -> HistoryEntryView:
    part, action = _entry_part(entry)
    reason, detail = entry["reason"], entry.get("detail")
    rule = access(audience, part) if part else Access.FULL
    if not rule.shown:
        if action == "auto_close":
            reason = "closed: " + str((detail or {}).get("outcome", ""))
        else:
            reason = _HIDDEN_REASON.get(action or "", reason)
        detail = {k: v for k, v in (detail or {}).items() if k in _PUBLIC_DETAIL} or None
    elif rule is Access.MASKED:
        reason = mask_contacts(reason)
        if detail:
            detail = {k: mask_contacts(v) if isinstance(v, str) else v for k, v in detail.items()}
    return HistoryEntryView(
        at=entry["at"].astimezone(zone),
        state=entry.get("state"),
        actor=actor_for(audience, entry["actor"]),
        reason=reason,
        event_id=entry["event_id"],
        detail=detail,
    )
