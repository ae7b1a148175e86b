"""Who sees what of a complaint: one policy for every view, and the masking it uses.

Five audiences look at a complaint: the public (no credentials), its reporter
(the secret citizen link, or CEK by SMS from the number that filed it), an
officer of the agency holding it, an officer of any other agency, and
Diskominfo's admins. `POLICY` says, part by part, what each may see; the views
of intake, notify and sla ask it (`access`), the README's table "Who sees
what" is `markdown_table()` (a unit test compares the two) and the audience
tests are parametrised from the same rows, so the three cannot drift apart.

Masking (`mask_contacts`): people type phone numbers and e-mail addresses into
complaints, answers and addresses. Every text a public or other-agency view
shows has them masked: a phone number becomes `+<country> ••• ••• <last 3
digits>` (`+62 ••• ••• 890`), so a reader can still tell two numbers apart
without being able to call either; an e-mail address becomes `•••@•••`.
Numbers are found by the `phonenumbers` library (valid numbers only, read as
Indonesian when written without a country code), so dates, tracking ids and
RT/RW numbers stay readable.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from enum import StrEnum
from typing import Any

import phonenumbers


class Audience(StrEnum):
    PUBLIC = "public"
    REPORTER = "reporter"
    AGENCY = "agency"
    OTHER_AGENCY = "other_agency"
    ADMIN = "admin"


AUDIENCE_HEADINGS: Mapping[Audience, str] = {
    Audience.PUBLIC: "public (no credentials)",
    Audience.REPORTER: "reporter (secret link; CEK from the filing number)",
    Audience.AGENCY: "officer of the holding agency",
    Audience.OTHER_AGENCY: "officer of another agency",
    Audience.ADMIN: "admin",
}


class Access(StrEnum):
    """How much of a part an audience sees."""

    FULL = "yes"
    MASKED = "masked"
    UNLESS_ANONYMOUS = "unless anonymous"
    MASKED_UNLESS_ANONYMOUS = "masked, unless anonymous"
    ROLE_ONLY = "role only"
    OWN_AGENCY = "own agency's rows"
    NONE = "no"

    @property
    def shown(self) -> bool:
        return self is not Access.NONE


@dataclass(frozen=True)
class Part:
    key: str
    label: str
    access: Mapping[Audience, Access]


def _part(key: str, label: str, *cells: Access) -> Part:
    return Part(key, label, dict(zip(Audience, cells, strict=True)))


_Y, _M, _N = Access.FULL, Access.MASKED, Access.NONE
_ROLE, _OWN = Access.ROLE_ONLY, Access.OWN_AGENCY

# Columns in the order of `Audience`: public, reporter, agency, other agency, admin.
POLICY: tuple[Part, ...] = (
    _part("confidential", "a confidential complaint, any part of it", _N, _Y, _Y, _N, _Y),
    _part("text", "complaint text", _M, _Y, _Y, _M, _Y),
    _part(
        "address",
        "place / address",
        Access.MASKED_UNLESS_ANONYMOUS,
        _Y,
        _Y,
        Access.MASKED_UNLESS_ANONYMOUS,
        _Y,
    ),
    _part(
        "place",
        "kecamatan and desa/kelurahan (codes)",
        Access.UNLESS_ANONYMOUS,
        _Y,
        _Y,
        Access.UNLESS_ANONYMOUS,
        _Y,
    ),
    _part(
        "coordinates",
        "coordinates",
        Access.UNLESS_ANONYMOUS,
        _Y,
        _Y,
        Access.UNLESS_ANONYMOUS,
        _Y,
    ),
    # A photo cannot be masked like a text (faces, number plates, a KTP held up to
    # the camera), so it stays with those who act on the complaint.
    _part("photos", "photos (metadata and GPS removed)", _N, _Y, _Y, _N, _Y),
    _part("category", "category", _Y, _Y, _Y, _Y, _Y),
    _part("state", "state and outcome", _Y, _Y, _Y, _Y, _Y),
    _part("dates", "dates (received, each change)", _Y, _Y, _Y, _Y, _Y),
    _part("agency", "agency", _Y, _Y, _Y, _Y, _Y),
    _part("priority", "priority", _Y, _Y, _Y, _Y, _Y),
    _part("deadlines", "deadlines and reopen window", _Y, _Y, _Y, _Y, _Y),
    _part("answer", "history: the agency's answer and closing note", _M, _Y, _Y, _M, _Y),
    _part("question", "history: the agency's questions to the citizen", _N, _Y, _Y, _N, _Y),
    _part(
        "citizen_reply",
        "history: the citizen's replies (BALAS), reopening reasons, ratings",
        _N,
        _Y,
        _Y,
        _N,
        _Y,
    ),
    _part(
        "internal_note",
        "history: internal notes (officers' notes, why an agency forwarded, why an admin archived)",
        _N,
        _N,
        _Y,
        _N,
        _Y,
    ),
    _part("officer", "officers' and admins' names (actor ids)", _ROLE, _ROLE, _Y, _ROLE, _Y),
    _part(
        "citizen_actor",
        "a citizen's actor id (links their complaints)",
        _ROLE,
        _ROLE,
        _ROLE,
        _ROLE,
        _Y,
    ),
    _part(
        "reporter_name",
        "reporter's name",
        _N,
        _N,
        Access.UNLESS_ANONYMOUS,
        _N,
        Access.UNLESS_ANONYMOUS,
    ),
    _part("phone", "reporter's phone number (kept hashed / sealed)", _N, _N, _N, _N, _N),
    _part("email", "reporter's e-mail address (kept sealed)", _N, _N, _N, _N, _N),
    _part("routing", "the router's reasons and confidence", _N, _N, _Y, _N, _Y),
    _part("delivery_log", "delivery log (notify), recipients masked", _N, _N, _OWN, _N, _Y),
    _part("breaches", "breaches and escalations (sla)", _N, _N, _OWN, _N, _Y),
    _part("report", "the agency report (aggregates only)", _Y, _Y, _Y, _Y, _Y),
)

_BY_KEY = {part.key: part for part in POLICY}
_UNLESS_ANONYMOUS = frozenset({Access.UNLESS_ANONYMOUS, Access.MASKED_UNLESS_ANONYMOUS})


def access(audience: Audience, key: str) -> Access:
    """What `audience` may see of the part `key` (a key of `POLICY`)."""
    return _BY_KEY[key].access[audience]


def reveal(audience: Audience, key: str, text: str | None, *, anonymous: bool = False) -> Any:
    """`text` as `audience` may see it: whole, masked, or None."""
    if text is None:
        return None
    rule = access(audience, key)
    if rule is Access.NONE or (anonymous and rule in _UNLESS_ANONYMOUS):
        return None
    if rule in (Access.MASKED, Access.MASKED_UNLESS_ANONYMOUS):
        return mask_contacts(text)
    return text


def markdown_table() -> str:
    """The policy as the README shows it."""
    heads = [AUDIENCE_HEADINGS[a] for a in Audience]
    lines = [
        "| part of a complaint | " + " | ".join(heads) + " |",
        "|---" * (len(heads) + 1) + "|",
    ]
    for part in POLICY:
        cells = [part.access[a].value for a in Audience]
        lines.append(f"| {part.label} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


# --- masking -------------------------------------------------------------------

MASK = "\u2022\u2022\u2022"  # •••
MASKED_EMAIL = f"{MASK}@{MASK}"
_SURROGATE = re.compile("[\ud800-\udfff]")
_EMAIL = re.compile(r"[A-Za-z0-9.!#$%&'*+/=?^_`{|}~-]+@[A-Za-z0-9-]+(?:\.[A-Za-z0-9-]+)+")


def mask_phone(number: phonenumbers.PhoneNumber) -> str:
    """`+62 ••• ••• 890`: the country and the last three digits only."""
    digits = str(number.national_number)
    return f"+{number.country_code} {MASK} {MASK} {digits[-3:]}"


def mask_contacts(text: str, region: str = "ID") -> str:
    """`text` with every phone number and e-mail address in it masked (module docstring).

    Numbers without a country code are read as numbers of `region`.
    """
    text = _EMAIL.sub(MASKED_EMAIL, text)
    pieces: list[str] = []
    last = 0
    # The library encodes the text, which a lone surrogate breaks; one character for
    # one keeps every position the same.
    readable = _SURROGATE.sub("\ufffd", text)
    for match in phonenumbers.PhoneNumberMatcher(readable, region):
        pieces += [text[last : match.start], mask_phone(match.number)]
        last = match.end
    pieces.append(text[last:])
    return "".join(pieces)
