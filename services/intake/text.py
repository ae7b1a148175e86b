"""Text hygiene for everything a citizen types (SMS today, web forms later).

Gateways deliver whatever the handset and the operator produced: invalid
UTF-8, NUL bytes from UCS-2 mix-ups, bidi overrides, tabs and blank lines from
joined multi-part messages. Routing keywords, agency dashboards and the
database all want one clean, printable line, so the cleaning happens once, at
the edge, and everything downstream can trust it.

Cleaning never invents or reorders words: it only drops what no one can see
or type, joins lines, and caps the length (with a flag, so the citizen can be
told that the tail was cut).
"""

import codecs
import re
import unicodedata
from dataclasses import dataclass

import regex

__all__ = [
    "DEFAULT_MIN_WORDS",
    "MAX_SMS_TEXT",
    "MIN_WORD_LETTERS",
    "CleanText",
    "clean_text",
    "decode_bytes",
    "is_too_short",
    "meaningful_word_count",
    "meaningful_words",
    "normalize_text",
    "truncate",
]

# Ten concatenated SMS parts are ~1,530 GSM characters; anything far beyond that
# did not come from a phone keyboard and is cut rather than stored whole.
MAX_SMS_TEXT = 1600
DEFAULT_MIN_WORDS = 3
MIN_WORD_LETTERS = 3

_ZWNJ = "\u200c"
_ZWJ = "\u200d"
_REPLACEMENT = "\ufffd"
# Line and record separators are layout, not content: they become spaces so
# that the words on either side stay apart.
_SPACE_LIKE = frozenset("\t\n\v\f\r\x1c\x1d\x1e\x1f\x85\u2028\u2029")
# Zero-width joiners hold emoji sequences (families, professions, the rainbow
# flag) together; every other format character is invisible and can hide or
# reorder text on an operator's screen (bidi overrides, tag characters; the
# rare subdivision flags lose their tags and show as a plain black flag).
_JOINERS = _ZWNJ + _ZWJ
_KEPT_FORMAT = frozenset(_JOINERS)
# How far truncation may back off to end on a word rather than inside one.
_BACKOFF = 24
# What a reader sees as one character: a flag (two regional indicators), a
# family emoji (joined by ZWJ), a letter with its combining marks. `regex`
# follows the current Unicode segmentation rules, which hand-written checks
# of code point categories do not.
_GRAPHEME = regex.compile(r"\X")
_WORD = re.compile(r"[^\W_]+(?:['’-][^\W_]+)*")


@dataclass(frozen=True, slots=True)
class CleanText:
    """Cleaned text and whether the length cap cut something off."""

    text: str
    truncated: bool = False


def decode_bytes(data: bytes) -> str:
    """Decode gateway bytes without ever failing.

    UTF-8 is what every modern gateway sends; invalid sequences become U+FFFD,
    which `normalize_text` turns into a space so neighbouring words stay apart.
    A UTF-16 byte-order mark means the gateway passed the raw UCS-2 payload on.
    """
    if data.startswith((codecs.BOM_UTF16_LE, codecs.BOM_UTF16_BE)):
        return data.decode("utf-16", errors="replace")
    return data.decode("utf-8-sig", errors="replace")


def normalize_text(text: str) -> str:
    """Printable, NFC-normalised, single-spaced text on one line (not truncated)."""
    visible = unicodedata.normalize("NFC", "".join(_visible_chars(text)))
    # A joiner only means something between two characters of one word.
    words = (word.strip(_JOINERS) for word in visible.split())
    return " ".join(word for word in words if word)


def truncate(text: str, limit: int = MAX_SMS_TEXT) -> CleanText:
    """Cap `text` at `limit` characters, keeping only whole grapheme clusters.

    The cut prefers the end of a word; it never splits a flag, an emoji
    sequence or a letter from its accents.
    """
    if limit < 1:
        raise ValueError("limit must be at least 1")
    if len(text) <= limit:
        return CleanText(text, truncated=False)
    return CleanText(_leading_clusters(text, limit), truncated=True)


def clean_text(raw: str | bytes, *, limit: int = MAX_SMS_TEXT) -> CleanText:
    """Decode (if bytes), normalise and cap a citizen's text."""
    text = decode_bytes(raw) if isinstance(raw, bytes) else raw
    return truncate(normalize_text(text), limit)


def meaningful_words(text: str) -> list[str]:
    """Words that carry content: at least three letters, not one letter repeated.

    Counting letters rather than tokens lets `jln`, `tdk` and `sdh` count
    while `di`, `yg`, `RT05`, numbers, emoji and `aaaa` do not.
    """
    return [word for word in _WORD.findall(text) if _is_meaningful(word)]


def meaningful_word_count(text: str) -> int:
    return len(meaningful_words(text))


def is_too_short(text: str, min_words: int = DEFAULT_MIN_WORDS) -> bool:
    """True when `text` has fewer than `min_words` meaningful words."""
    return meaningful_word_count(text) < min_words


def _is_meaningful(word: str) -> bool:
    letters = [ch.casefold() for ch in word if ch.isalpha()]
    return len(letters) >= MIN_WORD_LETTERS and len(set(letters)) > 1


def _visible_chars(text: str) -> list[str]:
    out: list[str] = []
    for ch in text:
        if ch.isprintable():
            out.append(" " if ch == _REPLACEMENT else ch)
        elif ch in _SPACE_LIKE or ch.isspace():
            out.append(" ")
        elif _keeps_invisible(ch):
            out.append(ch)
    return out


def _keeps_invisible(ch: str) -> bool:
    """Decide for a non-printable, non-space character."""
    category = unicodedata.category(ch)
    if category == "Cf":
        return ch in _KEPT_FORMAT
    if category in ("Cc", "Cs"):
        # Controls are noise; lone surrogates cannot even be encoded as UTF-8.
        return False
    if category == "Cn":
        # Unassigned in this Python's Unicode tables may be a newer emoji;
        # noncharacters, however, are never meant to be exchanged.
        return not _is_noncharacter(ord(ch))
    return True  # private use: harmless, and some handsets use it for emoji


def _is_noncharacter(code: int) -> bool:
    return (code & 0xFFFE) == 0xFFFE or 0xFDD0 <= code <= 0xFDEF


def _leading_clusters(text: str, limit: int) -> str:
    kept: list[str] = []
    used = 0
    word_end = 0
    for match in _GRAPHEME.finditer(text):
        cluster = match.group()
        if cluster[0] == " " and used >= limit - _BACKOFF:
            word_end = len(kept)
        if used + len(cluster) > limit:
            break
        kept.append(cluster)
        used += len(cluster)
    if word_end:
        del kept[word_end:]
    # A joiner only means something inside a word (see `normalize_text`), so a
    # cluster left ending in one goes too, like a trailing space.
    while kept and (kept[-1].isspace() or kept[-1][-1] in _JOINERS):
        kept.pop()
    return "".join(kept)
