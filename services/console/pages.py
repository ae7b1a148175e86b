"""The console's pages: each route reads a form or a query, makes one or a few calls
to the services with the officer's session token, and renders the answer.

Nothing here decides what an officer may see or do: intake, SLA and notify do,
and their refusals (403, 409, 422) are shown on the page in their own words.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any
from urllib.parse import parse_qsl, quote
from zoneinfo import ZoneInfo

from fastapi import APIRouter, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response
from fastapi.templating import Jinja2Templates

from lapor.calendar import WorkingCalendar
from services.console import domain
from services.console.client import ServiceError, Services, Unauthorized
from services.console.security import (
    CSRF_FIELD,
    PRESESSION_COOKIE,
    SESSION_COOKIE,
    Keys,
    Session,
    new_form_id,
    new_presession,
)

log = logging.getLogger(__name__)

# Actions an officer or admin takes from the console, as intake names them.
CONSOLE_ACTIONS = frozenset(
    {"acknowledge", "ask", "answer", "forward", "note", "decide_triage", "merge"}
)
_FORM_FIELDS = ("text", "outcome", "agency", "priority", "duplicate_of")
# The dead-letter page's filter (as the watcher's API names it) and its two forms.
DEAD_LETTER_STATES = {"pending": "Menunggu", "settled": "Selesai", "all": "Semua"}
DEAD_LETTER_FORM_ACTIONS = {"kirim-ulang": "replay", "selesaikan": "resolve"}
PRESESSION_MAX_AGE = 2 * 3600


class LoginRequired(Exception):
    """No valid session, or intake no longer accepts its token."""

    def __init__(self, next_path: str = "/") -> None:
        self.next_path = next_path


class PasswordChangeRequired(Exception):
    """A one-time password must be changed before anything else."""


class CsrfRefused(Exception):
    """A form came without the CSRF token of its session (or pre-session)."""


@dataclass
class Console:
    """What every page needs: the services, the keys, the templates and the clock."""

    services: Callable[[], Services]
    keys: Keys
    templates: Jinja2Templates
    secure_cookies: bool
    zone: ZoneInfo
    agencies: Mapping[str, str]
    calendar: WorkingCalendar  # the region's, as SLA counts deadlines with it
    clock: Callable[[], datetime]

    # -- sessions ----------------------------------------------------------------------
    def session(self, request: Request) -> Session | None:
        return self.keys.open(request.cookies.get(SESSION_COOKIE), self.clock())

    def require(self, request: Request, *, password_page: bool = False) -> Session:
        session = self.session(request)
        if session is None:
            raise LoginRequired(_here(request))
        if session.must_change_password and not password_page:
            raise PasswordChangeRequired()
        return session

    def set_session(self, response: Response, session: Session) -> None:
        max_age = int((session.expires_at - self.clock()).total_seconds())
        response.set_cookie(
            SESSION_COOKIE,
            self.keys.seal(session),
            max_age=max(max_age, 0),
            path="/",
            secure=self.secure_cookies,
            httponly=True,
            samesite="lax",
        )

    def clear_session(self, response: Response) -> None:
        response.delete_cookie(
            SESSION_COOKIE, path="/", secure=self.secure_cookies, httponly=True, samesite="lax"
        )

    # -- CSRF --------------------------------------------------------------------------
    def presession(self, request: Request) -> tuple[str, bool]:
        """This browser's pre-session value, and whether it is new (to be set)."""
        current = request.cookies.get(PRESESSION_COOKIE)
        if current and 16 <= len(current) <= 64:
            return current, False
        return new_presession(), True

    def set_presession(self, response: Response, value: str) -> None:
        response.set_cookie(
            PRESESSION_COOKIE,
            value,
            max_age=PRESESSION_MAX_AGE,
            path="/",
            secure=self.secure_cookies,
            httponly=True,
            samesite="lax",
        )

    def check_session_csrf(self, form: Mapping[str, str], session: Session) -> None:
        if not self.keys.csrf_valid(form.get(CSRF_FIELD), self.keys.session_csrf(session)):
            raise CsrfRefused()

    async def posted(
        self, request: Request, *, password_page: bool = False
    ) -> tuple[Session, dict[str, str]]:
        """The session a form is posted in, its CSRF value checked, and the form."""
        session = self.require(request, password_page=password_page)
        form = await form_of(request)
        self.check_session_csrf(form, session)
        return session, form

    def check_presession_csrf(self, request: Request, form: Mapping[str, str]) -> None:
        value = request.cookies.get(PRESESSION_COOKIE)
        if not value or not self.keys.csrf_valid(
            form.get(CSRF_FIELD), self.keys.presession_csrf(value)
        ):
            raise CsrfRefused()

    # -- rendering ---------------------------------------------------------------------
    def render(
        self,
        request: Request,
        template: str,
        session: Session | None = None,
        status: int = 200,
        csrf: str | None = None,
        **context: Any,
    ) -> HTMLResponse:
        now = self.clock()
        if csrf is None and session is not None:
            csrf = self.keys.session_csrf(session)
        return self.templates.TemplateResponse(
            request,
            template,
            {
                "session": session,
                "csrf": csrf,
                "now": now,
                "d": domain,
                "agencies": self.agencies,
                "local": lambda value: domain.local_text(value, self.zone),
                "left": lambda value: domain.time_left(
                    domain.parse_time(value), now, self.calendar
                ),
                "form_id": new_form_id,
                **context,
            },
            status_code=status,
        )


