"""Storage of complaints, rejection records and dead letters (MongoDB or FerretDB v1).

The worklist entries (`services.intake.worklist`), the API tokens
(`services.intake.token_store`) and the per-sender records
(`services.intake.sender_store`) are kept by the same store, each in its own module.
"""

from collections import OrderedDict
from collections.abc import Callable, Sequence
from datetime import UTC, datetime
from typing import Any

import bson
from pydantic import BaseModel
from pymongo import ASCENDING, DESCENDING, ReturnDocument
from pymongo.asynchronous.collection import AsyncCollection
from pymongo.asynchronous.database import AsyncDatabase
from pymongo.errors import DuplicateKeyError

from lapor.runtime.locks import KeyedLock
from lapor.runtime.outbox import Outbox, ensure_outbox_index
from lapor.runtime.write_behind import WriteBehind
from services.intake.counts import CountBuffer
from services.intake.domain import Change, Transition, after_change, changed_fields
from services.intake.ports import TrackingIdTaken
from services.intake.sender_store import SenderRecords
from services.intake.token_store import TokenStore
from services.intake.worklist import (
    PENDING,
    WORKLIST_ENTRIES,
    WORKLIST_KEY,
    WORKLIST_MARK,
    WORKLIST_ORDER,
    WorklistEntries,
)

Document = dict[str, Any]

# Each conflict means another writer changed the complaint in between; this many
# in a row means something is wrong, not busy.
_MAX_CONFLICTS = 50


class WriteConflict(RuntimeError):
    """The complaint kept changing under every attempt to decide on it."""


class RecentComplaints:
    """The complaints this process wrote last, as it wrote them (copies)."""

    def __init__(self, size: int = 1000) -> None:
        self.size = size
        self._docs: OrderedDict[str, Document] = OrderedDict()

    def put(self, doc: Document) -> None:
        self._docs[doc["_id"]] = dict(doc)
        self._docs.move_to_end(doc["_id"])
        while len(self._docs) > self.size:
            self._docs.popitem(last=False)

    def get(self, complaint_id: str) -> Document | None:
        doc = self._docs.pop(complaint_id, None)
        return dict(doc) if doc is not None else None


