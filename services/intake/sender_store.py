"""What the complaint store keeps per sender: each inbound message counted once,
the rate notices claimed, and the sender's own recent complaints."""

import hashlib
from datetime import datetime, timedelta
from typing import Any

from pymongo import DESCENDING, ReturnDocument
from pymongo.asynchronous.collection import AsyncCollection
from pymongo.errors import DuplicateKeyError

from lapor.runtime.write_behind import WriteBehind
from services.intake.guard import SenderMessages

Document = dict[str, Any]

# How long a message is kept in its sender's record: longer than any window that
# counts messages (a day), so a gateway's retry, which comes within hours, is told
# from a new message. An older retry finds its complaint by the source's unique key.
KEPT_FOR = timedelta(days=2)


def _message_field(source_key: str) -> str:
    # A source key may hold dots or a leading `$`, which a field name may not.
    return "m." + hashlib.blake2b(source_key.encode(), digest_size=12).hexdigest()


class SenderRecords:
    complaints: AsyncCollection[Document]
    sender_activity: AsyncCollection[Document]
    rate_notices: AsyncCollection[Document]
    deferred: WriteBehind | None

    async def record_sender_message(
        self, source_key: str, phone_hash: str, at: datetime
    ) -> SenderMessages:
        """Count each inbound message once, whatever the gateway retries, and return
        the sender's kept messages: one command, in one document per sender.

        The message's field missing is the condition of the write, so a repeat
        matches nothing, and its upsert meets the sender's `_id`. So does the
        first message of a sender that another replica is storing at the same
        moment: written again, it finds the document there and is told apart."""
        field = _message_field(source_key)
        for _ in range(2):
            try:
                doc = await self.sender_activity.find_one_and_update(
                    {"_id": phone_hash, field: {"$exists": False}},
                    {"$set": {field: at}},
                    upsert=True,
                    return_document=ReturnDocument.AFTER,
                )
            except DuplicateKeyError:
                continue
            return SenderMessages(True, await self._kept(phone_hash, doc, at))
        doc = await self.sender_activity.find_one({"_id": phone_hash})
        return SenderMessages(False, await self._kept(phone_hash, doc, at))

    async def _kept(
        self, phone_hash: str, doc: Document | None, at: datetime
    ) -> tuple[datetime, ...]:
        """The document's message times; those older than KEPT_FOR are removed after,
        with the deferred writes (or at once without them)."""
        messages: dict[str, datetime] = (doc or {}).get("m", {})
        stale = {f"m.{key}": "" for key, t in messages.items() if t < at - KEPT_FOR}
        if stale:
            prune = ({"_id": phone_hash}, {"$unset": stale})
            if self.deferred is not None:
                self.deferred.update(self.sender_activity.name, *prune)
            else:
                await self.sender_activity.update_one(*prune)
        return tuple(t for t in messages.values() if t >= at - KEPT_FOR)

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
