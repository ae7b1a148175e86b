"""The console's only way to the data: the HTTP APIs of intake, SLA and notify.

Every call carries the logged-in officer's session token, so the services decide
what the officer may see and do exactly as for any other client: the console
keeps no rules of its own. `HttpServices` talks to the real services;
`InMemoryServices` stands in for them in unit tests of the pages.
"""

from __future__ import annotations

import copy
import secrets
import time
from collections.abc import Mapping, Sequence
from contextvars import ContextVar
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
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
    async def worklist(
        self,
        token: str,
        agency: str,
        *,
        states: Sequence[str] = (),
        overdue: bool = False,
        q: str | None = None,
        limit: int = 25,
        offset: int = 0,
    ) -> Listing: ...
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
            spent = time.perf_counter() - started
            if self.metrics is not None:
                self.metrics.backend_seconds.labels(service).observe(spent)
            if (spent_here := backend_time.get()) is not None:
                spent_here.append(spent)
        if response.status_code in ok:
            return response
        if response.status_code == 401:
            raise Unauthorized(401, _message(response))
        if response.status_code >= 500:
            raise Unavailable(response.status_code, _message(response))
        raise ServiceError(response.status_code, _message(response))

    async def login(
        self, username: str, password: str, client_address: str | None = None
    ) -> dict[str, Any]:
        body = {"username": username, "password": password}
        # intake counts failed logins per browser address when it trusts the console
        # as a proxy (INTAKE_LOGIN_PROXIES); otherwise it ignores the header.
        headers = {"X-Forwarded-For": client_address} if client_address else None
        response = await self._call(
            "POST", "intake", "/api/v1/sessions", json=body, headers=headers
        )
        result: dict[str, Any] = response.json()
        return result

    async def logout(self, token: str) -> None:
        await self._call("DELETE", "intake", "/api/v1/sessions/current", token)

    async def change_password(self, token: str, current: str, new: str) -> None:
        body = {"current_password": current, "new_password": new}
        await self._call("POST", "intake", "/api/v1/sessions/current/password", token, json=body)

    async def worklist(
        self,
        token: str,
        agency: str,
        *,
        states: Sequence[str] = (),
        overdue: bool = False,
        q: str | None = None,
        limit: int = 25,
        offset: int = 0,
    ) -> Listing:
        params: list[tuple[str, str | int]] = [("status", s) for s in states]
        if overdue:
            params.append(("overdue", "true"))
        if q:
            params.append(("q", q))
        params += [("limit", limit), ("offset", offset)]
        path = f"/api/v1/agencies/{agency}/complaints"
        response = await self._call("GET", "intake", path, token, params=params)
        items: list[dict[str, Any]] = response.json()
        total = response.headers.get("X-Total-Count")
        more_than = response.headers.get("X-Total-Count-More-Than")
        if more_than and more_than.isdigit():
            return Listing(items, int(more_than), more_than=True)
        return Listing(items, int(total) if total and total.isdigit() else len(items) + offset)

    async def complaint(
        self, token: str | None, tracking_id: str, key: str | None = None
    ) -> dict[str, Any]:
        params = {"key": key} if key else None
        path = f"/api/v1/complaints/{tracking_id}"
        result: dict[str, Any] = (
            await self._call("GET", "intake", path, token, params=params)
        ).json()
        return result

    async def act(
        self, token: str, tracking_id: str, action: str, body: Mapping[str, Any]
    ) -> dict[str, Any]:
        path = f"/api/v1/complaints/{tracking_id}/actions/{action}"
        result: dict[str, Any] = (
            await self._call("POST", "intake", path, token, json=dict(body))
        ).json()
        return result

    async def triage(self, token: str) -> list[dict[str, Any]]:
        result: list[dict[str, Any]] = (
            await self._call("GET", "intake", "/api/v1/triage", token)
        ).json()
        return result

    async def overview(self, token: str) -> Any:
        return (await self._call("GET", "intake", "/api/v1/overview", token)).json()

    async def accountability(self, token: str, month: str) -> Any:
        params = {"month": month}
        return (
            await self._call("GET", "intake", "/api/v1/accountability", token, params=params)
        ).json()

    async def breaches(self, token: str, agency: str | None = None) -> dict[str, Any]:
        params = {"agency": agency} if agency else None
        result: dict[str, Any] = (
            await self._call("GET", "sla", "/api/v1/breaches", token, params=params)
        ).json()
        return result

    async def deliveries(self, token: str, tracking_id: str) -> dict[str, Any] | None:
        path = f"/api/v1/complaints/{tracking_id}/notifications"
        response = await self._call("GET", "notify", path, token, ok=(200, 404))
        return None if response.status_code == 404 else response.json()

    async def accounts(self, token: str) -> list[dict[str, Any]]:
        result: list[dict[str, Any]] = (
            await self._call("GET", "intake", "/api/v1/accounts", token)
        ).json()
        return result

    async def create_account(self, token: str, body: Mapping[str, Any]) -> dict[str, Any]:
        result: dict[str, Any] = (
            await self._call("POST", "intake", "/api/v1/accounts", token, json=dict(body))
        ).json()
        return result

    async def account_action(self, token: str, username: str, action: str) -> dict[str, Any]:
        if action not in ACCOUNT_ACTIONS:
            raise ServiceError(404, "tindakan tidak dikenal")
        path = f"/api/v1/accounts/{username}/{action}"
        result: dict[str, Any] = (await self._call("POST", "intake", path, token)).json()
        return result

    async def tokens(self, token: str) -> list[dict[str, Any]]:
        result: list[dict[str, Any]] = (
            await self._call("GET", "intake", "/api/v1/tokens", token)
        ).json()
        return result

    async def create_token(self, token: str, body: Mapping[str, Any]) -> dict[str, Any]:
        result: dict[str, Any] = (
            await self._call("POST", "intake", "/api/v1/tokens", token, json=dict(body))
        ).json()
        return result

    async def revoke_token(self, token: str, token_id: str) -> dict[str, Any]:
        path = f"/api/v1/tokens/{token_id}/revoke"
        result: dict[str, Any] = (await self._call("POST", "intake", path, token)).json()
        return result

    async def submit(self, body: Mapping[str, Any]) -> dict[str, Any]:
        result: dict[str, Any] = (
            await self._call("POST", "intake", "/api/v1/complaints", json=dict(body))
        ).json()
        return result

    async def report_html(self, params: Mapping[str, str]) -> str:
        response = await self._call("GET", "intake", "/reports/agencies.html", params=params)
        return response.text

    async def dead_letters(
        self, token: str, state: str = "pending", after: str | None = None
    ) -> dict[str, Any]:
        params = {"state": state, **({"after": after} if after else {})}
        response = await self._call("GET", "dlq", "/api/v1/dead-letters", token, params=params)
        result: dict[str, Any] = response.json()
        return result

    async def dead_letter_action(
        self, token: str, record_id: str, action: str, reason: str | None = None
    ) -> dict[str, Any]:
        if action not in DEAD_LETTER_ACTIONS:
            raise ServiceError(404, "tindakan tidak dikenal")
        path = f"/api/v1/dead-letters/{quote(record_id, safe='')}/{action}"
        body = {"reason": reason} if action == "resolve" else None
        result: dict[str, Any] = (await self._call("POST", "dlq", path, token, json=body)).json()
        return result

    async def hotspots(self, token: str, agency: str | None = None) -> dict[str, Any]:
        params = {"agency": agency} if agency else None
        response = await self._call("GET", "hotspots", "/api/v1/hotspots", token, params=params)
        result: dict[str, Any] = response.json()
        return result

    async def hotspot(self, token: str, hotspot_id: str) -> dict[str, Any]:
        path = f"/api/v1/hotspots/{quote(hotspot_id, safe='')}"
        result: dict[str, Any] = (await self._call("GET", "hotspots", path, token)).json()
        return result

    async def hotspot_action(
        self, token: str, hotspot_id: str, action: str, body: Mapping[str, Any] | None = None
    ) -> Any:
        if action not in HOTSPOT_ACTIONS:
            raise ServiceError(404, "tindakan tidak dikenal")
        path = f"/api/v1/hotspots/{quote(hotspot_id, safe='')}/{action}"
        json = dict(body) if body is not None else None
        return (await self._call("POST", "hotspots", path, token, json=json)).json()

    async def ready(self) -> bool:
        try:
            response = await self.client.get(self.bases["intake"] + "/healthz", timeout=2.0)
        except httpx.HTTPError:
            return False
        return response.status_code == 200


