"""The API tokens of partners and login sessions, as the complaint store keeps them."""

from datetime import UTC, datetime
from typing import Any

from pymongo import ASCENDING
from pymongo.asynchronous.collection import AsyncCollection

from services.intake.auth import LAST_USE_EVERY, needs_last_use, new_token_id, token_refusal

Document = dict[str, Any]


class TokenStore:
    tokens: AsyncCollection[Document]

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
        # Login sessions are tokens too, but an account's, listed with the accounts.
        machines = {"kind": {"$ne": "session"}}
        return await self.tokens.find(machines).sort("created_at", ASCENDING).to_list(None)

    async def revoke_token(self, token_id: str, now: datetime) -> Document | None:
        """Revoke by public id (a second revocation keeps the first time); None if unknown."""
        await self.tokens.update_one(
            {"id": token_id, "revoked_at": None}, {"$set": {"revoked_at": now}}
        )
        return await self.tokens.find_one({"id": token_id})

    async def add_token(self, doc: Document) -> None:
        await self.tokens.insert_one(doc)
