import json

from services.notify import signing

SECRET = "s3cret-of-pupr-0123456789"
BODY = json.dumps({"notification_id": "ntf-1", "text": "Laporan"}).encode()


def test_signature_is_hmac_sha256_over_timestamp_and_body() -> None:
    import hashlib
    import hmac

    expected = hmac.new(SECRET.encode(), b"1700000000." + BODY, hashlib.sha256).hexdigest()
    assert signing.signature(SECRET, 1_700_000_000, BODY) == f"sha256={expected}"


def test_receiver_accepts_a_fresh_untouched_call() -> None:
    headers = signing.signed_headers(SECRET, 1_700_000_000, BODY, "ntf-1")
    assert headers["X-Lapor-Notification-Id"] == "ntf-1"
    assert signing.verify(SECRET, headers, BODY, now=1_700_000_030)
    # Header names are case-insensitive on the wire.
    lowered = {k.lower(): v for k, v in headers.items()}
    assert signing.verify(SECRET, lowered, BODY, now=1_700_000_030)


def test_receiver_rejects_tampering_replay_and_wrong_secret() -> None:
    headers = signing.signed_headers(SECRET, 1_700_000_000, BODY, "ntf-1")
    assert not signing.verify(SECRET, headers, BODY + b" ", now=1_700_000_000)
    assert not signing.verify("another-secret-0123456", headers, BODY, now=1_700_000_000)
    assert not signing.verify(SECRET, headers, BODY, now=1_700_000_000 + 301)
    moved = {**headers, "X-Lapor-Timestamp": "1700000001"}  # timestamp is signed too
    assert not signing.verify(SECRET, moved, BODY, now=1_700_000_000)
    assert not signing.verify(SECRET, {}, BODY, now=1_700_000_000)
