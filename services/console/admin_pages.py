"""The admins' pages: accounts (new ones, disabling, password resets), API tokens,
and dead letters (messages no service could process, replayed or resolved)."""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping
from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import HTMLResponse, Response

from services.console.client import ServiceError
from services.console.security import Session
from services.console.web import (
    Console,
    UnknownAction,
    acted,
    attempt,
    page_after_refusal,
    see_other,
)

# The dead-letter page's filter (as the watcher's API names it) and its two forms.
DEAD_LETTER_STATES = {"pending": "Menunggu", "settled": "Selesai", "all": "Semua"}
DEAD_LETTER_FORM_ACTIONS = {"kirim-ulang": "replay", "selesaikan": "resolve"}


def admin_routes(router: APIRouter, console: Console) -> None:
    # Registration order is the routes' order: keep it.
    _account_routes(router, console)
    _token_routes(router, console)
    _dead_letter_routes(router, console)


async def _accounts_page(
    console: Console,
    request: Request,
    session: Session,
    refused: ServiceError | None = None,
    secret: Mapping[str, str] | None = None,
) -> HTMLResponse:
    accounts = await console.services().accounts(session.token)
    tokens = await console.services().tokens(session.token)
    return console.render_outcome(
        request, "accounts.html", session, refused, accounts=accounts, tokens=tokens,
        secret=secret,
    )  # fmt: skip


async def _admin_form(
    console: Console,
    request: Request,
    session: Session,
    call: Awaitable[Any],
    secret: Callable[[Any], tuple[str, str]] | None = None,
) -> Response:
    """An admin's form posted: back to the accounts page; with the one-time secret the
    answer carries (`secret`: what it is, and its value), or with the refusal."""
    answer = await attempt(call)
    if isinstance(answer, ServiceError):
        return await _accounts_page(console, request, session, answer)
    if secret is None:
        return see_other("/admin/akun")
    what, value = secret(answer)
    # The one-time secret is on this answer only: no redirect, nothing cached.
    return await _accounts_page(console, request, session, secret={"what": what, "value": value})


def _account_routes(router: APIRouter, console: Console) -> None:
    services = console.services

    @router.get("/admin/akun")
    async def accounts(request: Request) -> Response:
        return await console.page(request, lambda s: _accounts_page(console, request, s))

    @router.post("/admin/akun")
    async def create_account(request: Request) -> Response:
        session, form = await console.posted(request)
        body = {k: form[k] for k in ("username", "name", "role", "agency") if form.get(k)}
        if body.get("role") == "admin":
            body.pop("agency", None)
        call = services().create_account(session.token, body)
        return await _admin_form(
            console, request, session, call,
            lambda a: (f"Kata sandi sekali pakai untuk {a['account']['username']}", a["password"]),
        )  # fmt: skip

    @router.post("/admin/akun/{username}/{action}")
    async def account_action(request: Request, username: str, action: str) -> Response:
        session, _ = await console.posted(request)
        call = services().account_action(session.token, username, action)
        if action != "reset-password":
            return await _admin_form(console, request, session, call)
        what = f"Kata sandi sekali pakai baru untuk {username}"
        return await _admin_form(console, request, session, call, lambda a: (what, a["password"]))


def _token_routes(router: APIRouter, console: Console) -> None:
    services = console.services

    @router.post("/admin/token")
    async def create_token(request: Request) -> Response:
        session, form = await console.posted(request)
        body: dict[str, Any] = {k: form[k] for k in ("name", "role", "agency") if form.get(k)}
        if form.get("days", "").isdigit():
            body["days"] = int(form["days"])
        call = services().create_token(session.token, body)
        what = f"Token API {body.get('name', '')} (hanya ditampilkan sekali)"
        return await _admin_form(console, request, session, call, lambda a: (what, a["token"]))

    @router.post("/admin/token/{token_id}/cabut")
    async def revoke_token(request: Request, token_id: str) -> Response:
        session, _ = await console.posted(request)
        return await _admin_form(
            console, request, session, services().revoke_token(session.token, token_id)
        )


async def _dead_letters_page(
    console: Console, request: Request, session: Session, refused: ServiceError | None = None
) -> HTMLResponse:
    state = request.query_params.get("status", "pending")
    if state not in DEAD_LETTER_STATES:
        state = "pending"
    after = request.query_params.get("setelah") or None
    page = await console.services().dead_letters(session.token, state, after)
    return console.render_outcome(
        request, "dead_letters.html", session, refused, page=page, state=state,
        states=DEAD_LETTER_STATES,
    )  # fmt: skip


def _dead_letter_routes(router: APIRouter, console: Console) -> None:
    @router.get("/admin/pesan-gagal")
    async def dead_letters(request: Request) -> Response:
        return await console.page(request, lambda s: _dead_letters_page(console, request, s))

    @router.post("/admin/pesan-gagal/{action}")
    async def dead_letter_action(request: Request, action: str) -> Response:
        session, form, chosen = await console.posted_action(
            request, action, DEAD_LETTER_FORM_ACTIONS
        )
        record_id = form.get("id", "")
        if not record_id:
            raise UnknownAction()

        async def again(refused: ServiceError) -> Response:
            page = _dead_letters_page(console, request, session, refused)
            return await page_after_refusal(console, request, session, refused, page)

        call = console.services().dead_letter_action(
            session.token, record_id, chosen, form.get("reason") or None
        )
        return await acted(call, again, f"/admin/pesan-gagal?ok={action}")