def _here(request: Request) -> str:
    path = request.url.path
    return path + ("?" + request.url.query if request.url.query else "")


def safe_next(value: str | None) -> str:
    """Only a path of this site: `//evil.example` or `https://…` would leave it."""
    if not value or not value.startswith("/") or value.startswith("//") or "\\" in value:
        return "/"
    return value


async def form_of(request: Request) -> dict[str, str]:
    """The posted form (application/x-www-form-urlencoded), the first value of each field."""
    body = (await request.body()).decode("utf-8", errors="replace")
    form: dict[str, str] = {}
    for key, value in parse_qsl(body, keep_blank_values=True):
        form.setdefault(key, value.strip())
    return form


def see_other(path: str) -> RedirectResponse:
    return RedirectResponse(path, status_code=303)


def console_router(console: Console) -> APIRouter:
    router = APIRouter(include_in_schema=False)
    # Registration order is the routes' order: keep it.
    for routes in (
        _login_routes,
        _password_routes,
        _worklist_routes,
        _complaint_routes,
        _oversight_routes,
        _report_routes,
        _account_routes,
        _token_routes,
        _dead_letter_routes,
        _submission_routes,
        _tracking_routes,
    ):
        routes(router, console)
    return router


def refusal_page(
    console: Console, request: Request, session: Session, refused: ServiceError
) -> Response:
    """A service's refusal in its own words (a lost session is not one: it goes to login)."""
    return console.render(
        request, "error.html", session, status=refused.status, error=refused.message
    )


async def page_or_refusal(
    console: Console, request: Request, session: Session, page: Awaitable[Response]
) -> Response:
    """The page, or the refusal of a service it needed."""
    try:
        return await page
    except Unauthorized:
        raise
    except ServiceError as refused:
        return refusal_page(console, request, session, refused)


async def page_after_refusal(
    console: Console,
    request: Request,
    session: Session,
    refused: ServiceError,
    page: Awaitable[Response],
) -> Response:
    """After a refused action: its page again, with the refusal, or the refusal alone
    when the page cannot be read either."""
    try:
        return await page
    except Unauthorized:
        raise
    except ServiceError:
        return refusal_page(console, request, session, refused)


def unknown_action(console: Console, request: Request, session: Session) -> Response:
    return console.render(
        request, "error.html", session, status=404, error="Tindakan tidak dikenal."
    )


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
    """Logging in, behind a pre-session CSRF value."""

    @router.get("/masuk")
    async def login_page(request: Request, lanjut: str = "/") -> Response:
        pre, fresh = console.presession(request)
        response = console.render(
            request,
            "login.html",
            csrf=console.keys.presession_csrf(pre),
            next_path=safe_next(lanjut),
        )
        if fresh:
            console.set_presession(response, pre)
        return response

    @router.post("/masuk")
    async def login(request: Request) -> Response:
        form = await form_of(request)
        console.check_presession_csrf(request, form)
        next_path = safe_next(form.get("lanjut"))
        pre = request.cookies.get(PRESESSION_COOKIE, "")

        def again(message: str, status: int) -> HTMLResponse:
            return console.render(
                request,
                "login.html",
                status=status,
                csrf=console.keys.presession_csrf(pre),
                next_path=next_path,
                username=form.get("username", ""),
                error=message,
            )

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
    """Logging out and changing one's password."""
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
        try:
            await services().change_password(session.token, form.get("current_password", ""), new)
        except ServiceError as refused:
            if isinstance(refused, Unauthorized):
                raise
            return console.render(
                request, "password.html", session, status=refused.status, error=refused.message
            )
        response = see_other("/?pesan=sandi")
        console.set_session(response, _replace(session, must_change_password=False))
        return response