class ComplaintRepository(WorklistEntries, TokenStore, SenderRecords):
    def __init__(
        self,
        db: AsyncDatabase[Document],
        outbox: Outbox | None = None,
        counts: CountBuffer | None = None,
        deferred: WriteBehind | None = None,
    ) -> None:
        # Where clearing a worklist mark may wait to go out with others (None: at once).
        self.deferred = deferred
        self._unmarking: dict[str, int] = {}
        self.recent = RecentComplaints()
        # This process's changes of one complaint, one at a time: the routing and the
        # deadlines, heard by two subscribers at once, would otherwise race for the
        # same version, and the loser read the complaint and try again.
        self._changing = KeyedLock()
        # The complaint gauges' counters, told of every stored change (`counts`).
        self.counts = counts
        self.database = db
        self.complaints = db["complaints"]
        self.worklist_entries = db[WORKLIST_ENTRIES]
        self.rejections = db["rejections"]
        self.dead_letters = db["dead_letters"]
        self.tokens = db["api_tokens"]
        self.sender_activity = db["sender_activity"]
        self.rate_notices = db["rate_notices"]
        # Announcements of changes are stored with the change (the outbox).
        self.outbox = outbox

    async def ensure_indexes(self) -> None:
        await self.complaints.create_index("source_key", unique=True)
        await self.complaints.create_index([("state", ASCENDING), ("agency", ASCENDING)])
        await self.complaints.create_index(
            [("reporter_hash", ASCENDING), ("received_at", DESCENDING)]
        )
        await self.rejections.create_index("source_key", unique=True)
        await self.complaints.create_index([("agency", ASCENDING), *WORKLIST_ORDER[:3]])
        await self.complaints.create_index(WORKLIST_MARK)
        await self.worklist_entries.create_index(
            [("open_agency", ASCENDING), (WORKLIST_KEY, ASCENDING)]
        )
        await self.worklist_entries.create_index([("open_agency", ASCENDING), ("state", ASCENDING)])
        await self._fill_open_agency()
        await self._fill_worklist_key()
        # The public reads by period (Open311 listing, performance report): equality on
        # the region, then a range of received_at, which our FerretDB build can use too.
        await self.complaints.create_index([("region", ASCENDING), ("received_at", DESCENDING)])
        await ensure_outbox_index(self.complaints)
        await ensure_outbox_index(self.rejections)

    async def add_complaint(
        self, doc: Document, events: Sequence[BaseModel] = ()
    ) -> tuple[Document, bool]:
        """Store a new complaint with its announcements pending; a second delivery
        of the same source returns the first."""
        if events:
            doc = self.outbox_or_fail().document(doc, events, doc["updated_at"])
        try:
            await self.complaints.insert_one(doc)
        except DuplicateKeyError:
            existing = await self.complaints.find_one({"source_key": doc["source_key"]})
            if existing is None:  # the tracking id itself collided: the caller retries
                raise TrackingIdTaken(doc["_id"]) from None
            return existing, False
        # As the database keeps it (times to the millisecond), as a read would return it.
        self.recent.put(bson.decode(bson.encode(doc), self.complaints.codec_options))
        if self.counts is not None:
            self.counts.record(None, doc)
        return doc, True

    async def add_rejection(
        self, doc: Document, events: Sequence[BaseModel] = ()
    ) -> tuple[Document, bool]:
        if events:
            doc = self.outbox_or_fail().document(doc, events, doc["stored_at"])
        try:
            await self.rejections.insert_one(doc)
        except DuplicateKeyError:
            existing = await self.rejections.find_one({"source_key": doc["source_key"]})
            if existing is None:
                raise
            return existing, False
        return doc, True

    async def by_source(self, source_key: str) -> Document | None:
        return await self.complaints.find_one({"source_key": source_key})

    async def get(self, tracking_id: str) -> Document | None:
        return await self.complaints.find_one({"_id": tracking_id})

    async def announce(self, doc: Document | None) -> int:
        """Publish the complaint's pending announcements (see `lapor.runtime.outbox`)."""
        return await self.outbox_or_fail().flush(self.complaints, doc)

    async def announce_rejection(self, doc: Document | None) -> int:
        return await self.outbox_or_fail().flush(self.rejections, doc)

    def outbox_collections(self) -> dict[str, AsyncCollection[Document]]:
        return {"complaints": self.complaints, "rejections": self.rejections}

    async def apply(self, complaint_id: str, transition: Transition) -> Document | None:
        """Apply a transition once, unannounced (notes, stored deadlines).

        Returns the complaint after the change, the unchanged complaint if the
        transition was already applied, or None if there is no such complaint.
        """
        doc, _ = await self.change(complaint_id, lambda _doc: Change(transition))
        return doc

    async def change(
        self, complaint_id: str, decide: Callable[[Document], Change | None]
    ) -> tuple[Document | None, Change | None]:
        """Read the complaint, decide, and write the decision only if the complaint
        is still the one the decision was made on; otherwise read and decide again.

        `decide` sees the stored complaint and returns the change to make, or None
        for none (already applied, no longer wanted); it may raise to refuse.
        Returns the complaint after the write (or as read, when nothing was
        written) and the change written; (None, None) when there is no complaint.
        The precondition is the version in the same atomic update: two replicas
        can never both apply a decision to the same old state.
        """
        async with self._changing.hold(complaint_id):
            return await self._change(complaint_id, decide)

    async def _change(
        self, complaint_id: str, decide: Callable[[Document], Change | None]
    ) -> tuple[Document | None, Change | None]:
        # The complaint as this process last wrote it saves the read when nothing
        # changed it since: a write decided on it succeeds only on that version. A
        # decision not to write (nothing to do, a refusal) is never taken on it.
        recent = self.recent.get(complaint_id)
        for _ in range(_MAX_CONFLICTS):
            doc = recent if recent is not None else await self.get(complaint_id)
            if doc is None:
                return None, None
            try:
                change = decide(doc)
            except Exception:
                if recent is None:
                    raise
                change = None
            done = change is None or change.transition.event_id in doc.get("event_ids", [])
            if recent is not None and done:
                recent = None
                continue
            if change is None or done:
                return doc, None  # nothing to do, or a redelivery of what is done
            recent = None
            if (updated := await self._write(doc, change)) is not None:
                return updated, change
        raise WriteConflict(f"{complaint_id}: changed by others {_MAX_CONFLICTS} times in a row")

    async def _write(self, doc: Document, change: Change) -> Document | None:
        transition, now = change.transition, datetime.now(UTC)
        changes = changed_fields(doc, transition, now)
        events = change.announce(after_change(doc, transition, now))
        if events:
            changes |= self.outbox_or_fail().fields(doc["_id"], events, now)
        listed = doc.get("open_agency") is not None or changes.get("open_agency") is not None
        if listed:
            # Written with the change: a crash before the worklist entry follows
            # leaves this mark for the sweep (`sync_worklist`).
            changes[WORKLIST_MARK] = PENDING
        # `event_ids` mirrors the history's event ids as a flat array: FerretDB v1
        # does not apply `$ne` to a dotted path into an array of documents.
        updated = await self.complaints.find_one_and_update(
            {
                "_id": doc["_id"],
                "version": doc.get("version"),
                "event_ids": {"$ne": transition.event_id},
            },
            {
                "$set": changes,
                "$push": {
                    "history": transition.history_entry(),
                    "event_ids": transition.event_id,
                },
            },
            return_document=ReturnDocument.AFTER,
        )
        if updated is not None:
            self.recent.put(updated)
        if updated is not None and self.counts is not None:
            # Only a write that applied counts: a redelivery never gets here.
            self.counts.record(doc, updated)
        if updated is not None and listed:
            await self._list(updated, later=change.listed_later)
        return updated

    def outbox_or_fail(self) -> Outbox:
        if self.outbox is None:
            raise RuntimeError("this repository has no outbox to announce changes through")
        return self.outbox

    async def search(self, query: Document, limit: int) -> list[Document]:
        projection = {"history": 0, "event_ids": 0, "reporter": 0, "reporter_hash": 0}
        cursor = self.complaints.find(query, projection).sort("received_at", DESCENDING)
        return await cursor.limit(limit).to_list(limit)

    async def triage_queue(self, limit: int = 200) -> list[Document]:
        """Complaints waiting for an admin's triage decision, the longest waiting first."""
        cursor = (
            self.complaints.find(
                {"state": "triage"},
                {"history": 0, "event_ids": 0, "reporter": 0, "reporter_hash": 0},
            )
            .sort([("received_at", ASCENDING), ("_id", ASCENDING)])
            .limit(limit)
        )
        return await cursor.to_list(limit)

    async def add_dead_letter(self, record: Document) -> None:
        try:
            await self.dead_letters.insert_one(record)
        except DuplicateKeyError:
            pass
