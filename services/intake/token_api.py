"""API tokens over HTTP: admins list, create and revoke them."""

from datetime import datetime
from typing import Annotated, Literal

from fastapi import APIRouter, Depends, HTTPException, Path
from pydantic import BaseModel, Field

from lapor.contracts.commands import Role
from lapor.runtime.http import refusals
from lapor.tokens import DEFAULT_TOKEN_DAYS
from services.intake.auth import (
    MAX_TOKEN_DAYS,
    Principal,
    TokenStatus,
    new_token,
    token_record,
    token_view,
)
from services.intake.callers import ApiContext, CallerDependency, admin
from services.intake.repository import ComplaintRepository


class TokenView(BaseModel):
    """An API token as admins see it: never the secret, never its hash."""

    id: str | None = Field(description="The token's public id (revoke by it)")
    name: str | None
    role: str | None
    agency: str | None
    created_at: datetime | None
    expires_at: datetime | None = Field(
        description="After this the token is refused; tokens from before expiries "
        "existed expire 90 days after their creation"
    )
    last_used_at: datetime | None = Field(description="Recorded at most once a minute")
    revoked_at: datetime | None
    status: TokenStatus


class NewTokenRequest(BaseModel):
    name: str = Field(min_length=1, max_length=64, description="Who or what holds it")
    role: Literal["agency", "admin", "partner"]
    agency: str | None = Field(default=None, max_length=32)
    days: int = Field(default=DEFAULT_TOKEN_DAYS, ge=1, le=MAX_TOKEN_DAYS)


class TokenCreated(BaseModel):
    token: str = Field(description="The token itself, shown only here; only its hash is kept")
    view: TokenView


def token_routes(router: APIRouter, ctx: ApiContext, principal: CallerDependency) -> None:
    """API tokens (admins)."""
    _kept_token_routes(router, ctx, principal)
    _new_token_route(router, ctx, principal)


def _kept_token_routes(router: APIRouter, ctx: ApiContext, principal: CallerDependency) -> None:
    """Listing and revoking the tokens kept."""
    Repo = Annotated[ComplaintRepository, Depends(ctx.repository)]
    Caller = Annotated[Principal | None, Depends(principal)]

    @router.get(
        "/tokens",
        response_model=list[TokenView],
        tags=["tokens"],
        responses=refusals(_401="Missing, unknown, expired or revoked token", _403="Not an admin"),
        summary="Every API token: role, agency, created, expires, last use, revoked (admins)",
    )
    async def list_tokens(repo: Repo, caller: Caller) -> list[TokenView]:
        admin(caller, "manage tokens")
        now = ctx.clock()
        return [TokenView(**token_view(record, now)) for record in await repo.list_tokens()]

    @router.post(
        "/tokens/{token_id}/revoke",
        response_model=TokenView,
        tags=["tokens"],
        responses=refusals(
            _401="Missing, unknown, expired or revoked token",
            _403="Not an admin",
            _404="No token with this id",
        ),
        summary="Revoke an API token at once (admins); it is kept, marked revoked",
    )
    async def revoke_token(
        token_id: Annotated[str, Path(max_length=64)], repo: Repo, caller: Caller
    ) -> TokenView:
        admin(caller, "manage tokens")
        now = ctx.clock()
        record = await repo.revoke_token(token_id, now)
        if record is None:
            raise HTTPException(404, detail="no token with this id")
        return TokenView(**token_view(record, now))


def _new_token_route(router: APIRouter, ctx: ApiContext, principal: CallerDependency) -> None:
    Repo = Annotated[ComplaintRepository, Depends(ctx.repository)]
    Caller = Annotated[Principal | None, Depends(principal)]

    @router.post(
        "/tokens",
        status_code=201,
        response_model=TokenCreated,
        tags=["tokens"],
        responses=refusals(
            _400="The body is not JSON",
            _401="Missing, unknown, expired or revoked token",
            _403="Not an admin",
            _422="An agency token without its agency, or an unknown agency",
        ),
        summary="Create an API token for a machine or an officer; shown once (admins)",
    )
    async def create_token(body: NewTokenRequest, repo: Repo, caller: Caller) -> TokenCreated:
        admin(caller, "manage tokens")
        known = frozenset().union(*ctx.accounts.agencies.values()) if ctx.accounts else None
        if body.agency and known is not None and body.agency not in known:
            raise HTTPException(422, detail=f"unknown agency code {body.agency!r}")
        now = ctx.clock()
        token = new_token()
        try:
            record = token_record(
                token, Role(body.role), body.name, body.agency, days=body.days, now=now
            )
        except ValueError as error:
            raise HTTPException(422, detail=str(error)) from None
        await repo.add_token(record)
        return TokenCreated(token=token, view=TokenView(**token_view(record, now)))
