"""The SLA service's own data.

sla_clocks    one document per complaint: what SLA heard about it (`facts`:
              routing decisions and state changes, one entry per event id, added
              with `$addToSet` in the write that returns the document as it was),
              a readable summary derived from them (deadlines, runs, state), the
              timers last written for them (`timers`, so a replan need not read
              `sla_timers` back) and the deadline announcements not yet published
              (`outbox`), all stored with one conditional write: `facts_added`
              counts the facts added, and the summary is stored only over the
              count it was computed from, so a fact another replica added
              meanwhile makes the writer compute again. Until its first timer
              is due a clock keeps its timers in the document only (`timers_in`,
              `timers_due_at`): the sweep moves them to `sla_timers` then.
sla_facts     the facts as earlier versions stored them, one document per event
              id; read only for a clock document without `facts`, whose facts
              are then copied into it once.
sla_timers    the live timers: one document per firing id that is still to
              fire (`pending`) or claimed and not yet settled (`claimed`).
              Settled and cancelled timers are deleted, so the collection holds
              only what is open; the sweep reads `status = pending, due_at <=
              now` through the (status, due_at, _id) index in due order.
sla_fired     the ledger of firings: the insert of `_id = firing id` is the claim
              (a unique key is atomic on MongoDB and on FerretDB); it keeps the
              payload, so a firing claimed but not settled is re-published
              exactly as it was built.
sla_breaches  the accountability record, one document per breached clock run.

The clock document is kept by `services.sla.clock_store`, the breaches by
`services.sla.breach_store`; timers and the ledger here.

Only features that MongoDB and FerretDB v1 share are used (no transactions).
Upstream FerretDB applies an update as read-modify-write without isolation, so
updates that two replicas may make to one breach at the same time are verified
by reading back and repeated if lost. The clock document's fact is added with one
findAndModify: atomic on MongoDB, and on the embedded FerretDB thanks to its
patch 0004 (one lock per collection from the read to the write); an upstream
FerretDB without that patch could lose a fact two replicas add at once.
"""

from collections.abc import Sequence
from datetime import datetime, timedelta
from typing import Any, Protocol

from pymongo import ASCENDING
from pymongo.asynchronous.database import AsyncDatabase
from pymongo.errors import BulkWriteError, DuplicateKeyError

from lapor.contracts import DeadlinesSet
from lapor.runtime.db import refused_as_duplicates
from lapor.runtime.outbox import Outbox, ensure_outbox_index
from services.sla.breach_store import BreachStore, BreachUpdate
from services.sla.clock_store import ClockState, ClockStore, due_query
from services.sla.facts import Fact

Document = dict[str, Any]

PENDING = "pending"
CLAIMED = "claimed"


class SlaStore(Protocol):
    """Storage the SLA engine needs; `MongoSlaStore` here, an in-memory fake in tests."""

    async def ensure_indexes(self) -> None: ...

    async def add_fact(self, complaint_id: str, fact: Fact) -> ClockState: ...
    async def clock_state(self, complaint_id: str) -> ClockState: ...
    async def state_of(self, complaint_id: str, doc: Document) -> ClockState: ...
    async def clocks_due(
        self, now: datetime, after: tuple[datetime, str] | None, limit: int
    ) -> list[Document]: ...
    async def save_clock(
        self,
        complaint_id: str,
        summary: Document,
        announce: Sequence[DeadlinesSet] = (),
        *,
        facts_added: int,
        timers: list[Document],
        in_document: bool = False,
    ) -> Document | None: ...
    async def create_clock(
        self,
        complaint_id: str,
        fact: Fact,
        summary: Document,
        announce: Sequence[DeadlinesSet],
        timers: list[Document],
    ) -> Document | None: ...
    async def announce(self, complaint_id: str, stored: Document | None = None) -> int: ...
    async def announce_leftovers(self, older_than: timedelta) -> int: ...

    async def timers_of(self, complaint_id: str) -> list[Document]: ...
    async def insert_timers(self, docs: list[Document]) -> set[str]: ...
    async def update_pending_timer(self, timer_id: str, fields: Document) -> None: ...
    async def delete_pending_timer(self, timer_id: str) -> None: ...
    async def delete_timer(self, timer_id: str) -> None: ...
    async def mark_timer_claimed(self, timer_id: str, at: datetime) -> None: ...
    async def release_timer(self, timer_id: str) -> None: ...
    async def due_timers(
        self, now: datetime, after: tuple[datetime, str] | None, limit: int
    ) -> list[Document]: ...
    async def claimed_timers(
        self, claimed_before: datetime | None, limit: int
    ) -> list[Document]: ...

    async def claim(self, doc: Document) -> bool: ...
    async def firing(self, firing_id: str) -> Document | None: ...
    async def fired_ids(self, complaint_id: str) -> set[str]: ...
    async def settle(self, firing_id: str, at: datetime) -> bool: ...
    async def unsettled(self, limit: int) -> list[Document]: ...

    async def record_breach(self, update: BreachUpdate) -> None: ...
    async def breaches(
        self,
        *,
        agency: str | None,
        region: str | None,
        clock: str | None,
        start: datetime | None,
        end: datetime | None,
        limit: int,
    ) -> list[Document]: ...
    async def breach_counts(
        self,
        *,
        agency: str | None,
        region: str | None,
        start: datetime | None,
        end: datetime | None,
    ) -> dict[str, int]: ...


