"""Intake's HTTP API for logins, accounts and API tokens (the console's back end).

Mounted by `api.build_router`, which passes its bearer-token dependency: a
session token is an ordinary token, so authorisation stays in one place.
"""

import ipaddress
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Depends, HTTPException, Path, Request, Response
from pydantic import BaseModel, Field

from lapor.account_store import AccountStore, create_account, reset_password, set_disabled
from lapor.accounts import AccountError, account_view, check_username, client_digest
from lapor.contracts.commands import Role
from lapor.runtime.http import client_key, refusals
from services.intake.auth import Principal
from services.intake.repository import ComplaintRepository
from services.intake.sessions import (
    FailureCounter,
    LoginRefused,
    change_password,
    login,
    uncounted,
)

Network = ipaddress.IPv4Network | ipaddress.IPv6Network


@dataclass(frozen=True)
class AccountsContext:
    """What the account endpoints need besides the token check.

    `agencies`: region → its directory's agency codes. `proxies`: peers whose
    `X-Forwarded-For` names the client of a login (the console), so that failed
    logins are counted per browser, not per console. `address_key` keys the
    hash of client addresses stored with failed logins.
    """

    store: Callable[[], AccountStore]
    agencies: Mapping[str, frozenset[str]]
    default_region: str = "banjar"
    session_hours: float = 12.0
    address_key: bytes = b""
    proxies: tuple[Network, ...] = ()
    count_failure: FailureCounter = uncounted


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


def admin(caller: Principal | None, what: str) -> Principal:
    if caller is None:
        raise HTTPException(401, detail="a bearer token is required")
    if caller.role is not Role.ADMIN:
        raise HTTPException(403, detail=f"only admins {what}")
    return caller


def session_of(caller: Principal | None) -> Principal:
    if caller is None:
        raise HTTPException(401, detail="a bearer token is required")
    if caller.account is None:
        raise HTTPException(404, detail="not a session: this token belongs to no account")
    return caller


def build_account_routes(
    ctx: AccountsContext,
    principal: Callable[..., Any],
    repository: Callable[[], Any],
    clock: Callable[[], datetime],
) -> APIRouter:
    """`principal`: `api.build_router`'s bearer-token dependency; `repository`: the live
    `ComplaintRepository`."""
    router = APIRouter()
    _session_routes(router, ctx, principal, repository, clock)
    _administration_routes(router, ctx, principal, repository, clock)
    return router


def _session_routes(
    router: APIRouter,
    ctx: AccountsContext,
    principal: Callable[..., Any],
    repository: Callable[[], Any],
    clock: Callable[[], datetime],
) -> None:
    """Logging in and out, and one's own password."""
    Caller = Annotated[Principal | None, Depends(principal)]
    Repo = Annotated[ComplaintRepository, Depends(repository)]

    @router.post(
        "/sessions",
        status_code=201,
        response_model=SessionCreated,
        tags=["sessions"],
        responses=refusals(
            _400="The body is not JSON",
            _401="Username or password is wrong (the same answer for an unknown username "
            "and a disabled account)",
            _429="Too many failed logins for this username or from this address; see Retry-After",
        ),
        summary="Log in: a session token for an officer's or admin's account (12 hours)",
    )
    async def create_session(body: LoginRequest, request: Request) -> SessionCreated:
        address = login_client(request, ctx.proxies)
        try:
            session = await login(
                ctx.store(),
                body.username,
                body.password,
                client=client_digest(ctx.address_key, address),
                now=clock(),
                hours=ctx.session_hours,
                count=ctx.count_failure,
            )
        except LoginRefused as refused:
            headers = {"Retry-After": str(refused.retry_after)} if refused.retry_after else None
            raise HTTPException(refused.status, detail=refused.message, headers=headers) from None
        return SessionCreated(
            token=session.token,
            expires_at=session.record["expires_at"],
            account=_view(session.account),
        )

    @router.get(
        "/sessions/current",
        response_model=AccountView,
        tags=["sessions"],
        responses=refusals(_401="Missing or unknown token", _404="Not a session's token"),
        summary="The account of the session whose token is sent",
    )
    async def current_session(caller: Caller) -> AccountView:
        session = session_of(caller)
        doc = await ctx.store().get(session.account or "")
        if doc is None:
            raise HTTPException(404, detail="this session's account is gone")
        return _view(doc)

    @router.delete(
        "/sessions/current",
        status_code=204,
        tags=["sessions"],
        responses=refusals(_401="Missing or unknown token", _404="Not a session's token"),
        summary="Log out: the session's token stops working at once",
    )
    async def end_session(caller: Caller, repo: Repo) -> Response:
        session = session_of(caller)
        await repo.revoke_token(session.token_id or "", clock())
        return Response(status_code=204)

    @router.post(
        "/sessions/current/password",
        status_code=204,
        tags=["sessions"],
        responses=refusals(
            _400="The body is not JSON",
            _401="Missing or unknown token",
            _403="The current password is wrong",
            _404="Not a session's token",
            _422="The new password is too short or the same",
        ),
        summary="Choose a new password; the account's other sessions end",
    )
    async def new_password(body: PasswordChange, caller: Caller) -> Response:
        session = session_of(caller)
        try:
            await change_password(
                ctx.store(),
                session.account or "",
                body.current_password,
                body.new_password,
                keep_token_id=session.token_id,
                now=clock(),
            )
        except AccountError as error:
            raise _refused(error) from None
        return Response(status_code=204)


