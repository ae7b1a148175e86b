"""Sealing personal data: round trip, binding to its record, rotation, bad keys; with
the symmetric key, and to the public key that only the private key opens."""

from __future__ import annotations

import base64
import subprocess
import sys

import pytest
from pydantic import ValidationError

from lapor.runtime.pii import (
    PiiCipher,
    PiiKeyError,
    PiiOpener,
    PiiSealer,
    is_sealed,
    new_key,
    public_key_of,
)
from lapor.runtime.settings import PiiPublicKeySettings, PiiSettings
from services.notify.settings import NotifySettings

PHONE = "+6281234567890"


def test_a_sealed_value_opens_for_its_own_record_only() -> None:
    cipher = PiiCipher(new_key())
    token = cipher.seal(PHONE, "LPR-AAAA-BBBBB")

    assert is_sealed(token) and PHONE not in token and "81234567890" not in token
    assert cipher.open(token, "LPR-AAAA-BBBBB") == PHONE
    with pytest.raises(PiiKeyError, match="does not belong"):
        cipher.open(token, "LPR-CCCC-DDDDD")


def test_sealing_twice_gives_two_ciphertexts() -> None:
    cipher = PiiCipher(new_key())
    assert cipher.seal(PHONE, "x") != cipher.seal(PHONE, "x")


def test_bytes_survive_the_round_trip() -> None:
    cipher = PiiCipher(new_key())
    raw = b"\xff\x00not utf-8"
    assert cipher.open_bytes(cipher.seal_bytes(raw, "DLQ:1"), "DLQ:1") == raw


def test_an_altered_value_is_refused() -> None:
    cipher = PiiCipher(new_key())
    token = cipher.seal(PHONE, "x")
    altered = token[:-2] + ("A" if token[-2] != "A" else "B") + token[-1]
    with pytest.raises(PiiKeyError):
        cipher.open(altered, "x")


def test_after_rotation_old_values_open_and_new_ones_use_the_new_key() -> None:
    old, new = new_key(), new_key()
    before = PiiCipher(old).seal(PHONE, "x")
    rotated = PiiCipher(new, old_keys=(old,))

    assert rotated.open(before, "x") == PHONE
    after = rotated.seal(PHONE, "x")
    assert after.split(".")[1] != before.split(".")[1]
    with pytest.raises(PiiKeyError, match="unknown key"):
        PiiCipher(new).open(before, "x")


@pytest.mark.parametrize("value", ["", "not base64 at all!", "c2hvcnQ="])
def test_a_bad_key_stops_the_service_without_echoing_it(
    monkeypatch: pytest.MonkeyPatch, value: str
) -> None:
    monkeypatch.setenv("LAPOR_PII_KEY", value)
    with pytest.raises(ValidationError) as info:
        PiiSettings()
    assert "LAPOR_PII_KEY" in str(info.value)
    if value:
        assert value not in str(info.value)


def test_a_missing_key_stops_the_service(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("LAPOR_PII_KEY", raising=False)
    with pytest.raises(ValidationError, match="LAPOR_PII_KEY"):
        PiiSettings()


def test_notify_does_not_start_without_the_private_key(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("LAPOR_PII_KEY", raising=False)
    with pytest.raises(ValidationError, match="LAPOR_PII_KEY"):
        NotifySettings()


def test_old_keys_come_comma_separated(monkeypatch: pytest.MonkeyPatch) -> None:
    old = new_key()
    monkeypatch.setenv("LAPOR_PII_KEY", new_key())
    monkeypatch.setenv("LAPOR_PII_OLD_KEYS", f" {old} ,")
    settings = PiiSettings()
    assert settings.cipher().open(PiiCipher(old).seal(PHONE, "x"), "x") == PHONE


# --- sealed to the public key -------------------------------------------------------


def test_sealed_to_the_public_key_it_opens_with_the_private_key_for_its_record_only() -> None:
    key = new_key()
    token = PiiSealer(public_key_of(key)).seal(PHONE, "received:LPR-1/reply_to_sealed")

    assert is_sealed(token) and token.startswith("pii2.") and "81234567890" not in token
    opener = PiiOpener(key)
    assert opener.open(token, "received:LPR-1/reply_to_sealed") == PHONE
    with pytest.raises(PiiKeyError, match="does not belong"):
        opener.open(token, "received:LPR-2/reply_to_sealed")
    with pytest.raises(PiiKeyError, match="unknown key"):
        PiiOpener(new_key()).open(token, "received:LPR-1/reply_to_sealed")


def test_the_public_key_is_derived_the_same_every_time_and_differs_per_key() -> None:
    key = new_key()
    assert public_key_of(key) == public_key_of(key) == PiiOpener(key).public_key
    assert public_key_of(key) != public_key_of(new_key())


def test_an_altered_sealed_box_is_refused() -> None:
    key = new_key()
    token = PiiSealer(public_key_of(key)).seal(PHONE, "x")
    # Flip one bit of the box itself: a changed base64 character may only touch
    # the padding bits of the last group, which decode to the same bytes.
    prefix, key_id, body = token.split(".", 2)
    blob = bytearray(base64.urlsafe_b64decode(body))
    blob[len(blob) // 2] ^= 0x01
    altered = f"{prefix}.{key_id}.{base64.urlsafe_b64encode(bytes(blob)).decode()}"
    with pytest.raises(PiiKeyError):
        PiiOpener(key).open(altered, "x")


def test_the_private_key_opens_old_values_and_values_of_rotated_keys() -> None:
    old, new = new_key(), new_key()
    legacy = PiiCipher(old).seal(PHONE, "DLQ:1")  # before sealing moved to public keys
    before = PiiSealer(public_key_of(old)).seal(PHONE, "DLQ:2")
    rotated = PiiOpener(new, old_keys=(old,))
    assert rotated.open(legacy, "DLQ:1") == rotated.open(before, "DLQ:2") == PHONE
    assert rotated.sealer().seal(PHONE, "x").split(".")[1] != before.split(".")[1]


def test_the_public_key_settings_seal_for_the_key_settings(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    key = new_key()
    monkeypatch.setenv("LAPOR_PII_KEY", key)
    monkeypatch.setenv("LAPOR_PII_PUBLIC_KEY", public_key_of(key))
    token = PiiPublicKeySettings().sealer().seal_bytes(b"\xff raw", "DLQ:3")
    assert PiiSettings().opener().open_bytes(token, "DLQ:3") == b"\xff raw"


def test_the_public_key_command_reads_the_key_from_a_pipe_not_the_command_line() -> None:
    key = new_key()
    done = subprocess.run(
        [sys.executable, "-m", "lapor.runtime.pii", "public-key"],
        input=key + "\n",
        capture_output=True,
        text=True,
        timeout=30,
        check=True,
    )
    assert done.stdout.strip() == public_key_of(key)
