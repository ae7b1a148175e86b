"""The HTTP face every service shares: health, readiness and Prometheus metrics,
the documented shape of a refusal and the date types of query parameters.

Every app also gets the same protection in front of its routes: a request body
size limit (413), a per-client rate limit on requests that change something
and another, more generous one on anonymous reads of listings, reports and
public status (429 with Retry-After) and a last-resort handler that answers a bug with a bare
JSON 500 while the traceback goes to the service's log only.
"""

import hashlib
import ipaddress
import json
import logging
import math
import re
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable, Sequence
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from datetime import UTC, date, datetime
from typing import Annotated, Any

from fastapi import APIRouter, FastAPI, HTTPException, Request, Response
from fastapi.dependencies.models import Dependant
from fastapi.routing import APIRoute
from faststream.nats import NatsBroker
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, generate_latest
from pydantic import AfterValidator, BaseModel, BeforeValidator
from starlette.routing import BaseRoute
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from lapor.runtime.broker import declare_consumers
from lapor.runtime.settings import HttpLimits

ReadyCheck = Callable[[], Awaitable[bool]]
log = logging.getLogger(__name__)

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


def document_dependency_refusals(routes: Iterable[BaseRoute]) -> None:
    """Document on every route the refusals its dependencies declare (a
    `documented_refusals` mapping of status to description on a dependency), so a
    refusal made in one shared dependency is documented wherever it applies. Runs
    before the routes are included in the app, which builds the response models."""
    for route in routes:
        # FastAPI (0.165) keeps an included router whole, behind a route of its own.
        if (included := getattr(route, "original_router", None)) is not None:
            document_dependency_refusals(included.routes)
        if not isinstance(route, APIRoute):
            continue
        for status, text in _declared_refusals(route.dependant).items():
            current = route.responses.get(status)
            if current is None:
                answer = {"model": ErrorBody, "description": text.capitalize()}
            elif text not in current.get("description", ""):
                answer = {**current, "description": f"{current.get('description', '')}, or {text}"}
            else:
                continue
            # A new dict: routes may share one dict of answers.
            route.responses = {**route.responses, status: answer}


def _declared_refusals(dependant: Dependant) -> dict[int, str]:
    declared = dict(getattr(dependant.call, "documented_refusals", None) or {})
    for sub in dependant.dependencies:
        declared |= _declared_refusals(sub)
    return declared


async def _answer(
    send: Send, status: int, detail: str, headers: Sequence[tuple[bytes, bytes]] = ()
) -> None:
    body = json.dumps({"detail": detail}).encode()
    await send(
        {
            "type": "http.response.start",
            "status": status,
            "headers": [
                (b"content-type", b"application/json"),
                (b"content-length", str(len(body)).encode()),
                *headers,
            ],
        }
    )
    await send({"type": "http.response.body", "body": body})


class BodyTooLarge(HTTPException):
    # An HTTPException, so that FastAPI's body parsing passes it on and the app's
    # own handler answers it as JSON like every other refusal.
    def __init__(self, limit: int) -> None:
        super().__init__(413, f"request body larger than {limit} bytes")


class BodyLimit:
    """Refuse bodies over `max_bytes` (or a larger limit of the path, in `larger`): by
    Content-Length before the app runs, and by counting while the app reads, for
    chunked bodies that declare no length."""

    def __init__(
        self, app: ASGIApp, max_bytes: int, larger: Sequence[tuple[str, int]] = ()
    ) -> None:
        self.app = app
        self.max_bytes = max_bytes
        self.larger = [(re.compile(path), limit) for path, limit in larger]

    def limit_of(self, path: str) -> int:
        return next((n for p, n in self.larger if p.match(path)), self.max_bytes)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        max_bytes = self.limit_of(scope["path"])
        declared = dict(scope["headers"]).get(b"content-length")
        if declared is not None and declared.isdigit() and int(declared) > max_bytes:
            await _answer(send, 413, str(BodyTooLarge(max_bytes).detail))
            return
        received = 0
        watched = _Watched(send)

        async def counted() -> Message:
            nonlocal received
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > max_bytes:
                    raise BodyTooLarge(max_bytes)
            return message

        try:
            await self.app(scope, counted, watched)
        except BodyTooLarge as exc:
            # Read outside a route (no exception handler around it): answer here.
            if watched.started:
                raise
            await _answer(send, 413, str(exc.detail))


