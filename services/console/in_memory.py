"""An in-memory stand-in for the services the console calls, for the pages' unit tests:
intake's accounts, sessions and complaints, the dead-letter watcher's records and the
hotspots service's views, with the few rules the tests need.
"""

from __future__ import annotations

import copy
import secrets
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

from services.console.client import Listing, ServiceError, Unauthorized, WorklistQuery


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

    async def worklist(self, token: str, agency: str, query: WorklistQuery) -> Listing:
        account = self._account(token)
        if account.role != "admin" and account.agency != agency:
            raise ServiceError(403, "an officer sees only their agency's complaints")
        call = {"agency": agency, **asdict(query), "states": list(query.states)}
        self.worklist_calls.append(call)
        wanted = set(query.states) or {"assigned", "in_progress", "needs_info", "responded"}
        q = (query.q or "").lower()
        found = [
            c
            for c in self.complaints.values()
            if c.get("agency") == agency
            and c["state"] in wanted
            and (not query.overdue or c.get("overdue"))
            and q in (c["tracking_id"] + " " + (c.get("text") or "")).lower()
        ]
        found.sort(key=lambda c: (c.get("priority") != "urgent", c.get("next_deadline") or "~"))
        page = [copy.deepcopy(c) for c in found[query.offset : query.offset + query.limit]]
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
