"""The dead-letter watcher's HTTP API: admins list, replay and resolve dead letters
from the console as `lapor dlq list|replay|resolve` do from a terminal.

The console has no database of its own, so the watcher process (`lapor dlq watch`,
database user `dlq`) answers it: the same store, the same `public_view` (phone
numbers masked) and the same `replay_one` as the command line. Only admin bearer
tokens (intake's API tokens and console sessions, looked up by hash in
`api_tokens`) are accepted; an agency officer gets 403.

A replay publishes the stored payload, which opens only with the private
personal-data key: a watcher started without `LAPOR_PII_KEY` lists records
without their payload and answers a replay with 409, naming the command that can.
"""

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Depends, FastAPI, HTTPException, Query
from prometheus_client import CollectorRegistry, Counter
from pydantic import BaseModel, Field
from pydantic_settings import SettingsConfigDict

from lapor.contracts import subjects
from lapor.dlq import (
    DeadLetterStore,
    DeadLetterWatcher,
    connect_nats,
    now,
    public_view,
    replay_one,
)
from lapor.runtime.http import ReadyCheck, create_http_app, refusals
from lapor.runtime.pii import PiiOpener, PiiSealer
from lapor.runtime.settings import ServiceSettings
from lapor.tokens import FindToken, Officer, officer_dependency, stored_tokens

log = logging.getLogger("lapor.dlq")

PREFIX = "/api/v1/dead-letters"
DEFAULT_PAGE = 50
MAX_PAGE = 200
# "lapor.inbound." for "lapor.inbound.>": the channels' own subjects.
INBOUND_SUBJECTS = tuple(s.removesuffix(">") for s in subjects.INBOUND_STREAM.subjects)
DESCRIPTION = (
    "Dead letters: messages no handler could process, listed without personal data, "
    "replayed on their subject or resolved with a reason. Admin tokens only."
)

State = Literal["pending", "settled", "all"]


class DlqSettings(ServiceSettings):
    """`DLQ_HTTP_PORT=0`: the watcher alone, without the API (a second replica)."""

    model_config = SettingsConfigDict(env_prefix="DLQ_", extra="ignore")

    http_port: int = Field(default=8087, ge=0, le=65535)


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
    reason: str = Field(min_length=1, max_length=500)


class ReplayAnswer(BaseModel):
    id: str
    msg_id: str


class ResolveAnswer(BaseModel):
    id: str
    resolved: bool


@dataclass
class DlqDeps:
    store: DeadLetterStore
    js: Any
    actions: Counter
    # One replay or resolve at a time: a double-click must not publish twice (this
    # process is the only one serving the API; replicas run the watcher alone).
    lock: asyncio.Lock


def _view(record: dict[str, Any], readable: bool) -> DeadLetterView:
    return DeadLetterView(**public_view(record), payload_readable=readable)


def _admin_dependency(
    reader: Callable[..., Awaitable[Officer]],
) -> Callable[..., Awaitable[Officer]]:
    async def admin(officer: Annotated[Officer, Depends(reader)]) -> Officer:
        if officer.role != "admin":
            raise HTTPException(403, detail="only admins see and replay dead letters")
        return officer

    return admin


@dataclass(frozen=True)
class DlqContext:
    """What the dead-letter routes are built over (see `dead_letters_router`)."""

    deps: Callable[[], DlqDeps]
    admin: Callable[..., Awaitable[Officer]]


REFUSED = refusals(_401="no usable bearer token", _403="not an admin's token")


def dead_letters_router(deps: Callable[[], DlqDeps], find_token: FindToken) -> APIRouter:
    router = APIRouter(prefix=PREFIX, tags=["dead letters"])
    ctx = DlqContext(deps, _admin_dependency(officer_dependency(find_token)))
    _listing_route(router, ctx)
    _replay_route(router, ctx)
    _resolve_route(router, ctx)
    return router


def _listing_route(router: APIRouter, ctx: DlqContext) -> None:
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
    if str(record.get("subject") or "").startswith(INBOUND_SUBJECTS):
        # A channel's message says who sent it; only the channel's login may
        # publish there, so an operator replays it (`lapor dlq replay`).
        raise HTTPException(
            409,
            detail=f"a channel's inbound message: replay with `lapor dlq replay {record_id}`",
        )
    if record.get("resolved_at") is not None:
        raise HTTPException(409, detail=f"{record_id} was resolved, not replayed")
    if record.get("replayed_at") is not None:
        raise HTTPException(409, detail=f"{record_id} was replayed before")
    return record


