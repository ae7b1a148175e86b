"""The session cookie and the CSRF tokens, both keyed by CONSOLE_COOKIE_KEY.

The session cookie carries the officer's intake session token, sealed with
AES-GCM: the browser (and any script in it) can neither read the bearer token
nor change the account it names. Two keys are derived from the one setting, so
that a CSRF token never doubles as anything that opens a cookie.

CSRF: a form of a logged-in officer carries an HMAC of the session token's id
(its SHA-256) under the CSRF key: a page of another site cannot know it, and it
changes with every login. Before login (the login form, the public complaint
form) there is no session: a random pre-session cookie is set with the form and
the form carries its HMAC (double submit, but signed: a cookie planted by a
sibling domain cannot be matched without the key).
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import os
import secrets
from dataclasses import dataclass
from datetime import UTC, datetime

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

SESSION_COOKIE = "lapor_sesi"
PRESESSION_COOKIE = "lapor_pra"
CSRF_FIELD = "csrf"
_NONCE_BYTES = 12


@dataclass(frozen=True)
class Session:
    """What the console keeps of a login: intake's token and the account it belongs to."""

    token: str
    expires_at: datetime
    username: str
    name: str
    role: str
    agency: str | None
    must_change_password: bool = False

    @property
    def is_admin(self) -> bool:
        return self.role == "admin"

    def to_json(self) -> bytes:
        return json.dumps(
            {
                "t": self.token,
                "e": self.expires_at.isoformat(),
                "u": self.username,
                "n": self.name,
                "r": self.role,
                "a": self.agency,
                "m": self.must_change_password,
            },
            separators=(",", ":"),
        ).encode()

    @classmethod
    def from_json(cls, raw: bytes) -> Session:
        data = json.loads(raw)
        return cls(
            token=data["t"],
            expires_at=datetime.fromisoformat(data["e"]),
            username=data["u"],
            name=data["n"],
            role=data["r"],
            agency=data["a"],
            must_change_password=bool(data["m"]),
        )


def _derive(key: bytes, purpose: str) -> bytes:
    return hmac.new(key, purpose.encode(), hashlib.sha256).digest()


class Keys:
    """The cookie sealing key and the CSRF key, both derived from the setting."""

    def __init__(self, cookie_key: str) -> None:
        raw = cookie_key.encode()
        self._aead = AESGCM(_derive(raw, "lapor console session cookie v1"))
        self._csrf = _derive(raw, "lapor console csrf v1")

    # -- the session cookie ----------------------------------------------------------
    def seal(self, session: Session) -> str:
        nonce = os.urandom(_NONCE_BYTES)
        sealed = self._aead.encrypt(nonce, session.to_json(), SESSION_COOKIE.encode())
        return base64.urlsafe_b64encode(nonce + sealed).decode().rstrip("=")

    def open(self, value: str | None, now: datetime | None = None) -> Session | None:
        """The session in a cookie, or None when absent, forged, altered or expired."""
        if not value or len(value) > 4096:
            return None
        try:
            blob = base64.urlsafe_b64decode(value + "=" * (-len(value) % 4))
            plain = self._aead.decrypt(
                blob[:_NONCE_BYTES], blob[_NONCE_BYTES:], SESSION_COOKIE.encode()
            )
            session = Session.from_json(plain)
        except (InvalidTag, ValueError, KeyError, TypeError):
            return None
        if session.expires_at <= (now or datetime.now(UTC)):
            return None
        return session

    # -- CSRF ------------------------------------------------------------------------
    def _mac(self, purpose: str, value: str) -> str:
        return hmac.new(self._csrf, f"{purpose}:{value}".encode(), hashlib.sha256).hexdigest()

    def session_csrf(self, session: Session) -> str:
        token_id = hashlib.sha256(session.token.encode()).hexdigest()
        return self._mac("session", token_id)

    def presession_csrf(self, presession: str) -> str:
        return self._mac("presession", presession)

    def csrf_valid(self, given: str | None, expected: str) -> bool:
        return bool(given) and hmac.compare_digest(str(given), expected)


def new_presession() -> str:
    return secrets.token_urlsafe(24)


def new_form_id() -> str:
    """A command id or client id made when a form is rendered: submitting the same
    form twice (a double click, a resend after a timeout) takes effect once."""
    return "web-" + secrets.token_hex(16)
