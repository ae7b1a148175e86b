"""Intake's HTTP API: the complaint as citizens and officers see it."""

import asyncio
import re
import uuid
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Annotated, Any, Literal
from zoneinfo import ZoneInfo

from fastapi import APIRouter, Depends, HTTPException, Path, Query, Response
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from pydantic import BaseModel, Field

from lapor.audience import Access, Audience, access, mask_contacts, reveal
from lapor.contracts import InboundWeb, Location, Place, Priority, State
from lapor.contracts.commands import Action, ComplaintCommand, Outcome, Role
from lapor.runtime.http import refusals
from lapor.tokens import DEFAULT_TOKEN_DAYS
from services.intake.accounts_api import AccountsContext, build_account_routes
from services.intake.auth import (
    MAX_TOKEN_DAYS,
    Principal,
    TokenStatus,
    audience_of,
    caller_dependency,
    citizen_key,
    citizen_principal,
    hash_token,
    may_see,
    new_token,
    token_record,
    token_view,
)
from services.intake.lifecycle import Refused
from services.intake.oversight import build_oversight_routes
from services.intake.photo_api import PhotoView, photo_views
from services.intake.repository import ComplaintRepository
from services.intake.tracking import parse_tracking_id
from services.intake.usecases import SubmissionConflict, SubmissionRejected

OPEN_STATES = (State.ASSIGNED, State.IN_PROGRESS, State.NEEDS_INFO, State.RESPONDED)


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
        reopen_until=_in_zone(doc.get("reopen_until"), zone),
        text=reveal(audience, "text", doc["text"]),
        anonymous=anonymous,
        location=_location_view(submitted.get("location"), audience, anonymous),
        reporter_name=reveal(audience, "reporter_name", submitted.get("name"), anonymous=anonymous),
        place=_place_view(doc.get("place"), audience, anonymous),
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


def _place_view(place: dict[str, Any] | None, audience: Audience, anonymous: bool) -> Place | None:
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


def _in_zone(moment: datetime | None, zone: ZoneInfo) -> datetime | None:
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


class ActionRequest(BaseModel):
    """The body of an action; which fields matter depends on the action."""

    command_id: str | None = Field(
        default=None, max_length=128, description="Client id making a retry take effect once."
    )
    text: str | None = Field(default=None, max_length=4000)
    outcome: Outcome | None = None
    agency: str | None = Field(default=None, max_length=32)
    priority: Priority | None = None
    duplicate_of: str | None = Field(default=None, max_length=32)
    score: int | None = Field(default=None, ge=1, le=5)


class NewComplaintRequest(BaseModel):
    """A complaint from the web form or an app."""

    region: str = Field(default="banjar", pattern=r"^[a-z0-9_-]+$")
    text: str = Field(min_length=1, max_length=10_000)
    name: str | None = Field(default=None, max_length=120)
    phone: str | None = Field(default=None, max_length=32, description="For SMS replies.")
    email: str | None = Field(default=None, max_length=254)
    category: str | None = Field(default=None, max_length=64, description="A hint only.")
    location: Location | None = None
    anonymous: bool = Field(default=False, description="Hide the reporter from agencies.")
    confidential: bool = Field(default=False, description="Hide the complaint from the public.")
    client_id: str | None = Field(
        default=None, max_length=128, description="Client's id: a resend is the same complaint."
    )


class ComplaintAccepted(BaseModel):
    tracking_id: str
    state: State
    status_url: str
    citizen_url: str = Field(
        description="The reporter's secret link: shows a confidential complaint to its "
        "reporter and accepts their reply, rating or reopening. Shown only here."
    )


