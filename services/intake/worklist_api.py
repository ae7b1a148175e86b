"""An agency's worklist and the admins' triage queue over HTTP.

FerretDB v1 has no text index, and a count over words or deadlines reads entry
by entry: `worklist_page` counts only as far as the page needs.
"""

import asyncio
import re
from datetime import UTC, datetime
from typing import Annotated, Any
from zoneinfo import ZoneInfo

from fastapi import APIRouter, Depends, HTTPException, Path, Query, Response
from pydantic import BaseModel, Field

from lapor.audience import Audience
from lapor.contracts import Place, State
from lapor.contracts.commands import Role
from lapor.runtime.http import refusals
from services.intake.auth import Principal
from services.intake.callers import ApiContext, CallerDependency, admin, signed_in
from services.intake.repository import ComplaintRepository
from services.intake.tracking import parse_tracking_id
from services.intake.views import DeadlinesView, in_zone, place_view

OPEN_STATES = (State.ASSIGNED, State.IN_PROGRESS, State.NEEDS_INFO, State.RESPONDED)


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
            **{k: in_zone(v, zone) for k, v in (doc.get("deadlines") or {}).items()}
        ),
        next_deadline=in_zone(due, zone),
        overdue=due is not None and due < now,
        agency=doc.get("agency"),
        place=place_view(doc.get("place"), audience, bool(doc.get("anonymous"))),
        text=doc.get("text"),
    )


def agency_routes(router: APIRouter, ctx: ApiContext, principal: CallerDependency) -> None:
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
        officer = signed_in(caller)
        if officer.role is not Role.ADMIN and officer.agency != code:
            raise HTTPException(403, detail="an officer sees only their agency's complaints")
        states = [s.value for s in (status or OPEN_STATES)]
        now = ctx.clock()
        also = worklist_filters(q, overdue, now)
        docs, total, more = await worklist_page(repo, code, states, also, limit, offset)
        response.headers["X-Total-Count-More-Than" if more else "X-Total-Count"] = str(total)
        audience = Audience.ADMIN if officer.role is Role.ADMIN else Audience.AGENCY
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
        admin(caller, "decide triage")
        return [_triage_item(d, ctx.zone_of(d)) for d in await repo.triage_queue(limit)]
