"""Domain events published by the services on `lapor.event.*`.

Every event carries a deterministic `event_id`; it doubles as the JetStream
`Nats-Msg-Id`, so a re-publish is dropped by the server and a redelivery is
recognised by the consumer.
"""

from datetime import datetime
from enum import StrEnum
from typing import Literal

from pydantic import AwareDatetime, BaseModel, Field

AGENCY_OUT_OF_SCOPE = "OUT_OF_SCOPE"


class Priority(StrEnum):
    URGENT = "urgent"
    HIGH = "high"
    NORMAL = "normal"


class Channel(StrEnum):
    SMS = "sms"
    WEB = "web"
    OPEN311 = "open311"


class State(StrEnum):
    RECEIVED = "received"
    TRIAGE = "triage"
    ASSIGNED = "assigned"
    IN_PROGRESS = "in_progress"
    NEEDS_INFO = "needs_info"
    RESPONDED = "responded"
    CLOSED = "closed"
    REJECTED = "rejected"


# The labels citizens see for each state (DESIGN: lifecycle states).
STATE_LABELS: dict[State, str] = {
    State.RECEIVED: "Diterima",
    State.TRIAGE: "Menunggu Verifikasi",
    State.ASSIGNED: "Didisposisikan",
    State.IN_PROGRESS: "Diproses",
    State.NEEDS_INFO: "Menunggu Pelapor",
    State.RESPONDED: "Ditanggapi",
    State.CLOSED: "Selesai",
    State.REJECTED: "Diarsipkan",
}


class RejectionReason(StrEnum):
    MALFORMED = "malformed"
    UNKNOWN_REGION = "unknown_region"
    TOO_SHORT = "too_short"
    RATE_LIMITED = "rate_limited"
    UNSUPPORTED_COMMAND = "unsupported_command"
    EMPTY = "empty"
    BAD_TRACKING_ID = "bad_tracking_id"
    BAD_RATING = "bad_rating"
    DUPLICATE = "duplicate"
    PHONE_NOT_ALLOWED = "phone_not_allowed"


class Event(BaseModel):
    event_id: str
    occurred_at: AwareDatetime


# A reporter's phone number or e-mail address never travels in clear: intake seals
# it to notify's public key (a libsodium sealed box: X25519 + XSalsa20-Poly1305),
# bound to the event and the field it is in, so only notify can read it and a copy
# placed into another event does not open.
SEALED_CONTACT = r"^pii2\.[0-9a-f]{8}\.[A-Za-z0-9_-]+=*$"
_SEALED_HOW = (
    "sealed to notify's public key as `pii2.<key id>.<sealed box, URL-safe base64>`; "
    "the sealed text is `<event_id>/<field name>`, a NUL byte, then the value."
)


# Whether two complaints come from the same person, without saying who: a one-way
# function of intake's keyed phone hash, so it matches neither a number nor the
# hash intake stores. Hotspots count different reporters with it.
REPORTER_REF = r"^[0-9a-f]{16}$"
_REPORTER_HOW = (
    "Pseudonym of the reporting phone number (16 hex digits): equal for two complaints "
    "from one number, absent when no number is known. It reveals no number."
)


def contact_context(event_id: str, field: str) -> str:
    """What a sealed contact field is bound to: its event and its own name."""
    return f"{event_id}/{field}"


class ComplaintReceived(Event):
    complaint_id: str
    region: str
    channel: Channel
    text: str
    received_at: AwareDatetime
    reply_to_sealed: str | None = Field(
        default=None,
        pattern=SEALED_CONTACT,
        max_length=1024,
        description="The reporter's E.164 number for replies, " + _SEALED_HOW,
    )
    reply_email_sealed: str | None = Field(
        default=None,
        pattern=SEALED_CONTACT,
        max_length=1024,
        description="E-mail address for replies (web, Open311 or partner submissions), "
        + _SEALED_HOW,
    )
    anonymous: bool = False
    confidential: bool = False
    text_truncated: bool = Field(
        default=False,
        description="The text was longer than the limit (about 1,600 characters) and was cut; "
        "the acknowledgement tells the citizen.",
    )
    reporter: str | None = Field(
        default=None,
        pattern=REPORTER_REF,
        description=_REPORTER_HOW,
    )


class PlaceArea(BaseModel):
    code: str = Field(
        pattern=r"^\d{2}\.\d{2}\.\d{2}(\.\d{4})?$",
        description="Kemendagri code, e.g. 63.03.05 (kecamatan) or 63.03.05.1001 (desa).",
    )
    name: str = Field(max_length=100)


