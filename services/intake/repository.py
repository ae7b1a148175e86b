"""Storage of complaints, rejection records and dead letters (MongoDB or FerretDB v1)."""

import contextlib
from collections.abc import Callable, Sequence
from datetime import UTC, datetime
from typing import Any

from pydantic import BaseModel
from pymongo import ASCENDING, DESCENDING, ReturnDocument
from pymongo.asynchronous.collection import AsyncCollection
from pymongo.asynchronous.database import AsyncDatabase
from pymongo.errors import DuplicateKeyError

from lapor.runtime.outbox import Outbox, ensure_outbox_index
from services.intake.auth import LAST_USE_EVERY, needs_last_use, new_token_id, token_refusal
from services.intake.domain import Change, Transition, after_change, changed_fields

Document = dict[str, Any]

# Each conflict means another writer changed the complaint in between; this many
# in a row means something is wrong, not busy.
_MAX_CONFLICTS = 50


class WriteConflict(RuntimeError):
    """The complaint kept changing under every attempt to decide on it."""


# The agency worklist: urgent first, always; then the nearest deadline the agency
# still has to meet, complaints without one last; the oldest first among equals.
# FerretDB cannot sort by a computed expression, so the deadline and its flag are
# stored fields, kept up to date on every write (`worklist_fields`).
WORKLIST_ORDER = [
    ("priority_rank", ASCENDING),
    ("has_next_deadline", DESCENDING),
    ("next_deadline", ASCENDING),
    ("received_at", ASCENDING),
    ("_id", ASCENDING),
]


class ComplaintRepository:
    def __init__(self, db: AsyncDatabase[Document], outbox: Outbox | None = None) -> None:
        self.complaints = db["complaints"]
        self.rejections = db["rejections"]
        self.dead_letters = db["dead_letters"]
        self.tokens = db["api_tokens"]
        self.sender_messages = db["sender_messages"]
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
        await self.sender_messages.create_index([("phone_hash", ASCENDING), ("at", ASCENDING)])
        await self.complaints.create_index([("agency", ASCENDING), *WORKLIST_ORDER[:3]])
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
                raise
            return existing, False
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
        for _ in range(_MAX_CONFLICTS):
            doc = await self.get(complaint_id)
            if doc is None:
                return None, None
            change = decide(doc)
            if change is None or change.transition.event_id in doc.get("event_ids", []):
                return doc, None  # nothing to do, or a redelivery of what is done
            if (updated := await self._write(doc, change)) is not None:
                return updated, change
        raise WriteConflict(f"{complaint_id}: changed by others {_MAX_CONFLICTS} times in a row")

    async def _write(self, doc: Document, change: Change) -> Document | None:
        transition, now = change.transition, datetime.now(UTC)
        changes = changed_fields(doc, transition, now)
        events = change.announce(after_change(doc, transition, now))
        if events:
            changes |= self.outbox_or_fail().fields(doc["_id"], events, now)
        # `event_ids` mirrors the history's event ids as a flat array: FerretDB v1
        # does not apply `$ne` to a dotted path into an array of documents.
        return await self.complaints.find_one_and_update(
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

    def outbox_or_fail(self) -> Outbox:
        if self.outbox is None:
            raise RuntimeError("this repository has no outbox to announce changes through")
        return self.outbox

    async def record_sender_message(self, source_key: str, phone_hash: str, at: datetime) -> None:
        """Count each inbound message once, whatever the gateway retries."""
        with contextlib.suppress(DuplicateKeyError):
            await self.sender_messages.insert_one(
                {"_id": source_key, "phone_hash": phone_hash, "at": at}
            )

    async def count_sender_messages(self, phone_hash: str, since: datetime) -> int:
        return await self.sender_messages.count_documents(
            {"phone_hash": phone_hash, "at": {"$gte": since}}
        )

    async def claim_notice(self, key: str) -> bool:
        """True for the first claimant of a notice key (an insert is atomic on FerretDB too)."""
        try:
            await self.rate_notices.insert_one({"_id": key})
        except DuplicateKeyError:
            return False
        return True

    async def recent_by_sender(self, phone_hash: str, since: datetime) -> list[Document]:
        """The sender's own recent SMS complaints: a number a partner or the web form
        named is a reply contact, not the sender of those complaints."""
        cursor = (
            self.complaints.find(
                {"reporter_hash": phone_hash, "channel": "sms", "received_at": {"$gte": since}},
                {"text": 1, "state": 1, "region": 1},
            )
            .sort("received_at", DESCENDING)
            .limit(20)
        )
        return await cursor.to_list(20)

    async def search(self, query: Document, limit: int) -> list[Document]:
        projection = {"history": 0, "event_ids": 0, "reporter": 0, "reporter_hash": 0}
        cursor = self.complaints.find(query, projection).sort("received_at", DESCENDING)
        return await cursor.limit(limit).to_list(limit)

    async def worklist(self, agency: str, states: list[str], limit: int = 200) -> list[Document]:
        cursor = (
            self.complaints.find(
                {"agency": agency, "state": {"$in": states}},
                {"history": 0, "event_ids": 0, "reporter": 0, "reporter_hash": 0},
            )
            .sort(WORKLIST_ORDER)
            .limit(limit)
        )
        return await cursor.to_list(limit)

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

    async def find_token(self, token_hash: str) -> Document | None:
        """The stored token, whether usable or not."""
        return await self.tokens.find_one({"_id": token_hash})

    async def token(self, token_hash: str, now: datetime | None = None) -> Document | None:
        """The token if it may be used (not revoked, not expired), its use recorded."""
        now = now or datetime.now(UTC)
        record = await self.find_token(token_hash)
        if record is None or token_refusal(record, now) is not None:
            return None
        await self.record_token_use(record, now)
        return record

    async def record_token_use(self, record: Document, now: datetime) -> None:
        """Write the last use at most once a minute per token, across all replicas:
        the write applies only while the stored last use is that old."""
        if not needs_last_use(record, now):
            return
        await self.tokens.update_one(
            {
                "_id": record["_id"],
                "$or": [
                    {"last_used_at": None},
                    {"last_used_at": {"$lte": now - LAST_USE_EVERY}},
                ],
            },
            {"$set": {"last_used_at": now}},
        )

    async def list_tokens(self) -> list[Document]:
        """Every token, oldest first. Records from before public ids get one here."""
        async for legacy in self.tokens.find({"id": {"$exists": False}}, {"_id": 1}):
            await self.tokens.update_one(
                {"_id": legacy["_id"], "id": {"$exists": False}}, {"$set": {"id": new_token_id()}}
            )
        return await self.tokens.find({}).sort("created_at", ASCENDING).to_list(None)

    async def revoke_token(self, token_id: str, now: datetime) -> Document | None:
        """Revoke by public id (a second revocation keeps the first time); None if unknown."""
        await self.tokens.update_one(
            {"id": token_id, "revoked_at": None}, {"$set": {"revoked_at": now}}
        )
        return await self.tokens.find_one({"id": token_id})

    async def add_token(self, doc: Document) -> None:
        await self.tokens.insert_one(doc)

    async def add_dead_letter(self, record: Document) -> None:
        try:
            await self.dead_letters.insert_one(record)
        except DuplicateKeyError:
            pass
