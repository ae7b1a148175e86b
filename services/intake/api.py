"""Intake's HTTP API: the complaint as citizens and officers see it.

`build_router` gathers the routes: reading a complaint, submitting one, acting
on one (here), an agency's worklist and the triage queue (`worklist_api`), API
tokens (`token_api`), and with accounts the console's logins, accounts and
overview (`accounts_api`, `oversight`).
"""

import uuid
from collections.abc import Callable, Mapping, Sequence
from datetime import UTC, datetime
from typing import Annotated, Any
from zoneinfo import ZoneInfo

from fastapi import APIRouter, Depends, HTTPException
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from pydantic import BaseModel, Field

from lapor.contracts import InboundWeb, Location, Priority, State
from lapor.contracts.commands import Action, ComplaintCommand, Outcome
from lapor.runtime.http import refusals
from services.intake.accounts_api import build_account_routes
from services.intake.auth import Principal, caller_dependency, citizen_key, hash_token
from services.intake.callers import (
    AccountsContext,
    ApiContext,
    CallerDependency,
    CitizenKey,
    CitizenLinks,
    TrackingId,
    complaint_for,
    identified,
)
from services.intake.lifecycle import Refused
from services.intake.oversight import build_oversight_routes
from services.intake.repository import ComplaintRepository
from services.intake.token_api import token_routes
from services.intake.usecases import SubmissionConflict, SubmissionRejected
from services.intake.views import ComplaintView, complaint_view
from services.intake.worklist_api import agency_routes


class ActionRequest(BaseModel):
    """The body of an action; which fields matter depends on the action."""

    command_id: str | None = Field(
        default=None, max_length=128, description="Client id making a retry take effect once."
    )
    text: str | None = Field(default=None, max_length=4000)
    outcome: Outcome | None = None
    agency: str | None = Field(default=None, max_length=32)
    priority: Priority | None = None
    duplicate_of: str | None = Field(default=None, max_length=32)
    score: int | None = Field(default=None, ge=1, le=5)


class NewComplaintRequest(BaseModel):
    """A complaint from the web form or an app."""

    region: str = Field(default="banjar", pattern=r"^[a-z0-9_-]+$")
    text: str = Field(min_length=1, max_length=10_000)
    name: str | None = Field(default=None, max_length=120)
    phone: str | None = Field(default=None, max_length=32, description="For SMS replies.")
    email: str | None = Field(default=None, max_length=254)
    category: str | None = Field(default=None, max_length=64, description="A hint only.")
    location: Location | None = None
    anonymous: bool = Field(default=False, description="Hide the reporter from agencies.")
    confidential: bool = Field(default=False, description="Hide the complaint from the public.")
    client_id: str | None = Field(
        default=None, max_length=128, description="Client's id: a resend is the same complaint."
    )


class ComplaintAccepted(BaseModel):
    tracking_id: str
    state: State
    status_url: str
    citizen_url: str = Field(
        description="The reporter's secret link: shows a confidential complaint to its "
        "reporter and accepts their reply, rating or reopening. Shown only here."
    )


_bearer = HTTPBearer(auto_error=False)


def _utcnow() -> datetime:
    return datetime.now(UTC)


def build_router(
    repository: Any,
    zones: Mapping[str, ZoneInfo],
    execute: Any,
    submit: Any,
    link_secret: bytes,
    old_link_secrets: Sequence[bytes] = (),
    clock: Callable[[], datetime] = _utcnow,
    *,
    accounts: AccountsContext | None = None,
) -> APIRouter:
    """`repository` returns the live repository; `execute(command)` applies a command;
    `submit(InboundWeb)` stores a new complaint; `link_secret` signs citizens' links,
    `old_link_secrets` still open links signed before a change of key; `clock`
    decides token expiry and last use, logins' throttling and what is overdue;
    `accounts` adds logins, accounts and the admins' overview (the console's API)."""
    links = CitizenLinks(link_secret, old_link_secrets)
    ctx = ApiContext(repository, zones, execute, submit, links, clock, accounts)
    router = APIRouter(prefix="/api/v1", tags=["complaints"])
    principal = caller_dependency(repository, clock)
    for routes in (
        _reading_routes,
        _submission_routes,
        _action_routes,
        agency_routes,
        token_routes,
    ):
        routes(router, ctx, principal)
    if accounts is not None:
        router.include_router(build_account_routes(accounts, principal, repository, clock))
        router.include_router(
            build_oversight_routes(accounts, principal, repository, ctx.zone_of, clock)
        )
    return router


