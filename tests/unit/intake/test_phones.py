"""Phone numbers: E.164 normalisation, keyed hashing, masking."""

import re

import pytest
from hypothesis import given
from hypothesis import strategies as st

from services.intake.phones import (
    HASH_HEX_CHARS,
    MIN_KEY_BYTES,
    mask_phone,
    normalize_phone,
    phone_hash,
)

KEY = b"k" * MIN_KEY_BYTES
OTHER_KEY = b"o" * MIN_KEY_BYTES
NUMBER = "+6281234567890"


@pytest.mark.parametrize(
    "raw",
    [
        "081234567890",
        "6281234567890",
        "+6281234567890",
        "0812-3456-7890",
        "0812 3456 7890",
        "+62 812-3456-7890",
        "+62 (812) 3456 7890",
        "(0812) 3456 7890",
        "  081234567890\n",
        "tel:+6281234567890",
        "０８１２３４５６７８９０",
    ],
)
def test_indonesian_mobile_forms_normalise_to_e164(raw: str) -> None:
    assert normalize_phone(raw) == NUMBER


@pytest.mark.parametrize(
    ("raw", "e164"),
    [
        ("0813 4567 890", "+628134567890"),  # ten-digit mobile
        ("0511 4772345", "+625114772345"),  # Banjarmasin/Martapura landline
        ("+65 9123 4567", "+6591234567"),  # a migrant worker's Singapore number
    ],
)
def test_other_valid_numbers(raw: str, e164: str) -> None:
    assert normalize_phone(raw) == e164


def test_default_region_applies_to_national_forms() -> None:
    assert normalize_phone("9123 4567", default_region="SG") == "+6591234567"
    assert normalize_phone("9123 4567") is None


@pytest.mark.parametrize(
    "raw",
    [
        None,
        "",
        "   ",
        "1708",
        "12",
        "TELKOMSEL",
        "081234",
        "+6281234567890123",
        "abc 0812",
        "0812" * 40,
        "+62 000 0000 0000",
    ],
)
def test_invalid_numbers_give_none(raw: str | None) -> None:
    assert normalize_phone(raw) is None


@given(st.text(max_size=100))
def test_normalize_never_raises(raw: str) -> None:
    result = normalize_phone(raw)
    assert result is None or re.fullmatch(r"\+[1-9][0-9]{6,14}", result)


def test_hash_is_stable_keyed_and_short() -> None:
    digest = phone_hash(NUMBER, KEY)
    assert digest == phone_hash(NUMBER, KEY)
    assert re.fullmatch(rf"[0-9a-f]{{{HASH_HEX_CHARS}}}", digest)
    assert digest != phone_hash(NUMBER, OTHER_KEY)
    assert digest != phone_hash("+6281234567891", KEY)
    assert "81234567890" not in digest


def test_every_written_form_hashes_alike_after_normalising() -> None:
    forms = ["081234567890", "+62 812-3456-7890", "6281234567890"]
    hashes = {phone_hash(normalize_phone(form) or "", KEY) for form in forms}
    assert len(hashes) == 1


@pytest.mark.parametrize("raw", ["081234567890", "6281234567890", "+62 812", "", "+0812345678"])
def test_hash_refuses_non_e164_without_echoing_it(raw: str) -> None:
    with pytest.raises(ValueError, match=r"E\.164") as info:
        phone_hash(raw, KEY)
    assert not raw or raw not in str(info.value)


@pytest.mark.parametrize("key", [b"", b"short"])
def test_hash_refuses_a_weak_key(key: bytes) -> None:
    with pytest.raises(ValueError, match="key"):
        phone_hash(NUMBER, key)


@pytest.mark.parametrize(
    ("e164", "masked"),
    [
        ("+6281234567890", "+62812****7890"),
        ("+628123456789012", "+62812****9012"),
        ("+628134567890", "+62813****90"),
        ("+625114772345", "+62511****45"),
        ("+6591234567", "+65****4567"),
        ("+62812", "+62****"),
        ("081234567890", "****90"),
        ("not a number", "****"),
        ("", "****"),
        (None, "****"),
    ],
)
def test_mask(e164: str | None, masked: str) -> None:
    assert mask_phone(e164) == masked


@given(st.from_regex(r"\+62[0-9]{8,12}", fullmatch=True))
def test_mask_always_hides_at_least_four_digits(e164: str) -> None:
    masked = mask_phone(e164)
    shown = sum(ch.isdigit() for ch in masked)
    assert sum(ch.isdigit() for ch in e164) - shown >= 4
    assert e164[3:] not in masked


@given(st.text(max_size=60))
def test_mask_never_raises_and_never_echoes(raw: str) -> None:
    masked = mask_phone(raw)
    digits = "".join(ch for ch in raw if ch.isdigit())
    if len(digits) >= 6:
        assert digits not in masked
