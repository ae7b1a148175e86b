"""The console's only way to the data: the HTTP APIs of intake, SLA, notify, the
dead-letter watcher and hotspots.

Every call carries the logged-in officer's session token, so the services decide
what the officer may see and do exactly as for any other client: the console
keeps no rules of its own. `HttpServices` talks to the real services;
`services.console.in_memory.InMemoryServices` stands in for them in unit tests of
the pages.
"""

from __future__ import annotations

import time
from collections.abc import Mapping, Sequence
from contextvars import ContextVar
from dataclasses import dataclass
from typing import Any, Protocol
from urllib.parse import quote

import httpx

from services.console.metrics import ConsoleMetrics

# The time this request spent waiting for the services (the console's own time is
# the rest): the page's Server-Timing header reports both.
backend_time: ContextVar[list[float] | None] = ContextVar("backend_time", default=None)
# The browser's address as the console saw it, passed on in X-Forwarded-For (never the
# browser's own header): intake's rate limits and login throttling then count each
# browser rather than the console as one client, where intake trusts the console as
# a proxy (uvicorn's FORWARDED_ALLOW_IPS, INTAKE_LOGIN_PROXIES); elsewhere it is ignored.
browser_address: ContextVar[str | None] = ContextVar("browser_address", default=None)


class ServiceError(Exception):
    """A service refused or failed; `message` is its own words, shown to the officer."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(f"{status}: {message}")
        self.status = status
        self.message = message


class Unauthorized(ServiceError):
    """The session token is unknown, expired or revoked: log in again."""


class Unavailable(ServiceError):
    """A service did not answer; nothing was decided."""


@dataclass(frozen=True)
class WorklistQuery:
    """One page of an agency's worklist: its filters and where the page starts."""

    states: Sequence[str] = ()
    overdue: bool = False
    q: str | None = None
    limit: int = 25
    offset: int = 0


@dataclass(frozen=True)
class Listing:
    items: list[dict[str, Any]]
    total: int
    # True: `total` and more (intake stopped counting there).
    more_than: bool = False


class Services(Protocol):
    async def login(
        self, username: str, password: str, client_address: str | None = None
    ) -> dict[str, Any]: ...
    async def logout(self, token: str) -> None: ...
    async def change_password(self, token: str, current: str, new: str) -> None: ...
    async def worklist(self, token: str, agency: str, query: WorklistQuery) -> Listing: ...
    async def complaint(
        self, token: str | None, tracking_id: str, key: str | None = None
    ) -> dict[str, Any]: ...
    async def act(
        self, token: str, tracking_id: str, action: str, body: Mapping[str, Any]
    ) -> dict[str, Any]: ...
    async def triage(self, token: str) -> list[dict[str, Any]]: ...
    async def overview(self, token: str) -> Any: ...
    async def accountability(self, token: str, month: str) -> Any: ...
    async def breaches(self, token: str, agency: str | None = None) -> dict[str, Any]: ...
    async def deliveries(self, token: str, tracking_id: str) -> dict[str, Any] | None: ...
    async def accounts(self, token: str) -> list[dict[str, Any]]: ...
    async def create_account(self, token: str, body: Mapping[str, Any]) -> dict[str, Any]: ...
    async def account_action(self, token: str, username: str, action: str) -> dict[str, Any]: ...
    async def tokens(self, token: str) -> list[dict[str, Any]]: ...
    async def create_token(self, token: str, body: Mapping[str, Any]) -> dict[str, Any]: ...
    async def revoke_token(self, token: str, token_id: str) -> dict[str, Any]: ...
    async def submit(self, body: Mapping[str, Any]) -> dict[str, Any]: ...
    async def report_html(self, params: Mapping[str, str]) -> str: ...
    async def dead_letters(
        self, token: str, state: str = "pending", after: str | None = None
    ) -> dict[str, Any]: ...
    async def dead_letter_action(
        self, token: str, record_id: str, action: str, reason: str | None = None
    ) -> dict[str, Any]: ...
    async def hotspots(self, token: str, agency: str | None = None) -> dict[str, Any]: ...
    async def hotspot(self, token: str, hotspot_id: str) -> dict[str, Any]: ...
    async def hotspot_action(
        self, token: str, hotspot_id: str, action: str, body: Mapping[str, Any] | None = None
    ) -> Any: ...
    async def ready(self) -> bool: ...


ACCOUNT_ACTIONS = ("disable", "enable", "reset-password")
DEAD_LETTER_ACTIONS = ("replay", "resolve")
HOTSPOT_ACTIONS = ("confirm", "split", "merge", "answer")