def _worklist_routes(router: APIRouter, console: Console) -> None:
    """The officer's worklist."""

    @router.get("/")
    async def worklist(request: Request) -> Response:
        session = console.require(request)
        query = request.query_params
        agency = session.agency
        if session.is_admin:
            agency = (query.get("agency") or "").upper() or None
            if agency is None:
                return see_other("/ikhtisar")
        assert agency is not None
        states = [
            s for s in query.getlist("status") if s in {st.value for st in domain.WORKLIST_STATES}
        ]
        overdue = query.get("overdue") in ("1", "true", "on")
        q = (query.get("q") or "").strip()[:120] or None
        limit, offset = domain.clamp_page(_int(query.get("limit")), _int(query.get("offset")))
        listing = await console.services().worklist(
            session.token, agency, states=states, overdue=overdue, q=q, limit=limit, offset=offset
        )
        params = {"status": states, "overdue": "1" if overdue else None, "q": q,
                  "limit": limit if limit != domain.DEFAULT_PAGE else None,
                  "agency": agency if session.is_admin else None}  # fmt: skip
        return console.render(
            request,
            "worklist.html",
            session,
            agency=agency,
            items=listing.items,
            page=domain.Page(offset, limit, listing.total, listing.more_than),
            params=params,
            states=states,
            overdue=overdue,
            q=q or "",
            message=query.get("pesan"),
        )


async def _complaint_page(
    console: Console,
    request: Request,
    session: Session,
    tracking_id: str,
    *,
    status: int = 200,
    error: str | None = None,
    form: Mapping[str, str] | None = None,
) -> HTMLResponse:
    complaint = await console.services().complaint(session.token, tracking_id)
    deliveries = None
    try:
        deliveries = await console.services().deliveries(session.token, complaint["tracking_id"])
    except Unauthorized:
        raise
    except ServiceError:
        deliveries = None  # notify down or not the reader's rows: the page still works
    return console.render(
        request,
        "complaint.html",
        session,
        status=status,
        c=complaint,
        deliveries=deliveries,
        error=error,
        done=request.query_params.get("ok"),
        form=form or {},
    )


def _complaint_routes(router: APIRouter, console: Console) -> None:
    """One complaint, and the actions taken on it."""

    @router.get("/pengaduan/{tracking_id}")
    async def complaint(request: Request, tracking_id: str) -> Response:
        session = console.require(request)
        return await page_or_refusal(
            console, request, session, _complaint_page(console, request, session, tracking_id)
        )

    @router.post("/pengaduan/{tracking_id}/{action}")
    async def act(request: Request, tracking_id: str, action: str) -> Response:
        session, form = await console.posted(request)
        if action not in CONSOLE_ACTIONS:
            return unknown_action(console, request, session)
        body: dict[str, Any] = {"command_id": form.get("command_id") or new_form_id()}
        body.update({k: form[k] for k in _FORM_FIELDS if form.get(k)})
        back = safe_next(form.get("kembali")) if form.get("kembali") else None
        try:
            await console.services().act(session.token, tracking_id, action, body)
        except Unauthorized:
            raise
        except ServiceError as refused:
            log.info("action %s refused with %s", action, refused.status)
            if back and back.startswith("/triase"):
                return await _triage_page(
                    console, request, session, status=refused.status, error=refused.message
                )
            page = _complaint_page(
                console, request, session, tracking_id, status=refused.status,
                error=refused.message, form=form,
            )  # fmt: skip
            return await page_after_refusal(console, request, session, refused, page)
        if back:
            return see_other(back + ("&" if "?" in back else "?") + "ok=" + quote(action))
        return see_other(f"/pengaduan/{quote(tracking_id)}?ok={quote(action)}")


async def _triage_page(
    console: Console,
    request: Request,
    session: Session,
    status: int = 200,
    error: str | None = None,
) -> HTMLResponse:
    items = await console.services().triage(session.token)
    return console.render(
        request,
        "triage.html",
        session,
        status=status,
        items=items,
        error=error,
        done=request.query_params.get("ok"),
    )


def _breaches_by_agency(breach_report: Mapping[str, Any]) -> dict[str, dict[str, int]]:
    """All and still-open breaches per agency ("-" for none)."""
    breaches_by_agency: dict[str, dict[str, int]] = {}
    for breach in breach_report.get("breaches", []):
        counts = breaches_by_agency.setdefault(breach.get("agency") or "-", {"all": 0, "open": 0})
        counts["all"] += 1
        counts["open"] += 1 if breach.get("open") else 0
    return breaches_by_agency


