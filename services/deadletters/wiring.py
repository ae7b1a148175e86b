"""Dead-letter service bootstrap: the advisory watcher and admins' HTTP API in one
process (`python -m services.deadletters`).

It logs in to NATS as `dlq`, which may read the advisories, fetch any stream's
message by sequence and publish replays on the subjects of events, commands and
outbound messages (never a channel's inbound one), and to the database as `dlq`
(`dead_letters`, `delivery_failures`, and `api_tokens` to check admins' tokens).
Payloads are sealed to the personal-data public key; the private key, where the
operator gives it (`LAPOR_PII_KEY`), lets admins replay from the console.
`DLQ_HTTP_PORT=0` runs the watcher alone (a second replica).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import signal
from collections.abc import AsyncIterator, Callable
from typing import Any

from fastapi import FastAPI, HTTPException
from prometheus_client import CollectorRegistry, Counter
from pymongo import AsyncMongoClient

from lapor.runtime.http import ReadyCheck, create_http_app
from lapor.runtime.logs import configure_logging
from lapor.runtime.pii import PiiOpener
from lapor.runtime.serve import serve
from lapor.tokens import stored_tokens
from services.deadletters.api import DeadLetterDeps, dead_letters_router
from services.deadletters.handlers import DeadLetterWatcher, connect_nats, jetstream_publisher
from services.deadletters.repository import DeadLetterStore
from services.deadletters.settings import DeadLetterSettings, private_key

log = logging.getLogger("services.deadletters")

SERVICE = "dlq"
APP_NAME = "lapor-dlq"
DESCRIPTION = (
    "Dead letters: messages no handler could process, listed without personal data, "
    "replayed on their subject or resolved with a reason. Admin tokens only."
)


def _client(settings: DeadLetterSettings) -> Any:
    return AsyncMongoClient(
        settings.infra.mongo_url, appname=APP_NAME, tz_aware=True, serverSelectionTimeoutMS=5_000
    )


async def _connect(settings: DeadLetterSettings) -> Any:
    infra = settings.infra
    return await connect_nats(infra.nats_url, infra.nats_user, infra.nats_password, APP_NAME)


def create_app(settings: DeadLetterSettings, opener: PiiOpener | None = None) -> FastAPI:
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

    def deps() -> DeadLetterDeps:
        found: DeadLetterDeps | None = holder.get("deps")
        if found is None:
            raise HTTPException(503, detail="starting")
        return found

    def database() -> Any:
        return holder["db"]

    return create_http_app(
        service=SERVICE,
        broker=None,
        registry=registry,
        ready_checks=_ready_checks(holder),
        lifespan=_lifespan(holder, settings, opener, actions),
        routers=[dead_letters_router(deps, stored_tokens(database))],
        description=DESCRIPTION,
        limits=settings.http_limits(),
    )


def _lifespan(
    holder: dict[str, Any],
    settings: DeadLetterSettings,
    opener: PiiOpener | None,
    actions: Counter,
) -> Callable[[FastAPI], contextlib.AbstractAsyncContextManager[None]]:
    @contextlib.asynccontextmanager
    async def lifespan(_app: FastAPI) -> AsyncIterator[None]:
        client = _client(settings)
        nc = await _connect(settings)
        db = client[settings.infra.mongo_db]
        store = DeadLetterStore(db, settings.infra.pii.sealer(), opener, leave_sealed=True)
        js = nc.jetstream()
        holder.update(
            db=db,
            nc=nc,
            deps=DeadLetterDeps(store, jetstream_publisher(js), actions, asyncio.Lock()),
        )
        stop = asyncio.Event()
        watcher = DeadLetterWatcher(nc, store, replicas=settings.infra.nats_stream_replicas)
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


async def watch(settings: DeadLetterSettings) -> None:
    """The watcher alone, until SIGTERM or SIGINT."""
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    client = _client(settings)
    nc = await _connect(settings)
    try:
        store = DeadLetterStore(client[settings.infra.mongo_db], settings.infra.pii.sealer())
        await DeadLetterWatcher(nc, store, replicas=settings.infra.nats_stream_replicas).run(stop)
    finally:
        with contextlib.suppress(Exception):
            await nc.close()
        await client.close()
        log.info("dlq watcher stopped")


def openapi_document() -> dict[str, Any]:
    """The API as OpenAPI, built from the code without connecting anywhere."""
    from lapor.runtime.settings import documentation_infra

    settings = DeadLetterSettings.model_construct(infra=documentation_infra())
    return create_app(settings).openapi()


def main() -> None:
    settings = DeadLetterSettings()
    keys = private_key()
    configure_logging(SERVICE, settings.infra.log_level, settings.infra.log_format)
    if settings.http_port == 0:
        asyncio.run(watch(settings))
        return
    serve(create_app(settings, keys.opener() if keys is not None else None), settings)