class WorklistItem(BaseModel):
    tracking_id: str
    state: State
    priority: str | None
    category: str | None
    received_at: datetime
    deadlines: DeadlinesView
    next_deadline: datetime | None = Field(
        default=None,
        description="The nearest deadline the agency still has to meet (first response "
        "while not acknowledged, then the answer); null when none is pending.",
    )
    overdue: bool = Field(
        default=False, description="The nearest pending deadline has passed (next_deadline < now)."
    )
    agency: str | None = None
    place: Place | None = Field(
        default=None,
        description="Kecamatan and desa/kelurahan, as the holding agency may see them "
        "(hidden when the reporter is anonymous).",
    )
    text: str | None


class TriageItem(BaseModel):
    """A complaint the router was unsure about, as the admin deciding it sees it."""

    tracking_id: str
    region: str
    channel: str
    received_at: datetime
    priority: str | None = Field(description="The router's priority, kept until decided.")
    category: str | None = Field(description="The router's best category guess.")
    confidence: float | None = Field(default=None, description="The router's confidence, 0-1.")
    candidates: list[str] = Field(
        default_factory=list, description="The agencies the router hesitated between."
    )
    reasons: list[str] = Field(default_factory=list, description="Why the router was unsure.")
    bounces: int = Field(default=0, description="Times agencies refused it before.")
    anonymous: bool
    confidential: bool
    text: str


def _triage_item(doc: dict[str, Any], zone: ZoneInfo) -> TriageItem:
    """Admins see a complaint whole (`lapor.audience.POLICY`), the router's reasons included."""
    routing = doc.get("routing") or {}
    return TriageItem(
        tracking_id=doc["_id"],
        region=doc["region"],
        channel=doc["channel"],
        received_at=doc["received_at"].astimezone(zone),
        priority=doc.get("priority"),
        category=doc.get("category"),
        confidence=routing.get("confidence"),
        candidates=list(routing.get("candidates") or []),
        reasons=list(routing.get("reasons") or []),
        bounces=int(doc.get("bounces") or 0),
        anonymous=bool(doc.get("anonymous")),
        confidential=bool(doc.get("confidential")),
        text=doc["text"],
    )


MAX_SEARCH_WORDS = 8


def worklist_filters(q: str | None, overdue: bool | None, now: datetime) -> dict[str, Any]:
    """More conditions of a worklist: a tracking id or words in the text, overdue or not.

    FerretDB v1 has no text index: each word is a case-insensitive regular expression
    of the escaped word, all of them ANDed, within the agency's own complaints.
    """
    also: dict[str, Any] = {}
    words = (q or "").split()
    if words:
        if len(words) == 1 and (tracking_id := parse_tracking_id(words[0])):
            also["_id"] = tracking_id
        else:
            also["$and"] = [
                {"text": {"$regex": re.escape(word), "$options": "i"}}
                for word in words[:MAX_SEARCH_WORDS]
            ]
    if overdue is True:
        also["next_deadline"] = {"$lt": now}
    elif overdue is False:
        also["$or"] = [{"next_deadline": None}, {"next_deadline": {"$gte": now}}]
    return also


WORKLIST_COUNT_STEP = 100


