"""Intake's HTTP API for logins, accounts and API tokens (the console's back end).

Mounted by `api.build_router`, which passes its bearer-token dependency: a
session token is an ordinary token, so authorisation stays in one place.
"""

import ipaddress
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Depends, HTTPException, Path, Request, Response
from pydantic import BaseModel, Field

from lapor.account_store import create_account, reset_password, set_disabled
from lapor.accounts import AccountError, account_view, check_username, client_digest
from lapor.runtime.http import client_key, refusals
from services.intake.auth import Principal, caller_dependency
from services.intake.callers import AccountsContext, Network, admin, signed_in
from services.intake.repository import ComplaintRepository
from services.intake.sessions import (
    LoginRefused,
    change_password,
    login,
)


class AccountView(BaseModel):
    """An officer's or admin's account: never its password or hash."""

    username: str
    name: str | None
    role: Literal["agency", "admin"]
    agency: str | None
    region: str | None
    disabled: bool
    must_change_password: bool = Field(
        description="A one-time password was set (new account, reset): choose one now."
    )
    created_at: datetime | None
    last_login_at: datetime | None


class LoginRequest(BaseModel):
    username: str = Field(min_length=1, max_length=64)
    password: str = Field(min_length=1, max_length=256)


class SessionCreated(BaseModel):
    token: str = Field(description="The session's bearer token (lpt_...), shown only here.")
    expires_at: datetime
    account: AccountView


class PasswordChange(BaseModel):
    current_password: str = Field(min_length=1, max_length=256)
    new_password: str = Field(min_length=1, max_length=256)


class NewAccountRequest(BaseModel):
    username: str = Field(min_length=3, max_length=32, pattern=r"^[A-Za-z0-9._-]+$")
    name: str = Field(min_length=1, max_length=120)
    role: Literal["agency", "admin"]
    agency: str | None = Field(default=None, max_length=32)
    region: str | None = Field(default=None, max_length=32)


class AccountWithPassword(BaseModel):
    account: AccountView
    password: str = Field(description="The one-time password, shown only here.")


def _view(doc: dict[str, Any]) -> AccountView:
    return AccountView(**account_view(doc))


def _refused(error: AccountError) -> HTTPException:
    return HTTPException(error.status, detail=error.message)


def login_client(request: Request, proxies: tuple[Network, ...]) -> str | None:
    """The address failed logins are counted by: the peer, or, when the peer is a
    trusted proxy, the nearest address before it in `X-Forwarded-For`."""
    peer = client_key(request.scope)
    if peer is None or not proxies or not _trusted(request.scope["client"][0], proxies):
        return peer
    forwarded = [a.strip() for a in request.headers.get("x-forwarded-for", "").split(",")]
    for address in reversed([a for a in forwarded if a]):
        if not _trusted(address, proxies):
            return client_key({"client": (address, 0)}) or peer
    return peer


def _trusted(address: str, proxies: tuple[Network, ...]) -> bool:
    try:
        ip = ipaddress.ip_address(address)
    except ValueError:
        return False
    return any(ip in network for network in proxies)


def session_of(caller: Principal | None) -> Principal:
    session = signed_in(caller)
    if session.account is None:
        raise HTTPException(404, detail="not a session: this token belongs to no account")
    return session


_UNAUTHENTICATED = "Missing or unknown token"
_LOGIN_REFUSALS = refusals(
    _400="The body is not JSON",
    _401="Username or password is wrong (the same answer for an unknown username "
    "and a disabled account)",
    _429="Too many failed logins for this username or from this address; see Retry-After",
)
_SESSION_REFUSALS = refusals(_401=_UNAUTHENTICATED, _404="Not a session's token")
_PASSWORD_REFUSALS = refusals(
    _400="The body is not JSON",
    _401=_UNAUTHENTICATED,
    _403="The current password is wrong",
    _404="Not a session's token",
    _422="The new password is too short or the same",
)
_ADMIN_REFUSALS = refusals(_401=_UNAUTHENTICATED, _403="Not an admin")
_NEW_ACCOUNT_REFUSALS = refusals(
    _400="The body is not JSON",
    _401=_UNAUTHENTICATED,
    _403="Not an admin",
    _409="The username is taken",
    _422="Unknown role, region or agency",
)
_ACCOUNT_REFUSALS = refusals(
    _401=_UNAUTHENTICATED,
    _403="Not an admin",
    _404="No such account",
    _422="Not a username",
)


