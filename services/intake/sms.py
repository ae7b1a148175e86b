"""The SMS grammar of short code 1708, as a pure function: `parse_sms`.

What a citizen can send (keywords and commands in any case; punctuation right
after them is ignored, so ``BANJAR:``, ``banjar,`` and ``Cek: lpr-…`` work)::

    BANJAR <laporan>                    new complaint for the region BANJAR names
    BANJAR #ANONIM <laporan>            anonymous: agencies never see the reporter
    BANJAR #RAHASIA <laporan>           confidential: kept out of every public view
    BANJAR #ANONIM #RAHASIA <laporan>   both (in either order)
    CEK <id>                            status of complaint <id>
    BALAS <id> <teks>                   the citizen's reply, e.g. to a question
    NILAI <id> <1-5> [komentar]         rating of the answer, 1 (bad) to 5 (good)
    BUKA <id> <alasan>                  reopen an answered or closed complaint
    BATAL <id> [alasan]                 withdraw an open complaint (the reason is optional)

Region keywords come from configuration (`RegionKeywords`); Banjar's is
``BANJAR`` (`DEFAULT_REGIONS`). A keyword is also recognised

* after ``LAPOR`` or ``KAB``/``KABUPATEN`` (``Lapor Kab. Banjar …``),
* with a small typo (``Bnjar``, ``BANJR``, ``banjat``, ``BANJARRR``): same
  first letter, at most one edit for keywords of up to seven letters, two for
  longer ones. A word of the Indonesian dictionary never counts as a typo, so
  ``BANJIR`` (flood) and ``BANDAR`` stay ordinary words, and ``BANJARMASIN``
  (another city) is not Banjar.

Markers: ``#ANONIM`` (also ``#ANONYM``, ``#ANON``) and ``#RAHASIA`` are read
only directly after the region keyword; there the ``#`` may be left out
(``BANJAR anonim …``). Elsewhere in the text they are ordinary words. A
marker is removed from the complaint text.

Tracking ids are forgiving (see `services.intake.tracking`): ``CEK lpr 7k3m
9qx2t`` works. ``CEK``, ``BALAS``, ``NILAI``, ``BUKA`` and ``BATAL`` also work after the region
keyword (``BANJAR CEK <id>``), but there only with a valid id, because a
complaint may well begin with "nilai" (grades) or "cek".

Given a valid region table, every text gives exactly one result and the
parser never raises on any `str` (or `bytes`): a `NewComplaint`,
`StatusQuery`, `CitizenReply`, `Rating`, `Reopen`, `Withdraw`, or an `Invalid` carrying the reason
the citizen is told. Its `detail` never echoes the citizen's text, which may
contain a phone number.
"""

import functools
import importlib.util
import json
import re
import unicodedata
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import TypeAlias

from pydantic import ValidationError
from rapidfuzz.distance import OSA

from lapor.contracts import RejectionReason
from services.intake.text import DEFAULT_MIN_WORDS, clean_text, meaningful_word_count
from services.intake.tracking import PREFIX, parse_tracking_id

__all__ = [
    "ANONYMOUS_MARKERS",
    "CONFIDENTIAL_MARKERS",
    "DEFAULT_REGIONS",
    "CitizenReply",
    "Invalid",
    "InvalidReason",
    "NewComplaint",
    "ParsedSms",
    "Rating",
    "RegionKeywords",
    "Reopen",
    "StatusQuery",
    "Withdraw",
    "contract_fault",
    "parse_sms",
    "sender_in_payload",
]


# Kept as a name of its own so parser code reads as "why the SMS is invalid".
InvalidReason = RejectionReason


@dataclass(frozen=True, slots=True)
class NewComplaint:
    region: str
    text: str
    anonymous: bool = False
    confidential: bool = False
    truncated: bool = False


@dataclass(frozen=True, slots=True)
class StatusQuery:
    tracking_id: str


@dataclass(frozen=True, slots=True)
class CitizenReply:
    tracking_id: str
    text: str
    truncated: bool = False


@dataclass(frozen=True, slots=True)
class Rating:
    tracking_id: str
    score: int
    comment: str = ""


@dataclass(frozen=True, slots=True)
class Reopen:
    tracking_id: str
    reason: str
    truncated: bool = False


@dataclass(frozen=True, slots=True)
class Withdraw:
    tracking_id: str
    reason: str = ""


@dataclass(frozen=True, slots=True)
class Invalid:
    reason: InvalidReason
    detail: str = ""

    @property
    def rejection_reason(self) -> RejectionReason:
        return self.reason


ParsedSms: TypeAlias = (
    NewComplaint | StatusQuery | CitizenReply | Rating | Reopen | Withdraw | Invalid
)

