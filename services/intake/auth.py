"""API tokens: officers of one agency, Diskominfo admins. Stored only as hashes.

Tokens are 256-bit random strings, so a plain SHA-256 is enough to make a leaked
token table useless (no dictionary to attack, unlike passwords).

A citizen who files on the web gets a secret link to their complaint instead of
a token. Its key is an HMAC of the tracking id under intake's secret, so
nothing is stored at all (stronger than a stored hash) and a resent form gets
the same link.
"""

import base64
import hashlib
import hmac
import secrets
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from lapor.contracts.commands import Actor, Role


def new_token() -> str:
    return "lpt_" + secrets.token_urlsafe(32)


def hash_token(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


@dataclass(frozen=True)
class Principal:
    role: Role
    name: str
    agency: str | None = None
    complaint: str | None = None  # a citizen holds the key to one complaint only

    def actor(self) -> Actor:
        return Actor(role=self.role, id=self.name, agency=self.agency)

    def may_see(self, complaint: dict[str, Any]) -> bool:
        """Confidential complaints stay inside the agency/admin circle."""
        if not complaint.get("confidential"):
            return True
        if self.role is Role.CITIZEN:
            return self.complaint == complaint.get("_id")
        return self.role is Role.ADMIN or (
            self.role is Role.AGENCY and self.agency == complaint.get("agency")
        )


def citizen_key(tracking_id: str, secret: bytes) -> str:
    # The label keeps these MACs apart from any other use of the same secret.
    mac = hmac.new(secret, b"citizen-link:" + tracking_id.encode(), hashlib.sha256).digest()
    return "lpc_" + base64.urlsafe_b64encode(mac[:24]).decode()


def citizen_principal(tracking_id: str, key: str, secret: bytes) -> Principal | None:
    """The reporter of `tracking_id`, if `key` is that complaint's secret link key."""
    if not hmac.compare_digest(key.encode(), citizen_key(tracking_id, secret).encode()):
        return None
    return Principal(role=Role.CITIZEN, name=f"web:{tracking_id}", complaint=tracking_id)


def token_record(token: str, role: Role, name: str, agency: str | None) -> dict[str, Any]:
    if role is Role.AGENCY and not agency:
        raise ValueError("an agency token names its agency")
    if role not in (Role.AGENCY, Role.ADMIN, Role.PARTNER):
        raise ValueError("tokens are for agency officers, admins and partner systems")
    return {
        "_id": hash_token(token),
        "role": role.value,
        "name": name,
        "agency": agency,
        "created_at": datetime.now(UTC),
    }


def principal_from(record: dict[str, Any]) -> Principal:
    return Principal(role=Role(record["role"]), name=record["name"], agency=record.get("agency"))
