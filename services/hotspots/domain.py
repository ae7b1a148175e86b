"""Grouping complaints into hotspots: pure rules, no storage, no bus.

Two complaints are about the same problem when
- the router sent both to the same agency of the same region (not to triage,
  not out of scope), and neither is confidential;
- they are at the same place: the same desa when both name one, else the same
  kecamatan (a text that names only the kecamatan may be about any of its desa);
- they were received within `window` of each other;
- different people sent them (a person's repeats are intake's duplicates);
- their texts say the same thing: the similarity of the router's keywords
  (normalised, stemmed, stopwords and place names left out) reaches
  `similarity` (rapidfuzz, 0-100).

A new complaint joins the open hotspot with its most similar member, or forms
a new hotspot with the most similar complaint that is in none. Complaints an
officer split off are left alone by the automatic grouping.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field, replace
from datetime import datetime, timedelta
from typing import Literal

from rapidfuzz import fuzz

from lapor.contracts import AGENCY_OUT_OF_SCOPE, PlaceArea
from lapor.contracts.hotspots import OPEN_HOTSPOT_STATES, HotspotState

# Measured on tests/data/hotspots_corpus_banjar.jsonl (dev split); see the README.
DEFAULT_SIMILARITY = 40.0
DEFAULT_WINDOW = timedelta(days=7)
# A hotspot is shown (listed, counted, reported) from this many members on.
MIN_MEMBERS = 2


@dataclass(frozen=True)
class Rules:
    similarity: float = DEFAULT_SIMILARITY
    window: timedelta = DEFAULT_WINDOW


# A complaint in one of these states waits for nothing more (until its citizen reopens it).
CLOSED_STATES = frozenset({"closed", "rejected"})
ANSWER_COMMAND = "hotspot-answer"
# A member keeps its latest refusals only: each answer round adds at most one.
KEPT_REFUSALS = 20


@dataclass(frozen=True)
class Refusal:
    """Intake refused a hotspot's answer to this member (closed meanwhile, ...)."""

    command_id: str
    hotspot_id: str
    round: int
    reason: str
    at: datetime


@dataclass(frozen=True)
class Member:
    """A routed complaint as the grouping sees it."""

    complaint_id: str
    region: str
    agency: str | None
    received_at: datetime
    keywords: tuple[str, ...]
    kecamatan: PlaceArea | None = None
    desa: PlaceArea | None = None
    reporter: str | None = None
    confidential: bool = False
    triage: bool = False
    category: str = ""
    hotspot_id: str | None = None
    # An officer split it off: only a person puts it into a hotspot again.
    kept_apart: bool = False
    # The routing decision last applied (its event id and time): a redelivery, or an
    # earlier round's decision arriving late, changes nothing. No id: not applied yet
    # (stored before its grouping by an earlier version): a redelivery groups it.
    routed_event_id: str = ""
    routed_at: datetime | None = None
    # The complaint's life as intake announces it: the last state change applied.
    state: str | None = None
    outcome: str | None = None
    state_event_id: str = ""
    state_at: datetime | None = None
    refusals: tuple[Refusal, ...] = ()

    @property
    def current_state(self) -> str | None:
        """The last state change applied, or the move to triage or assigned that a
        later routing decision caused (not stored: ComplaintStateChanged.follows_routing)."""
        if self.routed_at is not None and (self.state_at is None or self.state_at < self.routed_at):
            return "triage" if self.triage else "assigned"
        return self.state

    @property
    def closed(self) -> bool:
        return self.current_state in CLOSED_STATES


def groupable(member: Member) -> bool:
    return (
        member.agency is not None
        and member.agency != AGENCY_OUT_OF_SCOPE
        and not member.triage
        and not member.confidential
        and member.kecamatan is not None
        and bool(member.keywords)
    )


def same_place(a: Member, b: Member) -> bool:
    if a.kecamatan is None or b.kecamatan is None or a.kecamatan.code != b.kecamatan.code:
        return False
    return a.desa is None or b.desa is None or a.desa.code == b.desa.code


def different_reporters(a: Member, b: Member) -> bool:
    """Unknown reporters (web without a number) count as different people."""
    return a.reporter is None or b.reporter is None or a.reporter != b.reporter


# Words that carry no subject of their own: courtesy, negation, time, degree. The
# router keeps them (urgency, "tidak terima"); two complaints do not share a
# problem by both saying "tolong" or "sudah 3 hari".
FILLER = frozenset(
    "tidak belum bisa sudah sdh mohon tolong bapak ibu pak bu baik banyak parah sekali "
    "total lama mana kata juga semua warga hari bulan minggu seminggu kami kita saya "
    "lagi kembali sering terus masih sejak kemarin tiap malam pagi siang dalam besar "
    "berhari hampir sampai ada dari untuk harap segera cepat minta".split()
)
# Words citizens use for one thing, read as one before comparing (the router's
# lexicon spells words the same; these are different words for the same problem).
SAME_MEANING = {
    "padam": "mati",
    "pju": "lampu",
    "ledeng": "pdam",
    "leding": "pdam",
    "lobang": "lubang",
    "lobangnya": "lubang",
    "elpiji": "gas",
    "melon": "gas",
    "mampet": "sumbat",
    "got": "salur",
    "drainase": "salur",
    "tergenang": "genang",
    "rendam": "banjir",
    "tenggelam": "banjir",
    "genang": "banjir",
    "ambruk": "putus",
    "roboh": "putus",
    "rubuh": "putus",
    "longsor": "longsor",
}
# Two spellings of one stem (lubang, lobang; ledeng, leding) still match.
SAME_WORD = 80.0


