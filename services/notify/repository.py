"""Notify's own data: where to answer each complaint, and the log of every notification."""

from datetime import datetime
from typing import Any

from pymongo import ASCENDING
from pymongo.asynchronous.database import AsyncDatabase
from pymongo.errors import DuplicateKeyError

Document = dict[str, Any]


class NotificationRepository:
    def __init__(self, db: AsyncDatabase[Document]) -> None:
        self.contacts = db["notify_contacts"]
        self.notifications = db["notifications"]

    async def ensure_indexes(self) -> None:
        await self.notifications.create_index([("complaint_id", ASCENDING)])

    async def save_contact(self, complaint_id: str, contact: Document) -> None:
        await self.contacts.update_one({"_id": complaint_id}, {"$set": contact}, upsert=True)

    async def contact(self, complaint_id: str) -> Document | None:
        return await self.contacts.find_one({"_id": complaint_id})

    async def begin(self, notification: Document) -> Document | None:
        """Record a notification before sending; None if it was already sent.

        The notification id is the primary key, so a redelivered event finds the
        earlier record instead of creating a second message.
        """
        try:
            await self.notifications.insert_one(notification)
        except DuplicateKeyError:
            existing = await self.notifications.find_one({"_id": notification["_id"]})
            if existing is not None and existing.get("status") == "sent":
                return None
            return existing or notification
        return notification

    async def mark_sent(self, notification_id: str, at: datetime) -> None:
        await self.notifications.update_one(
            {"_id": notification_id},
            {
                "$set": {"status": "sent", "sent_at": at},
                "$inc": {"attempts": 1},
            },
        )
