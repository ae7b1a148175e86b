"""The HTTP face every service shares: health, readiness and Prometheus metrics,
the documented shape of a refusal and the date types of query parameters."""

import re
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from datetime import UTC, date, datetime
from typing import Annotated, Any

from fastapi import APIRouter, FastAPI, Response
from faststream.nats import NatsBroker
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, generate_latest
from pydantic import AfterValidator, BaseModel, BeforeValidator

from lapor.runtime.broker import declare_consumers

ReadyCheck = Callable[[], Awaitable[bool]]

_ISO_DATE = re.compile(r"[0-9]{4}-[0-9]{2}-[0-9]{2}")
_ISO_DATETIME = re.compile(
    r"[0-9]{4}-[0-9]{2}-[0-9]{2}[Tt ][0-9]{2}:[0-9]{2}(:[0-9]{2}(\.[0-9]+)?)?"
    r"([Zz]|[+-][0-9]{2}:?[0-9]{2})?"
)


def _iso_text(pattern: re.Pattern[str], expected: str) -> Callable[[Any], Any]:
    # Pydantic reads a bare number in a query as Unix time (`to=20261101` would be
    # 1970-08-23); a query parameter must be the ISO 8601 text the document names.
    def check(value: Any) -> Any:
        if isinstance(value, str) and not pattern.fullmatch(value.strip()):
            raise ValueError(f"expected {expected}")
        return value

    return check


def _in_utc_range(value: datetime) -> datetime:
    # Stored times are UTC: 0001-01-01T00:00:00+01:00 has no UTC instant to compare with.
    if value.tzinfo is not None:
        try:
            value.astimezone(UTC)
        except OverflowError:
            raise ValueError("outside the calendar's range") from None
    return value


IsoDate = Annotated[date, BeforeValidator(_iso_text(_ISO_DATE, "YYYY-MM-DD"))]
IsoDateTime = Annotated[
    datetime,
    BeforeValidator(_iso_text(_ISO_DATETIME, "an ISO 8601 date-time")),
    AfterValidator(_in_utc_range),
]


class ErrorBody(BaseModel):
    """Every refusal says why: a sentence, a rejection {reason, message}, or the
    fields that failed validation."""

    detail: str | dict[str, str] | list[dict[str, Any]]


def refusals(html: bool = False, **described: str) -> dict[int | str, dict[str, Any]]:
    """`refusals(_404="...")`: documented error answers, all with an ErrorBody.

    `html=True` for a route that answers with a page: FastAPI would document its
    errors as pages too, but they are JSON like everywhere else.
    """
    if html:
        json_body = {"application/json": {"schema": ErrorBody.model_json_schema()}}
        return {
            int(code.lstrip("_")): {"description": text, "content": json_body}
            for code, text in described.items()
        }
    return {
        int(code.lstrip("_")): {"model": ErrorBody, "description": text}
        for code, text in described.items()
    }


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
