"""API tokens: officers of one agency, Diskominfo admins. Stored only as hashes.

Tokens are 256-bit random strings, so a plain SHA-256 is enough to make a leaked
token table useless (no dictionary to attack, unlike passwords). Each has a
public id (for listing and revoking; never the secret or its hash), an expiry
and a last use. Records from before expiries existed expire
`DEFAULT_TOKEN_DAYS` after their creation, like a new token of the default
lifetime.

A citizen who files on the web gets a secret link to their complaint instead of
a token. Its key is an HMAC of the tracking id under intake's citizen-link key
(`LAPOR_CITIZEN_LINK_KEY`, used for nothing else), so nothing is stored at all
(stronger than a stored hash) and a resent form gets the same link. Old keys
still open the links they signed until they are removed.
"""

import base64
import hashlib
import hmac
import secrets
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from fastapi import Depends, HTTPException, Request
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer

from lapor.account_store import SESSION
from lapor.audience import Audience, access
from lapor.contracts.commands import Actor, Role
from lapor.runtime.http import mark_authenticated
from lapor.tokens import CHANGE_FIRST as CHANGE_FIRST
from lapor.tokens import (
    CHANGE_FIRST_DOC,
    DEFAULT_TOKEN_DAYS,
    password_refusal,
    token_expiry,
    token_status,
)
from lapor.tokens import TokenStatus as TokenStatus
from lapor.tokens import aware as _aware
from lapor.tokens import hash_token as hash_token
from lapor.tokens import token_refusal as token_refusal

MAX_TOKEN_DAYS = 365
# The last use is written at most this often per token (one write, not one per request).
LAST_USE_EVERY = timedelta(minutes=1)


def new_token() -> str:
    return "lpt_" + secrets.token_urlsafe(32)


def new_token_id() -> str:
    """A token's public id: what `lapor token list` shows and `revoke` takes."""
    return "tok_" + secrets.token_hex(8)


@dataclass(frozen=True)
class Principal:
    role: Role
    name: str
    agency: str | None = None
    complaint: str | None = None  # a citizen holds the key to one complaint only
    account: str | None = None  # the username behind a login session
    token_id: str | None = None  # the public id of the token or session used

    def actor(self) -> Actor:
        return Actor(role=self.role, id=self.name, agency=self.agency)

    def audience(self, complaint: dict[str, Any]) -> Audience:
        """Which audience of `lapor.audience.POLICY` this caller is for `complaint`."""
        if self.role is Role.ADMIN:
            return Audience.ADMIN
        if self.role is Role.AGENCY:
            holding = self.agency is not None and self.agency == complaint.get("agency")
            return Audience.AGENCY if holding else Audience.OTHER_AGENCY
        if self.role is Role.CITIZEN and self.complaint == complaint.get("_id"):
            return Audience.REPORTER
        return Audience.PUBLIC

    def may_see(self, complaint: dict[str, Any]) -> bool:
        """Confidential complaints stay inside the reporter/agency/admin circle."""
        return may_see(self.audience(complaint), complaint)


def audience_of(viewer: Principal | None, complaint: dict[str, Any]) -> Audience:
    return viewer.audience(complaint) if viewer else Audience.PUBLIC


def may_see(audience: Audience, complaint: dict[str, Any]) -> bool:
    return not complaint.get("confidential") or access(audience, "confidential").shown


def citizen_key(tracking_id: str, secret: bytes) -> str:
    # The label keeps these MACs apart from any other use of the same secret.
    mac = hmac.new(secret, b"citizen-link:" + tracking_id.encode(), hashlib.sha256).digest()
    return "lpc_" + base64.urlsafe_b64encode(mac[:24]).decode()


def citizen_principal(
    tracking_id: str, key: str, secret: bytes, old_secrets: Sequence[bytes] = ()
) -> Principal | None:
    """The reporter of `tracking_id`, if `key` is that complaint's secret link key
    under the current secret or one of the old ones (verification only)."""
    if not any(
        hmac.compare_digest(key.encode(), citizen_key(tracking_id, s).encode())
        for s in (secret, *old_secrets)
    ):
        return None
    return Principal(role=Role.CITIZEN, name=f"web:{tracking_id}", complaint=tracking_id)