@dataclass(frozen=True)
class _Parts:
    """What every step of `build_account_routes` adds its routes with."""

    router: APIRouter
    ctx: AccountsContext
    clock: Callable[[], datetime]


def build_account_routes(
    ctx: AccountsContext,
    principal: Callable[..., Any],
    repository: Callable[[], Any],
    clock: Callable[[], datetime],
) -> APIRouter:
    """`principal`: `api.build_router`'s bearer-token dependency; `repository`: the live
    `ComplaintRepository`.

    The session routes (logging in and out, one's own password) are open to a session
    whose account must change its one-time password; the administration routes
    (accounts, as admins create, disable, enable and reset them) are not."""
    at = _Parts(APIRouter(), ctx, clock)
    # The one door a session with a one-time password still passes (see auth.py).
    pending = caller_dependency(repository, clock, password_pending=True)
    _login_route(at)
    _current_session_routes(at, pending, repository)
    _password_route(at, pending)
    _account_listing_routes(at, principal)
    for disabled, path, summary in (
        (True, "disable", "Disable an account; its sessions stop working at once (admins)"),
        (False, "enable", "Enable a disabled account again (admins)"),
    ):
        _account_switch_route(at, principal, disabled, path, summary)
    _password_reset_route(at, principal)
    return at.router


def _login_route(at: _Parts) -> None:
    @at.router.post(
        "/sessions",
        status_code=201,
        response_model=SessionCreated,
        tags=["sessions"],
        responses=_LOGIN_REFUSALS,
        summary="Log in: a session token for an officer's or admin's account (12 hours)",
    )
    async def create_session(body: LoginRequest, request: Request) -> SessionCreated:
        address = login_client(request, at.ctx.proxies)
        try:
            session = await login(
                at.ctx.store(),
                body.username,
                body.password,
                client=client_digest(at.ctx.address_key, address),
                now=at.clock(),
                hours=at.ctx.session_hours,
                count=at.ctx.count_failure,
            )
        except LoginRefused as refused:
            headers = {"Retry-After": str(refused.retry_after)} if refused.retry_after else None
            raise HTTPException(refused.status, detail=refused.message, headers=headers) from None
        return SessionCreated(
            token=session.token,
            expires_at=session.record["expires_at"],
            account=_view(session.account),
        )


def _current_session_routes(
    at: _Parts, principal: Callable[..., Any], repository: Callable[[], Any]
) -> None:
    Caller = Annotated[Principal | None, Depends(principal)]
    Repo = Annotated[ComplaintRepository, Depends(repository)]

    @at.router.get(
        "/sessions/current",
        response_model=AccountView,
        tags=["sessions"],
        responses=_SESSION_REFUSALS,
        summary="The account of the session whose token is sent",
    )
    async def current_session(caller: Caller) -> AccountView:
        session = session_of(caller)
        doc = await at.ctx.store().get(session.account or "")
        if doc is None:
            raise HTTPException(404, detail="this session's account is gone")
        return _view(doc)

    @at.router.delete(
        "/sessions/current",
        status_code=204,
        tags=["sessions"],
        responses=_SESSION_REFUSALS,
        summary="Log out: the session's token stops working at once",
    )
    async def end_session(caller: Caller, repo: Repo) -> Response:
        session = session_of(caller)
        await repo.revoke_token(session.token_id or "", at.clock())
        return Response(status_code=204)


