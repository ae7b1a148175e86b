"""What intake's use cases need from the outside: the complaint store, the publishers,
and the settings and keys they run with.

`ComplaintRepository` is the store on MongoDB / FerretDB; the unit tests use an
in-memory one (tests/unit/intake/fakes.py). The store speaks in domain outcomes:
"already stored" comes back as the first record, a taken tracking id as
`TrackingIdTaken`, never as a driver error.
"""

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any, Protocol

from pydantic import BaseModel

from lapor.contracts.events import contact_context
from lapor.runtime.locks import KeyedLock
from lapor.runtime.pii import PiiSealer
from services.intake.domain import Change, Transition
from services.intake.guard import RateLimit, SenderMessages
from services.intake.metrics import IntakeMetrics
from services.intake.sms import RegionKeywords

Document = dict[str, Any]

DEFAULT_RATE_LIMIT = RateLimit(per_hour=10, per_day=30)


class TrackingIdTaken(Exception):
    """A new complaint's random tracking id belongs to another complaint already."""


class Publisher(Protocol):
    async def publish(self, message: BaseModel, msg_id: str) -> bool: ...


class ComplaintStore(Protocol):
    """Complaints, rejection records and the per-sender counts, with their outboxes."""

    async def add_complaint(
        self, doc: Document, events: Sequence[BaseModel] = ()
    ) -> tuple[Document, bool]:
        """The stored complaint and whether it is new: a second one from the same
        source returns the first. Raises `TrackingIdTaken`."""

    async def add_rejection(
        self, doc: Document, events: Sequence[BaseModel] = ()
    ) -> tuple[Document, bool]:
        """The stored record and whether it is new (the first one of its source)."""

    async def by_source(self, source_key: str) -> Document | None: ...

    async def get(self, tracking_id: str) -> Document | None: ...

    async def announce(self, doc: Document | None) -> int:
        """Publish what the complaint still has pending in its outbox."""

    async def announce_rejection(self, doc: Document | None) -> int: ...

    async def apply(self, complaint_id: str, transition: Transition) -> Document | None: ...

    async def change(
        self, complaint_id: str, decide: Callable[[Document], Change | None]
    ) -> tuple[Document | None, Change | None]:
        """Decide on the stored complaint and write the change only on the state it
        was decided on; (None, None) for no such complaint."""

    async def record_sender_message(
        self, source_key: str, phone_hash: str, at: datetime
    ) -> SenderMessages:
        """Count a message once, whatever the gateway retries; whether it was the first
        time, and when the sender's messages of (at least) the last day came."""

    async def claim_notice(self, key: str) -> bool:
        """True for the first claimant of the key only."""

    async def recent_by_sender(self, phone_hash: str, since: datetime) -> list[Document]: ...


@dataclass(frozen=True)
class IntakeDeps:
    # Received, rejected, state-changed and forwarded events go out through the
    # store's outbox, stored with the change they announce; answers to citizens'
    # commands and refusals of bus commands have no record to ride on.
    repo: ComplaintStore
    answered: Publisher
    command_rejected: Publisher
    region_keywords: RegionKeywords | Mapping[str, str]
    phone_key: bytes
    # The personal-data public key: reply addresses in events and kept payloads are
    # sealed with it, and intake cannot open them again (only notify and operators can).
    sealer: PiiSealer
    min_words: int = 3
    rate_limit: RateLimit = DEFAULT_RATE_LIMIT
    duplicate_window: timedelta = timedelta(hours=24)
    duplicate_similarity: float = 90.0
    senders: KeyedLock = field(default_factory=KeyedLock)
    region_ids: frozenset[str] = frozenset({"banjar"})
    # Agency codes of each region's directory: what triage decisions and forward
    # suggestions may name.
    agencies: Mapping[str, frozenset[str]] = field(default_factory=dict)
    # Per region: countries whose mobile numbers a web, Open311 or partner submission
    # may give (the region's `allowed_sms_countries`); Indonesia for a region not named.
    sms_countries: Mapping[str, frozenset[str]] = field(default_factory=dict)
    metrics: IntakeMetrics | None = None
    clock: Callable[[], datetime] = lambda: datetime.now(UTC)

    def sealed(self, event_id: str, field: str, value: str | None) -> str | None:
        """A reply address as an event carries it: sealed to notify, bound to the event
        and its field, so the bus and every store on the way hold no plain number."""
        if value is None:
            return None
        return self.sealer.seal(value, contact_context(event_id, field))
