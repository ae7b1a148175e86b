"""What every page of the console stands on: the session cookie, the CSRF checks,
rendering, and the answer to a service's refusal.

Nothing here decides what an officer may see or do: intake, SLA and notify do,
and their refusals (403, 409, 422) are shown on the page in their own words.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any, TypeVar
from urllib.parse import parse_qsl
from zoneinfo import ZoneInfo

from fastapi import Request
from fastapi.datastructures import QueryParams
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

PRESESSION_MAX_AGE = 2 * 3600
T = TypeVar("T")


class LoginRequired(Exception):
    """No valid session, or intake no longer accepts its token."""

    def __init__(self, next_path: str = "/") -> None:
        self.next_path = next_path


class PasswordChangeRequired(Exception):
    """A one-time password must be changed before anything else."""


class CsrfRefused(Exception):
    """A form came without the CSRF token of its session (or pre-session)."""


class UnknownAction(Exception):
    """A form posted to an action the console does not offer."""


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
        self._set_cookie(response, SESSION_COOKIE, self.keys.seal(session), max(max_age, 0))

    def clear_session(self, response: Response) -> None:
        response.delete_cookie(
            SESSION_COOKIE, path="/", secure=self.secure_cookies, httponly=True, samesite="lax"
        )

    def _set_cookie(self, response: Response, name: str, value: str, max_age: int) -> None:
        response.set_cookie(
            name,
            value,
            max_age=max_age,
            path="/",
            secure=self.secure_cookies,
            httponly=True,
            samesite="lax",
        )

    # -- CSRF --------------------------------------------------------------------------
    def presession(self, request: Request) -> tuple[str, bool]:
        """This browser's pre-session value, and whether it is new (to be set)."""
        current = request.cookies.get(PRESESSION_COOKIE)
        if current and 16 <= len(current) <= 64:
            return current, False
        return new_presession(), True

    def set_presession(self, response: Response, value: str) -> None:
        self._set_cookie(response, PRESESSION_COOKIE, value, PRESESSION_MAX_AGE)

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

    async def posted_action(
        self, request: Request, action: str, actions: Mapping[str, str]
    ) -> tuple[Session, dict[str, str], str]:
        """A form posted to one of `actions` (the form's name of each, and the service's):
        the session, the form, and the service's name of the action."""
        session, form = await self.posted(request)
        if action not in actions:
            raise UnknownAction()
        return session, form, actions[action]

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

    def render_outcome(
        self,
        request: Request,
        template: str,
        session: Session,
        refused: ServiceError | None = None,
        **context: Any,
    ) -> HTMLResponse:
        """A page that tells how the officer's last action went: refused, in the
        service's words, or done (`?ok=`, unless the context says it otherwise)."""
        status, error = (200, None) if refused is None else (refused.status, refused.message)
        context = {"error": error, "done": request.query_params.get("ok"), **context}
        return self.render(request, template, session, status, **context)

    def presession_page(
        self,
        request: Request,
        template: str,
        session: Session | None = None,
        status: int = 200,
        **context: Any,
    ) -> HTMLResponse:
        """A page whose form is posted without a session (logging in, the public form):
        its CSRF value is bound to the browser's pre-session, set here when new."""
        pre, fresh = self.presession(request)
        csrf = self.keys.presession_csrf(pre)
        response = self.render(request, template, session, status, csrf, **context)
        if fresh:
            self.set_presession(response, pre)
        return response

    async def page(
        self, request: Request, build: Callable[[Session], Awaitable[Response]]
    ) -> Response:
        """The logged-in officer's page, or the refusal of a service it needed."""
        session = self.require(request)
        return await page_or_refusal(self, request, session, build(session))


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


def agency_in_view(session: Session, query: QueryParams, longest: int | None = None) -> str | None:
    """The agency a page is about: the officer's own; an admin's choice (none: all)."""
    if not session.is_admin:
        return session.agency
    return (query.get("agency") or "").upper()[:longest] or None


async def attempt(call: Awaitable[T]) -> T | ServiceError:
    """The call's answer, or a service's refusal (a lost session is not one: it goes on
    to the login page)."""
    try:
        return await call
    except Unauthorized:
        raise
    except ServiceError as refused:
        return refused


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
    answer = await attempt(page)
    if isinstance(answer, ServiceError):
        return refusal_page(console, request, session, answer)
    return answer


async def page_after_refusal(
    console: Console,
    request: Request,
    session: Session,
    refused: ServiceError,
    page: Awaitable[Response],
) -> Response:
    """After a refused action: its page again, with the refusal, or the refusal alone
    when the page cannot be read either."""
    answer = await attempt(page)
    if isinstance(answer, ServiceError):
        return refusal_page(console, request, session, refused)
    return answer


async def acted(
    call: Awaitable[Any], again: Callable[[ServiceError], Awaitable[Response]], done: str
) -> Response:
    """An action taken: on to `done`; refused: `again`, the page that tells why."""
    answer = await attempt(call)
    if isinstance(answer, ServiceError):
        return await again(answer)
    return see_other(done)