def subject_words(keywords: Sequence[str]) -> tuple[str, ...]:
    seen: dict[str, None] = {}
    for word in keywords:
        if word not in FILLER and not word.isdigit():
            seen.setdefault(SAME_MEANING.get(word, word), None)
    return tuple(seen)


def similarity(a: Sequence[str], b: Sequence[str]) -> float:
    """0-100: the share of the shorter complaint's subject words that the other one
    says too (words compared with rapidfuzz, so spellings and typos still match).

    The shorter side decides: "jalan rusak" and "jalan rusak berlubang, motor
    jatuh" are about one road. Two words in common are needed at least, unless a
    side has only one: one shared word ("jalan") says little.
    """
    left, right = subject_words(a), subject_words(b)
    if not left or not right:
        return 0.0
    short, long_ = (left, right) if len(left) <= len(right) else (right, left)
    shared = sum(
        1
        for word in short
        if any(word == other or fuzz.ratio(word, other) >= SAME_WORD for other in long_)
    )
    if shared < min(2, len(short)):
        return 0.0
    return 100.0 * shared / len(short)


def related(a: Member, b: Member, rules: Rules) -> float | None:
    """The similarity of two complaints, or None when they cannot be one problem."""
    if a.complaint_id == b.complaint_id or not (groupable(a) and groupable(b)):
        return None
    if a.region != b.region or a.agency != b.agency or not same_place(a, b):
        return None
    if abs(a.received_at - b.received_at) > rules.window or not different_reporters(a, b):
        return None
    score = similarity(a.keywords, b.keywords)
    return score if score >= rules.similarity else None


@dataclass(frozen=True)
class Answer:
    round: int
    text: str
    by: str
    at: datetime


@dataclass(frozen=True)
class Hotspot:
    hotspot_id: str
    region: str
    agency: str
    kecamatan: PlaceArea | None
    desa: PlaceArea | None
    members: tuple[str, ...]
    state: HotspotState
    formed_at: datetime
    updated_at: datetime
    version: int = 1
    reporters: tuple[str, ...] = ()
    answers: tuple[Answer, ...] = ()
    merged_into: str | None = None

    @property
    def open(self) -> bool:
        return self.state in OPEN_HOTSPOT_STATES

    @property
    def shown(self) -> bool:
        return self.open and len(self.members) >= MIN_MEMBERS


@dataclass(frozen=True)
class Join:
    hotspot_id: str
    score: float
    kind: Literal["join"] = "join"


@dataclass(frozen=True)
class Form:
    partner: str
    score: float
    kind: Literal["form"] = "form"


Grouping = Join | Form | None


def decide(
    new: Member,
    candidates: Iterable[Member],
    hotspots: dict[str, Hotspot],
    rules: Rules,
) -> Grouping:
    """Where a newly routed complaint goes: into an open hotspot, into a new one with
    another complaint, or nowhere (None). `hotspots` holds the candidates' hotspots."""
    if not groupable(new) or new.kept_apart:
        return None
    best_join: Join | None = None
    best_form: Form | None = None
    for other in candidates:
        # A closed complaint gets no more answers: nothing to share with a new one.
        if other.kept_apart or other.closed:
            continue
        score = related(new, other, rules)
        if score is None:
            continue
        if other.hotspot_id is None:
            if best_form is None or score > best_form.score:
                best_form = Form(other.complaint_id, score)
            continue
        hotspot = hotspots.get(other.hotspot_id)
        if hotspot is None or not hotspot.open or hotspot.agency != new.agency:
            continue
        if new.reporter is not None and new.reporter in hotspot.reporters:
            continue
        if hotspot.desa is not None and new.desa is not None and hotspot.desa != new.desa:
            continue
        if best_join is None or score > best_join.score:
            best_join = Join(hotspot.hotspot_id, score)
    if best_join is not None and (best_form is None or best_join.score >= best_form.score):
        return best_join
    return best_form


def formed_id(complaint_id: str) -> str:
    """The hotspot a complaint's arrival formed: one id however often it is handled."""
    return f"HS-{complaint_id}"


def split_id(hotspot: Hotspot, first_member: str) -> str:
    return f"HS-{first_member}-{hotspot.version}"