MUTATING = frozenset({"POST", "PUT", "PATCH", "DELETE"})
READING = frozenset({"GET", "HEAD"})
# Reads anyone may ask for that cost a query: the Open311 listing and requests,
# a complaint's public status, the performance report. Health and metrics are not.
ANONYMOUS_READS = ("/open311/v2/", "/api/v1/complaints/", "/api/v1/reports/", "/reports/")


# Set on a request's state by whatever checked its bearer token and found it valid.
AUTHENTICATED = "authenticated"


def mark_authenticated(request: Request) -> None:
    """A valid token came with this request: its read is not an anonymous one."""
    setattr(request.state, AUTHENTICATED, True)


def public_read(scope: Scope) -> bool:
    """A GET of a public listing, report or status, whatever credentials it carries."""
    return scope["method"] in READING and scope["path"].startswith(ANONYMOUS_READS)


class TokenBuckets:
    """One token bucket per key: `burst` at once, refilled at `per_minute`."""

    # Beyond this many tracked clients, full (idle) buckets are forgotten.
    MAX_KEYS = 10_000

    def __init__(
        self, per_minute: int, burst: int, clock: Callable[[], float] = time.monotonic
    ) -> None:
        self.rate = per_minute / 60.0
        self.burst = float(burst)
        self.clock = clock
        self._buckets: dict[str, tuple[float, float]] = {}

    def take(self, key: str) -> float:
        """0 when a request may pass, else the seconds until it may."""
        now = self.clock()
        tokens, last = self._buckets.get(key, (self.burst, now))
        tokens = min(self.burst, tokens + (now - last) * self.rate)
        if tokens < 1.0:
            self._buckets[key] = (tokens, now)
            return (1.0 - tokens) / self.rate
        if key not in self._buckets and len(self._buckets) >= self.MAX_KEYS:
            self._forget_idle(now)
        self._buckets[key] = (tokens - 1.0, now)
        return 0.0

    def give(self, key: str) -> None:
        """Return one token taken from `key` (a request that turned out not to count)."""
        if key in self._buckets:
            tokens, last = self._buckets[key]
            self._buckets[key] = (min(self.burst, tokens + 1.0), last)

    def _forget_idle(self, now: float) -> None:
        refill_s = self.burst / self.rate
        self._buckets = {k: v for k, v in self._buckets.items() if now - v[1] < refill_s}


def client_key(scope: Scope) -> str | None:
    """The rate-limit key of a request's client, None when it has no IP address.

    An IPv6 client usually holds a whole /64, so the /64 is the client. A caller
    without an address (an in-process ASGI client such as the test suite's, or a
    UNIX socket) is not limited here.
    """
    client = scope.get("client")
    if not client:
        return None
    try:
        address = ipaddress.ip_address(client[0])
    except ValueError:
        return None
    if isinstance(address, ipaddress.IPv6Address):
        if address.ipv4_mapped is not None:
            return str(address.ipv4_mapped)
        return str(ipaddress.IPv6Network((address, 64), strict=False))
    return str(address)


