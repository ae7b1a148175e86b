"""Hotspots over HTTP, for admins (every agency's) and agency officers (their own).

GET  /api/v1/hotspots                    open hotspots (two members or more)
GET  /api/v1/hotspots/{id}               one hotspot with its members
POST /api/v1/hotspots/{id}/confirm       an officer agrees it is one problem
POST /api/v1/hotspots/{id}/split         members out: into a new hotspot, or alone
POST /api/v1/hotspots/{id}/merge         another hotspot's members into this one
POST /api/v1/hotspots/{id}/answer        one answer to every member (the agency only)

Another agency's hotspot answers 404, as if there were none.
"""

from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import datetime
from typing import Annotated

from fastapi import APIRouter, Depends, HTTPException, Query
from pydantic import BaseModel, Field

from lapor.contracts import PlaceArea
from lapor.contracts.hotspots import HotspotState
from lapor.runtime.http import refusals
from lapor.tokens import FindToken, Officer, officer_dependency
from services.hotspots import handlers
from services.hotspots.domain import Hotspot, Member, Refused, Tally
from services.hotspots.handlers import HotspotDeps


class HotspotPlace(BaseModel):
    kecamatan: PlaceArea | None
    desa: PlaceArea | None


class HotspotView(BaseModel):
    id: str
    region: str
    agency: str
    place: HotspotPlace
    state: HotspotState
    members: list[str] = Field(description="Tracking ids of the member complaints.")
    size: int
    formed_at: datetime
    updated_at: datetime
    version: int
    answer_rounds: int


class RefusalView(BaseModel):
    command_id: str
    hotspot_id: str
    round: int
    reason: str
    at: datetime


class MemberView(BaseModel):
    tracking_id: str
    received_at: datetime
    category: str
    kecamatan: PlaceArea | None
    desa: PlaceArea | None
    keywords: list[str]
    state: str | None = Field(
        description="The complaint's state as intake last announced it (null: not yet heard)."
    )
    outcome: str | None = Field(
        description="Closed: how (resolved, withdrawn, duplicate of another complaint...)."
    )
    closed: bool
    refusals: list[RefusalView] = Field(
        description="Hotspot answers intake refused for this complaint, oldest first."
    )


class HotspotDetail(HotspotView):
    member_details: list[MemberView]


class HotspotList(BaseModel):
    count: int
    by_agency: dict[str, int]
    by_kecamatan: dict[str, int]
    hotspots: list[HotspotView]


class SplitBody(BaseModel):
    members: list[str] = Field(min_length=1, max_length=500)
    together: bool = Field(
        default=True, description="Into one new hotspot (two or more), else each alone."
    )


class MergeBody(BaseModel):
    other: str = Field(min_length=1, max_length=80, description="The hotspot merged in.")


class AnswerBody(BaseModel):
    text: str = Field(min_length=1, max_length=4000)


class AnswerResult(BaseModel):
    hotspot: HotspotView
    round: int
    command_ids: list[str]


def view(hotspot: Hotspot) -> HotspotView:
    return HotspotView(
        id=hotspot.hotspot_id,
        region=hotspot.region,
        agency=hotspot.agency,
        place=HotspotPlace(kecamatan=hotspot.kecamatan, desa=hotspot.desa),
        state=hotspot.state,
        members=list(hotspot.members),
        size=len(hotspot.members),
        formed_at=hotspot.formed_at,
        updated_at=hotspot.updated_at,
        version=hotspot.version,
        answer_rounds=len(hotspot.answers),
    )


def member_view(member: Member) -> MemberView:
    return MemberView(
        tracking_id=member.complaint_id,
        received_at=member.received_at,
        category=member.category,
        kecamatan=member.kecamatan,
        desa=member.desa,
        keywords=list(member.keywords),
        state=member.current_state,
        outcome=member.outcome,
        closed=member.closed,
        refusals=[
            RefusalView(
                command_id=r.command_id,
                hotspot_id=r.hotspot_id,
                round=r.round,
                reason=r.reason,
                at=r.at,
            )
            for r in member.refusals
        ],
    )


