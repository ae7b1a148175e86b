"""SMS length arithmetic and budget-aware shortening.

Citizens pay nothing for our replies, but the regency pays per segment, and a
message that silently grows from 2 to 5 segments (because one curly quote
switched it to UCS-2) multiplies the bill. Everything here is pure: it counts
what a GSM gateway would send and cuts text to a segment budget without ever
touching the parts a citizen needs to act on (tracking id, commands).
"""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from enum import StrEnum

import regex

from lapor.gsm import GSM7_ALL, GSM7_EXTENSION, is_gsm7

GSM7_SINGLE, GSM7_PART = 160, 153
UCS2_SINGLE, UCS2_PART = 70, 67

# Stays in the GSM alphabet; a Unicode ellipsis would force the whole SMS to UCS-2.
ELLIPSIS = ".."

_TYPOGRAPHIC = {
    **dict.fromkeys("\u2018\u2019\u201a\u201b\u2032\u00b4`", "'"),
    **dict.fromkeys("\u201c\u201d\u201e\u201f\u2033\u00ab\u00bb", '"'),
    **dict.fromkeys("\u2010\u2011\u2012\u2013\u2014\u2015\u2212\u2022", "-"),
    **dict.fromkeys("\u00a0\u2002\u2003\u2004\u2005\u2006\u2007\u2008\u2009\u200a\u202f\t", " "),
    **dict.fromkeys("\u200b\u200c\u200d\u2060\ufeff\u00ad", ""),
    "\u2026": "...",
}
_TYPOGRAPHIC_TABLE = str.maketrans(_TYPOGRAPHIC)

# Symbols (emoji, dingbats) carry no meaning worth a "?" in a degraded SMS.
_DROP_CATEGORIES = frozenset({"So", "Sk", "Cf", "Co", "Cs", "Mn"})

_TRAILING_JUNK = " \t\r\n,;:-"

# What a reader sees as one character: a flag (two regional indicators), a
# family emoji (joined by ZWJ), a letter with its combining marks. A cut
# between the code points of one of these shows the citizen a wrong flag or a
# broken glyph; `regex` follows the current Unicode segmentation rules.
_GRAPHEME = regex.compile(r"\X")


class Encoding(StrEnum):
    GSM7 = "gsm7"
    UCS2 = "ucs2"


@dataclass(frozen=True, slots=True)
class SmsInfo:
    """How a gateway would send a text: encoding, septets or UTF-16 units, segments."""

    encoding: Encoding
    units: int
    segments: int


@dataclass(frozen=True, slots=True)
class Part:
    """A piece of a message for `fit_parts`.

    `cuttable` parts may be shortened; among them, higher `rank` goes first,
    then the longer one. Rank lets free text (an agency's answer) give way
    before a bounded value (an agency name) has to.
    """

    text: str
    cuttable: bool = False
    rank: int = 0


class SmsBudgetError(ValueError):
    """The protected parts alone do not fit the segment budget."""


def non_gsm7_chars(text: str) -> list[str]:
    """Distinct characters that would force UCS-2, in order of appearance."""
    return list(dict.fromkeys(ch for ch in text if ch not in GSM7_ALL))


def transliterate(text: str) -> str:
    """Replace typographic characters (curly quotes, dashes, NBSP) by GSM-7 ones.

    Agencies type answers in word processors; their “smart” quotes would
    otherwise cost the UCS-2 penalty (70 instead of 160 characters). NFC first,
    so a decomposed "é" (e + combining accent) counts as the GSM-7 "é".
    """
    return unicodedata.normalize("NFC", text).translate(_TYPOGRAPHIC_TABLE)


def to_gsm7(text: str, replacement: str = "?") -> str:
    """Force text into GSM-7: transliterate, drop symbols, replace the rest."""
    out: list[str] = []
    for ch in transliterate(text):
        if ch in GSM7_ALL:
            out.append(ch)
        elif unicodedata.category(ch) not in _DROP_CATEGORIES:
            out.append(replacement)
    return "".join(out)


def _unit_costs(text: str, encoding: Encoding) -> list[int]:
    if encoding is Encoding.GSM7:
        return [2 if ch in GSM7_EXTENSION else 1 for ch in text]
    return [2 if ord(ch) > 0xFFFF else 1 for ch in text]


def _count_parts(costs: Iterable[int], part_size: int) -> int:
    # Greedy packing, like a gateway: an escape pair or a surrogate pair is
    # never split, so a part may carry one unit less than its capacity.
    parts, used = 1, 0
    for cost in costs:
        if used + cost > part_size:
            parts, used = parts + 1, 0
        used += cost
    return parts


def sms_info(text: str) -> SmsInfo:
    """Encoding, unit count and segment count of `text` (an empty text is 1 segment)."""
    encoding = Encoding.GSM7 if is_gsm7(text) else Encoding.UCS2
    costs = _unit_costs(text, encoding)
    units = sum(costs)
    single, part = (
        (GSM7_SINGLE, GSM7_PART) if encoding is Encoding.GSM7 else (UCS2_SINGLE, UCS2_PART)
    )
    segments = 1 if units <= single else _count_parts(costs, part)
    return SmsInfo(encoding, units, segments)


def fits(text: str, max_segments: int) -> bool:
    return sms_info(text).segments <= max_segments


