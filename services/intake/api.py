"""Intake's HTTP API: the complaint as citizens and officers see it."""

from collections.abc import Mapping
from datetime import datetime
from typing import Annotated, Any
from zoneinfo import ZoneInfo

from fastapi import APIRouter, Depends, HTTPException, Path
from pydantic import BaseModel

from lapor.contracts import State
from services.intake.repository import ComplaintRepository


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
    answer: datetime | None = None


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
    text: str | None
    anonymous: bool
    history: list[HistoryEntryView]


def public_view(doc: dict[str, Any], zone: ZoneInfo) -> ComplaintView:
    """The complaint as anyone may see it, times in the region's own offset.

    The reporter is never part of a view; a confidential complaint's text is
    not shown to the public.
    """
    local = _localiser(zone)
    history = [local(h) for h in sorted(doc["history"], key=lambda h: h["at"])]
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
        text=None if doc.get("confidential") else doc["text"],
        anonymous=doc.get("anonymous", False),
        history=[HistoryEntryView(**h) for h in history],
    )


def _localiser(zone: ZoneInfo) -> Any:
    def local(entry: dict[str, Any]) -> dict[str, Any]:
        return {**entry, "at": entry["at"].astimezone(zone)}

    return local


def build_router(repository: Any, zones: Mapping[str, ZoneInfo]) -> APIRouter:
    """`repository` is a zero-argument callable returning the live repository."""
    router = APIRouter(prefix="/api/v1", tags=["complaints"])
    Repo = Annotated[ComplaintRepository, Depends(repository)]

    @router.get(
        "/complaints/{tracking_id}",
        response_model=ComplaintView,
        responses={404: {"description": "No complaint with this tracking id"}},
        summary="A complaint's state, agency, priority, deadlines and history",
    )
    async def get_complaint(
        tracking_id: Annotated[str, Path(min_length=4, max_length=32)], repo: Repo
    ) -> ComplaintView:
        doc = await repo.get(tracking_id.strip().upper())
        if doc is None:
            raise HTTPException(404, detail="complaint not found")
        return public_view(doc, zones.get(doc["region"], ZoneInfo("Asia/Jakarta")))

    return router
