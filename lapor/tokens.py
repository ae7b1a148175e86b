"""API tokens as every service reads them: is a bearer token usable, and whose is it.

Intake issues and manages tokens (`services/intake/auth.py`, `lapor token`); they
live as SHA-256 hashes in the `api_tokens` collection. Notify's delivery log and
SLA's breaches answer officers too, so the rules that decide whether a stored
token may be used, and which agency's rows it opens (`lapor.audience`), live
here, shared by all.

A login session is such a token too (`kind: session`). While its account still
has a one-time password, the session may do nothing but change it, log out and
read itself (intake's routes for those): every other route of every service
refuses it with 403 and `CHANGE_FIRST`, by `password_refusal`.
"""

from __future__ import annotations

import hashlib
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any, Literal

from fastapi import Depends, HTTPException
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer

DEFAULT_TOKEN_DAYS = 90
TOKENS_COLLECTION = "api_tokens"
CHANGE_FIRST = (
    "password change required: this session's account has a one-time password; choose "
    "a new one (POST /api/v1/sessions/current/password) or log out before anything else"
)
# How the OpenAPI documents name that 403 (`OfficerDependency.documented_refusals`).
CHANGE_FIRST_DOC = "the session's account must first change its one-time password"

TokenStatus = Literal["active", "expired", "revoked"]


def hash_token(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def aware(moment: datetime | None) -> datetime | None:
    """Stored times come back naive from a client without tz_aware: they are UTC."""
    if moment is None or moment.tzinfo is not None:
        return moment
    return moment.replace(tzinfo=UTC)


def token_expiry(record: dict[str, Any]) -> datetime | None:
    """When the token stops working. A record from before expiries: its creation plus
    the default lifetime; without a creation time either, None (treated as expired)."""
    if explicit := aware(record.get("expires_at")):
        return explicit
    created = aware(record.get("created_at"))
    return created + timedelta(days=DEFAULT_TOKEN_DAYS) if created else None


def token_status(record: dict[str, Any], now: datetime) -> TokenStatus:
    if record.get("revoked_at"):
        return "revoked"
    expiry = token_expiry(record)
    return "expired" if expiry is None or now >= expiry else "active"


def token_refusal(record: dict[str, Any], now: datetime) -> str | None:
    """Why a stored token may not be used at `now` (for a 401), or None when it may."""
    status = token_status(record, now)
    if status == "revoked":
        return "token revoked; ask an admin for a new one"
    if status == "expired":
        expiry = token_expiry(record)
        when = f" on {expiry.isoformat(timespec='seconds')}" if expiry else ""
        return f"token expired{when}; ask an admin for a new one"
    return None


def password_refusal(record: dict[str, Any]) -> str | None:
    """Why a usable token may still do nothing (for a 403), or None when it may act:
    a session copies its account's `must_change_password` at login, so the check
    reads the token alone; a reset ends the account's sessions, and a change lifts
    it on the session that made it."""
    return CHANGE_FIRST if record.get("must_change_password") else None


@dataclass(frozen=True)
class Officer:
    """The holder of a usable token: an admin, an agency's officer, or a partner."""

    role: str
    agency: str | None = None
    # The token's holder as named when it was issued: the actor of what they do.
    name: str | None = None

    def reads_rows_of(self, agency: str | None) -> bool:
        """Admins read every agency's rows, an officer only their own agency's."""
        if self.role == "admin":
            return True
        return self.role == "agency" and agency is not None and agency == self.agency


# Finds a stored token record by the token's hash (None when there is none).
FindToken = Callable[[str], Awaitable[dict[str, Any] | None]]

_bearer = HTTPBearer(auto_error=False)


class OfficerDependency:
    """A FastAPI dependency: the officer holding the request's bearer token, or 401
    (none, unknown, expired or revoked), or 403 (a session that must first change
    its one-time password: `CHANGE_FIRST`; a partner's token: not an officer)."""

    # Read by `lapor.runtime.http.document_dependency_refusals`: every route that
    # depends on this documents the 403 of `CHANGE_FIRST`.
    documented_refusals: Mapping[int, str] = {403: CHANGE_FIRST_DOC}

    def __init__(self, find: FindToken, clock: Callable[[], datetime]) -> None:
        self.find = find
        self.clock = clock

    async def __call__(
        self,
        credentials: HTTPAuthorizationCredentials | None = Depends(_bearer),  # noqa: B008
    ) -> Officer:
        if credentials is None:
            raise HTTPException(401, detail="a bearer token is required")
        record = await self.find(hash_token(credentials.credentials))
        if record is None:
            raise HTTPException(401, detail="unknown token")
        if (refusal := token_refusal(record, self.clock())) is not None:
            raise HTTPException(401, detail=refusal)
        if (pending := password_refusal(record)) is not None:
            raise HTTPException(403, detail=pending)
        if record.get("role") not in ("admin", "agency"):
            raise HTTPException(403, detail="only agency officers and admins read this")
        return Officer(
            role=str(record["role"]), agency=record.get("agency"), name=record.get("name")
        )


def officer_dependency(
    find: FindToken, clock: Callable[[], datetime] = lambda: datetime.now(UTC)
) -> Callable[..., Awaitable[Officer]]:
    """The `OfficerDependency` over `find` and `clock`."""
    return OfficerDependency(find, clock)


def stored_tokens(database: Callable[[], Any]) -> FindToken:
    """`FindToken` over the `api_tokens` collection of the live database."""

    async def find(token_hash: str) -> dict[str, Any] | None:
        found: dict[str, Any] | None = await database()[TOKENS_COLLECTION].find_one(
            {"_id": token_hash}
        )
        return found

    return find


def in_memory_tokens(records: Mapping[str, Mapping[str, Any]]) -> FindToken:
    """`FindToken` over records keyed by the token itself (tests, tools); a record
    without an expiry does not expire."""
    by_hash = {
        hash_token(token): {"expires_at": datetime.max.replace(tzinfo=UTC), **record}
        for token, record in records.items()
    }

    async def find(token_hash: str) -> dict[str, Any] | None:
        return by_hash.get(token_hash)

    return find
