"""Logging in (behind a pre-session CSRF value), logging out, changing one's password.

intake checks the password and keeps the session; the console seals intake's
session token in its cookie.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Mapping
from dataclasses import replace
from datetime import datetime
from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import HTMLResponse, Response

from services.console.client import ServiceError, Unauthorized
from services.console.security import PRESESSION_COOKIE, Session
from services.console.web import Console, attempt, form_of, safe_next, see_other

log = logging.getLogger(__name__)


def session_routes(router: APIRouter, console: Console) -> None:
    # Registration order is the routes' order: keep it.
    _login_routes(router, console)
    _password_routes(router, console)


def _session_of(answer: Mapping[str, Any]) -> Session:
    """The console's session from intake's answer to a login."""
    account = answer["account"]
    return Session(
        token=answer["token"],
        expires_at=datetime.fromisoformat(answer["expires_at"]),
        username=account["username"],
        name=account.get("name") or account["username"],
        role=account["role"],
        agency=account.get("agency"),
        must_change_password=bool(account.get("must_change_password")),
    )


def _login_routes(router: APIRouter, console: Console) -> None:
    @router.get("/masuk")
    async def login_page(request: Request, lanjut: str = "/") -> Response:
        return console.presession_page(request, "login.html", next_path=safe_next(lanjut))

    @router.post("/masuk")
    async def login(request: Request) -> Response:
        form = await form_of(request)
        console.check_presession_csrf(request, form)
        next_path = safe_next(form.get("lanjut"))

        def again(message: str, status: int) -> HTMLResponse:
            return console.presession_page(
                request, "login.html", status=status, next_path=next_path,
                username=form.get("username", ""), error=message,
            )  # fmt: skip

        try:
            answer = await console.services().login(
                form.get("username", ""),
                form.get("password", ""),
                request.client.host if request.client else None,
            )
        except Unauthorized:
            return again("Nama pengguna atau kata sandi salah.", 401)
        except ServiceError as refused:
            if refused.status == 429:
                return again("Terlalu banyak percobaan gagal. Coba lagi nanti.", 429)
            return again(refused.message, refused.status if refused.status < 500 else 503)
        session = _session_of(answer)
        response = see_other("/akun/sandi" if session.must_change_password else next_path)
        console.set_session(response, session)
        response.delete_cookie(PRESESSION_COOKIE, path="/")
        log.info("console login")
        return response


def _password_routes(router: APIRouter, console: Console) -> None:
    services = console.services

    @router.get("/keluar")
    async def logout_page(request: Request) -> Response:
        session = console.session(request)
        if session is None:
            return see_other("/masuk")
        return console.render(request, "logout.html", session)

    @router.post("/keluar")
    async def logout(request: Request) -> Response:
        session, _ = await console.posted(request, password_page=True)
        with contextlib.suppress(ServiceError):  # gone at intake already: the cookie goes anyway
            await services().logout(session.token)
        response = see_other("/masuk")
        console.clear_session(response)
        return response

    @router.get("/akun/sandi")
    async def password_page(request: Request) -> Response:
        session = console.require(request, password_page=True)
        return console.render(request, "password.html", session)

    @router.post("/akun/sandi")
    async def change_password(request: Request) -> Response:
        session, form = await console.posted(request, password_page=True)
        new = form.get("new_password", "")
        if new != form.get("repeat_password", ""):
            return console.render(
                request, "password.html", session, status=422,
                error="Kata sandi baru dan ulangannya tidak sama.",
            )  # fmt: skip
        current = form.get("current_password", "")
        refused = await attempt(services().change_password(session.token, current, new))
        if isinstance(refused, ServiceError):
            return console.render(
                request, "password.html", session, status=refused.status, error=refused.message
            )
        response = see_other("/?pesan=sandi")
        console.set_session(response, replace(session, must_change_password=False))
        return response