def worklist_count_bound(shown_through: int) -> int:
    """The bound of a worklist count: the next multiple of the step past the page's
    end, so that the next page is known to exist and the number reads plainly."""
    return (shown_through // WORKLIST_COUNT_STEP + 1) * WORKLIST_COUNT_STEP


async def worklist_page(
    repo: ComplaintRepository,
    agency: str,
    states: list[str],
    also: dict[str, Any],
    limit: int,
    offset: int,
) -> tuple[list[dict[str, Any]], int, bool]:
    """A worklist page, its total, and whether the total is only a lower bound.

    Without words or `overdue` the page and the count are two reads of the same
    index, side by side. Words and deadlines are checked entry by entry: a short
    page then is the count, and otherwise counting stops past the next bound, as
    the page needs only to know that more follow."""
    if not also or "_id" in also:
        docs, total = await asyncio.gather(
            repo.worklist(agency, states, limit, offset=offset, also=also),
            repo.count_worklist(agency, states, also),
        )
        return docs, total, False
    docs = await repo.worklist(agency, states, limit, offset=offset, also=also)
    if len(docs) < limit and (docs or offset == 0):
        return docs, offset + len(docs), False
    up_to = worklist_count_bound(offset + limit)
    total = await repo.count_worklist(agency, states, also, up_to=up_to)
    return docs, min(total, up_to), total > up_to


def _worklist_item(
    doc: dict[str, Any], zone: ZoneInfo, audience: Audience, now: datetime
) -> WorklistItem:
    due = doc.get("next_deadline")
    if due is not None and due.tzinfo is None:
        due = due.replace(tzinfo=UTC)
    return WorklistItem(
        tracking_id=doc["_id"],
        state=State(doc["state"]),
        priority=doc.get("priority"),
        category=doc.get("category"),
        received_at=doc["received_at"].astimezone(zone),
        deadlines=DeadlinesView(
            **{k: _in_zone(v, zone) for k, v in (doc.get("deadlines") or {}).items()}
        ),
        next_deadline=_in_zone(due, zone),
        overdue=due is not None and due < now,
        agency=doc.get("agency"),
        place=_place_view(doc.get("place"), audience, bool(doc.get("anonymous"))),
        text=doc.get("text"),
    )


class TokenView(BaseModel):
    """An API token as admins see it: never the secret, never its hash."""

    id: str | None = Field(description="The token's public id (revoke by it)")
    name: str | None
    role: str | None
    agency: str | None
    created_at: datetime | None
    expires_at: datetime | None = Field(
        description="After this the token is refused; tokens from before expiries "
        "existed expire 90 days after their creation"
    )
    last_used_at: datetime | None = Field(description="Recorded at most once a minute")
    revoked_at: datetime | None
    status: TokenStatus


class NewTokenRequest(BaseModel):
    name: str = Field(min_length=1, max_length=64, description="Who or what holds it")
    role: Literal["agency", "admin", "partner"]
    agency: str | None = Field(default=None, max_length=32)
    days: int = Field(default=DEFAULT_TOKEN_DAYS, ge=1, le=MAX_TOKEN_DAYS)


class TokenCreated(BaseModel):
    token: str = Field(description="The token itself, shown only here; only its hash is kept")
    view: TokenView


_bearer = HTTPBearer(auto_error=False)


def _utcnow() -> datetime:
    return datetime.now(UTC)


@dataclass(frozen=True)
class ApiContext:
    """What the complaint routes are built over (see `build_router`)."""

    repository: Callable[[], ComplaintRepository]
    zones: Mapping[str, ZoneInfo]
    execute: Any
    submit: Any
    link_secret: bytes
    old_link_secrets: Sequence[bytes]
    clock: Callable[[], datetime]
    accounts: AccountsContext | None

    def reporter(self, tracking_id: str, key: str | None) -> Principal | None:
        if not key:
            return None
        return citizen_principal(tracking_id, key, self.link_secret, self.old_link_secrets)

    def zone_of(self, doc: dict[str, Any]) -> ZoneInfo:
        return self.zones.get(doc["region"], ZoneInfo("Asia/Jakarta"))


CallerDependency = Callable[..., Awaitable[Principal | None]]
CitizenKey = Annotated[
    str | None,
    Query(max_length=64, description="The key of the reporter's secret link"),
]


def build_router(
    repository: Any,
    zones: Mapping[str, ZoneInfo],
    execute: Any,
    submit: Any,
    link_secret: bytes,
    old_link_secrets: Sequence[bytes] = (),
    clock: Callable[[], datetime] = _utcnow,
    *,
    accounts: AccountsContext | None = None,
) -> APIRouter:
    """`repository` returns the live repository; `execute(command)` applies a command;
    `submit(InboundWeb)` stores a new complaint; `link_secret` signs citizens' links,
    `old_link_secrets` still open links signed before a change of key; `clock`
    decides token expiry and last use, logins' throttling and what is overdue;
    `accounts` adds logins, accounts and the admins' overview (the console's API)."""
    ctx = ApiContext(
        repository, zones, execute, submit, link_secret, old_link_secrets, clock, accounts
    )
    router = APIRouter(prefix="/api/v1", tags=["complaints"])
    principal = caller_dependency(repository, clock)
    for routes in (
        _reading_routes,
        _submission_routes,
        _action_routes,
        _agency_routes,
        _token_routes,
    ):
        routes(router, ctx, principal)
    if accounts is not None:
        router.include_router(build_account_routes(accounts, principal, repository, clock))
        router.include_router(
            build_oversight_routes(accounts, principal, repository, ctx.zone_of, clock)
        )
    return router


def _reading_routes(router: APIRouter, ctx: ApiContext, principal: CallerDependency) -> None:
    """A complaint as its reader may see it."""
    Repo = Annotated[ComplaintRepository, Depends(ctx.repository)]
    Caller = Annotated[Principal | None, Depends(principal)]

    @router.get(
        "/complaints/{tracking_id}",
        response_model=ComplaintView,
        responses=refusals(
            _401="Unknown token", _404="No complaint with this tracking id (or not yours to see)"
        ),
        summary="A complaint's state, agency, priority, deadlines and history",
    )
    async def get_complaint(
        tracking_id: Annotated[str, Path(min_length=4, max_length=32)],
        repo: Repo,
        caller: Caller,
        key: CitizenKey = None,
    ) -> ComplaintView:
        tracking_id = tracking_id.strip().upper()
        viewer = caller or ctx.reporter(tracking_id, key)
        doc = await repo.get(tracking_id)
        # A confidential complaint does not exist for anyone outside its circle.
        if doc is None or not may_see(audience := audience_of(viewer, doc), doc):
            raise HTTPException(404, detail="complaint not found")
        return complaint_view(doc, ctx.zone_of(doc), audience)


def _submission_routes(router: APIRouter, ctx: ApiContext, principal: CallerDependency) -> None:
    """The web channel: a new complaint."""
    Caller = Annotated[Principal | None, Depends(principal)]

    @router.post(
        "/complaints",
        status_code=202,
        response_model=ComplaintAccepted,
        responses=refusals(
            _400="The body is not JSON",
            _401="Unknown token",
            _409="This client_id was used before for a different complaint",
            _422="Not a valid complaint; the reason is given and kept",
        ),
        summary="Submit a complaint (web form, app)",
    )
    async def submit_complaint(
        body: NewComplaintRequest,
        caller: Caller,
        credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(_bearer)],
    ) -> ComplaintAccepted:
        # `client_id` is the caller's idempotency key, bound to the whole submission
        # (inbound.submission_binding): a token holder's keys are its own (the
        # token's hash scopes them); anonymous callers share one scope, in which a
        # key only returns its complaint to someone who sends the same submission
        # again, contact details included. So a replay answers with the secret link
        # only those who could file it: the token holder, or whoever knows the
        # client_id and everything the reporter sent (the phone and e-mail are in no
        # view). Without contact details, the unguessable client_id is what guards it.
        scope = "web"
        if caller is not None and credentials is not None:
            scope = f"token:{hash_token(credentials.credentials)[:32]}"
        submission = InboundWeb(
            source=scope,
            message_id=body.client_id or uuid.uuid4().hex,
            received_at=datetime.now(UTC),
            **body.model_dump(exclude={"client_id"}),
        )
        try:
            doc = await ctx.submit(submission)
        except SubmissionRejected as rejected:
            raise HTTPException(
                422, detail={"reason": rejected.reason.value, "message": rejected.detail}
            ) from None
        except SubmissionConflict:
            raise HTTPException(
                409,
                detail="this client_id was already used for a different complaint: a resend "
                "must repeat the submission unchanged; a new complaint needs a new client_id",
            ) from None
        status_url = f"/api/v1/complaints/{doc['_id']}"
        return ComplaintAccepted(
            tracking_id=doc["_id"],
            state=State(doc["state"]),
            status_url=status_url,
            citizen_url=f"{status_url}?key={citizen_key(doc['_id'], ctx.link_secret)}",
        )


