"""Who calls intake's HTTP API, as every route checks it: a bearer token's principal
or a reporter's secret link, and the refusals when neither may do what it asks.

Each route refuses in the same words, so a client (the console, an app) can tell
a missing token (401) from a wrong role (403) and from a complaint it may not
see, which does not exist for it (404).
"""

import ipaddress
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Annotated, Any
from zoneinfo import ZoneInfo

from fastapi import HTTPException, Path, Query

from lapor.account_store import AccountStore
from lapor.audience import Audience
from lapor.contracts.commands import Role
from services.intake.auth import Principal, audience_of, citizen_principal, may_see
from services.intake.repository import ComplaintRepository
from services.intake.sessions import FailureCounter, uncounted

CallerDependency = Callable[..., Awaitable[Principal | None]]
CitizenKey = Annotated[
    str | None, Query(max_length=64, description="The key of the reporter's secret link")
]
TrackingId = Annotated[str, Path(min_length=4, max_length=32)]


Network = ipaddress.IPv4Network | ipaddress.IPv6Network


@dataclass(frozen=True)
class AccountsContext:
    """What the account endpoints need besides the token check.

    `agencies`: region → its directory's agency codes. `proxies`: peers whose
    `X-Forwarded-For` names the client of a login (the console), so that failed
    logins are counted per browser, not per console. `address_key` keys the
    hash of client addresses stored with failed logins.
    """

    store: Callable[[], AccountStore]
    agencies: Mapping[str, frozenset[str]]
    default_region: str = "banjar"
    session_hours: float = 12.0
    address_key: bytes = b""
    proxies: tuple[Network, ...] = ()
    count_failure: FailureCounter = uncounted


def signed_in(caller: Principal | None) -> Principal:
    """The caller's principal; 401 without a valid bearer token."""
    if caller is None:
        raise HTTPException(401, detail="a bearer token is required")
    return caller


def admin(caller: Principal | None, what: str) -> Principal:
    """The caller, an admin; `what` completes the 403's "only admins ..."."""
    principal = signed_in(caller)
    if principal.role is not Role.ADMIN:
        raise HTTPException(403, detail=f"only admins {what}")
    return principal


def identified(who: Principal | None) -> Principal:
    """A bearer token's principal or the secret link's reporter; 401 for neither."""
    if who is None:
        raise HTTPException(401, detail="a bearer token or the complaint's secret link is required")
    return who


@dataclass(frozen=True)
class CitizenLinks:
    """The keys of reporters' secret links: `secret` signs them, `old_secrets`
    still open links signed before a change of key."""

    secret: bytes
    old_secrets: Sequence[bytes] = ()

    def reporter(self, tracking_id: str, key: str | None) -> Principal | None:
        if not key:
            return None
        return citizen_principal(tracking_id, key, self.secret, self.old_secrets)


async def complaint_for(
    repo: ComplaintRepository,
    tracking_id: str,
    caller: Principal | None,
    key: str | None,
    links: CitizenLinks,
) -> tuple[str, Principal | None, dict[str, Any], Audience]:
    """(tracking id, viewer, complaint, the viewer's audience) as the caller, or the
    key's reporter, finds it. A confidential complaint does not exist for anyone
    outside its circle: 404, as for an unknown tracking id."""
    tracking_id = tracking_id.strip().upper()
    viewer = caller or links.reporter(tracking_id, key)
    doc = await repo.get(tracking_id)
    if doc is None or not may_see(audience := audience_of(viewer, doc), doc):
        raise HTTPException(404, detail="complaint not found")
    return tracking_id, viewer, doc, audience


@dataclass(frozen=True)
class ApiContext:
    """What the complaint routes are built over (see `api.build_router`)."""

    repository: Callable[[], ComplaintRepository]
    zones: Mapping[str, ZoneInfo]
    execute: Any
    submit: Any
    links: CitizenLinks
    clock: Callable[[], datetime]
    accounts: AccountsContext | None

    def zone_of(self, doc: dict[str, Any]) -> ZoneInfo:
        return self.zones.get(doc["region"], ZoneInfo("Asia/Jakarta"))
