"""API tokens: officers of one agency, Diskominfo admins. Stored only as hashes.

Tokens are 256-bit random strings, so a plain SHA-256 is enough to make a leaked
token table useless (no dictionary to attack, unlike passwords).
"""

import hashlib
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

    def actor(self) -> Actor:
        return Actor(role=self.role, id=self.name, agency=self.agency)

    def may_see(self, complaint: dict[str, Any]) -> bool:
        """Confidential complaints stay inside the agency/admin circle."""
        if not complaint.get("confidential"):
            return True
        return self.role is Role.ADMIN or (
            self.role is Role.AGENCY and self.agency == complaint.get("agency")
        )


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
