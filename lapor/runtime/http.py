"""The HTTP face every service shares: health, readiness and Prometheus metrics."""

from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from typing import Any

from fastapi import APIRouter, FastAPI, Response
from faststream.nats import NatsBroker
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, generate_latest

from lapor.runtime.broker import declare_consumers

ReadyCheck = Callable[[], Awaitable[bool]]


def create_http_app(
    *,
    service: str,
    broker: NatsBroker,
    registry: CollectorRegistry,
    ready_checks: dict[str, ReadyCheck],
    lifespan: Callable[[FastAPI], AbstractAsyncContextManager[None]],
    routers: Sequence[APIRouter] = (),
    description: str = "",
) -> FastAPI:
    app = FastAPI(
        title=f"Lapor {service}",
        description=description,
        version="1",
        lifespan=lifespan,
    )

    @app.get("/healthz", tags=["health"], summary="The process is alive")
    async def healthz() -> dict[str, str]:
        return {"status": "ok", "service": service}

    @app.get("/readyz", tags=["health"], summary="NATS and the database are reachable")
    async def readyz(response: Response) -> dict[str, Any]:
        checks = {"nats": await broker.ping(timeout=2.0)}
        for name, check in ready_checks.items():
            checks[name] = await check()
        ready = all(checks.values())
        response.status_code = 200 if ready else 503
        return {"ready": ready, "checks": checks}

    @app.get("/metrics", tags=["health"], summary="Prometheus metrics", include_in_schema=False)
    async def metrics() -> Response:
        return Response(generate_latest(registry), media_type=CONTENT_TYPE_LATEST)

    for router in routers:
        app.include_router(router)
    return app


@asynccontextmanager
async def broker_running(broker: NatsBroker) -> AsyncIterator[None]:
    """Start consuming; on shutdown stop taking messages and let in-flight ones finish."""
    await declare_consumers(broker)
    await broker.start()
    try:
        yield
    finally:
        await broker.stop()
