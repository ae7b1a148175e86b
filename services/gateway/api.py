"""Kannel's callbacks: each received SMS (sms-service post-url) and each delivery
report (the dlr-url of a submitted SMS).

Kannel retries a callback that gets no 2xx answer (smsbox `http-request-retry`,
`http-queue-delay`), so the answer comes only once the bus has stored the
message: 200 means stored, 503 means "try again". A callback without the shared
token is refused: the endpoints would otherwise let anyone speak as a citizen.
smsbox logs the URL of every call that fails, so a received SMS comes as a POST
whose URL holds the token and Kannel's id only: the sender's number is in a
header and the text in the body.
"""

from __future__ import annotations

import hmac
import logging
from collections.abc import Callable

from fastapi import APIRouter, Request, Response
from pydantic import ValidationError

from lapor.runtime.broker import UNAVAILABLE
from services.gateway import domain, handlers
from services.gateway.handlers import GatewayDeps

log = logging.getLogger(__name__)

STORED = Response(status_code=200, content=b"", media_type="text/plain")


def callbacks_router(deps: Callable[[], GatewayDeps], token: str, short_code: str) -> APIRouter:
    router = APIRouter(prefix="/kannel", tags=["kannel"], include_in_schema=False)

    def values_of(request: Request) -> dict[str, bytes] | None:
        values = domain.query_bytes(request.scope.get("query_string", b""))
        given = values.get("token", b"")
        return values if hmac.compare_digest(given, token.encode()) else None

    @router.post("/mo")
    async def received(request: Request) -> Response:
        values = values_of(request)
        if values is None:
            return Response(status_code=403)
        current = deps()
        try:
            kannel_id = values.get("id", b"").decode()
            body = await request.body()
            sms = domain.parse_received(kannel_id, request.headers, body, current.clock())
            await handlers.receive_sms(sms, short_code, current)
        except (domain.InvalidCallback, ValidationError, UnicodeDecodeError) as exc:
            # Retrying cannot fix it: answered, counted, and the reason logged.
            current.metrics.received.labels(outcome="invalid").inc()
            log.warning("received SMS not usable: %s", type(exc).__name__)
            return STORED
        except UNAVAILABLE as exc:
            log.warning("received SMS not stored yet (%s); Kannel retries", type(exc).__name__)
            return Response(status_code=503)
        return STORED

    @router.get("/dlr")
    async def delivery_report(request: Request) -> Response:
        values = values_of(request)
        if values is None:
            return Response(status_code=403)
        current = deps()
        try:
            notification_id = domain.notification_of(values.get("id", b"").decode())
            dlr_type = int(values.get("type", b"0"))
        except ValueError:  # UnicodeDecodeError included
            log.warning("delivery report not usable")
            return STORED
        reply = values.get("reply", b"").decode("utf-8", errors="replace")
        try:
            await handlers.record_delivery_report(notification_id, dlr_type, reply, current)
        except ValidationError:
            log.warning("delivery report for an id no notification has")
            return STORED
        except UNAVAILABLE as exc:
            log.warning("delivery report not stored yet (%s); Kannel retries", type(exc).__name__)
            return Response(status_code=503)
        return STORED

    return router
