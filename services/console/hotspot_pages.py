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

from services.console.client import ServiceError
from services.console.security import Session
from services.console.web import (
    Console,
    acted,
    agency_in_view,
    page_after_refusal,
)

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


def hotspot_routes(router: APIRouter, console: Console) -> None:
    # Registration order is the routes' order: keep it.
    _listing_routes(router, console)
    _hotspot_routes(router, console)


async def _listing_page(console: Console, request: Request, session: Session) -> Response:
    """The hotspots an officer's agency holds (every agency's for admins)."""
    agency = agency_in_view(session, request.query_params, longest=32)
    listing = await console.services().hotspots(session.token, agency)
    return console.render(
        request,
        "hotspots.html",
        session,
        listing=listing,
        agency=agency,
        labels=HOTSPOT_STATE_LABELS,
    )


def _listing_routes(router: APIRouter, console: Console) -> None:
    @router.get("/hotspot")
    async def hotspot_list(request: Request) -> Response:
        return await console.page(request, lambda s: _listing_page(console, request, s))


async def _hotspot_page(
    console: Console,
    request: Request,
    session: Session,
    hotspot_id: str,
    refused: ServiceError | None = None,
    form: dict[str, str] | None = None,
) -> HTMLResponse:
    services = console.services
    hotspot = await services().hotspot(session.token, hotspot_id)
    # Merge candidates: the same agency's other open hotspots (the service checks).
    others: list[dict[str, Any]] = []
    if hotspot["state"] in ("suggested", "confirmed"):
        listing = await services().hotspots(session.token, hotspot["agency"])
        others = [h for h in listing["hotspots"] if h["id"] != hotspot["id"]]
    done = DONE_MESSAGES.get(request.query_params.get("ok") or "")
    return console.render_outcome(
        request, "hotspot.html", session, refused, h=hotspot, others=others,
        labels=HOTSPOT_STATE_LABELS, done=done, form=form or {},
    )  # fmt: skip


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
        return await console.page(
            request, lambda session: _hotspot_page(console, request, session, hotspot_id)
        )

    @router.post("/hotspot/{hotspot_id}/{action}")
    async def hotspot_action(request: Request, hotspot_id: str, action: str) -> Response:
        session, form, chosen = await console.posted_action(request, action, HOTSPOT_FORM_ACTIONS)
        body = await _action_body(request, chosen, form)

        async def again(refused: ServiceError) -> Response:
            log.info("hotspot action %s refused with %s", chosen, refused.status)
            page = _hotspot_page(console, request, session, hotspot_id, refused, form)
            return await page_after_refusal(console, request, session, refused, page)

        call = console.services().hotspot_action(session.token, hotspot_id, chosen, body)
        return await acted(call, again, f"/hotspot/{quote(hotspot_id, safe='')}?ok={action}")