def _action_routes(router: APIRouter, ctx: ApiContext, principal: CallerDependency) -> None:
    """Officers', admins' and reporters' actions on a complaint."""
    Caller = Annotated[Principal | None, Depends(principal)]

    @router.post(
        "/complaints/{tracking_id}/actions/{action}",
        response_model=ComplaintView,
        responses=refusals(
            _400="The body is not JSON",
            _401="Missing or unknown token",
            _403="Not allowed for this role or agency",
            _404="No such complaint",
            _409="Not allowed in the complaint's current state",
            _422="The action lacks what it needs (text, outcome, ...) or names an agency "
            "or a complaint that does not exist",
        ),
        summary="An action on a complaint by an officer, an admin or (secret link) its reporter",
    )
    async def act(
        tracking_id: Annotated[str, Path(min_length=4, max_length=32)],
        action: Action,
        body: ActionRequest,
        caller: Caller,
        key: CitizenKey = None,
    ) -> ComplaintView:
        tracking_id = tracking_id.strip().upper()
        actor = caller or ctx.reporter(tracking_id, key)
        if actor is None:
            raise HTTPException(
                401, detail="a bearer token or the complaint's secret link is required"
            )
        if len(tracking_id) < 4:  # only padding made it long enough for the path
            raise HTTPException(404, detail="complaint not found")
        command = ComplaintCommand(
            command_id=body.command_id or f"http-{uuid.uuid4().hex}",
            complaint_id=tracking_id,
            action=action,
            actor=actor.actor(),
            **body.model_dump(exclude={"command_id"}),
        )
        try:
            doc = await ctx.execute(command)
        except Refused as refused:
            raise HTTPException(refused.status, detail=refused.reason) from None
        return complaint_view(doc, ctx.zone_of(doc), actor.audience(doc))