def _message(response: httpx.Response) -> str:
    try:
        detail = response.json().get("detail")
    except (ValueError, AttributeError):
        return response.reason_phrase or str(response.status_code)
    if isinstance(detail, dict):
        return str(detail.get("message") or detail.get("reason") or detail)
    if isinstance(detail, list):  # FastAPI's validation errors: the fields and why
        return "; ".join(
            f"{'.'.join(str(p) for p in d.get('loc', [])[1:])}: {d.get('msg')}"
            for d in detail
            if isinstance(d, dict)
        )
    return str(detail)


def _known(action: str, actions: Sequence[str]) -> None:
    """An action the service has no path for is refused here, as the service would."""
    if action not in actions:
        raise ServiceError(404, "tindakan tidak dikenal")


def _listing(response: httpx.Response, offset: int) -> Listing:
    """A worklist page and its count (intake may stop counting at a bound)."""
    items: list[dict[str, Any]] = response.json()
    total = response.headers.get("X-Total-Count")
    more_than = response.headers.get("X-Total-Count-More-Than")
    if more_than and more_than.isdigit():
        return Listing(items, int(more_than), more_than=True)
    return Listing(items, int(total) if total and total.isdigit() else len(items) + offset)


class HttpServices:
    def __init__(
        self,
        client: httpx.AsyncClient,
        intake_url: str,
        sla_url: str,
        notify_url: str,
        metrics: ConsoleMetrics | None = None,
        dlq_url: str = "http://127.0.0.1:8087",
        hotspots_url: str = "http://127.0.0.1:8086",
    ) -> None:
        self.client = client
        self.bases = {
            "intake": intake_url.rstrip("/"),
            "sla": sla_url.rstrip("/"),
            "notify": notify_url.rstrip("/"),
            "dlq": dlq_url.rstrip("/"),
            "hotspots": hotspots_url.rstrip("/"),
        }
        self.metrics = metrics

    async def _call(
        self,
        method: str,
        service: str,
        path: str,
        token: str | None = None,
        *,
        json: Any = None,
        params: Any = None,
        ok: tuple[int, ...] = (200, 201, 202, 204),
        headers: Mapping[str, str] | None = None,
    ) -> httpx.Response:
        headers = {**(headers or {}), **({"Authorization": f"Bearer {token}"} if token else {})}
        if (address := browser_address.get()) is not None:
            headers.setdefault("X-Forwarded-For", address)
        started = time.perf_counter()
        try:
            response = await self.client.request(
                method, self.bases[service] + path, headers=headers, json=json, params=params
            )
        except httpx.HTTPError as exc:
            raise Unavailable(503, f"{service} tidak menjawab ({type(exc).__name__})") from None
        finally:
            self._spent(service, time.perf_counter() - started)
        if response.status_code in ok:
            return response
        if response.status_code == 401:
            raise Unauthorized(401, _message(response))
        if response.status_code >= 500:
            raise Unavailable(response.status_code, _message(response))
        raise ServiceError(response.status_code, _message(response))

    def _spent(self, service: str, seconds: float) -> None:
        if self.metrics is not None:
            self.metrics.backend_seconds.labels(service).observe(seconds)
        if (spent_here := backend_time.get()) is not None:
            spent_here.append(seconds)

    async def _json(
        self, method: str, service: str, path: str, token: str | None = None, **options: Any
    ) -> Any:
        return (await self._call(method, service, path, token, **options)).json()

    # -- intake: sessions ----------------------------------------------------------------
    async def login(
        self, username: str, password: str, client_address: str | None = None
    ) -> dict[str, Any]:
        body = {"username": username, "password": password}
        # intake counts failed logins per browser address when it trusts the console
        # as a proxy (INTAKE_LOGIN_PROXIES); otherwise it ignores the header.
        headers = {"X-Forwarded-For": client_address} if client_address else None
        return await self._json("POST", "intake", "/api/v1/sessions", json=body, headers=headers)

    async def logout(self, token: str) -> None:
        await self._call("DELETE", "intake", "/api/v1/sessions/current", token)

    async def change_password(self, token: str, current: str, new: str) -> None:
        body = {"current_password": current, "new_password": new}
        await self._call("POST", "intake", "/api/v1/sessions/current/password", token, json=body)

    # -- intake: complaints --------------------------------------------------------------
    async def worklist(self, token: str, agency: str, query: WorklistQuery) -> Listing:
        params: list[tuple[str, str | int]] = [("status", s) for s in query.states]
        if query.overdue:
            params.append(("overdue", "true"))
        if query.q:
            params.append(("q", query.q))
        params += [("limit", query.limit), ("offset", query.offset)]
        path = f"/api/v1/agencies/{agency}/complaints"
        response = await self._call("GET", "intake", path, token, params=params)
        return _listing(response, query.offset)

    async def complaint(
        self, token: str | None, tracking_id: str, key: str | None = None
    ) -> dict[str, Any]:
        params = {"key": key} if key else None
        path = f"/api/v1/complaints/{tracking_id}"
        return await self._json("GET", "intake", path, token, params=params)

    async def act(
        self, token: str, tracking_id: str, action: str, body: Mapping[str, Any]
    ) -> dict[str, Any]:
        path = f"/api/v1/complaints/{tracking_id}/actions/{action}"
        return await self._json("POST", "intake", path, token, json=dict(body))

    async def submit(self, body: Mapping[str, Any]) -> dict[str, Any]:
        return await self._json("POST", "intake", "/api/v1/complaints", json=dict(body))

    # -- intake: oversight and reports ---------------------------------------------------
    async def triage(self, token: str) -> list[dict[str, Any]]:
        return await self._json("GET", "intake", "/api/v1/triage", token)

    async def overview(self, token: str) -> Any:
        return await self._json("GET", "intake", "/api/v1/overview", token)

    async def accountability(self, token: str, month: str) -> Any:
        params = {"month": month}
        return await self._json("GET", "intake", "/api/v1/accountability", token, params=params)

    async def report_html(self, params: Mapping[str, str]) -> str:
        response = await self._call("GET", "intake", "/reports/agencies.html", params=params)
        return response.text

    # -- intake: accounts and API tokens -------------------------------------------------
    async def accounts(self, token: str) -> list[dict[str, Any]]:
        return await self._json("GET", "intake", "/api/v1/accounts", token)

    async def create_account(self, token: str, body: Mapping[str, Any]) -> dict[str, Any]:
        return await self._json("POST", "intake", "/api/v1/accounts", token, json=dict(body))

    async def account_action(self, token: str, username: str, action: str) -> dict[str, Any]:
        _known(action, ACCOUNT_ACTIONS)
        return await self._json("POST", "intake", f"/api/v1/accounts/{username}/{action}", token)

    async def tokens(self, token: str) -> list[dict[str, Any]]:
        return await self._json("GET", "intake", "/api/v1/tokens", token)

    async def create_token(self, token: str, body: Mapping[str, Any]) -> dict[str, Any]:
        return await self._json("POST", "intake", "/api/v1/tokens", token, json=dict(body))

    async def revoke_token(self, token: str, token_id: str) -> dict[str, Any]:
        return await self._json("POST", "intake", f"/api/v1/tokens/{token_id}/revoke", token)

    # -- SLA and notify ------------------------------------------------------------------
    async def breaches(self, token: str, agency: str | None = None) -> dict[str, Any]:
        params = {"agency": agency} if agency else None
        return await self._json("GET", "sla", "/api/v1/breaches", token, params=params)

    async def deliveries(self, token: str, tracking_id: str) -> dict[str, Any] | None:
        path = f"/api/v1/complaints/{tracking_id}/notifications"
        response = await self._call("GET", "notify", path, token, ok=(200, 404))
        return None if response.status_code == 404 else response.json()

    # -- the dead-letter watcher ---------------------------------------------------------
    async def dead_letters(
        self, token: str, state: str = "pending", after: str | None = None
    ) -> dict[str, Any]:
        params = {"state": state, **({"after": after} if after else {})}
        return await self._json("GET", "dlq", "/api/v1/dead-letters", token, params=params)

    async def dead_letter_action(
        self, token: str, record_id: str, action: str, reason: str | None = None
    ) -> dict[str, Any]:
        _known(action, DEAD_LETTER_ACTIONS)
        path = f"/api/v1/dead-letters/{quote(record_id, safe='')}/{action}"
        body = {"reason": reason} if action == "resolve" else None
        return await self._json("POST", "dlq", path, token, json=body)

    # -- hotspots ------------------------------------------------------------------------
    async def hotspots(self, token: str, agency: str | None = None) -> dict[str, Any]:
        params = {"agency": agency} if agency else None
        return await self._json("GET", "hotspots", "/api/v1/hotspots", token, params=params)

    async def hotspot(self, token: str, hotspot_id: str) -> dict[str, Any]:
        path = f"/api/v1/hotspots/{quote(hotspot_id, safe='')}"
        return await self._json("GET", "hotspots", path, token)

    async def hotspot_action(
        self, token: str, hotspot_id: str, action: str, body: Mapping[str, Any] | None = None
    ) -> Any:
        _known(action, HOTSPOT_ACTIONS)
        path = f"/api/v1/hotspots/{quote(hotspot_id, safe='')}/{action}"
        json = dict(body) if body is not None else None
        return await self._json("POST", "hotspots", path, token, json=json)

    async def ready(self) -> bool:
        try:
            response = await self.client.get(self.bases["intake"] + "/healthz", timeout=2.0)
        except httpx.HTTPError:
            return False
        return response.status_code == 200