def _reading_routes(router: APIRouter, ctx: ApiContext, principal: CallerDependency) -> None:
    """A complaint as its reader may see it."""
    Repo = Annotated[ComplaintRepository, Depends(ctx.repository)]
    Caller = Annotated[Principal | None, Depends(principal)]

    @router.get(
        "/complaints/{tracking_id}",
        response_model=ComplaintView,
        responses=refusals(
            _401="Unknown token", _404="No complaint with this tracking id (or not yours to see)"
        ),
        summary="A complaint's state, agency, priority, deadlines and history",
    )
    async def get_complaint(
        tracking_id: TrackingId,
        repo: Repo,
        caller: Caller,
        key: CitizenKey = None,
    ) -> ComplaintView:
        _, _, doc, audience = await complaint_for(repo, tracking_id, caller, key, ctx.links)
        return complaint_view(doc, ctx.zone_of(doc), audience)


def _submission_routes(router: APIRouter, ctx: ApiContext, principal: CallerDependency) -> None:
    """The web channel: a new complaint."""
    Caller = Annotated[Principal | None, Depends(principal)]

    @router.post(
        "/complaints",
        status_code=202,
        response_model=ComplaintAccepted,
        responses=refusals(
            _400="The body is not JSON",
            _401="Unknown token",
            _409="This client_id was used before for a different complaint",
            _422="Not a valid complaint; the reason is given and kept",
        ),
        summary="Submit a complaint (web form, app)",
    )
    async def submit_complaint(
        body: NewComplaintRequest,
        caller: Caller,
        credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(_bearer)],
    ) -> ComplaintAccepted:
        # `client_id` is the caller's idempotency key, bound to the whole submission
        # (inbound.submission_binding): a token holder's keys are its own (the
        # token's hash scopes them); anonymous callers share one scope, in which a
        # key only returns its complaint to someone who sends the same submission
        # again, contact details included. So a replay answers with the secret link
        # only those who could file it: the token holder, or whoever knows the
        # client_id and everything the reporter sent (the phone and e-mail are in no
        # view). Without contact details, the unguessable client_id is what guards it.
        scope = "web"
        if caller is not None and credentials is not None:
            scope = f"token:{hash_token(credentials.credentials)[:32]}"
        submission = InboundWeb(
            source=scope,
            message_id=body.client_id or uuid.uuid4().hex,
            received_at=datetime.now(UTC),
            **body.model_dump(exclude={"client_id"}),
        )
        try:
            doc = await ctx.submit(submission)
        except SubmissionRejected as rejected:
            raise HTTPException(
                422, detail={"reason": rejected.reason.value, "message": rejected.detail}
            ) from None
        except SubmissionConflict:
            raise HTTPException(
                409,
                detail="this client_id was already used for a different complaint: a resend "
                "must repeat the submission unchanged; a new complaint needs a new client_id",
            ) from None
        status_url = f"/api/v1/complaints/{doc['_id']}"
        return ComplaintAccepted(
            tracking_id=doc["_id"],
            state=State(doc["state"]),
            status_url=status_url,
            citizen_url=f"{status_url}?key={citizen_key(doc['_id'], ctx.links.secret)}",
        )


def _action_routes(router: APIRouter, ctx: ApiContext, principal: CallerDependency) -> None:
    """Officers', admins' and reporters' actions on a complaint."""
    Caller = Annotated[Principal | None, Depends(principal)]

    @router.post(
        "/complaints/{tracking_id}/actions/{action}",
        response_model=ComplaintView,
        responses=refusals(
            _400="The body is not JSON",
            _401="Missing or unknown token",
            _403="Not allowed for this role or agency",
            _404="No such complaint",
            _409="Not allowed in the complaint's current state",
            _422="The action lacks what it needs (text, outcome, ...) or names an agency "
            "or a complaint that does not exist",
        ),
        summary="An action on a complaint by an officer, an admin or (secret link) its reporter",
    )
    async def act(
        tracking_id: TrackingId,
        action: Action,
        body: ActionRequest,
        caller: Caller,
        key: CitizenKey = None,
    ) -> ComplaintView:
        tracking_id = tracking_id.strip().upper()
        actor = identified(caller or ctx.links.reporter(tracking_id, key))
        if len(tracking_id) < 4:  # only padding made it long enough for the path
            raise HTTPException(404, detail="complaint not found")
        command = ComplaintCommand(
            command_id=body.command_id or f"http-{uuid.uuid4().hex}",
            complaint_id=tracking_id,
            action=action,
            actor=actor.actor(),
            **body.model_dump(exclude={"command_id"}),
        )
        try:
            doc = await ctx.execute(command)
        except Refused as refused:
            raise HTTPException(refused.status, detail=refused.reason) from None
        return complaint_view(doc, ctx.zone_of(doc), actor.audience(doc))