ANONYMOUS_MARKERS = frozenset({"anonim", "anonym", "anon"})
CONFIDENTIAL_MARKERS = frozenset({"rahasia"})
_STATUS, _REPLY, _RATE, _REOPEN = "status", "reply", "rate", "reopen"
_WITHDRAW = "withdraw"
_COMMANDS = {
    "cek": _STATUS,
    "balas": _REPLY,
    "nilai": _RATE,
    "buka": _REOPEN,
    "batal": _WITHDRAW,
}
# Words citizens put before the keyword: the service's name, the regency's title.
_LEAD_INS = frozenset({"lapor", "kab", "kabupaten"})
_MAX_LEAD_INS = 2
_RESERVED = frozenset(_COMMANDS) | _LEAD_INS | ANONYMOUS_MARKERS | CONFIDENTIAL_MARKERS
_MIN_KEYWORD = 3
# Id typed with spaces: "LPR 7K3M 9QX2T" or even "LPR - 7K3M - 9QX2T".
_MAX_ID_TOKENS = 5
_MAX_ID_CHARS = 24
_SCORE = re.compile(r"([0-9]{1,2})(?:/5)?")
# Anything before the first word is skipped: quotes, emoji, "1708 BANJAR …".
_HEAD = re.compile(r"[\W\d_]*([^\W\d_]+)")
_MARKER = re.compile(r"#?([^\W\d_]+)")
_ASCII_SEPARATORS = frozenset("=>|~+^`")
_EDGE_PUNCTUATION = "()[]{}<>\"'`.,;:!?*"
# Near neighbours of BANJAR in everyday Indonesian and Banjar Malay; the
# dictionary below covers them too, this keeps the guard when it is missing.
_BUILTIN_ORDINARY = frozenset(
    {"bajar", "banar", "bancar", "bandar", "bangar", "banjir", "banjur", "bantar"}
)


class RegionKeywords:
    """Keyword → region id table with typo-tolerant lookup.

    Built once from configuration; construction raises ValueError on a bad
    table (parsing itself never raises).
    """

    __slots__ = ("_regions", "_squeezed")

    def __init__(self, keywords: Mapping[str, str]) -> None:
        if not keywords:
            raise ValueError("at least one region keyword is required")
        regions: dict[str, str] = {}
        for keyword, region in keywords.items():
            folded = _fold(keyword)
            _check_keyword(keyword, folded, region)
            if folded in regions:
                raise ValueError(f"region keyword {keyword!r} given twice")
            regions[folded] = region
        self._regions = regions
        self._squeezed = {_squeeze(folded): region for folded, region in regions.items()}

    @property
    def keywords(self) -> tuple[str, ...]:
        """Keywords as shown to citizens (upper case)."""
        return tuple(sorted(keyword.upper() for keyword in self._regions))

    def match(self, word: str) -> str | None:
        """Region id for `word`, allowing small typos, or None."""
        folded = _fold(word)
        region = self._regions.get(folded) or self._squeezed.get(_squeeze(folded))
        if region is not None or len(folded) < _MIN_KEYWORD:
            return region
        if folded in _ordinary_words() or _squeeze(folded) in _ordinary_words():
            return None
        return self._closest(folded)

    def _closest(self, folded: str) -> str | None:
        squeezed = _squeeze(folded)
        best: dict[int, set[str]] = {}
        for keyword, region in self._regions.items():
            allowed = _allowed_typos(keyword)
            if allowed == 0 or keyword[0] != folded[0]:
                continue
            distance = min(
                OSA.distance(folded, keyword, score_cutoff=allowed),
                OSA.distance(squeezed, _squeeze(keyword), score_cutoff=allowed),
            )
            if distance <= allowed:
                best.setdefault(distance, set()).add(region)
        if not best:
            return None
        closest = best[min(best)]
        # Equally close to two regions: asking again beats guessing.
        return next(iter(closest)) if len(closest) == 1 else None

    def __repr__(self) -> str:
        return f"RegionKeywords({dict(sorted(self._regions.items()))!r})"


def parse_sms(
    text: str | bytes,
    regions: Mapping[str, str] | RegionKeywords,
    *,
    min_words: int = DEFAULT_MIN_WORDS,
) -> ParsedSms:
    """Read one SMS (multi-part already joined) into exactly one result."""
    if not isinstance(text, str | bytes):
        return Invalid(InvalidReason.MALFORMED, "the SMS text is not text")
    keywords = regions if isinstance(regions, RegionKeywords) else RegionKeywords(regions)
    cleaned = clean_text(text)
    if not cleaned.text:
        return Invalid(InvalidReason.EMPTY, "the SMS has no visible text")
    command = _parse_command(cleaned.text, cleaned.truncated, strict=False)
    if command is not None:
        return command
    return _parse_complaint(cleaned.text, cleaned.truncated, keywords, min_words)