# What every hotspot route may answer besides its result.
ANSWERS = refusals(
    _401="Missing, unknown, expired or revoked token",
    _403="Not an officer or admin token (answer: not the holding agency's officer)",
    _404="No such hotspot, or another agency's",
    _409="Not allowed in the hotspot's state, or changed meanwhile",
    _422="Invalid members or hotspot",
)


def _refused(exc: Refused) -> HTTPException:
    return HTTPException(exc.status, detail=exc.reason)


@dataclass(frozen=True)
class HotspotsContext:
    """What the hotspot routes are built over (see `hotspots_router`)."""

    get_deps: Callable[[], HotspotDeps]
    reader: Callable[..., Awaitable[Officer]]


def hotspots_router(get_deps: Callable[[], HotspotDeps], find_token: FindToken) -> APIRouter:
    router = APIRouter(prefix="/api/v1/hotspots", tags=["hotspots"])
    ctx = HotspotsContext(get_deps, officer_dependency(find_token))
    _reading_routes(router, ctx)
    _changing_routes(router, ctx)
    return router


def _reading_routes(router: APIRouter, ctx: HotspotsContext) -> None:
    Reader = Annotated[Officer, Depends(ctx.reader)]

    @router.get("", response_model=HotspotList, responses=ANSWERS, summary="Open hotspots")
    async def list_hotspots(
        reader: Reader,
        agency: Annotated[str | None, Query(max_length=32, description="Agency code.")] = None,
    ) -> HotspotList:
        if reader.role != "admin":
            agency = agency or reader.agency
            if not reader.reads_rows_of(agency):
                raise HTTPException(403, detail="an officer reads only their agency's hotspots")
        found = await ctx.get_deps().repo.open_hotspots(agency)
        # The largest first: where most citizens wait for the same answer.
        found.sort(key=lambda h: (-len(h.members), h.formed_at))
        tally = Tally.of(found)
        return HotspotList(
            count=len(found),
            by_agency=tally.by_agency,
            by_kecamatan=tally.by_kecamatan,
            hotspots=[view(h) for h in found],
        )

    @router.get("/{hotspot_id}", response_model=HotspotDetail, responses=ANSWERS)
    async def one_hotspot(reader: Reader, hotspot_id: str) -> HotspotDetail:
        deps = ctx.get_deps()
        try:
            hotspot = await handlers.visible(deps, hotspot_id, reader)
        except Refused as exc:
            raise _refused(exc) from None
        members = await deps.repo.members(hotspot.members)
        return HotspotDetail(
            **view(hotspot).model_dump(), member_details=[member_view(m) for m in members]
        )


def _changing_routes(router: APIRouter, ctx: HotspotsContext) -> None:
    Reader = Annotated[Officer, Depends(ctx.reader)]
    get_deps = ctx.get_deps

    @router.post("/{hotspot_id}/confirm", response_model=HotspotView, responses=ANSWERS)
    async def confirm(reader: Reader, hotspot_id: str) -> HotspotView:
        try:
            return view(await handlers.confirm(get_deps(), hotspot_id, reader))
        except Refused as exc:
            raise _refused(exc) from None

    @router.post("/{hotspot_id}/split", response_model=list[HotspotView], responses=ANSWERS)
    async def split(reader: Reader, hotspot_id: str, body: SplitBody) -> list[HotspotView]:
        try:
            kept, new = await handlers.split(
                get_deps(), hotspot_id, body.members, body.together, reader
            )
        except Refused as exc:
            raise _refused(exc) from None
        return [view(kept), *([view(new)] if new else [])]

    @router.post("/{hotspot_id}/merge", response_model=HotspotView, responses=ANSWERS)
    async def merge(reader: Reader, hotspot_id: str, body: MergeBody) -> HotspotView:
        try:
            return view(await handlers.merge(get_deps(), hotspot_id, body.other, reader))
        except Refused as exc:
            raise _refused(exc) from None

    @router.post("/{hotspot_id}/answer", response_model=AnswerResult, responses=ANSWERS)
    async def answer(reader: Reader, hotspot_id: str, body: AnswerBody) -> AnswerResult:
        try:
            sent = await handlers.answer_all(get_deps(), hotspot_id, body.text, reader)
        except Refused as exc:
            raise _refused(exc) from None
        return AnswerResult(
            hotspot=view(sent.hotspot), round=sent.round, command_ids=sent.command_ids
        )