class MongoSlaStore(ClockStore, BreachStore):
    def __init__(self, db: AsyncDatabase[Document], outbox: Outbox | None = None) -> None:
        self.outbox = outbox
        self.facts_coll = db["sla_facts"]
        self.clocks = db["sla_clocks"]
        self.timers = db["sla_timers"]
        self.fired = db["sla_fired"]
        self.breaches_coll = db["sla_breaches"]

    async def ensure_indexes(self) -> None:
        await self.facts_coll.create_index([("complaint_id", ASCENDING)])
        # The sweep: equality on status, range on due_at, in (due_at, _id) order.
        await self.timers.create_index(
            [("status", ASCENDING), ("due_at", ASCENDING), ("_id", ASCENDING)]
        )
        await self.timers.create_index([("complaint_id", ASCENDING)])
        await self.fired.create_index([("settled_at", ASCENDING)])
        await self.fired.create_index([("complaint_id", ASCENDING)])
        await self.breaches_coll.create_index([("agency", ASCENDING), ("due_at", ASCENDING)])
        await self.breaches_coll.create_index([("due_at", ASCENDING)])
        # Clocks keeping their timers in the document, by the first one's moment.
        await self.clocks.create_index(
            [("timers_in", ASCENDING), ("timers_due_at", ASCENDING), ("_id", ASCENDING)]
        )
        await ensure_outbox_index(self.clocks)

    # -- facts and clock ------------------------------------------------------

    # -- timers --------------------------------------------------------------

    async def timers_of(self, complaint_id: str) -> list[Document]:
        return await self.timers.find({"complaint_id": complaint_id}).to_list(None)

    async def insert_timers(self, docs: list[Document]) -> set[str]:
        """Insert the timers not there yet; returns the ids found there already
        (another replica, or an attempt that did not finish, added them)."""
        if not docs:
            return set()
        try:
            await self.timers.insert_many(docs, ordered=False)
        except BulkWriteError as error:
            return {docs[index]["_id"] for index in refused_as_duplicates(error)}
        return set()

    async def update_pending_timer(self, timer_id: str, fields: Document) -> None:
        await self.timers.update_one({"_id": timer_id, "status": PENDING}, {"$set": fields})

    async def delete_pending_timer(self, timer_id: str) -> None:
        await self.timers.delete_one({"_id": timer_id, "status": PENDING})

    async def delete_timer(self, timer_id: str) -> None:
        await self.timers.delete_one({"_id": timer_id})

    async def mark_timer_claimed(self, timer_id: str, at: datetime) -> None:
        await self.timers.update_one(
            {"_id": timer_id}, {"$set": {"status": CLAIMED, "claimed_at": at}}
        )

    async def release_timer(self, timer_id: str) -> None:
        await self.timers.update_one(
            {"_id": timer_id, "status": CLAIMED},
            {"$set": {"status": PENDING}, "$unset": {"claimed_at": ""}},
        )

    async def due_timers(
        self, now: datetime, after: tuple[datetime, str] | None, limit: int
    ) -> list[Document]:
        query = due_query({"status": PENDING}, "due_at", now, after)
        cursor = self.timers.find(query).sort([("due_at", ASCENDING), ("_id", ASCENDING)])
        return await cursor.limit(limit).to_list(limit)

    async def claimed_timers(self, claimed_before: datetime | None, limit: int) -> list[Document]:
        query: Document = {"status": CLAIMED}
        if claimed_before is not None:
            query["claimed_at"] = {"$lte": claimed_before}
        return (
            await self.timers.find(query).sort("claimed_at", ASCENDING).limit(limit).to_list(limit)
        )

    # -- ledger --------------------------------------------------------------

    async def claim(self, doc: Document) -> bool:
        try:
            await self.fired.insert_one(doc)
        except DuplicateKeyError:
            return False
        return True

    async def firing(self, firing_id: str) -> Document | None:
        return await self.fired.find_one({"_id": firing_id})

    async def fired_ids(self, complaint_id: str) -> set[str]:
        cursor = self.fired.find({"complaint_id": complaint_id}, {"_id": 1})
        return {doc["_id"] async for doc in cursor}

    async def settle(self, firing_id: str, at: datetime) -> bool:
        """Mark a claim settled; True only for the call that did it."""
        result = await self.fired.update_one(
            {"_id": firing_id, "settled_at": None}, {"$set": {"settled_at": at}}
        )
        return result.modified_count == 1

    async def unsettled(self, limit: int) -> list[Document]:
        cursor = self.fired.find({"settled_at": None}).sort("claimed_at", ASCENDING)
        return await cursor.limit(limit).to_list(limit)

    # -- breaches ------------------------------------------------------------