def _oversight_routes(router: APIRouter, console: Console) -> None:
    """Breaches, the triage queue and the admins' overview."""
    services = console.services

    @router.get("/pelanggaran")
    async def breaches(request: Request) -> Response:
        session = console.require(request)
        agency = session.agency
        if session.is_admin:
            agency = (request.query_params.get("agency") or "").upper() or None
        report = await services().breaches(session.token, agency)
        return console.render(request, "breaches.html", session, report=report, agency=agency)

    @router.get("/triase")
    async def triage(request: Request) -> Response:
        session = console.require(request)
        return await page_or_refusal(
            console, request, session, _triage_page(console, request, session)
        )

    @router.get("/ikhtisar")
    async def overview(request: Request) -> Response:
        session = console.require(request)
        try:
            summary = await services().overview(session.token)
            breach_report = await services().breaches(session.token)
        except Unauthorized:
            raise
        except ServiceError as refused:
            return refusal_page(console, request, session, refused)
        rows = summary.get("agencies", []) if isinstance(summary, dict) else summary
        return console.render(
            request,
            "overview.html",
            session,
            rows=rows,
            summary=summary if isinstance(summary, dict) else {},
            breaches=_breaches_by_agency(breach_report),
            breach_total=breach_report.get("total", 0),
        )


def _report_routes(router: APIRouter, console: Console) -> None:
    """The monthly accountability table and intake's performance report."""

    @router.get("/akuntabilitas")
    async def accountability(request: Request) -> Response:
        session = console.require(request)
        month = domain.month_or_current(
            request.query_params.get("month"), console.clock().astimezone(console.zone).date()
        )
        try:
            report = await console.services().accountability(session.token, month)
        except Unauthorized:
            raise
        except ServiceError as refused:
            return refusal_page(console, request, session, refused)
        rows = report.get("agencies", []) if isinstance(report, dict) else report
        return console.render(
            request, "accountability.html", session, month=month, rows=rows, report=report
        )

    @router.get("/laporan")
    async def agency_report(request: Request) -> Response:
        console.require(request)
        params = {k: v for k, v in request.query_params.items() if k in ("start", "end", "region")}
        try:
            html = await console.services().report_html(params)
        except ServiceError as refused:
            return HTMLResponse(refused.message, status_code=refused.status)
        # intake's report is one self-contained page with its own <style>, no script.
        return HTMLResponse(html, headers={"X-Report-Page": "1"})


async def _accounts_page(
    console: Console,
    request: Request,
    session: Session,
    *,
    status: int = 200,
    error: str | None = None,
    secret: Mapping[str, str] | None = None,
) -> HTMLResponse:
    accounts = await console.services().accounts(session.token)
    tokens = await console.services().tokens(session.token)
    return console.render(
        request,
        "accounts.html",
        session,
        status=status,
        accounts=accounts,
        tokens=tokens,
        error=error,
        secret=secret,
    )


async def _admin_form(
    console: Console,
    request: Request,
    session: Session,
    call: Callable[[], Any],
    describe: Callable[[Any], Mapping[str, str] | None],
) -> Response:
    try:
        answer = await call()
    except Unauthorized:
        raise
    except ServiceError as refused:
        return await _accounts_page(
            console, request, session, status=refused.status, error=refused.message
        )
    secret = describe(answer)
    if secret is None:
        return see_other("/admin/akun")
    # The one-time secret is on this answer only: no redirect, nothing cached.
    return await _accounts_page(console, request, session, secret=secret)


def _account_routes(router: APIRouter, console: Console) -> None:
    """The admins' accounts page: new accounts, disabling, password resets."""
    services = console.services

    @router.get("/admin/akun")
    async def accounts(request: Request) -> Response:
        session = console.require(request)
        return await page_or_refusal(
            console, request, session, _accounts_page(console, request, session)
        )

    @router.post("/admin/akun")
    async def create_account(request: Request) -> Response:
        session, form = await console.posted(request)
        body = {k: form[k] for k in ("username", "name", "role", "agency") if form.get(k)}
        if body.get("role") == "admin":
            body.pop("agency", None)
        return await _admin_form(
            console,
            request,
            session,
            lambda: services().create_account(session.token, body),
            lambda a: {
                "what": f"Kata sandi sekali pakai untuk {a['account']['username']}",
                "value": a["password"],
            },
        )

    @router.post("/admin/akun/{username}/{action}")
    async def account_action(request: Request, username: str, action: str) -> Response:
        session, _ = await console.posted(request)
        return await _admin_form(
            console,
            request,
            session,
            lambda: services().account_action(session.token, username, action),
            lambda a: (
                {"what": f"Kata sandi sekali pakai baru untuk {username}", "value": a["password"]}
                if action == "reset-password"
                else None
            ),
        )