def form(hotspot_id: str, first: Member, second: Member, now: datetime) -> Hotspot:
    """A new hotspot of two complaints; its place is what both share."""
    assert first.agency is not None
    return Hotspot(
        hotspot_id=hotspot_id,
        region=first.region,
        agency=first.agency,
        kecamatan=first.kecamatan,
        desa=first.desa or second.desa,
        members=(first.complaint_id, second.complaint_id),
        state=HotspotState.SUGGESTED,
        formed_at=now,
        updated_at=now,
        reporters=_reporters((first, second)),
    )


def _reporters(members: Iterable[Member]) -> tuple[str, ...]:
    return tuple(sorted({m.reporter for m in members if m.reporter}))


def with_members(hotspot: Hotspot, members: Sequence[Member], now: datetime) -> Hotspot:
    """The hotspot with exactly `members`, one version later. Below two members it is
    dissolved: a single complaint is not a hotspot."""
    desa = hotspot.desa or next((m.desa for m in members if m.desa), None)
    state = hotspot.state if len(members) >= MIN_MEMBERS else HotspotState.DISSOLVED
    return replace(
        hotspot,
        members=tuple(m.complaint_id for m in members),
        reporters=_reporters(members),
        desa=desa,
        state=state,
        updated_at=now,
        version=hotspot.version + 1,
    )


def changed(hotspot: Hotspot, now: datetime, **fields: object) -> Hotspot:
    return replace(hotspot, updated_at=now, version=hotspot.version + 1, **fields)  # type: ignore[arg-type]


class Refused(Exception):
    """An officer's change that the rules do not allow; `status` follows HTTP."""

    def __init__(self, reason: str, status: int = 409) -> None:
        super().__init__(reason)
        self.reason = reason
        self.status = status


def check_split(hotspot: Hotspot, leaving: Sequence[str]) -> None:
    if not hotspot.open:
        raise Refused(f"hotspot is {hotspot.state.value}: nothing to split")
    unknown = sorted(set(leaving) - set(hotspot.members))
    if unknown:
        raise Refused(f"not members of this hotspot: {', '.join(unknown)}", status=422)
    if not leaving or len(set(leaving)) == len(hotspot.members):
        raise Refused("a split keeps at least one member and moves at least one", status=422)


def check_merge(keep: Hotspot, absorbed: Hotspot) -> None:
    if keep.hotspot_id == absorbed.hotspot_id:
        raise Refused("a hotspot is not merged with itself", status=422)
    if not (keep.open and absorbed.open):
        raise Refused("only open hotspots are merged")
    if keep.region != absorbed.region or keep.agency != absorbed.agency:
        raise Refused("hotspots of different agencies are not merged", status=422)


def answer_round(hotspot: Hotspot, text: str, by: str) -> tuple[int, bool]:
    """The round an answer belongs to and whether it is new. The same text from the
    same officer right after is the same answer sent again (a retry): its commands
    carry the same ids, so intake takes each once."""
    if hotspot.answers:
        last = hotspot.answers[-1]
        if last.text == text and last.by == by:
            return last.round, False
    return len(hotspot.answers) + 1, True


def answer_command_id(hotspot_id: str, round_: int, complaint_id: str) -> str:
    return f"{ANSWER_COMMAND}:{hotspot_id}:{round_}:{complaint_id}"


def answer_command_of(command_id: str) -> tuple[str, int, str] | None:
    """(hotspot id, round, complaint id) of a hotspot's answer command, else None."""
    prefix, _, rest = command_id.partition(":")
    parts = rest.rsplit(":", 2)
    if prefix != ANSWER_COMMAND or len(parts) != 3 or not parts[1].isdigit():
        return None
    return parts[0], int(parts[1]), parts[2]


def after_member_states(
    hotspot: Hotspot, members: Sequence[Member], now: datetime
) -> Hotspot | None:
    """The hotspot once its members' complaints changed state, or None if unchanged:
    closed when every member is closed; confirmed again when a closed hotspot's member
    is reopened (the problem is still there), so it is listed and answered again."""
    if hotspot.state is HotspotState.DISSOLVED or not members:
        return None
    everyone_closed = all(m.closed for m in members)
    if everyone_closed and hotspot.state is not HotspotState.CLOSED:
        return changed(hotspot, now, state=HotspotState.CLOSED)
    if not everyone_closed and hotspot.state is HotspotState.CLOSED:
        return changed(hotspot, now, state=HotspotState.CONFIRMED)
    return None


@dataclass
class Tally:
    """Open hotspots per agency and per kecamatan ('weak services')."""

    by_agency: dict[str, int] = field(default_factory=dict)
    by_kecamatan: dict[str, int] = field(default_factory=dict)

    @classmethod
    def of(cls, hotspots: Iterable[Hotspot]) -> Tally:
        tally = cls()
        for h in hotspots:
            if not h.shown:
                continue
            tally.by_agency[h.agency] = tally.by_agency.get(h.agency, 0) + 1
            name = h.kecamatan.name if h.kecamatan else "?"
            tally.by_kecamatan[name] = tally.by_kecamatan.get(name, 0) + 1
        return tally