def _agency_routes(router: APIRouter, ctx: ApiContext, principal: CallerDependency) -> None:
    """An agency's worklist and the admins' triage queue."""
    Repo = Annotated[ComplaintRepository, Depends(ctx.repository)]
    Caller = Annotated[Principal | None, Depends(principal)]

    @router.get(
        "/agencies/{code}/complaints",
        response_model=list[WorklistItem],
        tags=["agencies"],
        responses=refusals(_401="Missing or unknown token", _403="An officer of another agency"),
        summary="An agency's worklist: urgent first, then the nearest deadline",
        description="Paged by `limit` and `offset`; the `X-Total-Count` header gives the "
        "number of complaints matching the filters. `q` is a tracking id (exact) or words "
        "that must all appear in the text (case-insensitive). Words and `overdue` are "
        "counted up to the next multiple of 100 beyond the page: past it, "
        "`X-Total-Count-More-Than` replaces `X-Total-Count` (that many and more).",
    )
    async def worklist(
        code: Annotated[str, Path(max_length=32)],
        repo: Repo,
        caller: Caller,
        response: Response,
        status: Annotated[list[State] | None, Query()] = None,
        q: Annotated[str | None, Query(max_length=200)] = None,
        overdue: Annotated[
            bool | None, Query(description="true: only overdue; false: none overdue")
        ] = None,
        limit: Annotated[int, Query(ge=1, le=200)] = 50,
        offset: Annotated[int, Query(ge=0, le=100_000)] = 0,
    ) -> list[WorklistItem]:
        if caller is None:
            raise HTTPException(401, detail="a bearer token is required")
        if caller.role is not Role.ADMIN and caller.agency != code:
            raise HTTPException(403, detail="an officer sees only their agency's complaints")
        states = [s.value for s in (status or OPEN_STATES)]
        now = ctx.clock()
        also = worklist_filters(q, overdue, now)
        docs, total, more = await worklist_page(repo, code, states, also, limit, offset)
        response.headers["X-Total-Count-More-Than" if more else "X-Total-Count"] = str(total)
        audience = Audience.ADMIN if caller.role is Role.ADMIN else Audience.AGENCY
        return [_worklist_item(d, ctx.zone_of(d), audience, now) for d in docs]

    @router.get(
        "/triage",
        response_model=list[TriageItem],
        tags=["triage"],
        responses=refusals(_401="Missing or unknown token", _403="Not an admin"),
        summary="The triage queue: complaints waiting for Diskominfo, oldest first (admins)",
    )
    async def triage_queue(
        repo: Repo,
        caller: Caller,
        limit: Annotated[int, Query(ge=1, le=500)] = 200,
    ) -> list[TriageItem]:
        if caller is None:
            raise HTTPException(401, detail="a bearer token is required")
        if caller.role is not Role.ADMIN:
            raise HTTPException(403, detail="only admins decide triage")
        return [_triage_item(d, ctx.zone_of(d)) for d in await repo.triage_queue(limit)]