def _parse_complaint(
    body: str, truncated: bool, keywords: RegionKeywords, min_words: int
) -> ParsedSms:
    head = _split_head(body)
    if head is None:
        return Invalid(InvalidReason.MALFORMED, "the SMS has no readable words")
    region, rest = _find_region(head, keywords)
    if region is None:
        expected = ", ".join(keywords.keywords)
        detail = f"the SMS must start with a region keyword: {expected}"
        return Invalid(InvalidReason.UNKNOWN_REGION, detail)
    command = _parse_command(rest, truncated, strict=True)
    if command is not None:
        return command
    anonymous, confidential, text = _take_markers(rest)
    if not text:
        return Invalid(InvalidReason.TOO_SHORT, "no complaint text after the region keyword")
    words = meaningful_word_count(text)
    if words < min_words:
        return Invalid(InvalidReason.TOO_SHORT, f"{words} meaningful words, {min_words} needed")
    return NewComplaint(region, text, anonymous, confidential, truncated)


def _find_region(head: tuple[str, str], keywords: RegionKeywords) -> tuple[str | None, str]:
    word, rest = head
    for _ in range(_MAX_LEAD_INS):
        if _fold(word) not in _LEAD_INS:
            break
        following = _split_head(rest)
        if following is None:
            return None, rest
        word, rest = following
    return keywords.match(word), rest


def _parse_command(body: str, truncated: bool, *, strict: bool) -> ParsedSms | None:
    """A CEK/BALAS/NILAI/BUKA/BATAL command, or None if `body` is not one.

    Not strict (the SMS starts with the command): a command word followed by
    something id-like is a command even if the id is wrong, so the citizen
    learns the id was wrong. Strict (after a region keyword): only a valid id
    makes it a command; otherwise it is complaint text.
    """
    head = _split_head(body)
    kind = _COMMANDS.get(_fold(head[0])) if head else None
    if head is None or kind is None:
        return None
    tokens = head[1].split()
    found = _take_tracking_id(tokens)
    if found is None:
        if strict or (tokens and not _looks_like_id(tokens[0])):
            return None
        detail = "the tracking id is wrong" if tokens else "the tracking id is missing"
        return Invalid(InvalidReason.BAD_TRACKING_ID, detail)
    tracking_id, rest = found
    if kind == _STATUS:
        return StatusQuery(tracking_id)
    if kind == _REPLY:
        return _reply(tracking_id, rest, truncated)
    if kind == _REOPEN:
        return _reopen(tracking_id, rest, truncated)
    if kind == _WITHDRAW:
        return Withdraw(tracking_id, _strip_separators(" ".join(rest)))
    return _rating(tracking_id, rest)


def _reply(tracking_id: str, rest: list[str], truncated: bool) -> ParsedSms:
    text = _strip_separators(" ".join(rest))
    if not text:
        return Invalid(InvalidReason.EMPTY, "the reply has no text after the tracking id")
    return CitizenReply(tracking_id, text, truncated)


def _reopen(tracking_id: str, rest: list[str], truncated: bool) -> ParsedSms:
    reason = _strip_separators(" ".join(rest))
    if not reason:
        # The agency must learn what is still wrong; a bare BUKA tells it nothing.
        return Invalid(InvalidReason.EMPTY, "the reason is missing after the tracking id")
    return Reopen(tracking_id, reason, truncated)


def _rating(tracking_id: str, rest: list[str]) -> ParsedSms:
    if not rest:
        return Invalid(InvalidReason.BAD_RATING, "the score 1-5 is missing")
    match = _SCORE.fullmatch(unicodedata.normalize("NFKC", rest[0]).strip(_EDGE_PUNCTUATION))
    score = int(match.group(1)) if match else None
    if score is None or not 1 <= score <= 5:
        return Invalid(InvalidReason.BAD_RATING, "the score must be a number from 1 to 5")
    return Rating(tracking_id, score, _strip_separators(" ".join(rest[1:])))


def _take_tracking_id(tokens: list[str]) -> tuple[str, list[str]] | None:
    candidate = ""
    for used, token in enumerate(tokens[:_MAX_ID_TOKENS], start=1):
        candidate += token
        if len(candidate) > _MAX_ID_CHARS:
            return None
        tracking_id = parse_tracking_id(candidate.strip(_EDGE_PUNCTUATION))
        if tracking_id is not None:
            return tracking_id, tokens[used:]
    return None


