"""Hotspot pages: complaints of different citizens about one problem at one place.

Admins see every agency's hotspots, an officer their agency's; the hotspots
service decides (another agency's hotspot answers 404, only the holding agency
answers). An officer confirms a suggested hotspot, splits members off, merges
another hotspot in, or answers every member at once: each reporter hears the
answer by their own channel and each complaint keeps its own history.
"""

from __future__ import annotations

import logging
from typing import Any
from urllib.parse import parse_qsl, quote

from fastapi import APIRouter, Request
from fastapi.responses import HTMLResponse, Response

from services.console.client import ServiceError, Unauthorized
from services.console.pages import (
    Console,
    page_after_refusal,
    page_or_refusal,
    refusal_page,
    see_other,
    unknown_action,
)
from services.console.security import Session

log = logging.getLogger(__name__)

# The forms' paths, as the hotspots API names the actions.
HOTSPOT_FORM_ACTIONS = {
    "konfirmasi": "confirm",
    "pisahkan": "split",
    "gabungkan": "merge",
    "jawab": "answer",
}
HOTSPOT_STATE_LABELS = {
    "suggested": "Diusulkan",
    "confirmed": "Dikonfirmasi",
    "answered": "Dijawab",
    "closed": "Selesai",
    "dissolved": "Dibubarkan",
}
DONE_MESSAGES = {
    "konfirmasi": "Hotspot dikonfirmasi.",
    "pisahkan": "Anggota dipisahkan.",
    "gabungkan": "Hotspot digabungkan.",
    "jawab": "Jawaban dikirim ke setiap pelapor.",
}


async def _all_values(request: Request, name: str) -> list[str]:
    """Every value of a repeated field (the split's checkboxes); `form_of` keeps the first."""
    body = (await request.body()).decode("utf-8", errors="replace")
    return [v.strip() for k, v in parse_qsl(body) if k == name and v.strip()]


def hotspot_router(console: Console) -> APIRouter:
    router = APIRouter(include_in_schema=False)
    # Registration order is the routes' order: keep it.
    _listing_routes(router, console)
    _hotspot_routes(router, console)
    return router


def _listing_routes(router: APIRouter, console: Console) -> None:
    """The hotspots an officer's agency holds (every agency's for admins)."""

    @router.get("/hotspot")
    async def hotspot_list(request: Request) -> Response:
        session = console.require(request)
        agency = session.agency
        if session.is_admin:
            agency = (request.query_params.get("agency") or "").upper()[:32] or None
        try:
            listing = await console.services().hotspots(session.token, agency)
        except Unauthorized:
            raise
        except ServiceError as refused:
            return refusal_page(console, request, session, refused)
        return console.render(
            request,
            "hotspots.html",
            session,
            listing=listing,
            agency=agency,
            labels=HOTSPOT_STATE_LABELS,
        )


async def _hotspot_page(
    console: Console,
    request: Request,
    session: Session,
    hotspot_id: str,
    *,
    status: int = 200,
    error: str | None = None,
    form: dict[str, str] | None = None,
) -> HTMLResponse:
    services = console.services
    hotspot = await services().hotspot(session.token, hotspot_id)
    # Merge candidates: the same agency's other open hotspots (the service checks).
    others: list[dict[str, Any]] = []
    if hotspot["state"] in ("suggested", "confirmed"):
        listing = await services().hotspots(session.token, hotspot["agency"])
        others = [h for h in listing["hotspots"] if h["id"] != hotspot["id"]]
    done = request.query_params.get("ok")
    return console.render(
        request,
        "hotspot.html",
        session,
        status=status,
        h=hotspot,
        others=others,
        labels=HOTSPOT_STATE_LABELS,
        error=error,
        done=DONE_MESSAGES.get(done or ""),
        form=form or {},
    )


async def _action_body(
    request: Request, chosen: str, form: dict[str, str]
) -> dict[str, Any] | None:
    """What the hotspots API takes with `chosen` (confirming takes nothing)."""
    body: dict[str, Any] | None = None
    if chosen == "split":
        body = {
            "members": await _all_values(request, "members"),
            "together": form.get("together") == "1",
        }
    elif chosen == "merge":
        body = {"other": form.get("other", "")}
    elif chosen == "answer":
        body = {"text": form.get("text", "")}
    return body


def _hotspot_routes(router: APIRouter, console: Console) -> None:
    """One hotspot, and what an officer does with it."""

    @router.get("/hotspot/{hotspot_id}")
    async def hotspot(request: Request, hotspot_id: str) -> Response:
        session = console.require(request)
        return await page_or_refusal(
            console, request, session, _hotspot_page(console, request, session, hotspot_id)
        )

    @router.post("/hotspot/{hotspot_id}/{action}")
    async def hotspot_action(request: Request, hotspot_id: str, action: str) -> Response:
        session, form = await console.posted(request)
        chosen = HOTSPOT_FORM_ACTIONS.get(action)
        if chosen is None:
            return unknown_action(console, request, session)
        body = await _action_body(request, chosen, form)
        try:
            await console.services().hotspot_action(session.token, hotspot_id, chosen, body)
        except Unauthorized:
            raise
        except ServiceError as refused:
            log.info("hotspot action %s refused with %s", chosen, refused.status)
            page = _hotspot_page(
                console, request, session, hotspot_id, status=refused.status,
                error=refused.message, form=form,
            )  # fmt: skip
            return await page_after_refusal(console, request, session, refused, page)
        return see_other(f"/hotspot/{quote(hotspot_id, safe='')}?ok={action}")
