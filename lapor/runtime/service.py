"""One bootstrap shape for every service: resources opened in the lifespan, a broker
with the project's delivery policy, health/metrics HTTP, and an AsyncAPI factory."""

import asyncio
import logging
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from typing import Any, Generic, TypeVar

from fastapi import APIRouter, FastAPI
from faststream import FastStream
from faststream.message import StreamMessage
from faststream.nats import NatsBroker
from faststream.specification import AsyncAPI
from prometheus_client import CollectorRegistry
from pymongo import AsyncMongoClient
from pymongo.asynchronous.database import AsyncDatabase

from lapor.runtime.broker import create_broker, dead_letter_record
from lapor.runtime.db import connect_database, database_ready
from lapor.runtime.db_watch import ClientWatch, fresh_ping, start_client_watch
from lapor.runtime.dead_letters import failure_notes, keep_dead_letter
from lapor.runtime.diagnostics import dump_tasks_on_signal
from lapor.runtime.http import broker_running, create_http_app
from lapor.runtime.logs import configure_logging
from lapor.runtime.settings import ServiceSettings, documentation_infra

T = TypeVar("T")
log = logging.getLogger(__name__)


class Late(Generic[T]):
    """A dependency that exists only once the lifespan has opened its resources."""

    def __init__(self, name: str) -> None:
        self._name = name
        self._value: T | None = None

    def set(self, value: T | None) -> None:
        self._value = value

    def get(self) -> T:
        if self._value is None:
            raise RuntimeError(f"{self._name} used before the service started")
        return self._value


@dataclass(frozen=True)
class ContractViolation:
    """A consumed message that broke its contract, already kept as a dead letter."""

    subject: str | None
    payload: bytes
    error: Exception
    # Stable across redeliveries of the message: a key for idempotent handling.
    dead_letter_id: str


ViolationHandler = Callable[[ContractViolation], Awaitable[None]]


@dataclass
class Runtime:
    """What a service's wiring receives: the broker to subscribe on and its resources."""

    service: str
    settings: ServiceSettings
    broker: NatsBroker
    registry: CollectorRegistry
    db: Late[AsyncDatabase[dict[str, Any]]] = field(default_factory=lambda: Late("database"))
    violation_handlers: dict[str, ViolationHandler] = field(default_factory=dict)

    def on_contract_violation(self, subject: str, handler: ViolationHandler) -> None:
        """Handle messages on `subject` (exactly as published) that break their contract,
        beyond the dead letter every service keeps: a rejection record, an answer.

        The handler runs after the dead letter is stored. If it raises, the message
        is redelivered like any failed one, so it must be idempotent.
        """
        self.violation_handlers[subject] = handler


Starter = Callable[[AsyncDatabase[dict[str, Any]]], Awaitable[Callable[[], Awaitable[None]] | None]]


def build_runtime(service: str, settings: ServiceSettings) -> Runtime:
    registry = CollectorRegistry()
    db_box: Late[AsyncDatabase[dict[str, Any]]] = Late("database")
    # The public key: a service seals its dead letters but cannot open them, nor
    # anyone else's; only the operator's tools hold the private key.
    sealer = settings.infra.pii.sealer()
    violation_handlers: dict[str, ViolationHandler] = {}

    async def store_dead_letter(msg: StreamMessage[Any], exc: Exception) -> None:
        record = dead_letter_record(service, msg, exc, reason="contract_violation")
        log.warning("message violates its contract; kept as dead letter %s", record["_id"])
        # A redelivery finds its dead letter already stored and still runs the handler:
        # the first run may have failed after the dead letter was written.
        await keep_dead_letter(db_box.get(), record, sealer)
        if (handler := violation_handlers.get(record["subject"] or "")) is not None:
            body = msg.body if isinstance(msg.body, bytes) else str(msg.body).encode()
            await handler(ContractViolation(record["subject"], body, exc, str(record["_id"])))

    broker = create_broker(
        settings.infra,
        service=service,
        registry=registry,
        on_invalid=store_dead_letter,
        failure_notes=failure_notes(db_box.get),
    )
    return Runtime(
        service, settings, broker, registry, db_box, violation_handlers=violation_handlers
    )


def create_service_app(
    runtime: Runtime,
    *,
    on_start: Starter,
    routers: Sequence[APIRouter] = (),
    description: str = "",
) -> FastAPI:
    """The service's ASGI app; the lifespan opens the database, then starts consuming."""
    configure_logging(
        runtime.service, runtime.settings.infra.log_level, runtime.settings.infra.log_format
    )

    @asynccontextmanager
    async def lifespan(_app: FastAPI) -> AsyncIterator[None]:
        dump_tasks_on_signal(asyncio.get_running_loop())
        client: AsyncMongoClient[dict[str, Any]]
        client, db = connect_database(runtime.settings.infra, f"lapor-{runtime.service}")
        runtime.db.set(db)
        stop_watch = start_client_watch(
            ClientWatch(
                own=lambda: database_ready(db),
                fresh=fresh_ping(runtime.settings.infra.mongo_url, runtime.settings.infra.mongo_db),
            )
        )
        stop_background = None
        try:
            stop_background = await on_start(db)
            async with broker_running(runtime.broker):
                log.info("%s started", runtime.service)
                yield
        finally:
            await stop_watch()
            if stop_background is not None:
                await stop_background()
            runtime.db.set(None)
            await client.close()
            log.info("%s stopped", runtime.service)

    return create_http_app(
        service=runtime.service,
        broker=runtime.broker,
        registry=runtime.registry,
        ready_checks={"database": lambda: database_ready(runtime.db.get())},
        lifespan=lifespan,
        routers=routers,
        description=description,
        limits=runtime.settings.http_limits(),
    )


def asyncapi_app(broker: NatsBroker, service: str, description: str) -> FastStream:
    """A FastStream app used only to generate the AsyncAPI document from the code."""
    return FastStream(
        broker,
        specification=AsyncAPI(title=f"Lapor {service}", version="1.0.0", description=description),
    )


def docs_runtime(service: str) -> Runtime:
    """A runtime with built-in defaults (not the environment), for document generation."""
    settings = ServiceSettings.model_construct(infra=documentation_infra())
    return build_runtime(service, settings)


def documented_broker(
    service: str, register: Callable[[Runtime, Late[Any]], object], description: str
) -> FastStream:
    """A service's bus, as `register(runtime, deps)` declares its subscribers and
    publishers, for the AsyncAPI document (no dependencies: nothing is handled)."""
    runtime = docs_runtime(service)
    register(runtime, Late("unused"))
    return asyncapi_app(runtime.broker, service, description)
