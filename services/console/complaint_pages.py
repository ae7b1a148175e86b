"""The officer's worklist, one complaint, and the actions taken on it."""

from __future__ import annotations

import logging
from collections.abc import Mapping
from typing import Any
from urllib.parse import quote

from fastapi import APIRouter, Request
from fastapi.datastructures import QueryParams
from fastapi.responses import HTMLResponse, Response

from services.console import domain
from services.console.client import ServiceError, WorklistQuery
from services.console.security import Session, new_form_id
from services.console.web import (
    Console,
    acted,
    agency_in_view,
    attempt,
    page_after_refusal,
    safe_next,
    see_other,
)

log = logging.getLogger(__name__)

# Actions an officer or admin takes from the console: the forms use intake's names.
CONSOLE_ACTIONS = {
    name: name
    for name in ("acknowledge", "ask", "answer", "forward", "note", "decide_triage", "merge")
}
_FORM_FIELDS = ("text", "outcome", "agency", "priority", "duplicate_of")


def complaint_routes(router: APIRouter, console: Console) -> None:
    # Registration order is the routes' order: keep it.
    _worklist_routes(router, console)
    _complaint_routes(router, console)


def _worklist_query(query: QueryParams) -> WorklistQuery:
    """The worklist's filters and page as the page's links carry them."""
    known = {state.value for state in domain.WORKLIST_STATES}
    limit, offset = domain.clamp_page(_int(query.get("limit")), _int(query.get("offset")))
    return WorklistQuery(
        states=[s for s in query.getlist("status") if s in known],
        overdue=query.get("overdue") in ("1", "true", "on"),
        q=(query.get("q") or "").strip()[:120] or None,
        limit=limit,
        offset=offset,
    )


def _worklist_routes(router: APIRouter, console: Console) -> None:
    @router.get("/")
    async def worklist(request: Request) -> Response:
        session = console.require(request)
        query = request.query_params
        agency = agency_in_view(session, query)
        if session.is_admin and agency is None:
            return see_other("/ikhtisar")
        assert agency is not None
        wanted = _worklist_query(query)
        listing = await console.services().worklist(session.token, agency, wanted)
        params = {
            "status": wanted.states,
            "overdue": "1" if wanted.overdue else None,
            "q": wanted.q,
            "limit": wanted.limit if wanted.limit != domain.DEFAULT_PAGE else None,
            "agency": agency if session.is_admin else None,
        }
        return console.render(
            request,
            "worklist.html",
            session,
            agency=agency,
            items=listing.items,
            page=domain.Page(wanted.offset, wanted.limit, listing.total, listing.more_than),
            params=params,
            states=wanted.states,
            overdue=wanted.overdue,
            q=wanted.q or "",
            message=query.get("pesan"),
        )


async def _complaint_page(
    console: Console,
    request: Request,
    session: Session,
    tracking_id: str,
    refused: ServiceError | None = None,
    form: Mapping[str, str] | None = None,
) -> HTMLResponse:
    complaint = await console.services().complaint(session.token, tracking_id)
    deliveries = await attempt(
        console.services().deliveries(session.token, complaint["tracking_id"])
    )
    # notify down or not the reader's rows: the page still works
    readable = None if isinstance(deliveries, ServiceError) else deliveries
    return console.render_outcome(
        request, "complaint.html", session, refused, c=complaint, deliveries=readable,
        form=form or {},
    )  # fmt: skip


async def triage_page(
    console: Console, request: Request, session: Session, refused: ServiceError | None = None
) -> HTMLResponse:
    items = await console.services().triage(session.token)
    return console.render_outcome(request, "triage.html", session, refused, items=items)


def _complaint_routes(router: APIRouter, console: Console) -> None:
    @router.get("/pengaduan/{tracking_id}")
    async def complaint(request: Request, tracking_id: str) -> Response:
        return await console.page(
            request, lambda session: _complaint_page(console, request, session, tracking_id)
        )

    @router.post("/pengaduan/{tracking_id}/{action}")
    async def act(request: Request, tracking_id: str, action: str) -> Response:
        session, form, _ = await console.posted_action(request, action, CONSOLE_ACTIONS)
        body: dict[str, Any] = {"command_id": form.get("command_id") or new_form_id()}
        body.update({k: form[k] for k in _FORM_FIELDS if form.get(k)})
        back = safe_next(form.get("kembali")) if form.get("kembali") else None

        async def again(refused: ServiceError) -> Response:
            log.info("action %s refused with %s", action, refused.status)
            if back and back.startswith("/triase"):
                return await triage_page(console, request, session, refused)
            page = _complaint_page(console, request, session, tracking_id, refused, form)
            return await page_after_refusal(console, request, session, refused, page)

        if back:
            done = back + ("&" if "?" in back else "?") + "ok=" + quote(action)
        else:
            done = f"/pengaduan/{quote(tracking_id)}?ok={quote(action)}"
        call = console.services().act(session.token, tracking_id, action, body)
        return await acted(call, again, done)


def _int(value: str | None) -> int | None:
    return int(value) if value and value.isdigit() else None
