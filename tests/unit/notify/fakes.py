"""In-memory stand-ins for notify's records and delivery, for the unit tests of its use cases.

`MemoryRecords` behaves like `NotificationRepository` on what the use cases rely
on (a contact is merged on save, the first acknowledged answer is kept) and
counts every read, so a test can hold a use case to reading a record once.
`RecordingDelivery` stands in for the `Deliverer`: one send per notification id,
as the delivery log ensures.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from datetime import datetime
from typing import Any

from lapor.regions import load_regions
from services.notify.catalog import AgencyCatalog, SmsRenderer
from services.notify.channels import OutgoingMessage
from services.notify.delivery import Notification
from services.notify.repository import Document
from services.notify.templates import TemplateSet
from services.notify.usecases import NotifyDeps
from tests.contacts import NOTIFY_KEY
from tools.devstack import ROOT

REGIONS = load_regions(ROOT / "data")
RENDERER = SmsRenderer(TemplateSet.load(), REGIONS)
AGENCIES = AgencyCatalog.load(ROOT / "data", REGIONS)


class MemoryRecords:
    def __init__(self) -> None:
        self.contacts: dict[str, Document] = {}
        self.routings: dict[str, Document] = {}
        self.notifications: dict[str, Document] = {}
        self.reads: Counter[str] = Counter()
        # The first acknowledged answer date per complaint, as its record keeps it.
        self.acknowledged: dict[str, datetime] = {}

    async def save_contact(self, complaint_id: str, contact: Document) -> None:
        self.contacts.setdefault(complaint_id, {}).update(contact)

    async def contact(self, complaint_id: str) -> Document | None:
        self.reads["contact"] += 1
        found = self.contacts.get(complaint_id)
        # A document the routing created before the received event is no contact yet.
        return dict(found) if found is not None and "region" in found else None

    async def first_acknowledged(self, complaint_id: str) -> datetime | None:
        self.reads["acknowledged"] += 1
        kept = self.acknowledged.get(complaint_id)
        return (
            kept
            if kept is not None
            else self.contacts.get(complaint_id, {}).get("acknowledged_answer")
        )

    async def routing(self, routed_event_id: str, contact: Document | None) -> Document | None:
        for entry in (contact or {}).get("routings", []):
            if entry["event_id"] == routed_event_id:
                return dict(entry)
        # Routings stored apart, as before they went into the contact.
        self.reads["routing"] += 1
        found = self.routings.get(routed_event_id)
        return dict(found) if found is not None else None

    async def get(self, notification_id: str) -> Document | None:
        self.reads["notification"] += 1
        return self.notifications.get(notification_id)


class RecordingDelivery:
    def __init__(self, retry_in: float | None = None) -> None:
        # Where the records of what was sent are kept (the acknowledged answer dates).
        self.records: MemoryRecords | None = None
        self.sent: dict[str, Notification] = {}
        self.deliveries = 0
        self.last_chances: list[bool] = []
        # What `deliver_all` answers: None, or the delay after which to come back.
        self.retry_in = retry_in
        self.delivered: list[tuple[str, datetime]] = []
        self.failed: list[tuple[str, str, str]] = []

    async def deliver_all(
        self, notifications: Sequence[Notification], *, last_chance: bool = False
    ) -> float | None:
        self.last_chances.append(last_chance)
        for note in notifications:
            self.deliveries += 1
            self.sent.setdefault(note.id, note)
            if self.records is not None and note.acknowledges is not None:
                complaint = note.message.complaint_id or ""
                self.records.acknowledged.setdefault(complaint, note.acknowledges)
        return self.retry_in

    async def mark_delivered(self, notification_id: str, at: datetime) -> bool:
        self.delivered.append((notification_id, at))
        return True

    async def fail_by_receipt(self, record: Document, error: str, reason: str = "receipt") -> None:
        self.failed.append((record["_id"], error, reason))

    def sms(self) -> list[str]:
        return [n.message.text for n in self.sent.values() if n.message.kind == "sms"]

    def citizen(self, kind: str) -> list[OutgoingMessage]:
        return [
            n.message
            for n in self.sent.values()
            if n.audience == "citizen" and n.message.kind == kind
        ]

    def officials(self) -> list[Notification]:
        return [n for n in self.sent.values() if n.audience == "official"]


def notify_deps(
    repo: MemoryRecords | None = None, delivery: RecordingDelivery | None = None, **options: Any
) -> NotifyDeps:
    repo = repo or MemoryRecords()
    delivery = delivery or RecordingDelivery()
    if delivery.records is None:
        delivery.records = repo
    return NotifyDeps(
        repo=repo,
        deliverer=delivery,
        renderer=RENDERER,
        agencies=AGENCIES,
        opener=NOTIFY_KEY,
        **options,
    )