def _administration_routes(
    router: APIRouter,
    ctx: AccountsContext,
    principal: Callable[..., Any],
    repository: Callable[[], Any],
    clock: Callable[[], datetime],
) -> None:
    """Accounts, as admins create, disable, enable and reset them."""
    Caller = Annotated[Principal | None, Depends(principal)]
    Username = Annotated[str, Path(min_length=3, max_length=32)]

    @router.get(
        "/accounts",
        response_model=list[AccountView],
        tags=["accounts"],
        responses=refusals(_401="Missing or unknown token", _403="Not an admin"),
        summary="Every officer's and admin's account, by username (admins)",
    )
    async def list_accounts(caller: Caller) -> list[AccountView]:
        admin(caller, "manage accounts")
        return [_view(doc) for doc in await ctx.store().all()]

    @router.post(
        "/accounts",
        status_code=201,
        response_model=AccountWithPassword,
        tags=["accounts"],
        responses=refusals(
            _400="The body is not JSON",
            _401="Missing or unknown token",
            _403="Not an admin",
            _409="The username is taken",
            _422="Unknown role, region or agency",
        ),
        summary="Create an account; its one-time password is shown once (admins)",
    )
    async def new_account(body: NewAccountRequest, caller: Caller) -> AccountWithPassword:
        by = admin(caller, "manage accounts")
        region = body.region or ctx.default_region
        if region not in ctx.agencies:
            raise HTTPException(422, detail=f"unknown region {region!r}")
        try:
            doc, password = await create_account(
                ctx.store(),
                username=body.username,
                name=body.name,
                role=body.role,
                agency=body.agency,
                region=region,
                created_by=by.name,
                now=clock(),
                agencies=ctx.agencies[region],
            )
        except AccountError as error:
            raise _refused(error) from None
        return AccountWithPassword(account=_view(doc), password=password)

    async def switch(username: str, caller: Principal | None, disabled: bool) -> AccountView:
        by = admin(caller, "manage accounts")
        try:
            if disabled and by.account == check_username(username):
                raise AccountError("an admin does not disable their own account", status=409)
            return _view(await set_disabled(ctx.store(), username, disabled, clock()))
        except AccountError as error:
            raise _refused(error) from None

    account_refusals = refusals(
        _401="Missing or unknown token",
        _403="Not an admin",
        _404="No such account",
        _422="Not a username",
    )

    @router.post(
        "/accounts/{username}/disable",
        response_model=AccountView,
        tags=["accounts"],
        responses=account_refusals,
        summary="Disable an account; its sessions stop working at once (admins)",
    )
    async def disable_account(username: Username, caller: Caller) -> AccountView:
        return await switch(username, caller, True)

    @router.post(
        "/accounts/{username}/enable",
        response_model=AccountView,
        tags=["accounts"],
        responses=account_refusals,
        summary="Enable a disabled account again (admins)",
    )
    async def enable_account(username: Username, caller: Caller) -> AccountView:
        return await switch(username, caller, False)

    @router.post(
        "/accounts/{username}/reset-password",
        response_model=AccountWithPassword,
        tags=["accounts"],
        responses=account_refusals,
        summary="A new one-time password, shown once; the account's sessions end (admins)",
    )
    async def reset_account_password(username: Username, caller: Caller) -> AccountWithPassword:
        admin(caller, "manage accounts")
        try:
            doc, password = await reset_password(ctx.store(), username, clock())
        except AccountError as error:
            raise _refused(error) from None
        return AccountWithPassword(account=_view(doc), password=password)
