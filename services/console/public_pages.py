"""The citizens' pages: the public submission form (behind a pre-session CSRF value)
and a citizen's view of their complaint, by tracking id and the link's key."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any
from urllib.parse import quote

from fastapi import APIRouter, Request
from fastapi.responses import Response

from services.console.client import ServiceError
from services.console.security import new_form_id
from services.console.web import Console, form_of


def public_routes(router: APIRouter, console: Console) -> None:
    # Registration order is the routes' order: keep it.
    _submission_routes(router, console)
    _tracking_routes(router, console)


def _submission_body(form: Mapping[str, str]) -> dict[str, Any]:
    """Intake's new complaint from the public form."""
    body: dict[str, Any] = {k: form[k] for k in ("text", "name", "phone", "email") if form.get(k)}
    body["client_id"] = form.get("client_id") or new_form_id()
    body["anonymous"] = form.get("anonymous") == "on"
    body["confidential"] = form.get("confidential") == "on"
    if form.get("address"):
        body["location"] = {"address": form["address"]}
    return body


def _submission_routes(router: APIRouter, console: Console) -> None:
    @router.get("/lapor")
    async def submit_page(request: Request) -> Response:
        return console.presession_page(
            request, "submit.html", console.session(request), client_id=new_form_id(), form={}
        )

    @router.post("/lapor")
    async def submit(request: Request) -> Response:
        form = await form_of(request)
        console.check_presession_csrf(request, form)
        body = _submission_body(form)
        try:
            accepted = await console.services().submit(body)
        except ServiceError as refused:
            return console.presession_page(
                request, "submit.html", console.session(request), status=refused.status,
                client_id=body["client_id"], form=form, error=refused.message,
            )  # fmt: skip
        key = accepted["citizen_url"].partition("key=")[2]
        return console.render(
            request,
            "submitted.html",
            console.session(request),
            accepted=accepted,
            track_url=f"/lacak?id={quote(accepted['tracking_id'])}&kunci={quote(key)}",
        )


def _tracking_routes(router: APIRouter, console: Console) -> None:
    @router.get("/lacak")
    async def track(request: Request) -> Response:
        tracking_id = (request.query_params.get("id") or "").strip()[:32]
        key = (request.query_params.get("kunci") or "").strip()[:64] or None
        complaint, error, status = None, None, 200
        if tracking_id:
            try:
                complaint = await console.services().complaint(None, tracking_id, key)
            except ServiceError as refused:
                status = refused.status if refused.status < 500 else 503
                error = (
                    "Pengaduan tidak ditemukan."
                    if refused.status in (401, 404, 422)
                    else refused.message
                )
        return console.render(
            request,
            "track.html",
            console.session(request),
            status=status,
            c=complaint,
            tracking_id=tracking_id,
            key=key or "",
            error=error,
        )
