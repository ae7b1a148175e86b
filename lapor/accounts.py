"""Officers' and admins' accounts: the rules, without storage.

Intake owns the accounts (collection `accounts`); the `lapor accounts` command
and `make run` (the first admin) write them through `lapor.account_store`.

Passwords are hashed with argon2id (`argon2-cffi`, its RFC 9106 low-memory
profile); a stored hash from older parameters is replaced at the next login.
A password the system generates is random (`new_password`), shown once and
never stored or logged in clear. A chosen password has at least
`MIN_PASSWORD_LENGTH` characters.

Failed logins are throttled with a sliding window (`throttled_until`): after
`USER_FAILURES` failures for one username, or `ADDRESS_FAILURES` from one
client address, within `FAILURE_WINDOW`, logins are refused without checking
the password until the window has moved past the oldest of them. A successful
login clears the username's count (failures before it no longer count).
Client addresses are stored only as keyed hashes (`client_digest`).
"""

from __future__ import annotations

import hashlib
import hmac
import re
import secrets
from collections.abc import Collection, Sequence
from datetime import datetime, timedelta
from typing import Any, Literal

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError
from argon2.profiles import RFC_9106_LOW_MEMORY

ACCOUNTS_COLLECTION = "accounts"
FAILURES_COLLECTION = "login_failures"

AccountRole = Literal["agency", "admin"]
ROLES: tuple[AccountRole, ...] = ("agency", "admin")

MIN_PASSWORD_LENGTH = 10
MAX_PASSWORD_LENGTH = 256  # argon2 takes anything; this only bounds the work per request
USER_FAILURES = 5
ADDRESS_FAILURES = 20
FAILURE_WINDOW = timedelta(minutes=15)
WRONG_CREDENTIALS = "username or password is wrong"

_USERNAME = re.compile(r"^[a-z0-9._-]{3,32}$")
_HASHER = PasswordHasher.from_parameters(RFC_9106_LOW_MEMORY)
# Verified when the username is unknown, so that an unknown name costs the same
# time as a wrong password and cannot be told apart by the answer's delay.
_DECOY_HASH = _HASHER.hash(secrets.token_urlsafe(16))


class AccountError(ValueError):
    """A request about an account that cannot be done; `status` follows HTTP."""

    def __init__(self, message: str, status: int = 422) -> None:
        super().__init__(message)
        self.message = message
        self.status = status


def normalize_username(username: str) -> str:
    return username.strip().lower()


def check_username(username: str) -> str:
    """The username as stored (lowercase), or `AccountError`."""
    name = normalize_username(username)
    if not _USERNAME.match(name):
        raise AccountError(
            "a username has 3 to 32 characters: lowercase letters, digits, '.', '_' or '-'"
        )
    return name


def check_password(password: str) -> str:
    if len(password) < MIN_PASSWORD_LENGTH:
        raise AccountError(f"a password has at least {MIN_PASSWORD_LENGTH} characters")
    if len(password) > MAX_PASSWORD_LENGTH:
        raise AccountError(f"a password has at most {MAX_PASSWORD_LENGTH} characters")
    return password


def new_password() -> str:
    """A one-time password: 16 random URL-safe characters (96 bits)."""
    return secrets.token_urlsafe(12)


def hash_password(password: str) -> str:
    return _HASHER.hash(password)


def verify_password(stored_hash: str | None, password: str) -> bool:
    """Whether `password` matches; with no stored hash, the same work and False."""
    try:
        return _HASHER.verify(stored_hash or _DECOY_HASH, password) and stored_hash is not None
    except (VerificationError, InvalidHashError):
        return False


def needs_rehash(stored_hash: str) -> bool:
    return _HASHER.check_needs_rehash(stored_hash)


def check_role(role: str, agency: str | None, agencies: Collection[str]) -> str | None:
    """The agency an account of `role` belongs to: an officer's must be in the
    region's directory; an admin belongs to none."""
    if role not in ROLES:
        raise AccountError(f"unknown role {role!r}: agency or admin")
    if role == "admin":
        if agency:
            raise AccountError("an admin account belongs to no agency")
        return None
    if not agency:
        raise AccountError("an officer's account names its agency")
    if agency not in agencies:
        raise AccountError(f"unknown agency code {agency!r} in the region's directory")
    return agency


def new_account(
    *,
    username: str,
    name: str,
    role: str,
    agency: str | None,
    region: str,
    password: str,
    created_by: str,
    now: datetime,
    agencies: Collection[str],
    must_change_password: bool = True,
) -> dict[str, Any]:
    """The stored document of a new account (its password only as a hash)."""
    display = name.strip()
    if not 1 <= len(display) <= 120:
        raise AccountError("a display name has 1 to 120 characters")
    return {
        "_id": check_username(username),
        "name": display,
        "role": role,
        "agency": check_role(role, agency, agencies),
        "region": region,
        "password_hash": hash_password(check_password(password)),
        "disabled_at": None,
        "created_at": now,
        "created_by": created_by,
        "password_changed_at": now,
        "must_change_password": must_change_password,
        "last_login_at": None,
    }


def account_view(doc: dict[str, Any]) -> dict[str, Any]:
    """What may be shown of an account: never its password hash."""
    return {
        "username": doc["_id"],
        "name": doc.get("name"),
        "role": doc.get("role"),
        "agency": doc.get("agency"),
        "region": doc.get("region"),
        "disabled": doc.get("disabled_at") is not None,
        "must_change_password": bool(doc.get("must_change_password")),
        "created_at": doc.get("created_at"),
        "last_login_at": doc.get("last_login_at"),
    }


def throttled_until(
    recent: Sequence[datetime], limit: int, now: datetime, window: timedelta = FAILURE_WINDOW
) -> datetime | None:
    """When logins may be tried again, or None when they may now.

    `recent`: times of counted failures, any order. Refused while `limit` of
    them lie within `window` before `now`; that ends when the `limit`-th most
    recent one leaves the window.
    """
    inside = sorted((at for at in recent if now - at < window), reverse=True)
    if len(inside) < limit:
        return None
    return inside[limit - 1] + window


def retry_after_seconds(until: datetime, now: datetime) -> int:
    """The Retry-After header's value: whole seconds, at least one."""
    return max(1, int(-(-(until - now).total_seconds() // 1)))


def client_digest(key: bytes, address: str | None) -> str | None:
    """A client address as stored: a keyed hash (addresses are personal data)."""
    if address is None:
        return None
    mac = hmac.new(key, b"login-address:" + address.encode(), hashlib.sha256)
    return mac.hexdigest()[:32]