def _replay_route(router: APIRouter, ctx: DlqContext) -> None:
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
                msg_id = await replay_one(current.js, current.store, record)
            except ValueError as exc:
                current.actions.labels("replay", "impossible").inc()
                raise HTTPException(409, detail=str(exc)) from None
        current.actions.labels("replay", "done").inc()
        log.info("dead letter %s replayed as %s", record_id, msg_id)
        return ReplayAnswer(id=record_id, msg_id=msg_id)


def _resolve_route(router: APIRouter, ctx: DlqContext) -> None:
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
        from lapor.runtime.logs import mask_phones

        current = ctx.deps()
        reason = body.reason.strip()
        if not reason:
            raise HTTPException(422, detail="say why it is not replayed")
        # Free text an admin typed: it may quote the citizen's number.
        note = mask_phones(reason)[:500]
        async with current.lock:
            outcome = await current.store.mark_resolved(
                record_id, note, officer.name or "admin", now()
            )
        if outcome == "missing":
            raise HTTPException(404, detail=f"no dead letter {record_id}")
        if outcome == "already":
            raise HTTPException(409, detail=f"{record_id} was resolved before")
        current.actions.labels("resolve", "done").inc()
        return ResolveAnswer(id=record_id, resolved=True)


@dataclass(frozen=True)
class Connections:
    nats_url: str
    nats_user: str | None
    nats_password: str | None
    mongo_url: str
    mongo_db: str
    stream_replicas: int = 1


def create_app(
    settings: DlqSettings,
    connections: Connections,
    sealer: PiiSealer,
    opener: PiiOpener | None = None,
) -> FastAPI:
    """The watcher and its API in one process: the lifespan runs the watcher."""
    registry = CollectorRegistry()
    actions = Counter(
        "lapor_dead_letter_actions",
        "Dead letters replayed or resolved through the API",
        ["action", "outcome"],
        registry=registry,
    )
    # What the lifespan opens: `db`, `nc` and `deps`.
    holder: dict[str, Any] = {}

    def deps() -> DlqDeps:
        found: DlqDeps | None = holder.get("deps")
        if found is None:
            raise HTTPException(503, detail="starting")
        return found

    def database() -> Any:
        return holder["db"]

    return create_http_app(
        service="dlq",
        broker=None,
        registry=registry,
        ready_checks=_ready_checks(holder),
        lifespan=_lifespan(holder, connections, sealer, opener, actions),
        routers=[dead_letters_router(deps, stored_tokens(database))],
        description=DESCRIPTION,
        limits=settings.http_limits(),
    )


def _lifespan(
    holder: dict[str, Any],
    connections: Connections,
    sealer: PiiSealer,
    opener: PiiOpener | None,
    actions: Counter,
) -> Callable[[FastAPI], contextlib.AbstractAsyncContextManager[None]]:
    from pymongo import AsyncMongoClient

    @contextlib.asynccontextmanager
    async def lifespan(_app: FastAPI) -> AsyncIterator[None]:
        client: Any = AsyncMongoClient(
            connections.mongo_url,
            appname="lapor-dlq",
            tz_aware=True,
            serverSelectionTimeoutMS=5_000,
        )
        nc = await connect_nats(
            connections.nats_url, connections.nats_user, connections.nats_password, "lapor-dlq"
        )
        db = client[connections.mongo_db]
        store = DeadLetterStore(db, sealer, opener, leave_sealed=True)
        holder.update(db=db, nc=nc, deps=DlqDeps(store, nc.jetstream(), actions, asyncio.Lock()))
        stop = asyncio.Event()
        watcher = DeadLetterWatcher(nc, store, replicas=connections.stream_replicas)
        task = asyncio.create_task(watcher.run(stop), name="dlq-watcher")
        try:
            yield
        finally:
            stop.set()
            with contextlib.suppress(Exception):
                await asyncio.wait_for(task, 10.0)
            with contextlib.suppress(Exception):
                await nc.close()
            await client.close()
            log.info("dlq watcher stopped")

    return lifespan


def _ready_checks(holder: dict[str, Any]) -> dict[str, ReadyCheck]:
    async def nats_ready() -> bool:
        nc = holder.get("nc")
        return bool(nc is not None and nc.is_connected)

    async def database_ready() -> bool:
        if "db" not in holder:
            return False
        try:
            await asyncio.wait_for(holder["db"].command("ping"), 2.0)
        except Exception:
            return False
        return True

    return {"nats": nats_ready, "database": database_ready}


def openapi_document() -> dict[str, Any]:
    """The API as OpenAPI, built from the code without connecting anywhere."""
    from lapor.runtime.pii import new_key, public_key_of
    from lapor.runtime.settings import documentation_infra

    settings = DlqSettings.model_construct(infra=documentation_infra())
    connections = Connections("nats://127.0.0.1:4222", None, None, "mongodb://127.0.0.1", "x")
    return create_app(settings, connections, PiiSealer(public_key_of(new_key()))).openapi()
