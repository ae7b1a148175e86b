"""Storage of complaints, rejection records and dead letters (MongoDB or FerretDB v1)."""

import contextlib
from datetime import UTC, datetime
from typing import Any

from pymongo import ASCENDING, DESCENDING, ReturnDocument
from pymongo.asynchronous.database import AsyncDatabase
from pymongo.errors import DuplicateKeyError

from lapor.runtime.locks import KeyedLock
from services.intake.domain import Transition, worklist_fields

Document = dict[str, Any]

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
    def __init__(self, db: AsyncDatabase[Document]) -> None:
        self.complaints = db["complaints"]
        self.rejections = db["rejections"]
        self.dead_letters = db["dead_letters"]
        self.tokens = db["api_tokens"]
        self.sender_messages = db["sender_messages"]
        self.rate_notices = db["rate_notices"]
        # FerretDB v1 (SQLite) applies an update as read-modify-write of the whole
        # document without isolation: two concurrent updates of one complaint can
        # lose one of them. Changes to one complaint are therefore serialised here.
        # MongoDB does not need it; with several intake replicas on FerretDB the
        # race remains between replicas.
        self._writing = KeyedLock()

    async def ensure_indexes(self) -> None:
        await self.complaints.create_index("source_key", unique=True)
        await self.complaints.create_index([("state", ASCENDING), ("agency", ASCENDING)])
        await self.complaints.create_index(
            [("reporter_hash", ASCENDING), ("received_at", DESCENDING)]
        )
        await self.rejections.create_index("source_key", unique=True)
        await self.sender_messages.create_index([("phone_hash", ASCENDING), ("at", ASCENDING)])
        await self.complaints.create_index([("agency", ASCENDING), *WORKLIST_ORDER[:3]])

    async def add_complaint(self, doc: Document) -> tuple[Document, bool]:
        """Store a new complaint; a second delivery of the same source returns the first."""
        try:
            await self.complaints.insert_one(doc)
        except DuplicateKeyError:
            existing = await self.complaints.find_one({"source_key": doc["source_key"]})
            if existing is None:  # the tracking id itself collided: the caller retries
                raise
            return existing, False
        return doc, True

    async def add_rejection(self, doc: Document) -> tuple[Document, bool]:
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

    async def apply(self, complaint_id: str, transition: Transition) -> Document | None:
        """Apply a transition once: the history's event ids make a redelivery a no-op.

        Returns the complaint after the change, the unchanged complaint if the
        transition was already applied, or None if there is no such complaint.
        """
        async with self._writing.hold(complaint_id):
            return await self.apply_held(complaint_id, transition)

    def writing(self, complaint_id: str) -> contextlib.AbstractAsyncContextManager[None]:
        """Hold the complaint for a read-decide-write sequence."""
        return self._writing.hold(complaint_id)

    async def apply_held(self, complaint_id: str, transition: Transition) -> Document | None:
        """`apply` for a caller that already holds `writing(complaint_id)`."""
        changes: Document = {**transition.fields, "updated_at": datetime.now(UTC)}
        if transition.state is not None:
            changes["state"] = transition.state.value
        # `event_ids` mirrors the history's event ids as a flat array: FerretDB v1
        # does not apply `$ne` to a dotted path into an array of documents.
        updated = await self.complaints.find_one_and_update(
            {"_id": complaint_id, "event_ids": {"$ne": transition.event_id}},
            {
                "$set": changes,
                "$push": {
                    "history": transition.history_entry(),
                    "event_ids": transition.event_id,
                },
            },
            return_document=ReturnDocument.AFTER,
        )
        if updated is None:
            return await self.get(complaint_id)
        # Derived from the document after the change, so it needs this second write;
        # the caller's hold on the complaint keeps the two together.
        order = worklist_fields(updated)
        if any(updated.get(key) != value for key, value in order.items()):
            await self.complaints.update_one({"_id": complaint_id}, {"$set": order})
            updated.update(order)
        return updated

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
        cursor = (
            self.complaints.find(
                {"reporter_hash": phone_hash, "received_at": {"$gte": since}},
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

    async def token(self, token_hash: str) -> Document | None:
        return await self.tokens.find_one({"_id": token_hash})

    async def add_token(self, doc: Document) -> None:
        await self.tokens.insert_one(doc)

    async def add_dead_letter(self, record: Document) -> None:
        try:
            await self.dead_letters.insert_one(record)
        except DuplicateKeyError:
            pass
