"""Intake's HTTP API: the complaint as citizens and officers see it."""

from datetime import datetime
from typing import Annotated, Any

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


def public_view(doc: dict[str, Any]) -> ComplaintView:
    # The reporter is never part of a view; a confidential complaint's text is
    # not shown to the public.
    history = sorted(doc["history"], key=lambda h: h["at"])
    return ComplaintView(
        tracking_id=doc["_id"],
        region=doc["region"],
        channel=doc["channel"],
        state=State(doc["state"]),
        agency=doc.get("agency"),
        priority=doc.get("priority"),
        category=doc.get("category"),
        received_at=doc["received_at"],
        deadlines=DeadlinesView(**(doc.get("deadlines") or {})),
        text=None if doc.get("confidential") else doc["text"],
        anonymous=doc.get("anonymous", False),
        history=[HistoryEntryView(**h) for h in history],
    )


def build_router(repository: Any) -> APIRouter:
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
        return public_view(doc)

    return router
