"""What the complaint store keeps per sender: each inbound message counted once,
the rate notices claimed, and the sender's own recent complaints."""

from datetime import datetime
from typing import Any

from pymongo import DESCENDING
from pymongo.asynchronous.collection import AsyncCollection
from pymongo.errors import DuplicateKeyError

Document = dict[str, Any]


class SenderRecords:
    complaints: AsyncCollection[Document]
    sender_messages: AsyncCollection[Document]
    rate_notices: AsyncCollection[Document]

    async def record_sender_message(self, source_key: str, phone_hash: str, at: datetime) -> bool:
        """Count each inbound message once, whatever the gateway retries; True the
        first time."""
        try:
            await self.sender_messages.insert_one(
                {"_id": source_key, "phone_hash": phone_hash, "at": at}
            )
        except DuplicateKeyError:
            return False
        return True

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
