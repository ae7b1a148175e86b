"""Personal data at rest: phone numbers are stored only as AES-256-GCM ciphertext.

The key comes from the environment (`LAPOR_PII_KEY`, 32 random bytes in
URL-safe base64) and never from the repository. Each value is bound to the
record it belongs to (associated data, e.g. the complaint id), so a ciphertext
copied onto another record does not decrypt. The stored form names its key
(`pii1.<key id>.<nonce+ciphertext>`): after a rotation, new values are sealed
with the new key and keys listed in `LAPOR_PII_OLD_KEYS` still open old ones.
"""

import base64
import binascii
import hashlib
import os

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

PREFIX = "pii1"
_NONCE_BYTES = 12


class PiiKeyError(ValueError):
    """A key that is missing, malformed or unknown."""


def new_key() -> str:
    """A fresh key in the form `LAPOR_PII_KEY` expects."""
    return base64.urlsafe_b64encode(os.urandom(32)).decode("ascii")


def _decode_key(text: str) -> bytes:
    try:
        raw = base64.urlsafe_b64decode(text.strip() + "=" * (-len(text.strip()) % 4))
    except (binascii.Error, ValueError) as exc:
        raise PiiKeyError("the PII key must be URL-safe base64") from exc
    if len(raw) != 32:
        raise PiiKeyError(f"the PII key must be 32 bytes (got {len(raw)}); make one with new_key()")
    return raw


def _key_id(raw: bytes) -> str:
    # Public and short: says which key sealed a value, reveals nothing of the key.
    return hashlib.sha256(b"lapor/pii-key-id\x00" + raw).hexdigest()[:8]


class PiiCipher:
    def __init__(self, key: str, old_keys: tuple[str, ...] = ()) -> None:
        current = _decode_key(key)
        self._current_id = _key_id(current)
        self._keys = {_key_id(raw): AESGCM(raw) for raw in map(_decode_key, (*old_keys, key))}

    def seal(self, value: str, context: str) -> str:
        return self.seal_bytes(value.encode(), context)

    def open(self, token: str, context: str) -> str:
        return self.open_bytes(token, context).decode()

    def seal_bytes(self, data: bytes, context: str) -> str:
        nonce = os.urandom(_NONCE_BYTES)
        sealed = self._keys[self._current_id].encrypt(nonce, data, context.encode())
        body = base64.urlsafe_b64encode(nonce + sealed).decode("ascii")
        return f"{PREFIX}.{self._current_id}.{body}"

    def open_bytes(self, token: str, context: str) -> bytes:
        try:
            prefix, key_id, body = token.split(".", 2)
            blob = base64.urlsafe_b64decode(body)
        except (ValueError, binascii.Error) as exc:
            raise PiiKeyError("not a sealed value") from exc
        if prefix != PREFIX:
            raise PiiKeyError("not a sealed value")
        if (aead := self._keys.get(key_id)) is None:
            raise PiiKeyError(f"sealed with an unknown key {key_id}; is LAPOR_PII_OLD_KEYS set?")
        try:
            return aead.decrypt(blob[:_NONCE_BYTES], blob[_NONCE_BYTES:], context.encode())
        except InvalidTag as exc:
            raise PiiKeyError("sealed value does not belong to this record or was altered") from exc


def is_sealed(value: object) -> bool:
    return isinstance(value, str) and value.startswith(PREFIX + ".")
