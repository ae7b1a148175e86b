"""Tracking ids that citizens read off one SMS and type back into another.

Format: ``LPR-7K3M-9QX2T`` (14 characters). After the fixed ``LPR`` prefix come
eight random symbols (40 bits from `secrets`, so ids are neither sequential nor
guessable) and one check symbol, grouped 4 + 5 for reading aloud.

Alphabet: Crockford base32, ``0-9`` and ``A-Z`` without ``I L O U``; input is
forgiving the Crockford way (``O`` reads as ``0``, ``I`` and ``L`` as ``1``),
case, spaces and dashes do not matter, and the prefix may be left out.

Check symbol: the payload is read as a polynomial over GF(32) and evaluated at
the generator ``x`` (Horner's rule), and the check symbol makes the value zero.
Equivalently, the symbols are folded through the quasigroup ``a ∘ b = x·a + b``,
which is totally anti-symmetric, as in the Damm algorithm. Every single-symbol
substitution, every adjacent transposition, every jump transposition (``abc``
→ ``cba``) and every twin error (``aa`` → ``bb``) is detected, also when the
check symbol itself is involved. A wrong id therefore never reaches someone
else's complaint by a typo: it is rejected before any lookup.

Collisions are unlikely (about one in 220 after 100,000 ids), not impossible:
the store must keep ids unique and draw again on a clash.
"""

import secrets
import unicodedata

__all__ = [
    "ALPHABET",
    "PREFIX",
    "RANDOM_SYMBOLS",
    "TRACKING_ID_LENGTH",
    "check_symbol",
    "new_tracking_id",
    "parse_tracking_id",
]

ALPHABET = "0123456789ABCDEFGHJKMNPQRSTVWXYZ"
PREFIX = "LPR"
RANDOM_SYMBOLS = 8
TRACKING_ID_LENGTH = len(PREFIX) + 1 + RANDOM_SYMBOLS + 1 + 1  # two dashes, one check
_CODE_LENGTH = RANDOM_SYMBOLS + 1
_VALUE = {symbol: value for value, symbol in enumerate(ALPHABET)}
# Crockford's decoding rule: letters that look like digits are read as digits.
_CONFUSABLES = str.maketrans({"O": "0", "I": "1", "L": "1"})
# Generous bound so a whole pasted SMS is not normalised character by character.
_MAX_INPUT = 64
# x^5 + x^2 + 1, a primitive polynomial: x generates all of GF(32)*.
_MODULUS = 0b100101


def new_tracking_id() -> str:
    """A fresh random id in display form, e.g. ``LPR-7K3M-9QX2T``."""
    bits = secrets.randbits(5 * RANDOM_SYMBOLS)
    payload = "".join(ALPHABET[(bits >> (5 * i)) & 0x1F] for i in range(RANDOM_SYMBOLS))
    return _display(payload + check_symbol(payload))


def parse_tracking_id(user_text: str) -> str | None:
    """The canonical id a citizen meant, or None if it is not a valid id.

    Accepts any case, spaces, dashes (including typographic ones), dots and
    underscores, with or without the ``LPR`` prefix, and Crockford confusables.
    """
    if not isinstance(user_text, str) or len(user_text) > _MAX_INPUT:
        return None
    code = _strip_prefix(_compact(user_text))
    if code is None or len(code) != _CODE_LENGTH:
        return None
    code = code.translate(_CONFUSABLES)
    if any(symbol not in _VALUE for symbol in code) or _fold(code) != 0:
        return None
    return _display(code)


def check_symbol(payload: str) -> str:
    """The check symbol for `payload`, given in canonical alphabet symbols."""
    if any(symbol not in _VALUE for symbol in payload):
        raise ValueError("payload must use canonical tracking-id symbols only")
    return ALPHABET[_times_x(_fold(payload))]


def _fold(symbols: str) -> int:
    acc = 0
    for symbol in symbols:
        acc = _times_x(acc) ^ _VALUE[symbol]
    return acc


def _times_x(value: int) -> int:
    """Multiply by the generator x in GF(32) = GF(2)[x] / (x^5 + x^2 + 1)."""
    value <<= 1
    return value ^ _MODULUS if value & 0b100000 else value


def _compact(text: str) -> str:
    text = unicodedata.normalize("NFKC", text).upper()
    return "".join(ch for ch in text if not _is_separator(ch))


def _is_separator(ch: str) -> bool:
    return ch.isspace() or ch in "._" or unicodedata.category(ch) == "Pd"


def _strip_prefix(compact: str) -> str | None:
    if len(compact) == len(PREFIX) + _CODE_LENGTH and compact.startswith(PREFIX):
        compact = compact[len(PREFIX) :]
    return compact if compact.isascii() and compact.isalnum() else None


def _display(code: str) -> str:
    return f"{PREFIX}-{code[:4]}-{code[4:]}"