class PlaceCandidate(BaseModel):
    kecamatan: PlaceArea
    desa: PlaceArea | None = None


class Place(BaseModel):
    """Where the complaint is about: a kecamatan and, if named, its desa/kelurahan."""

    kecamatan: PlaceArea | None = Field(
        description="None only when the place is ambiguous (see candidates)."
    )
    desa: PlaceArea | None = None
    source: Literal["text", "coordinates", "reporter"] = Field(
        description="Found in the complaint text, from the reporter's coordinates, "
        "or as the reporter named it."
    )
    confidence: float = Field(ge=0, le=1)
    ambiguous: bool = Field(default=False, description="The name fits places in several kecamatan.")
    candidates: list[PlaceCandidate] = Field(default_factory=list, max_length=10)


class ComplaintRouted(Event):
    complaint_id: str
    region: str
    received_at: AwareDatetime
    agency: str | None = Field(description="Agency code, OUT_OF_SCOPE, or None in triage.")
    priority: Priority
    category: str
    confidence: float = Field(ge=0, le=1)
    triage: bool
    candidates: list[str] = Field(default_factory=list)
    reasons: list[str] = Field(default_factory=list)
    decided_by: str = Field(default="router", description="`router` or `admin:<id>`.")
    bounces: int = Field(default=0, ge=0, description="Times agencies refused it so far.")
    place: Place | None = Field(
        default=None, description="The kecamatan/desa named in the text, if any."
    )
    keywords: list[str] = Field(
        default_factory=list,
        max_length=64,
        description="The text's content words as the router understood them (normalised "
        "and stemmed, stopwords and place names left out), in order; what hotspots compare.",
    )
    reporter: str | None = Field(
        default=None,
        pattern=REPORTER_REF,
        description=_REPORTER_HOW + " Passed on from ComplaintReceived (first routing only).",
    )
    confidential: bool = Field(
        default=False, description="Passed on from ComplaintReceived (first routing only)."
    )


_ROUTED = "routed:"


def routed_event_id(complaint_id: str, round_: int) -> str:
    """The id of round `round_`'s routing decision: one decision per round, kept once."""
    return f"{_ROUTED}{complaint_id}:{round_}"


def routing_round(event_id: str) -> int:
    """The round of a routing decision from its id (`routed_event_id`); 0 otherwise."""
    head, _, tail = event_id.rpartition(":")
    return int(tail) if head.startswith(_ROUTED) and tail.isdigit() else 0


class Deadlines(BaseModel):
    routing: datetime | None = None
    first_response: datetime | None = None
    answer: datetime | None = Field(
        default=None,
        description="The answer owed now: after a reopening, the new round's deadline.",
    )
    first_answer: datetime | None = Field(
        default=None,
        description="The first answer's deadline (the promise made at receipt, moved only "
        "by waits for the citizen); the same as `answer` until the citizen reopens.",
    )


class DeadlinesSet(Event):
    complaint_id: str
    region: str
    agency: str | None
    priority: Priority
    state: State = Field(description="State the deadlines belong to (assigned or triage).")
    received_at: AwareDatetime
    deadlines: Deadlines
    cause_event_id: str
    answer_round: int = Field(
        default=0,
        ge=0,
        description="Whose answer `deadlines.answer` is: 0 the first, n the answer owed "
        "after the citizen's n-th reopening.",
    )
    reopened: bool = Field(
        default=False,
        description="This announces the new answer deadline a reopening set "
        "(`cause_event_id` is the reopening's state change).",
    )
    category: str | None = Field(
        default=None,
        description="On the deadlines a routing decision set (`cause_event_id` is "
        "that decision): its category, which the agency's assignment notice names.",
    )
    routing_confidence: float | None = Field(
        default=None,
        ge=0,
        le=1,
        description="With `category`: that decision's confidence (the notice says "
        "when the routing was unsure).",
    )


class InboundRejected(Event):
    """Inbound message kept as a rejection record; the sender gets the reason."""

    rejection_id: str
    channel: Channel
    reason: RejectionReason
    detail: str = ""
    reply_to_sealed: str | None = Field(
        default=None,
        pattern=SEALED_CONTACT,
        max_length=1024,
        description="The sender's number, "
        + _SEALED_HOW
        + " Absent when the sender must not get another notice.",
    )
    region: str | None = None
    complaint_id: str | None = Field(
        default=None, description="For `duplicate`: the complaint the text was linked to."
    )