# -- the in-memory stand-in ---------------------------------------------------------------


@dataclass
class FakeAccount:
    username: str
    password: str
    name: str
    role: str
    agency: str | None = None
    disabled: bool = False
    must_change_password: bool = False

    def view(self) -> dict[str, Any]:
        return {
            "username": self.username,
            "name": self.name,
            "role": self.role,
            "agency": self.agency,
            "region": "banjar",
            "disabled": self.disabled,
            "must_change_password": self.must_change_password,
            "created_at": "2026-12-01T08:00:00+08:00",
            "last_login_at": None,
        }


@dataclass
class InMemoryServices:
    """Intake's answers for the pages' unit tests: accounts, sessions, complaints and the
    few rules the tests need (an officer acts only on their agency's complaints)."""

    accounts_by_name: dict[str, FakeAccount] = field(default_factory=dict)
    complaints: dict[str, dict[str, Any]] = field(default_factory=dict)
    sessions: dict[str, str] = field(default_factory=dict)  # token -> username
    commands: list[dict[str, Any]] = field(default_factory=list)
    submitted: list[dict[str, Any]] = field(default_factory=list)
    triage_items: list[dict[str, Any]] = field(default_factory=list)
    api_tokens: list[dict[str, Any]] = field(default_factory=list)
    worklist_calls: list[dict[str, Any]] = field(default_factory=list)
    # Like intake for words and overdue: counting stops past this many.
    worklist_count_up_to: int | None = None
    dead_letter_records: list[dict[str, Any]] = field(default_factory=list)
    # The hotspots service's views (`HotspotDetail`), by id; answers sent, in order.
    hotspot_records: dict[str, dict[str, Any]] = field(default_factory=dict)
    hotspot_answers: list[dict[str, Any]] = field(default_factory=list)
    session_hours: int = 12

    def add_account(self, account: FakeAccount) -> FakeAccount:
        self.accounts_by_name[account.username] = account
        return account

    def _account(self, token: str) -> FakeAccount:
        username = self.sessions.get(token)
        if username is None or self.accounts_by_name[username].disabled:
            raise Unauthorized(401, "unknown token")
        return self.accounts_by_name[username]

    def _admin(self, token: str) -> FakeAccount:
        account = self._account(token)
        if account.role != "admin":
            raise ServiceError(403, "only admins")
        return account

    async def login(
        self, username: str, password: str, client_address: str | None = None
    ) -> dict[str, Any]:
        account = self.accounts_by_name.get(username)
        if account is None or account.password != password or account.disabled:
            raise Unauthorized(401, "username or password is wrong")
        token = "lpt_" + secrets.token_urlsafe(16)
        self.sessions[token] = username
        expires = datetime.now(UTC) + timedelta(hours=self.session_hours)
        return {"token": token, "expires_at": expires.isoformat(), "account": account.view()}

    async def logout(self, token: str) -> None:
        self._account(token)
        del self.sessions[token]

    async def change_password(self, token: str, current: str, new: str) -> None:
        account = self._account(token)
        if account.password != current:
            raise ServiceError(403, "current password is wrong")
        if len(new) < 10:
            raise ServiceError(422, "new_password: at least 10 characters")
        account.password, account.must_change_password = new, False

    async def worklist(
        self,
        token: str,
        agency: str,
        *,
        states: Sequence[str] = (),
        overdue: bool = False,
        q: str | None = None,
        limit: int = 25,
        offset: int = 0,
    ) -> Listing:
        account = self._account(token)
        if account.role != "admin" and account.agency != agency:
            raise ServiceError(403, "an officer sees only their agency's complaints")
        self.worklist_calls.append(
            {"agency": agency, "states": list(states), "overdue": overdue, "q": q,
             "limit": limit, "offset": offset}
        )  # fmt: skip
        wanted = set(states) or {"assigned", "in_progress", "needs_info", "responded"}
        found = [
            c
            for c in self.complaints.values()
            if c.get("agency") == agency
            and c["state"] in wanted
            and (not overdue or c.get("overdue"))
            and (not q or q.lower() in (c["tracking_id"] + " " + (c.get("text") or "")).lower())
        ]
        found.sort(key=lambda c: (c.get("priority") != "urgent", c.get("next_deadline") or "~"))
        page = [copy.deepcopy(c) for c in found[offset : offset + limit]]
        bound = self.worklist_count_up_to
        if bound is not None and len(found) > bound:
            return Listing(page, bound, more_than=True)
        return Listing(page, len(found))

    async def complaint(
        self, token: str | None, tracking_id: str, key: str | None = None
    ) -> dict[str, Any]:
        if token is not None:
            self._account(token)
        doc = self.complaints.get(tracking_id.upper())
        if doc is None:
            raise ServiceError(404, "complaint not found")
        view = copy.deepcopy(doc)
        if token is None and key != doc.get("key"):
            view["reporter_name"] = None
        view.pop("key", None)
        return view

    async def act(
        self, token: str, tracking_id: str, action: str, body: Mapping[str, Any]
    ) -> dict[str, Any]:
        account = self._account(token)
        doc = self.complaints.get(tracking_id)
        if doc is None:
            raise ServiceError(404, "complaint not found")
        if account.role != "admin" and account.agency != doc.get("agency"):
            raise ServiceError(403, "not your agency's complaint")
        if action in ("ask", "answer", "note", "forward") and not body.get("text"):
            raise ServiceError(422, "text is required")
        self.commands.append({"action": action, "by": account.username, **body})
        transitions = {"acknowledge": "in_progress", "ask": "needs_info", "answer": "responded"}
        if action == "acknowledge" and doc["state"] != "assigned":
            raise ServiceError(409, "acknowledge is not allowed in state " + doc["state"])
        if action in transitions:
            doc["state"] = transitions[action]
        if action == "forward":
            doc["agency"] = body.get("agency")
        doc.setdefault("history", []).append(
            {
                "at": datetime.now(UTC).isoformat(),
                "state": doc["state"],
                "actor": f"{account.role}:{account.username}",
                "reason": str(body.get("text") or action),
                "event_id": secrets.token_hex(8),
                "detail": {"action": action},
            }
        )
        return await self.complaint(token, tracking_id)

    async def triage(self, token: str) -> list[dict[str, Any]]:
        self._admin(token)
        return copy.deepcopy(self.triage_items)

    async def overview(self, token: str) -> Any:
        self._admin(token)
        return {"agencies": [{"agency": "PUPR", "open": 3, "overdue": 1}], "triage": 2}

    async def accountability(self, token: str, month: str) -> Any:
        self._account(token)
        return {"month": month, "agencies": []}

    async def breaches(self, token: str, agency: str | None = None) -> dict[str, Any]:
        self._account(token)
        return {"agency": agency, "total": 0, "counts": {}, "returned": 0, "breaches": []}

    async def deliveries(self, token: str, tracking_id: str) -> dict[str, Any] | None:
        self._account(token)
        return None

    async def accounts(self, token: str) -> list[dict[str, Any]]:
        self._admin(token)
        return [a.view() for _, a in sorted(self.accounts_by_name.items())]

    async def create_account(self, token: str, body: Mapping[str, Any]) -> dict[str, Any]:
        self._admin(token)
        if body["username"] in self.accounts_by_name:
            raise ServiceError(409, "username exists")
        password = secrets.token_urlsafe(12)
        account = self.add_account(
            FakeAccount(
                username=body["username"],
                password=password,
                name=body["name"],
                role=body["role"],
                agency=body.get("agency"),
                must_change_password=True,
            )
        )
        return {"account": account.view(), "password": password}

    async def account_action(self, token: str, username: str, action: str) -> dict[str, Any]:
        self._admin(token)
        account = self.accounts_by_name[username]
        if action == "reset-password":
            account.password = secrets.token_urlsafe(12)
            account.must_change_password = True
            return {"account": account.view(), "password": account.password}
        account.disabled = action == "disable"
        return account.view()

    async def tokens(self, token: str) -> list[dict[str, Any]]:
        self._admin(token)
        return copy.deepcopy(self.api_tokens)

    async def create_token(self, token: str, body: Mapping[str, Any]) -> dict[str, Any]:
        self._admin(token)
        view = {"id": "tok_" + secrets.token_hex(4), "status": "active", **body}
        self.api_tokens.append(view)
        return {"token": "lpt_" + secrets.token_urlsafe(16), "view": view}

    async def revoke_token(self, token: str, token_id: str) -> dict[str, Any]:
        self._admin(token)
        for view in self.api_tokens:
            if view["id"] == token_id:
                view["status"] = "revoked"
                return view
        raise ServiceError(404, "no token with this id")

    async def submit(self, body: Mapping[str, Any]) -> dict[str, Any]:
        self.submitted.append(dict(body))
        tracking_id = f"LPR-2612-{len(self.submitted):08d}"
        return {
            "tracking_id": tracking_id,
            "state": "received",
            "status_url": f"/api/v1/complaints/{tracking_id}",
            "citizen_url": f"/api/v1/complaints/{tracking_id}?key=k{len(self.submitted)}",
        }

    async def report_html(self, params: Mapping[str, str]) -> str:
        return "<html><body><h1>Laporan kinerja</h1></body></html>"

    async def dead_letters(
        self, token: str, state: str = "pending", after: str | None = None
    ) -> dict[str, Any]:
        self._admin(token)

        def settled(r: dict[str, Any]) -> bool:
            return bool(r.get("replayed_at") or r.get("resolved_at"))

        items = [
            copy.deepcopy(r)
            for r in self.dead_letter_records
            if state == "all" or settled(r) == (state == "settled")
        ]
        return {"items": items, "more": 0, "replay_available": True}

    async def dead_letter_action(
        self, token: str, record_id: str, action: str, reason: str | None = None
    ) -> dict[str, Any]:
        admin = self._admin(token)
        record = next((r for r in self.dead_letter_records if r["id"] == record_id), None)
        if record is None:
            raise ServiceError(404, f"no dead letter {record_id}")
        if record.get("resolved_at") or record.get("replayed_at"):
            raise ServiceError(409, f"{record_id} was settled before")
        at = datetime.now(UTC).isoformat()
        if action == "replay":
            record.update(replayed_at=at, replays=record.get("replays", 0) + 1)
            return {"id": record_id, "msg_id": "replay-" + secrets.token_hex(8)}
        record.update(resolved_at=at, resolution=reason, resolved_by=admin.username)
        return {"id": record_id, "resolved": True}

    def _hotspot(self, account: FakeAccount, hotspot_id: str) -> dict[str, Any]:
        record = self.hotspot_records.get(hotspot_id)
        if record is None or (account.role != "admin" and account.agency != record["agency"]):
            raise ServiceError(404, f"no hotspot {hotspot_id}")
        return record

    async def hotspots(self, token: str, agency: str | None = None) -> dict[str, Any]:
        account = self._account(token)
        if account.role != "admin":
            agency = agency or account.agency
            if agency != account.agency:
                raise ServiceError(403, "an officer reads only their agency's hotspots")
        found = [
            copy.deepcopy(h)
            for h in self.hotspot_records.values()
            if h["state"] in ("suggested", "confirmed")
            and (agency is None or h["agency"] == agency)
        ]
        found.sort(key=lambda h: -len(h["members"]))
        by_agency: dict[str, int] = {}
        for h in found:
            by_agency[h["agency"]] = by_agency.get(h["agency"], 0) + 1
        return {"count": len(found), "by_agency": by_agency, "by_kecamatan": {}, "hotspots": found}

    async def hotspot(self, token: str, hotspot_id: str) -> dict[str, Any]:
        return copy.deepcopy(self._hotspot(self._account(token), hotspot_id))

    async def hotspot_action(
        self, token: str, hotspot_id: str, action: str, body: Mapping[str, Any] | None = None
    ) -> Any:
        account = self._account(token)
        record = self._hotspot(account, hotspot_id)
        body = body or {}
        if record["state"] not in ("suggested", "confirmed") and action != "answer":
            raise ServiceError(409, f"hotspot is {record['state']}")
        if action == "confirm":
            record["state"] = "confirmed"
        elif action == "split":
            leaving = list(body.get("members") or [])
            if not leaving or set(leaving) - set(record["members"]):
                raise ServiceError(422, "not members of this hotspot")
            if len(set(leaving)) == len(record["members"]):
                raise ServiceError(422, "a split keeps at least one member and moves at least one")
            record["members"] = [m for m in record["members"] if m not in leaving]
        elif action == "merge":
            other = self._hotspot(account, str(body.get("other") or ""))
            if other is record:
                raise ServiceError(422, "a hotspot is not merged with itself")
            record["members"] = [*record["members"], *other["members"]]
            other["state"] = "dissolved"
        elif action == "answer":
            if account.role != "agency" or account.agency != record["agency"]:
                raise ServiceError(403, "only an officer of the holding agency answers")
            if not body.get("text"):
                raise ServiceError(422, "text: field required")
            record["state"] = "answered"
            self.hotspot_answers.append({"hotspot": hotspot_id, "text": body["text"]})
        else:
            raise ServiceError(404, "tindakan tidak dikenal")
        record["size"] = len(record["members"])
        record["member_details"] = [
            d for d in record.get("member_details", []) if d["tracking_id"] in record["members"]
        ]
        return copy.deepcopy(record)

    async def ready(self) -> bool:
        return True
