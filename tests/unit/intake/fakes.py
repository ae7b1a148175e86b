"""In-memory stand-ins for intake's complaint store and publishers, for the unit tests
of its use cases.

`MemoryComplaints` behaves like `ComplaintRepository` on what the use cases rely
on: one complaint and one rejection record per source (a second one returns the
first), a taken tracking id refused with `TrackingIdTaken`, a change applied once
per event id, announcements pending with the record until `announce` publishes
them, each sender message counted once, each notice key claimed once.
`RecordingPublisher` keeps what was published, once per message id, as
JetStream's de-duplication does.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import replace
from datetime import UTC, datetime
from typing import Any, TypeVar

from pydantic import BaseModel

from lapor.regions import load_regions, region_keywords
from services.intake.counts import CountBuffer
from services.intake.domain import Change, Transition, after_change
from services.intake.guard import SenderMessages
from services.intake.ports import Document, IntakeDeps, TrackingIdTaken
from services.intake.sms import RegionKeywords
from tests.contacts import NOTIFY_KEY
from tools.devstack import ROOT

KEYWORDS = RegionKeywords(region_keywords(load_regions(ROOT / "data")))
PHONE_KEY = b"k" * 32

E = TypeVar("E", bound=BaseModel)


class MemoryComplaints:
    def __init__(self, counts: CountBuffer | None = None) -> None:
        # Told of every stored change, as the repository tells it.
        self.counts = counts
        self.complaints: dict[str, Document] = {}
        self.rejections: dict[str, Document] = {}
        self.pending: dict[str, list[BaseModel]] = {}
        self.published: list[BaseModel] = []
        self.sender_messages: dict[str, tuple[str, datetime]] = {}
        self.notices: set[str] = set()
        self.recent_reads = 0

    async def add_complaint(
        self, doc: Document, events: Sequence[BaseModel] = ()
    ) -> tuple[Document, bool]:
        if (first := await self.by_source(doc["source_key"])) is not None:
            return first, False
        if doc["_id"] in self.complaints:
            raise TrackingIdTaken(doc["_id"])
        self.complaints[doc["_id"]] = dict(doc)
        self.pending.setdefault(doc["_id"], []).extend(events)
        if self.counts is not None:
            self.counts.record(None, doc)
        return dict(doc), True

    async def add_rejection(
        self, doc: Document, events: Sequence[BaseModel] = ()
    ) -> tuple[Document, bool]:
        for first in self.rejections.values():
            if first["source_key"] == doc["source_key"]:
                return dict(first), False
        self.rejections[doc["_id"]] = dict(doc)
        self.pending.setdefault(doc["_id"], []).extend(events)
        return dict(doc), True

    async def by_source(self, source_key: str) -> Document | None:
        found = (c for c in self.complaints.values() if c["source_key"] == source_key)
        return dict(first) if (first := next(found, None)) is not None else None

    async def get(self, tracking_id: str) -> Document | None:
        found = self.complaints.get(tracking_id)
        return dict(found) if found is not None else None

    async def announce(self, doc: Document | None) -> int:
        if doc is None:
            return 0
        events = self.pending.pop(doc["_id"], [])
        self.published.extend(events)
        return len(events)

    async def announce_rejection(self, doc: Document | None) -> int:
        return await self.announce(doc)

    async def apply(self, complaint_id: str, transition: Transition) -> Document | None:
        doc, _ = await self.change(complaint_id, lambda _doc: Change(transition))
        return doc

    async def change(
        self, complaint_id: str, decide: Callable[[Document], Change | None]
    ) -> tuple[Document | None, Change | None]:
        doc = await self.get(complaint_id)
        if doc is None:
            return None, None
        change = decide(doc)
        if change is None or change.transition.event_id in doc.get("event_ids", []):
            return doc, None
        after = after_change(doc, change.transition, datetime.now(UTC))
        self.complaints[complaint_id] = after
        if self.counts is not None:
            self.counts.record(doc, after)
        self.pending.setdefault(complaint_id, []).extend(change.announce(after))
        return dict(after), change

    async def record_sender_message(
        self, source_key: str, phone_hash: str, at: datetime
    ) -> SenderMessages:
        first = source_key not in self.sender_messages
        if first:
            self.sender_messages[source_key] = (phone_hash, at)
        times = tuple(t for h, t in self.sender_messages.values() if h == phone_hash)
        return SenderMessages(first, times)

    async def claim_notice(self, key: str) -> bool:
        if key in self.notices:
            return False
        self.notices.add(key)
        return True

    async def recent_by_sender(self, phone_hash: str, since: datetime) -> list[Document]:
        self.recent_reads += 1
        mine = [
            c
            for c in self.complaints.values()
            if c.get("reporter_hash") == phone_hash
            and c["channel"] == "sms"
            and c["received_at"] >= since
        ]
        return sorted(mine, key=lambda c: c["received_at"], reverse=True)[:20]

    def announced(self, kind: type[E]) -> list[E]:
        """The published announcements of one event type, in order."""
        return [event for event in self.published if isinstance(event, kind)]


class RecordingPublisher:
    def __init__(self) -> None:
        self.messages: dict[str, BaseModel] = {}

    async def publish(self, message: BaseModel, msg_id: str) -> bool:
        if msg_id in self.messages:
            return False
        self.messages[msg_id] = message
        return True

    def sent(self) -> list[Any]:
        return list(self.messages.values())


def intake_deps(repo: MemoryComplaints | None = None, **options: Any) -> IntakeDeps:
    """Intake's use-case dependencies on the fakes: Banjar's keywords, the session's
    personal-data key, and recording publishers; `options` replace any of them."""
    deps = IntakeDeps(
        repo=repo or MemoryComplaints(),
        answered=RecordingPublisher(),
        command_rejected=RecordingPublisher(),
        region_keywords=KEYWORDS,
        phone_key=PHONE_KEY,
        sealer=NOTIFY_KEY.sealer(),
    )
    return replace(deps, **options)
