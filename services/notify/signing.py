"""HMAC-SHA256 signatures of webhook calls, for the sender and for any receiver.

The signed content is `<timestamp>.<raw body>`: binding the timestamp stops a
captured call from being replayed later, the raw bytes avoid any argument
about JSON canonical forms. Receivers recompute the signature over the body
exactly as received, compare in constant time and reject stale timestamps.
"""

import hashlib
import hmac
from collections.abc import Mapping

SIGNATURE_HEADER = "X-Lapor-Signature"
TIMESTAMP_HEADER = "X-Lapor-Timestamp"
NOTIFICATION_HEADER = "X-Lapor-Notification-Id"
SCHEME = "sha256="
DEFAULT_TOLERANCE_S = 300


def signed_content(timestamp: int, body: bytes) -> bytes:
    return str(timestamp).encode("ascii") + b"." + body


def signature(secret: str | bytes, timestamp: int, body: bytes) -> str:
    key = secret.encode() if isinstance(secret, str) else secret
    digest = hmac.new(key, signed_content(timestamp, body), hashlib.sha256).hexdigest()
    return SCHEME + digest


def signed_headers(
    secret: str | bytes, timestamp: int, body: bytes, notification_id: str
) -> dict[str, str]:
    return {
        "Content-Type": "application/json",
        TIMESTAMP_HEADER: str(timestamp),
        SIGNATURE_HEADER: signature(secret, timestamp, body),
        # Receivers de-duplicate on this: a retried call carries the same id.
        NOTIFICATION_HEADER: notification_id,
        "Idempotency-Key": notification_id,
    }


def verify(
    secret: str | bytes,
    headers: Mapping[str, str],
    body: bytes,
    now: float,
    tolerance_s: float = DEFAULT_TOLERANCE_S,
) -> bool:
    """True if the call was signed with `secret` within `tolerance_s` of `now` (epoch s)."""
    lowered = {key.lower(): value for key, value in headers.items()}
    raw_ts = lowered.get(TIMESTAMP_HEADER.lower(), "")
    given = lowered.get(SIGNATURE_HEADER.lower(), "")
    if not raw_ts.isdigit() or not given.startswith(SCHEME):
        return False
    timestamp = int(raw_ts)
    if abs(now - timestamp) > tolerance_s:
        return False
    return hmac.compare_digest(given, signature(secret, timestamp, body))