def _token_routes(router: APIRouter, console: Console) -> None:
    """API tokens, made and revoked from the accounts page."""
    services = console.services

    @router.post("/admin/token")
    async def create_token(request: Request) -> Response:
        session, form = await console.posted(request)
        body: dict[str, Any] = {k: form[k] for k in ("name", "role", "agency") if form.get(k)}
        if form.get("days", "").isdigit():
            body["days"] = int(form["days"])
        return await _admin_form(
            console,
            request,
            session,
            lambda: services().create_token(session.token, body),
            lambda a: {
                "what": f"Token API {body.get('name', '')} (hanya ditampilkan sekali)",
                "value": a["token"],
            },
        )

    @router.post("/admin/token/{token_id}/cabut")
    async def revoke_token(request: Request, token_id: str) -> Response:
        session, _ = await console.posted(request)
        return await _admin_form(
            console,
            request,
            session,
            lambda: services().revoke_token(session.token, token_id),
            lambda _a: None,
        )


async def _dead_letters_page(
    console: Console,
    request: Request,
    session: Session,
    *,
    status: int = 200,
    error: str | None = None,
    done: str | None = None,
) -> HTMLResponse:
    state = request.query_params.get("status", "pending")
    if state not in DEAD_LETTER_STATES:
        state = "pending"
    after = request.query_params.get("setelah") or None
    page = await console.services().dead_letters(session.token, state, after)
    return console.render(
        request,
        "dead_letters.html",
        session,
        status=status,
        page=page,
        state=state,
        states=DEAD_LETTER_STATES,
        error=error,
        done=done or request.query_params.get("ok"),
    )


def _dead_letter_routes(router: APIRouter, console: Console) -> None:
    """Dead letters: messages no service could process, replayed or resolved."""

    @router.get("/admin/pesan-gagal")
    async def dead_letters(request: Request) -> Response:
        session = console.require(request)
        return await page_or_refusal(
            console, request, session, _dead_letters_page(console, request, session)
        )

    @router.post("/admin/pesan-gagal/{action}")
    async def dead_letter_action(request: Request, action: str) -> Response:
        session, form = await console.posted(request)
        record_id = form.get("id", "")
        chosen = DEAD_LETTER_FORM_ACTIONS.get(action)
        if chosen is None or not record_id:
            return unknown_action(console, request, session)
        try:
            await console.services().dead_letter_action(
                session.token, record_id, chosen, form.get("reason") or None
            )
        except Unauthorized:
            raise
        except ServiceError as refused:
            page = _dead_letters_page(
                console, request, session, status=refused.status, error=refused.message
            )
            return await page_after_refusal(console, request, session, refused, page)
        return see_other(f"/admin/pesan-gagal?ok={action}")


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
    """The public submission form, behind a pre-session CSRF value."""

    @router.get("/lapor")
    async def submit_page(request: Request) -> Response:
        pre, fresh = console.presession(request)
        response = console.render(
            request,
            "submit.html",
            console.session(request),
            csrf=console.keys.presession_csrf(pre),
            client_id=new_form_id(),
            form={},
        )
        if fresh:
            console.set_presession(response, pre)
        return response

    @router.post("/lapor")
    async def submit(request: Request) -> Response:
        form = await form_of(request)
        console.check_presession_csrf(request, form)
        pre = request.cookies.get(PRESESSION_COOKIE, "")
        body = _submission_body(form)
        try:
            accepted = await console.services().submit(body)
        except ServiceError as refused:
            return console.render(
                request,
                "submit.html",
                console.session(request),
                status=refused.status,
                csrf=console.keys.presession_csrf(pre),
                client_id=body["client_id"],
                form=form,
                error=refused.message,
            )
        key = accepted["citizen_url"].partition("key=")[2]
        return console.render(
            request,
            "submitted.html",
            console.session(request),
            accepted=accepted,
            track_url=f"/lacak?id={quote(accepted['tracking_id'])}&kunci={quote(key)}",
        )


def _tracking_routes(router: APIRouter, console: Console) -> None:
    """A citizen's view of their complaint, by tracking id and the link's key."""

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


def _int(value: str | None) -> int | None:
    return int(value) if value and value.isdigit() else None


def _replace(session: Session, **changes: Any) -> Session:
    from dataclasses import replace

    return replace(session, **changes)


def utcnow() -> datetime:
    return datetime.now(UTC)
