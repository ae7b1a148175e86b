"""Phone numbers of citizens: normalise, pseudonymise, mask.

A number is personal data. Only the notify service keeps it (to send replies);
everywhere else a number is represented by `phone_hash` (keyed, so a leaked
hash cannot be reversed by hashing every possible Indonesian mobile number) and
shown, if at all, through `mask_phone`. Never log a number unmasked.
"""

import hashlib
import hmac
import re

import phonenumbers
from phonenumbers import NumberParseException, PhoneNumberFormat

__all__ = [
    "DEFAULT_SMS_COUNTRIES",
    "HASH_HEX_CHARS",
    "MIN_KEY_BYTES",
    "mask_phone",
    "normalize_phone",
    "phone_hash",
    "sms_reachable",
]

# 128 bits: no collision among any realistic number of citizens, and still
# short enough for an index key.
HASH_HEX_CHARS = 32
MIN_KEY_BYTES = 16
MASK = "****"
# phonenumbers already caps its input; this keeps a pasted essay cheap to refuse.
_MAX_RAW = 64
_E164 = re.compile(r"\+[1-9][0-9]{6,14}")
_DOMAIN = b"lapor/phone/v1\x00"
# Where a number given on the web, Open311 or a partner channel may be texted
# when the region's configuration names no other countries.
DEFAULT_SMS_COUNTRIES = frozenset({"ID"})
# Numbers that can receive an SMS; phonenumbers cannot tell mobile from fixed
# line in some countries (e.g. US), which a region has to allow explicitly.
_TEXTABLE = frozenset(
    {phonenumbers.PhoneNumberType.MOBILE, phonenumbers.PhoneNumberType.FIXED_LINE_OR_MOBILE}
)


def normalize_phone(raw: str | None, default_region: str = "ID") -> str | None:
    """E.164 form (``+6281234567890``) of a valid number, else None.

    Accepts the ways Indonesians and gateways write numbers: ``0812…``,
    ``62812…``, ``+62 812-3456-7890``, ``(0812) 3456 7890``, ``tel:`` URIs.
    Short codes, sender names and impossible numbers give None.
    """
    if not isinstance(raw, str) or not raw.strip() or len(raw) > _MAX_RAW:
        return None
    try:
        number = phonenumbers.parse(raw.strip(), default_region)
    except NumberParseException:
        return None
    if not phonenumbers.is_valid_number(number):
        return None
    return phonenumbers.format_number(number, PhoneNumberFormat.E164)


def sms_reachable(e164: str, countries: frozenset[str] = DEFAULT_SMS_COUNTRIES) -> bool:
    """Whether a submitted number may be texted: a mobile number of one of `countries`
    (ISO 3166 codes). Guards against SMS pumping through the web form: without it
    anyone could make notify text premium-rate or foreign numbers at our cost.
    """
    try:
        number = phonenumbers.parse(e164, None)
    except NumberParseException:
        return False
    if not phonenumbers.is_valid_number(number):
        return False
    if phonenumbers.region_code_for_number(number) not in countries:
        return False
    return phonenumbers.number_type(number) in _TEXTABLE


def phone_hash(e164: str, key: bytes) -> str:
    """Stable pseudonym of a number for de-duplication and rate limits.

    Only E.164 input is accepted: hashing `0812…` and `+62812…` separately
    would let one citizen appear as two and slip past the rate limit.
    """
    if len(key) < MIN_KEY_BYTES:
        raise ValueError(f"phone hash key must be at least {MIN_KEY_BYTES} bytes")
    if not isinstance(e164, str) or not _E164.fullmatch(e164):
        # The message must not echo the number it refuses.
        raise ValueError("phone_hash expects an E.164 number; call normalize_phone first")
    digest = hmac.new(key, _DOMAIN + e164.encode("ascii"), hashlib.sha256)
    return digest.hexdigest()[:HASH_HEX_CHARS]


def mask_phone(e164: str | None) -> str:
    """Display form that lets the owner recognise a number, e.g. ``+62812****7890``.

    At least four digits are always hidden; input that is not a parseable
    number is hidden almost completely rather than echoed.
    """
    if not isinstance(e164, str):
        return MASK
    try:
        number = phonenumbers.parse(e164, None)
    except NumberParseException:
        return _mask_unparsed(e164)
    national = phonenumbers.national_significant_number(number)
    return f"+{number.country_code}{_mask_digits(national)}"


def _mask_digits(digits: str) -> str:
    head = digits[:3] if len(digits) >= 9 else ""
    for tail_len in (4, 2):
        if len(digits) - len(head) - tail_len >= len(MASK):
            return f"{head}{MASK}{digits[-tail_len:]}"
    return MASK


def _mask_unparsed(raw: str) -> str:
    digits = "".join(ch for ch in raw if ch.isascii() and ch.isdigit())
    return f"{MASK}{digits[-2:]}" if len(digits) >= 8 else MASK
