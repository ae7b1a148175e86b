"""Sealing personal data at rest: round trip, binding to its record, rotation, bad keys."""

from __future__ import annotations

import pytest
from pydantic import ValidationError

from lapor.runtime.pii import PiiCipher, PiiKeyError, is_sealed, new_key
from lapor.runtime.settings import PiiSettings

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


def test_old_keys_come_comma_separated(monkeypatch: pytest.MonkeyPatch) -> None:
    old = new_key()
    monkeypatch.setenv("LAPOR_PII_KEY", new_key())
    monkeypatch.setenv("LAPOR_PII_OLD_KEYS", f" {old} ,")
    settings = PiiSettings()
    assert settings.cipher().open(PiiCipher(old).seal(PHONE, "x"), "x") == PHONE