def cut_words(text: str, limit: int) -> str:
    """Shorten `text` to at most `limit` characters, ellipsis included."""
    if limit < len(ELLIPSIS):
        raise ValueError(f"limit must be at least {len(ELLIPSIS)}")
    if len(text) <= limit:
        return text
    return _cut_core(text, limit - len(ELLIPSIS))


def _cut_core(core: str, keep: int) -> str:
    """Whole grapheme clusters of `core` within `keep` characters, backed off to a
    word boundary, plus ELLIPSIS."""
    kept: list[str] = []
    used = 0
    gap: int | None = None  # clusters kept before the last whitespace within reach
    inside_word = False
    for match in _GRAPHEME.finditer(core):
        cluster = match.group()
        if used + len(cluster) > keep:
            inside_word = not cluster[0].isspace()
            break
        # A cut in the middle of a long token (a URL, a number) beats losing half the text.
        if cluster[0].isspace() and used >= keep // 2:
            gap = len(kept)
        kept.append(cluster)
        used += len(cluster)
    if inside_word and gap is not None:
        del kept[gap:]
    while kept and not kept[-1].strip(_TRAILING_JUNK):
        kept.pop()
    return "".join(kept) + ELLIPSIS


def _split_ws(text: str) -> tuple[str, str, str]:
    core = text.strip()
    if not core:
        return text, "", ""
    start = text.index(core)
    return text[:start], core, text[start + len(core) :]


def _shrink_part(parts: list[str], index: int, max_segments: int) -> bool:
    """Cut parts[index] as little as possible; True if the message then fits."""
    lead, core, trail = _split_ws(parts[index])
    # Whitespace around a cut part only matters as a separator from its neighbours.
    before = "".join(parts[:index])
    after = "".join(parts[index + 1 :])
    lead = lead[-1:] if before and not before[-1].isspace() else ""
    trail = trail[:1] if after and not after[0].isspace() else ""
    if not core:
        parts[index] = lead
        return fits("".join(parts), max_segments)

    def attempt(keep: int) -> str:
        return lead + core[:keep] + ELLIPSIS + trail

    def fits_with(candidate: str) -> bool:
        return fits("".join([*parts[:index], candidate, *parts[index + 1 :]]), max_segments)

    if not fits_with(attempt(0)):
        parts[index] = lead + ELLIPSIS + trail
        return False
    # Segments grow monotonically with the kept prefix, so bisect the longest one that fits.
    low, high = 0, len(core) - 1
    while low < high:
        mid = (low + high + 1) // 2
        if fits_with(attempt(mid)):
            low = mid
        else:
            high = mid - 1
    parts[index] = lead + _cut_core(core, low) + trail
    return True


def fit_parts(parts: Sequence[Part], max_segments: int) -> str:
    """Join `parts`, shortening cuttable ones until the result fits `max_segments`.

    Raises SmsBudgetError when even with every cuttable part reduced to an
    ellipsis the message would not fit.
    """
    if max_segments < 1:
        raise ValueError("max_segments must be at least 1")
    texts = [part.text for part in parts]
    if fits("".join(texts), max_segments):
        return "".join(texts)
    order = sorted(
        (i for i, part in enumerate(parts) if part.cuttable and part.text),
        key=lambda i: (-parts[i].rank, -len(parts[i].text), i),
    )
    for index in order:
        if _shrink_part(texts, index, max_segments):
            return "".join(texts)
    info = sms_info("".join(texts))
    raise SmsBudgetError(
        f"message needs {info.segments} segments ({info.units} {info.encoding} units) "
        f"even with all free text cut; budget is {max_segments}"
    )


def _protected_spans(text: str, protect: Iterable[str]) -> list[tuple[int, int]]:
    spans = sorted(
        (m.start(), m.start() + len(p))
        for p in dict.fromkeys(p for p in protect if p)
        for m in re.finditer(re.escape(p), text)
    )
    merged: list[tuple[int, int]] = []
    for start, end in spans:
        if merged and start <= merged[-1][1]:
            merged[-1] = (merged[-1][0], max(end, merged[-1][1]))
        else:
            merged.append((start, end))
    return merged


def _split_protected(text: str, protect: Iterable[str]) -> list[Part]:
    parts: list[Part] = []
    pos = 0
    for start, end in _protected_spans(text, protect):
        if start > pos:
            parts.append(Part(text[pos:start], cuttable=True))
        parts.append(Part(text[start:end]))
        pos = end
    if pos < len(text):
        parts.append(Part(text[pos:], cuttable=True))
    return parts


def fit_sms(
    text: str,
    max_segments: int,
    *,
    protect: Sequence[str] = (),
    transliterate_typography: bool = False,
) -> str:
    """Shorten `text` to `max_segments`, never cutting any occurrence of a `protect` string.

    The free text between protected pieces is cut at a word boundary, longest
    stretch first, and marked with ELLIPSIS (".."), which stays GSM-7.
    With `transliterate_typography`, curly quotes and dashes are replaced by
    GSM-7 equivalents first (also inside `protect`), avoiding the UCS-2 penalty.
    """
    if transliterate_typography:
        text = transliterate(text)
        protect = [transliterate(p) for p in protect]
    return fit_parts(_split_protected(text, protect), max_segments)
