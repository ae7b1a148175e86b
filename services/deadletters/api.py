"""The dead-letter service's HTTP API: admins list, replay and resolve dead letters
from the console as `lapor dlq list|replay|resolve` do from a terminal.

The console has no database of its own, so this process (database user `dlq`)
answers it: the same store, the same `public_view` (phone numbers masked) and
the same `replay_one` as the command line. Only admin bearer tokens (intake's
API tokens and console sessions, looked up by hash in `api_tokens`) are
accepted; an agency officer gets 403.

A replay publishes the stored payload, which opens only with the private
personal-data key: a process started without `LAPOR_PII_KEY` lists records
without their payload and answers a replay with 409, naming the command that can.
"""

import asyncio
import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Depends, HTTPException, Query
from prometheus_client import Counter
from pydantic import BaseModel, Field

from lapor.runtime.http import refusals
from lapor.tokens import FindToken, Officer, officer_dependency
from services.deadletters import domain, usecases
from services.deadletters.repository import DeadLetterRepository

log = logging.getLogger("services.deadletters")

PREFIX = "/api/v1/dead-letters"
DEFAULT_PAGE = 50
MAX_PAGE = 200

State = Literal["pending", "settled", "all"]


class DeadLetterView(BaseModel):
    id: str
    reason: str | None = None
    service: str | None = None
    consumer: str | None = None
    stream: str | None = None
    stream_sequence: int | None = None
    subject: str | None = None
    deliveries: int | None = None
    error: str = ""
    stored_at: Any = None
    replayed_at: Any = None
    replays: int = 0
    resolved_at: Any = None
    resolved_by: str | None = None
    resolution: str | None = None
    # Phone numbers masked; empty where this process cannot open payloads.
    payload: str = ""
    payload_readable: bool = True


class DeadLetterPage(BaseModel):
    items: list[DeadLetterView]
    # Records after this page; ask again with `after` = the last id.
    more: int
    replay_available: bool


class Resolution(BaseModel):
    reason: str = Field(min_length=1, max_length=domain.MAX_RESOLUTION)


class ReplayAnswer(BaseModel):
    id: str
    msg_id: str


class ResolveAnswer(BaseModel):
    id: str
    resolved: bool


@dataclass
class DeadLetterDeps:
    store: DeadLetterRepository
    publish: usecases.Publisher
    actions: Counter
    # One replay or resolve at a time: a double-click must not publish twice (this
    # process is the only one serving the API; replicas run the watcher alone).
    lock: asyncio.Lock


def _view(record: dict[str, Any], readable: bool) -> DeadLetterView:
    return DeadLetterView(**domain.public_view(record), payload_readable=readable)


def _admin_dependency(
    reader: Callable[..., Awaitable[Officer]],
) -> Callable[..., Awaitable[Officer]]:
    async def admin(officer: Annotated[Officer, Depends(reader)]) -> Officer:
        if officer.role != "admin":
            raise HTTPException(403, detail="only admins see and replay dead letters")
        return officer

    return admin


@dataclass(frozen=True)
class RouteContext:
    """What the dead-letter routes are built over (see `dead_letters_router`)."""

    deps: Callable[[], DeadLetterDeps]
    admin: Callable[..., Awaitable[Officer]]


REFUSED = refusals(_401="no usable bearer token", _403="not an admin's token")


def dead_letters_router(deps: Callable[[], DeadLetterDeps], find_token: FindToken) -> APIRouter:
    router = APIRouter(prefix=PREFIX, tags=["dead letters"])
    ctx = RouteContext(deps, _admin_dependency(officer_dependency(find_token)))
    _listing_route(router, ctx)
    _replay_route(router, ctx)
    _resolve_route(router, ctx)
    return router


def _listing_route(router: APIRouter, ctx: RouteContext) -> None:
    Admin = Annotated[Officer, Depends(ctx.admin)]

    @router.get("", summary="Dead letters, oldest first, a page at a time", responses=REFUSED)
    async def list_dead_letters(
        _admin: Admin,
        state: State = "pending",
        after: Annotated[str | None, Query(max_length=300)] = None,
        limit: Annotated[int, Query(ge=1, le=MAX_PAGE)] = DEFAULT_PAGE,
    ) -> DeadLetterPage:
        current = ctx.deps()
        try:
            found, more = await current.store.page(
                pending_only=state == "pending",
                settled_only=state == "settled",
                after=after,
                limit=limit,
            )
        except LookupError as exc:
            raise HTTPException(404, detail=str(exc)) from None
        readable = current.store.opens_payloads
        return DeadLetterPage(
            items=[_view(record, readable) for record in found],
            more=more,
            replay_available=readable,
        )


def _check_replayable(record_id: str, record: dict[str, Any] | None) -> dict[str, Any]:
    """The record, if the console may replay it; otherwise the refusal."""
    if record is None:
        raise HTTPException(404, detail=f"no dead letter {record_id}")
    if (refusal := domain.console_refusal(record)) is not None:
        raise HTTPException(409, detail=refusal)
    return record


def _replay_route(router: APIRouter, ctx: RouteContext) -> None:
    Admin = Annotated[Officer, Depends(ctx.admin)]

    @router.post(
        "/{record_id}/replay",
        summary="Publish a dead letter again on its subject, with a new message id",
        responses={
            **REFUSED,
            **refusals(
                _404="no such dead letter",
                _409="already replayed or resolved, or this process cannot open payloads",
            ),
        },
    )
    async def replay(record_id: str, _admin: Admin) -> ReplayAnswer:
        current = ctx.deps()
        if not current.store.opens_payloads:
            raise HTTPException(
                409,
                detail="this watcher has no LAPOR_PII_KEY to open payloads: "
                f"replay with `lapor dlq replay {record_id}`",
            )
        async with current.lock:
            record = _check_replayable(record_id, await current.store.get(record_id))
            try:
                msg_id = await usecases.replay_one(current.publish, current.store, record)
            except ValueError as exc:
                current.actions.labels("replay", "impossible").inc()
                raise HTTPException(409, detail=str(exc)) from None
        current.actions.labels("replay", "done").inc()
        log.info("dead letter %s replayed as %s", record_id, msg_id)
        return ReplayAnswer(id=record_id, msg_id=msg_id)


def _resolve_route(router: APIRouter, ctx: RouteContext) -> None:
    Admin = Annotated[Officer, Depends(ctx.admin)]

    @router.post(
        "/{record_id}/resolve",
        summary="Settle a dead letter without replaying it, with the reason",
        responses={
            **REFUSED,
            **refusals(_404="no such dead letter", _409="resolved before"),
        },
    )
    async def resolve(record_id: str, body: Resolution, officer: Admin) -> ResolveAnswer:
        current = ctx.deps()
        if not body.reason.strip():
            raise HTTPException(422, detail="say why it is not replayed")
        async with current.lock:
            outcome = await usecases.resolve(
                current.store, record_id, body.reason, officer.name or "admin"
            )
        if outcome == "missing":
            raise HTTPException(404, detail=f"no dead letter {record_id}")
        if outcome == "already":
            raise HTTPException(409, detail=f"{record_id} was resolved before")
        current.actions.labels("resolve", "done").inc()
        return ResolveAnswer(id=record_id, resolved=True)
