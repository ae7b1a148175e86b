"""The `dead_letters` collection: one record per failed (message, consumer).

A payload may carry a citizen's phone number, so it is stored sealed to the
public key (`payload_sealed`, bound to the record id); a store that holds the
private key shows it as `payload_b64`.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any, Protocol

from lapor.runtime.dead_letters import (
    COLLECTION,
    NOTES,
    Document,
    failure_id,
    keep_dead_letter,
)
from lapor.runtime.pii import PiiOpener, PiiSealer
from services.deadletters.domain import PENDING


class DeadLetterRepository(Protocol):
    @property
    def opens_payloads(self) -> bool: ...

    async def add(self, record: Document) -> bool: ...

    async def get(self, record_id: str) -> Document | None: ...

    async def page(
        self,
        *,
        pending_only: bool = False,
        settled_only: bool = False,
        after: str | None = None,
        until: datetime | None = None,
        limit: int = 500,
    ) -> tuple[list[Document], int]: ...

    async def count(self, *, pending_only: bool = False, until: datetime | None = None) -> int: ...

    async def mark_replayed(self, record_id: str, msg_id: str, at: datetime) -> None: ...

    async def mark_resolved(self, record_id: str, reason: str, by: str, at: datetime) -> str: ...

    async def last_error(self, stream: str, sequence: int, consumer: str) -> str | None: ...


class DeadLetterStore:
    """The collection in MongoDB (FerretDB), payloads sealed."""

    def __init__(
        self,
        db: Any,
        sealer: PiiSealer | None = None,
        opener: PiiOpener | None = None,
        *,
        leave_sealed: bool = False,
    ) -> None:
        self.db = db
        self.collection = db[COLLECTION]
        self.notes = db[NOTES]
        # An opener also seals; either may be absent for work that needs neither
        # (resolving a record).
        self._sealer = sealer or (opener.sealer() if opener is not None else None)
        self._opener = opener
        # Without the private key, list records with no payload rather than refuse
        # (the HTTP API where the process holds only the public key).
        self._leave_sealed = leave_sealed and opener is None

    @property
    def opens_payloads(self) -> bool:
        return self._opener is not None

    @property
    def sealer(self) -> PiiSealer:
        if self._sealer is None:
            raise RuntimeError("storing a dead letter needs LAPOR_PII_PUBLIC_KEY")
        return self._sealer

    @property
    def opener(self) -> PiiOpener:
        if self._opener is None:
            raise RuntimeError("dead-letter payloads open only with LAPOR_PII_KEY")
        return self._opener

    async def add(self, record: Document) -> bool:
        """Store a record; False when it is already there (a repeated advisory)."""
        return await keep_dead_letter(self.db, record, self.sealer)

    async def get(self, record_id: str) -> Document | None:
        found: Document | None = await self.collection.find_one({"_id": record_id})
        return self._opened(found) if found is not None else None

    async def records(self, *, pending_only: bool = False, limit: int = 500) -> list[Document]:
        found, _more = await self.page(pending_only=pending_only, limit=limit)
        return found

    async def page(
        self,
        *,
        pending_only: bool = False,
        settled_only: bool = False,
        after: str | None = None,
        until: datetime | None = None,
        limit: int = 500,
    ) -> tuple[list[Document], int]:
        """Up to `limit` records, oldest first, that follow the record `after`, and how
        many more follow them. Records stored after `until` are left out, so that
        working through all pages ends even while new ones arrive. `settled_only`:
        those replayed or resolved."""
        query = self._query(pending_only, until, settled_only)
        if after is not None:
            mark = await self.collection.find_one({"_id": after}, {"stored_at": 1})
            if mark is None:
                raise LookupError(f"no dead letter {after}")
            # Keyset paging on (stored_at, _id): stable while records change state.
            keyset: Document = {
                "$or": [
                    {"stored_at": {"$gt": mark["stored_at"]}},
                    {"stored_at": mark["stored_at"], "_id": {"$gt": after}},
                ]
            }
            query = {"$and": [query, keyset]} if "$or" in query else {**query, **keyset}
        cursor = self.collection.find(query).sort([("stored_at", 1), ("_id", 1)]).limit(limit)
        found = [self._opened(doc) async for doc in cursor]
        more = 0
        if len(found) == limit:
            more = await self.collection.count_documents(query) - len(found)
        return found, more

    async def count(self, *, pending_only: bool = False, until: datetime | None = None) -> int:
        return int(await self.collection.count_documents(self._query(pending_only, until)))

    @staticmethod
    def _query(pending_only: bool, until: datetime | None, settled_only: bool = False) -> Document:
        query: Document = dict(PENDING) if pending_only else {}
        if settled_only:
            query["$or"] = [{"replayed_at": {"$ne": None}}, {"resolved_at": {"$ne": None}}]
        if until is not None:
            query["stored_at"] = {"$lte": until}
        return query

    def _opened(self, stored: Document) -> Document:
        record = {k: v for k, v in stored.items() if k != "payload_sealed"}
        if "payload_b64" not in stored and self._leave_sealed:
            record["payload_b64"] = None
        elif "payload_b64" not in stored:
            sealed = stored.get("payload_sealed")
            record["payload_b64"] = (
                None if sealed is None else self.opener.open(sealed, str(stored["_id"]))
            )
        return record

    async def mark_replayed(self, record_id: str, msg_id: str, at: datetime) -> None:
        await self.collection.update_one(
            {"_id": record_id},
            {"$set": {"replayed_at": at, "replay_msg_id": msg_id}, "$inc": {"replays": 1}},
        )

    async def mark_resolved(self, record_id: str, reason: str, by: str, at: datetime) -> str:
        """Settle a record without a replay: "resolved", or "already" / "missing"."""
        settled = await self.collection.find_one_and_update(
            {"_id": record_id, "resolved_at": None},
            {"$set": {"resolved_at": at, "resolved_by": by, "resolution": reason}},
        )
        if settled is not None:
            return "resolved"
        return "already" if await self.collection.find_one({"_id": record_id}) else "missing"

    async def last_error(self, stream: str, sequence: int, consumer: str) -> str | None:
        note = await self.notes.find_one({"_id": failure_id(stream, sequence, consumer)})
        return note.get("error") if note else None


class InMemoryDeadLetters:
    """The repository in memory, for unit tests: payloads kept as they are."""

    def __init__(self, *, opens_payloads: bool = True) -> None:
        self.records: dict[str, Document] = {}
        # failure id → the last error noted for it (`delivery_failures`).
        self.notes: dict[str, str] = {}
        self._opens = opens_payloads

    @property
    def opens_payloads(self) -> bool:
        return self._opens

    async def add(self, record: Document) -> bool:
        if record["_id"] in self.records:
            return False
        self.records[record["_id"]] = dict(record)
        return True

    async def get(self, record_id: str) -> Document | None:
        found = self.records.get(record_id)
        return self._shown(found) if found is not None else None

    async def page(
        self,
        *,
        pending_only: bool = False,
        settled_only: bool = False,
        after: str | None = None,
        until: datetime | None = None,
        limit: int = 500,
    ) -> tuple[list[Document], int]:
        chosen = sorted(
            (
                r
                for r in self.records.values()
                if self._matches(r, pending_only, settled_only, until)
            ),
            key=lambda r: (r["stored_at"], r["_id"]),
        )
        if after is not None:
            mark = self.records.get(after)
            if mark is None:
                raise LookupError(f"no dead letter {after}")
            chosen = [r for r in chosen if (r["stored_at"], r["_id"]) > (mark["stored_at"], after)]
        return [self._shown(r) for r in chosen[:limit]], max(0, len(chosen) - limit)

    async def count(self, *, pending_only: bool = False, until: datetime | None = None) -> int:
        return sum(self._matches(r, pending_only, False, until) for r in self.records.values())

    @staticmethod
    def _matches(
        record: Document, pending_only: bool, settled_only: bool, until: datetime | None
    ) -> bool:
        settled = record.get("replayed_at") is not None or record.get("resolved_at") is not None
        if (pending_only and settled) or (settled_only and not settled):
            return False
        return until is None or record["stored_at"] <= until

    def _shown(self, record: Document) -> Document:
        shown = dict(record)
        if not self._opens:
            shown["payload_b64"] = None
        return shown

    async def mark_replayed(self, record_id: str, msg_id: str, at: datetime) -> None:
        if (record := self.records.get(record_id)) is not None:
            record.update(
                replayed_at=at, replay_msg_id=msg_id, replays=record.get("replays", 0) + 1
            )

    async def mark_resolved(self, record_id: str, reason: str, by: str, at: datetime) -> str:
        record = self.records.get(record_id)
        if record is None:
            return "missing"
        if record.get("resolved_at") is not None:
            return "already"
        record.update(resolved_at=at, resolved_by=by, resolution=reason)
        return "resolved"

    async def last_error(self, stream: str, sequence: int, consumer: str) -> str | None:
        return self.notes.get(failure_id(stream, sequence, consumer))
