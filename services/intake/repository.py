"""Storage of complaints, rejection records and dead letters (MongoDB or FerretDB v1)."""

from datetime import UTC, datetime
from typing import Any

from pymongo import ASCENDING, DESCENDING, ReturnDocument
from pymongo.asynchronous.database import AsyncDatabase
from pymongo.errors import DuplicateKeyError

from services.intake.domain import Transition

Document = dict[str, Any]


class ComplaintRepository:
    def __init__(self, db: AsyncDatabase[Document]) -> None:
        self.complaints = db["complaints"]
        self.rejections = db["rejections"]
        self.dead_letters = db["dead_letters"]

    async def ensure_indexes(self) -> None:
        await self.complaints.create_index("source_key", unique=True)
        await self.complaints.create_index([("state", ASCENDING), ("agency", ASCENDING)])
        await self.complaints.create_index(
            [("reporter.phone_hash", ASCENDING), ("received_at", DESCENDING)]
        )
        await self.rejections.create_index("source_key", unique=True)

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

    async def get(self, tracking_id: str) -> Document | None:
        return await self.complaints.find_one({"_id": tracking_id})

    async def apply(self, complaint_id: str, transition: Transition) -> Document | None:
        """Apply a transition once: the history's event ids make a redelivery a no-op.

        Returns the complaint after the change, the unchanged complaint if the
        transition was already applied, or None if there is no such complaint.
        """
        changes: Document = {**transition.fields, "updated_at": datetime.now(UTC)}
        if transition.state is not None:
            changes["state"] = transition.state.value
        updated = await self.complaints.find_one_and_update(
            {"_id": complaint_id, "history.event_id": {"$ne": transition.event_id}},
            {"$set": changes, "$push": {"history": transition.history_entry()}},
            return_document=ReturnDocument.AFTER,
        )
        if updated is not None:
            return updated
        return await self.get(complaint_id)

    async def add_dead_letter(self, record: Document) -> None:
        try:
            await self.dead_letters.insert_one(record)
        except DuplicateKeyError:
            pass
