"""Personal data at rest and on the bus: phone numbers and e-mail addresses are
stored and sent only sealed.

One secret, `LAPOR_PII_KEY` (32 random bytes in URL-safe base64, from the
environment, never from the repository), serves two constructions:

- `PiiCipher`, AES-256-GCM, for data its holder both writes and reads back
  (notify's contacts). Each value is bound to its record (associated data,
  e.g. the complaint id). Stored form `pii1.<key id>.<nonce+ciphertext>`.
- `PiiSealer` / `PiiOpener`, libsodium's sealed boxes (X25519, through PyNaCl),
  for data sealed by a process that must never read it back: intake's events,
  every dead letter. The X25519 private key is derived from `LAPOR_PII_KEY`, so
  there is still one secret to keep; everyone else gets only its public half,
  `LAPOR_PII_PUBLIC_KEY` (`python -m lapor.runtime.pii public-key` prints it),
  which seals but cannot open. A sealed box has no associated data, so the
  record's context is sealed in front of the value and checked on opening: a
  sealed value copied onto another record does not open. Stored form
  `pii2.<key id>.<sealed box>`.

Values name the key that sealed them: after a rotation, new values use the new
key and the keys listed in `LAPOR_PII_OLD_KEYS` still open old ones.
"""

import argparse
import base64
import binascii
import hashlib
import os
import sys

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.kdf.hkdf import HKDF
from nacl.exceptions import CryptoError
from nacl.public import PrivateKey, PublicKey, SealedBox

PREFIX = "pii1"
SEALED_PREFIX = "pii2"
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

    @property
    def key_id(self) -> str:
        """Names the current key in every value it seals."""
        return self._current_id

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
        key_id, blob = _parse(token, PREFIX)
        if (aead := self._keys.get(key_id)) is None:
            raise PiiKeyError(f"sealed with an unknown key {key_id}; is LAPOR_PII_OLD_KEYS set?")
        try:
            return aead.decrypt(blob[:_NONCE_BYTES], blob[_NONCE_BYTES:], context.encode())
        except InvalidTag as exc:
            raise PiiKeyError("sealed value does not belong to this record or was altered") from exc


def _parse(token: str, prefix: str) -> tuple[str, bytes]:
    """The key id and the sealed bytes of `<prefix>.<key id>.<base64>`."""
    try:
        found, key_id, body = token.split(".", 2)
        blob = base64.urlsafe_b64decode(body)
    except (ValueError, binascii.Error) as exc:
        raise PiiKeyError("not a sealed value") from exc
    if found != prefix:
        raise PiiKeyError("not a sealed value")
    return key_id, blob


def _box_key(raw: bytes) -> PrivateKey:
    # Its own key, not the AES key: HKDF with a label of its own separates the two uses.
    seed = HKDF(
        algorithm=hashes.SHA256(), length=32, salt=None, info=b"lapor/pii-sealed-box/x25519"
    ).derive(raw)
    return PrivateKey(seed)


def _b64(raw: bytes) -> str:
    return base64.urlsafe_b64encode(raw).decode("ascii")


def public_key_of(key: str) -> str:
    """The `LAPOR_PII_PUBLIC_KEY` that belongs to the private `LAPOR_PII_KEY` `key`."""
    return _b64(bytes(_box_key(_decode_key(key)).public_key))


def _decode_public_key(text: str) -> PublicKey:
    try:
        raw = base64.urlsafe_b64decode(text.strip() + "=" * (-len(text.strip()) % 4))
    except (binascii.Error, ValueError) as exc:
        raise PiiKeyError("the PII public key must be URL-safe base64") from exc
    if len(raw) != 32:
        raise PiiKeyError(
            f"the PII public key must be 32 bytes (got {len(raw)}); "
            "print it with `python -m lapor.runtime.pii public-key`"
        )
    return PublicKey(raw)


def _bound(context: str, data: bytes) -> bytes:
    # Contexts are record ids and names: they hold no NUL.
    return context.encode() + b"\x00" + data


class PiiSealer:
    """Seals to the public key: whoever holds only this cannot open what it sealed."""

    def __init__(self, public_key: str) -> None:
        public = _decode_public_key(public_key)
        self._key_id = _key_id(bytes(public))
        self._box = SealedBox(public)

    @property
    def key_id(self) -> str:
        """Names the key pair in every value it seals."""
        return self._key_id

    def seal(self, value: str, context: str) -> str:
        return self.seal_bytes(value.encode(), context)

    def seal_bytes(self, data: bytes, context: str) -> str:
        sealed = self._box.encrypt(_bound(context, data))
        return f"{SEALED_PREFIX}.{self._key_id}.{_b64(sealed)}"


class PiiOpener:
    """Opens what was sealed to the public key of `key` (or of an old key), and
    values of the older symmetric form (`pii1`) stored before sealing moved to
    public keys."""

    def __init__(self, key: str, old_keys: tuple[str, ...] = ()) -> None:
        self._cipher = PiiCipher(key, old_keys)
        self._public_key = public_key_of(key)
        self._boxes: dict[str, SealedBox[PrivateKey]] = {}
        for raw in map(_decode_key, (*old_keys, key)):
            private = _box_key(raw)
            self._boxes[_key_id(bytes(private.public_key))] = SealedBox(private)

    @property
    def public_key(self) -> str:
        return self._public_key

    def sealer(self) -> PiiSealer:
        return PiiSealer(self._public_key)

    def open(self, token: str, context: str) -> str:
        return self.open_bytes(token, context).decode()

    def open_bytes(self, token: str, context: str) -> bytes:
        if token.startswith(PREFIX + "."):
            return self._cipher.open_bytes(token, context)
        key_id, blob = _parse(token, SEALED_PREFIX)
        if (box := self._boxes.get(key_id)) is None:
            raise PiiKeyError(f"sealed with an unknown key {key_id}; is LAPOR_PII_OLD_KEYS set?")
        try:
            plain = box.decrypt(blob)
        except CryptoError as exc:
            raise PiiKeyError("sealed value was altered or sealed to another key") from exc
        head = _bound(context, b"")
        if not plain.startswith(head):
            raise PiiKeyError("sealed value does not belong to this record")
        return plain[len(head) :]


def is_sealed(value: object) -> bool:
    return isinstance(value, str) and value.startswith((PREFIX + ".", SEALED_PREFIX + "."))


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="python -m lapor.runtime.pii")
    commands = parser.add_subparsers(dest="command", required=True)
    commands.add_parser("new-key", help="print a fresh LAPOR_PII_KEY")
    commands.add_parser(
        "public-key",
        help="print the LAPOR_PII_PUBLIC_KEY of the LAPOR_PII_KEY in the environment "
        "(or on standard input)",
    )
    args = parser.parse_args(argv)
    if args.command == "new-key":
        print(new_key())
        return 0
    # Read from a pipe or the environment, never from the command line, where
    # every user of the machine could see it.
    piped = "" if sys.stdin.isatty() else sys.stdin.readline().strip()
    key = piped or os.environ.get("LAPOR_PII_KEY", "")
    try:
        print(public_key_of(key))
    except PiiKeyError as exc:
        print(f"LAPOR_PII_KEY: {exc}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