def _looks_like_id(token: str) -> bool:
    """An attempt at an id rather than the first word of a sentence."""
    compact = "".join(ch for ch in token if ch.isalnum())
    if compact.upper().startswith(PREFIX):
        return True
    return len(compact) >= 4 and any(ch.isdigit() for ch in compact)


def _take_markers(rest: str) -> tuple[bool, bool, str]:
    anonymous = confidential = False
    while match := _MARKER.match(rest):
        word = _fold(match.group(1))
        if word in ANONYMOUS_MARKERS and not anonymous:
            anonymous = True
        elif word in CONFIDENTIAL_MARKERS and not confidential:
            confidential = True
        else:
            break
        rest = _strip_separators(rest[match.end() :])
    return anonymous, confidential, rest


def _split_head(text: str) -> tuple[str, str] | None:
    """First word (letters only) and the rest without leading separators."""
    match = _HEAD.match(text)
    if match is None:
        return None
    return match.group(1), _strip_separators(text[match.end() :])


def _strip_separators(text: str) -> str:
    start = 0
    while start < len(text) and _is_separator(text[start]):
        start += 1
    return text[start:].rstrip()


def _is_separator(ch: str) -> bool:
    # Opening brackets and quotes and symbols such as emoji belong to the text.
    if ch.isspace() or ch in _ASCII_SEPARATORS:
        return True
    return ch != "#" and unicodedata.category(ch) in ("Po", "Pd", "Pc")


def _fold(word: str) -> str:
    # NFKC so that full-width ＢＡＮＪＡＲ from some keyboards matches too.
    return unicodedata.normalize("NFKC", word).casefold()


def _squeeze(word: str) -> str:
    """Collapse repeated letters: BANJARRR, NILAAAI."""
    return "".join(ch for i, ch in enumerate(word) if i == 0 or ch != word[i - 1])


def _allowed_typos(keyword: str) -> int:
    if len(keyword) < 4:
        return 0
    return 1 if len(keyword) < 8 else 2


def _check_keyword(keyword: str, folded: str, region: str) -> None:
    if not isinstance(region, str) or not region.strip():
        raise ValueError(f"region keyword {keyword!r} needs a region id")
    if len(folded) < _MIN_KEYWORD or not folded.isalpha():
        raise ValueError(f"region keyword {keyword!r} must be one word of at least 3 letters")
    if folded in _RESERVED:
        raise ValueError(f"region keyword {keyword!r} is reserved for commands or markers")


@functools.cache
def _ordinary_words() -> frozenset[str]:
    """Indonesian root words (the Sastrawi stemmer's list) plus built-ins.

    Read from the installed package's data file without importing it; without
    the package, the built-in neighbours of BANJAR still guard the default.
    """
    spec = importlib.util.find_spec("Sastrawi")
    words = set(_BUILTIN_ORDINARY)
    for location in (spec.submodule_search_locations or []) if spec else []:
        path = Path(location) / "Stemmer" / "data" / "kata-dasar.txt"
        if path.is_file():
            words.update(line.strip().casefold() for line in path.read_text("utf-8").splitlines())
    return frozenset(words)


# Kabupaten Banjar, the region this deployment was built for.
DEFAULT_REGIONS = RegionKeywords({"BANJAR": "banjar"})


# --- payloads that broke the inbound contract ------------------------------------
# A gateway that sends a broken message still names the sender more often than
# not; then the citizen can be told to send again in the right format.

_MAX_PAYLOAD = 64_000


def sender_in_payload(raw: bytes, field: str = "from") -> str | None:
    """The sender field of a payload that failed its contract, as written, if readable.

    Also from cut-off or otherwise invalid JSON, as long as the field itself is
    intact; nothing else of the payload is interpreted.
    """
    text = raw[:_MAX_PAYLOAD].decode("utf-8", "replace")
    try:
        body = json.loads(text)
    except (ValueError, RecursionError):
        body = None
    if isinstance(body, dict):
        value = body.get(field)
        return value if isinstance(value, str) else None
    pattern = rf'"{re.escape(field)}"\s*:\s*"([^"\\]{{1,64}})"'
    match = re.search(pattern, text)
    return match.group(1) if match else None


def contract_fault(error: Exception) -> str:
    """What was wrong with a payload, naming fields only: the values stay out."""
    original = getattr(error, "original_error", error)
    if not isinstance(original, ValidationError):
        return "the payload is not valid UTF-8 JSON"
    faults = []
    for item in original.errors(include_input=False, include_url=False):
        # The first location is the handler's argument, not a field of the payload.
        path = ".".join(str(part) for part in item["loc"][1:])
        if not path:
            return "the payload is not a JSON object of the documented shape"
        faults.append(f"{path}: {item['msg']}")
    return "; ".join(faults)[:500] or "the payload does not match its contract"