def _token_routes(router: APIRouter, ctx: ApiContext, principal: CallerDependency) -> None:
    """API tokens (admins)."""
    Repo = Annotated[ComplaintRepository, Depends(ctx.repository)]
    Caller = Annotated[Principal | None, Depends(principal)]

    def admin_only(caller: Principal | None) -> None:
        if caller is None:
            raise HTTPException(401, detail="a bearer token is required")
        if caller.role is not Role.ADMIN:
            raise HTTPException(403, detail="only admins manage tokens")

    @router.get(
        "/tokens",
        response_model=list[TokenView],
        tags=["tokens"],
        responses=refusals(_401="Missing, unknown, expired or revoked token", _403="Not an admin"),
        summary="Every API token: role, agency, created, expires, last use, revoked (admins)",
    )
    async def list_tokens(repo: Repo, caller: Caller) -> list[TokenView]:
        admin_only(caller)
        now = ctx.clock()
        return [TokenView(**token_view(record, now)) for record in await repo.list_tokens()]

    @router.post(
        "/tokens/{token_id}/revoke",
        response_model=TokenView,
        tags=["tokens"],
        responses=refusals(
            _401="Missing, unknown, expired or revoked token",
            _403="Not an admin",
            _404="No token with this id",
        ),
        summary="Revoke an API token at once (admins); it is kept, marked revoked",
    )
    async def revoke_token(
        token_id: Annotated[str, Path(max_length=64)], repo: Repo, caller: Caller
    ) -> TokenView:
        admin_only(caller)
        now = ctx.clock()
        record = await repo.revoke_token(token_id, now)
        if record is None:
            raise HTTPException(404, detail="no token with this id")
        return TokenView(**token_view(record, now))

    @router.post(
        "/tokens",
        status_code=201,
        response_model=TokenCreated,
        tags=["tokens"],
        responses=refusals(
            _400="The body is not JSON",
            _401="Missing, unknown, expired or revoked token",
            _403="Not an admin",
            _422="An agency token without its agency, or an unknown agency",
        ),
        summary="Create an API token for a machine or an officer; shown once (admins)",
    )
    async def create_token(body: NewTokenRequest, repo: Repo, caller: Caller) -> TokenCreated:
        admin_only(caller)
        known = frozenset().union(*ctx.accounts.agencies.values()) if ctx.accounts else None
        if body.agency and known is not None and body.agency not in known:
            raise HTTPException(422, detail=f"unknown agency code {body.agency!r}")
        now = ctx.clock()
        token = new_token()
        try:
            record = token_record(
                token, Role(body.role), body.name, body.agency, days=body.days, now=now
            )
        except ValueError as error:
            raise HTTPException(422, detail=str(error)) from None
        await repo.add_token(record)
        return TokenCreated(token=token, view=TokenView(**token_view(record, now)))