class CitizenCommandAnswered(Event):
    """Intake's answer to a citizen command (CEK, BALAS, NILAI, BUKA, BATAL) for notify to send."""

    command: Literal["status", "reply", "rating", "reopen", "withdraw"]
    found: bool = Field(description="False when the id is unknown or not the sender's.")
    tracking_id: str
    reply_to_sealed: str | None = Field(
        default=None,
        pattern=SEALED_CONTACT,
        max_length=1024,
        description="The sender's number, " + _SEALED_HOW,
    )
    region: str | None = None
    state: State | None = None
    agency: str | None = None
    answer_due: datetime | None = None
    score: int | None = Field(default=None, ge=1, le=5)
    refused: str | None = Field(
        default=None,
        description="Why the command changed nothing (BUKA, NILAI or BATAL outside the rules).",
    )
    reopen_until: datetime | None = Field(
        default=None, description="Last moment the citizen may reopen, if answered or closed."
    )


class ComplaintStateChanged(Event):
    """Published by intake, the keeper of the complaint record, after every state change."""

    complaint_id: str
    region: str
    state: State
    previous_state: State | None
    actor: str
    reason: str
    agency: str | None = None
    priority: Priority | None = None
    outcome: str | None = None
    message: str | None = Field(
        default=None,
        description="The agency's question or answer, or a closing note; for a citizen's "
        "change (`action` reply, reopen, withdraw) the citizen's text, if any.",
    )
    action: str | None = Field(
        default=None,
        description="The lifecycle command that made the change (`acknowledge`, `reply`, "
        "`reopen`, `withdraw`, ...); null for routing and for events from before it existed.",
    )
    officer: str | None = Field(
        default=None,
        max_length=64,
        description="The officer of the holding agency who acknowledged the complaint, "
        "while they hold it.",
    )
    reopen_until: AwareDatetime | None = Field(
        default=None,
        description="Responded or closed: until when the citizen may reopen, when already "
        "known. The window of this very change is counted by SLA from this event and "
        "announced as `AutoCloseDue` with kind `reopen_window`.",
    )
    cause_event_id: str

    @property
    def follows_routing(self) -> bool:
        """Intake's move to `assigned` or `triage` on hearing a routing decision: it
        says nothing that decision (on lapor.event.complaint.routed) does not."""
        return self.state in (State.ASSIGNED, State.TRIAGE) and self.cause_event_id.startswith(
            _ROUTED
        )


class SlaClock(StrEnum):
    ROUTING = "routing"
    FIRST_RESPONSE = "first_response"
    ANSWER = "answer"


class EscalationLevel(StrEnum):
    LIAISON = "liaison"
    HEAD = "head"
    SEKDA = "sekda"
    OMBUDSMAN = "ombudsman"


_ROUND = (
    "The clock's round: for `answer` 0 is the first answer and n the answer owed after "
    "the citizen's n-th reopening; for `first_response` the routing round; 0 for `routing`."
)


class DeadlineAlert(Event):
    """A clock reached a warning threshold (50%, 80%) or its deadline (100% = breach)."""

    complaint_id: str
    region: str
    agency: str | None
    official: str | None = None
    priority: Priority
    clock: SlaClock
    kind: Literal["warning", "breach"]
    percent: int = Field(ge=0, le=100)
    due_at: AwareDatetime
    round: int = Field(default=0, ge=0, description=_ROUND)


class EscalationRaised(Event):
    """A breached clock is escalated one level up the chain."""

    complaint_id: str
    region: str
    agency: str | None
    official: str | None = None
    priority: Priority
    clock: SlaClock
    level: EscalationLevel
    due_at: AwareDatetime
    late_by_s: float = Field(ge=0)
    round: int = Field(default=0, ge=0, description=_ROUND)


class AutoCloseDue(Event):
    """SLA on the citizen's reply window after an answer or a closing.

    `kind` `auto_close` (the default, and every payload without `kind`): the
    citizen did not react to the answer of `responded_at` within the window:
    close it (as `no_reply` unless the citizen rated it).

    `kind` `reopen_window`: the complaint became responded or closed at
    `responded_at` (the state change `cause_event_id`); the citizen may reopen
    it until `reopen_until`, counted on the region's working-day calendar. It
    changes no state.
    """

    complaint_id: str
    region: str
    responded_at: AwareDatetime = Field(
        description="The answer (auto_close), or the answer or closing the window counts from."
    )
    kind: Literal["auto_close", "reopen_window"] = "auto_close"
    reopen_until: AwareDatetime | None = Field(
        default=None, description="reopen_window: the last moment the citizen may reopen."
    )
    cause_event_id: str | None = Field(
        default=None,
        description="reopen_window: the id of the ComplaintStateChanged that opened the window.",
    )