def _password_route(at: _Parts, principal: Callable[..., Any]) -> None:
    Caller = Annotated[Principal | None, Depends(principal)]

    @at.router.post(
        "/sessions/current/password",
        status_code=204,
        tags=["sessions"],
        responses=_PASSWORD_REFUSALS,
        summary="Choose a new password; the account's other sessions end",
    )
    async def new_password(body: PasswordChange, caller: Caller) -> Response:
        session = session_of(caller)
        try:
            await change_password(
                at.ctx.store(),
                session.account or "",
                body.current_password,
                body.new_password,
                keep_token_id=session.token_id,
                now=at.clock(),
            )
        except AccountError as error:
            raise _refused(error) from None
        return Response(status_code=204)


def _account_listing_routes(at: _Parts, principal: Callable[..., Any]) -> None:
    Caller = Annotated[Principal | None, Depends(principal)]

    @at.router.get(
        "/accounts",
        response_model=list[AccountView],
        tags=["accounts"],
        responses=_ADMIN_REFUSALS,
        summary="Every officer's and admin's account, by username (admins)",
    )
    async def list_accounts(caller: Caller) -> list[AccountView]:
        admin(caller, "manage accounts")
        return [_view(doc) for doc in await at.ctx.store().all()]

    @at.router.post(
        "/accounts",
        status_code=201,
        response_model=AccountWithPassword,
        tags=["accounts"],
        responses=_NEW_ACCOUNT_REFUSALS,
        summary="Create an account; its one-time password is shown once (admins)",
    )
    async def new_account(body: NewAccountRequest, caller: Caller) -> AccountWithPassword:
        by = admin(caller, "manage accounts")
        region = body.region or at.ctx.default_region
        if region not in at.ctx.agencies:
            raise HTTPException(422, detail=f"unknown region {region!r}")
        try:
            doc, password = await create_account(
                at.ctx.store(),
                username=body.username,
                name=body.name,
                role=body.role,
                agency=body.agency,
                region=region,
                created_by=by.name,
                now=at.clock(),
                agencies=at.ctx.agencies[region],
            )
        except AccountError as error:
            raise _refused(error) from None
        return AccountWithPassword(account=_view(doc), password=password)


Username = Annotated[str, Path(min_length=3, max_length=32)]


def _account_switch_route(
    at: _Parts,
    principal: Callable[..., Any],
    disabled: bool,
    path: str,
    summary: str,
) -> None:
    """`POST /accounts/{username}/disable` or `.../enable`: one route each, the same logic."""
    Caller = Annotated[Principal | None, Depends(principal)]

    async def switch(username: Username, caller: Caller) -> AccountView:
        by = admin(caller, "manage accounts")
        try:
            if disabled and by.account == check_username(username):
                raise AccountError("an admin does not disable their own account", status=409)
            return _view(await set_disabled(at.ctx.store(), username, disabled, at.clock()))
        except AccountError as error:
            raise _refused(error) from None

    at.router.post(
        f"/accounts/{{username}}/{path}",
        response_model=AccountView,
        tags=["accounts"],
        responses=_ACCOUNT_REFUSALS,
        summary=summary,
        # The name FastAPI derives the OpenAPI operation id from.
        name=f"{path}_account",
    )(switch)


def _password_reset_route(at: _Parts, principal: Callable[..., Any]) -> None:
    Caller = Annotated[Principal | None, Depends(principal)]

    @at.router.post(
        "/accounts/{username}/reset-password",
        response_model=AccountWithPassword,
        tags=["accounts"],
        responses=_ACCOUNT_REFUSALS,
        summary="A new one-time password, shown once; the account's sessions end (admins)",
    )
    async def reset_account_password(username: Username, caller: Caller) -> AccountWithPassword:
        admin(caller, "manage accounts")
        try:
            doc, password = await reset_password(at.ctx.store(), username, at.clock())
        except AccountError as error:
            raise _refused(error) from None
        return AccountWithPassword(account=_view(doc), password=password)