def token_record(
    token: str,
    role: Role,
    name: str,
    agency: str | None,
    *,
    days: int = DEFAULT_TOKEN_DAYS,
    now: datetime | None = None,
) -> dict[str, Any]:
    if role is Role.AGENCY and not agency:
        raise ValueError("an agency token names its agency")
    if role not in (Role.AGENCY, Role.ADMIN, Role.PARTNER):
        raise ValueError("tokens are for agency officers, admins and partner systems")
    if not 1 <= days <= MAX_TOKEN_DAYS:
        raise ValueError(f"a token lives 1 to {MAX_TOKEN_DAYS} days")
    now = now or datetime.now(UTC)
    return {
        "_id": hash_token(token),
        "id": new_token_id(),
        "role": role.value,
        "name": name,
        "agency": agency,
        "created_at": now,
        "expires_at": now + timedelta(days=days),
        "last_used_at": None,
        "revoked_at": None,
    }


def session_record(
    token: str, account: dict[str, Any], *, hours: float, now: datetime
) -> dict[str, Any]:
    """A login session: an ordinary token record of the account's role, agency and
    name, marked `kind: session` with the account's username, living `hours`."""
    record = token_record(
        token, Role(account["role"]), account["name"], account.get("agency"), days=1, now=now
    )
    return record | {
        "kind": SESSION,
        "account": account["_id"],
        "region": account.get("region"),
        "expires_at": now + timedelta(hours=hours),
        # Copied from the account at login: `lapor.tokens.password_refusal`.
        "must_change_password": bool(account.get("must_change_password")),
    }


def needs_last_use(record: dict[str, Any], now: datetime) -> bool:
    """Whether a use at `now` is worth a write: at most one per `LAST_USE_EVERY`."""
    last = _aware(record.get("last_used_at"))
    return last is None or now - last >= LAST_USE_EVERY


def token_view(record: dict[str, Any], now: datetime) -> dict[str, Any]:
    """What may be shown of a token: never the secret, never its hash."""
    return {
        "id": record.get("id"),
        "name": record.get("name"),
        "role": record.get("role"),
        "agency": record.get("agency"),
        "created_at": _aware(record.get("created_at")),
        "expires_at": token_expiry(record),
        "last_used_at": _aware(record.get("last_used_at")),
        "revoked_at": _aware(record.get("revoked_at")),
        "status": token_status(record, now),
    }


def principal_from(record: dict[str, Any]) -> Principal:
    """Whose token it is. A session acts under its account's username: that is the
    actor id in the history, which accountability counts per official."""
    return Principal(
        role=Role(record["role"]),
        name=record.get("account") or record["name"],
        agency=record.get("agency"),
        account=record.get("account"),
        token_id=record.get("id"),
    )


_bearer = HTTPBearer(auto_error=False)


class CallerDependency:
    """A FastAPI dependency shared by intake's routers: the holder of the request's
    bearer token (its last use noted), None without one, 401 for an unknown,
    expired or revoked token. Requests it lets through count as authenticated.

    A login session whose account must still change its one-time password gets
    403 (`lapor.tokens.password_refusal`) everywhere, except through the
    dependency made with `password_pending=True`, which only the routes to change
    the password, log out and read the current session use. So the rule holds for
    every client of the API, not only for the console."""

    def __init__(
        self,
        repository: Callable[[], Any],
        clock: Callable[[], datetime],
        *,
        password_pending: bool = False,
    ) -> None:
        self.repository = repository
        self.clock = clock
        self.password_pending = password_pending

    @property
    def documented_refusals(self) -> dict[int, str]:
        """Read by `lapor.runtime.http.document_dependency_refusals`."""
        return {} if self.password_pending else {403: CHANGE_FIRST_DOC}

    async def __call__(
        self,
        request: Request,
        credentials: HTTPAuthorizationCredentials | None = Depends(_bearer),  # noqa: B008
    ) -> Principal | None:
        if credentials is None:
            return None
        repo = self.repository()
        record = await repo.find_token(hash_token(credentials.credentials))
        if record is None:
            raise HTTPException(401, detail="unknown token")
        now = self.clock()
        if (refusal := token_refusal(record, now)) is not None:
            raise HTTPException(401, detail=refusal)
        await repo.record_token_use(record, now)
        mark_authenticated(request)
        if not self.password_pending and (pending := password_refusal(record)) is not None:
            raise HTTPException(403, detail=pending)
        return principal_from(record)


def caller_dependency(
    repository: Callable[[], Any], clock: Callable[[], datetime], *, password_pending: bool = False
) -> Callable[..., Awaitable[Principal | None]]:
    """The `CallerDependency` over the live repository and clock."""
    return CallerDependency(repository, clock, password_pending=password_pending)