class RateLimit:
    """429 with Retry-After for a client over its budget of mutating requests, or
    over its budget of public reads (`PUBLIC_READS`).

    Every public read is counted against the client's budget before it runs,
    whatever header it carries, so a made-up token buys nothing. A read whose
    token a route found valid (`mark_authenticated`) is given its count back,
    and the token is remembered for a while: its next reads pass uncounted even
    when the client's budget is spent. Only a token never seen valid can be held
    up by its neighbours behind the same address, and only until one read fits.
    """

    # How long a token seen valid passes without counting; the route still checks
    # it on every request, and a 401 forgets it at once.
    VERIFIED_S = 600.0
    MAX_VERIFIED = 10_000

    def __init__(
        self,
        app: ASGIApp,
        buckets: TokenBuckets | None,
        reads: TokenBuckets | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.app = app
        self.buckets = buckets
        self.reads = reads
        self.clock = clock
        self._verified: dict[str, float] = {}

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        key = client_key(scope)
        if key is None:
            await self.app(scope, receive, send)
            return
        if scope["method"] in MUTATING and self.buckets is not None:
            if not await self._admitted(self.buckets, key, send):
                return
        elif self.reads is not None and public_read(scope):
            await self._read(self.reads, key, scope, receive, send)
            return
        await self.app(scope, receive, send)

    async def _read(
        self, reads: TokenBuckets, key: str, scope: Scope, receive: Receive, send: Send
    ) -> None:
        token = _token_digest(scope)
        if token is not None and self._verified.get(token, 0.0) > self.clock():
            counted = False
        elif await self._admitted(reads, key, send):
            counted = True
        else:
            return
        # The routes mark the same dict (Starlette keeps `request.state` in it).
        state = scope.setdefault("state", {})

        async def watched(message: Message) -> None:
            if message["type"] == "http.response.start" and token is not None:
                if message["status"] == 401:
                    self._verified.pop(token, None)
                    if not counted:
                        reads.take(key)
                elif state.get(AUTHENTICATED):
                    self._remember(token)
                    if counted:
                        reads.give(key)
            await send(message)

        await self.app(scope, receive, watched)

    async def _admitted(self, buckets: TokenBuckets, key: str, send: Send) -> bool:
        wait = buckets.take(key)
        if wait > 0:
            retry = str(max(1, math.ceil(wait))).encode()
            await _answer(send, 429, "too many requests", [(b"retry-after", retry)])
            return False
        return True

    def _remember(self, token: str) -> None:
        now = self.clock()
        if token not in self._verified and len(self._verified) >= self.MAX_VERIFIED:
            self._verified = {t: until for t, until in self._verified.items() if until > now}
            if len(self._verified) >= self.MAX_VERIFIED:
                return
        self._verified[token] = now + self.VERIFIED_S


def _token_digest(scope: Scope) -> str | None:
    header = dict(scope["headers"]).get(b"authorization")
    return None if header is None else hashlib.sha256(header).hexdigest()


class _Watched:
    """A send that notes whether the response has started: after that, no other
    answer can be given, only the connection dropped."""

    def __init__(self, send: Send) -> None:
        self.send = send
        self.started = False

    async def __call__(self, message: Message) -> None:
        self.started = self.started or message["type"] == "http.response.start"
        await self.send(message)


class ErrorsAsJson:
    """A bug answers a JSON 500 without details; the traceback is logged here."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        watched = _Watched(send)
        try:
            await self.app(scope, receive, watched)
        except Exception:
            # The path names the route; the query string may carry a secret link's key.
            log.exception("unhandled error in %s %s", scope["method"], scope["path"])
            if watched.started:
                raise
            await _answer(send, 500, "internal error")


def create_http_app(
    *,
    service: str,
    broker: NatsBroker | None,
    registry: CollectorRegistry,
    ready_checks: dict[str, ReadyCheck],
    lifespan: Callable[[FastAPI], AbstractAsyncContextManager[None]],
    routers: Sequence[APIRouter] = (),
    description: str = "",
    limits: HttpLimits | None = None,
) -> FastAPI:
    limits = limits or HttpLimits()
    app = FastAPI(
        title=f"Lapor {service}",
        description=description,
        version="1",
        lifespan=lifespan,
    )
    # The last added runs first: errors are caught around everything, and an
    # over-budget client is refused before its body is read.
    app.add_middleware(BodyLimit, max_bytes=limits.max_body_bytes, larger=limits.larger_bodies)
    writes = (
        TokenBuckets(limits.rate_per_minute, limits.rate_burst)
        if limits.rate_per_minute > 0
        else None
    )
    reads = (
        TokenBuckets(limits.read_rate_per_minute, limits.read_rate_burst)
        if limits.read_rate_per_minute > 0
        else None
    )
    if writes is not None or reads is not None:
        app.add_middleware(RateLimit, buckets=writes, reads=reads)
    app.add_middleware(ErrorsAsJson)

    @app.get("/healthz", tags=["health"], summary="The process is alive")
    async def healthz() -> dict[str, str]:
        return {"status": "ok", "service": service}

    @app.get("/readyz", tags=["health"], summary="NATS and the database are reachable")
    async def readyz(response: Response) -> dict[str, Any]:
        # A process on plain nats-py (the dead-letter watcher) checks NATS itself.
        checks = {"nats": await broker.ping(timeout=2.0)} if broker is not None else {}
        for name, check in ready_checks.items():
            checks[name] = await check()
        ready = all(checks.values())
        response.status_code = 200 if ready else 503
        return {"ready": ready, "checks": checks}

    @app.get("/metrics", tags=["health"], summary="Prometheus metrics", include_in_schema=False)
    async def metrics() -> Response:
        return Response(generate_latest(registry), media_type=CONTENT_TYPE_LATEST)

    for router in routers:
        document_dependency_refusals(router.routes)
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
