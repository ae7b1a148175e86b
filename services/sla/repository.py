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
              meanwhile makes the writer compute again.
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

Only features that MongoDB and FerretDB v1 share are used (no transactions).
Upstream FerretDB applies an update as read-modify-write without isolation, so
updates that two replicas may make to one breach at the same time are verified
by reading back and repeated if lost. The clock document's fact is added with one
findAndModify: atomic on MongoDB, and on the embedded FerretDB thanks to its
patch 0004 (one lock per collection from the read to the write); an upstream
FerretDB without that patch could lose a fact two replicas add at once.
"""

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, Protocol

from pymongo import ASCENDING, ReturnDocument
from pymongo.asynchronous.database import AsyncDatabase
from pymongo.errors import BulkWriteError, DuplicateKeyError

from lapor.contracts import DeadlinesSet, EscalationLevel, Priority, State
from lapor.runtime.outbox import Outbox, ensure_outbox_index
from services.sla.clocks import Plan
from services.sla.facts import Fact, Routed, StateChange

DUPLICATE_KEY = 11000

Document = dict[str, Any]

PENDING = "pending"
CLAIMED = "claimed"

LEVEL_RANK = {level: rank for rank, level in enumerate(EscalationLevel, start=1)}
_VERIFY_ATTEMPTS = 6


@dataclass(frozen=True)
class BreachUpdate:
    """What one firing or one replan knows about a breach; merged into the record."""

    breach_id: str
    complaint_id: str
    region: str
    agency: str | None
    official: str | None
    clock: str
    round: int
    priority: str
    due_at: datetime
    seen_at: datetime  # earliest moment the breach was recorded
    late_by_s: float
    level: EscalationLevel | None = None
    level_at: datetime | None = None
    resolved_at: datetime | None = None


def breach_id(complaint_id: str, clock: str, round_: int) -> str:
    return f"{complaint_id}:{clock}:{round_}"


@dataclass(frozen=True)
class ClockState:
    """What the complaint's clock document holds for a replan."""

    facts: list[Fact]
    # Facts added so far: `save_clock` stores a summary only over this count.
    facts_added: int
    # The timers last written for the facts, as `sla_timers` documents hold them;
    # None when the document predates this record (then `sla_timers` is read).
    timers: list[Document] | None
    # The document did not exist before this fact: no timer of it can have fired.
    new: bool = False


def fact_to_doc(complaint_id: str, fact: Fact) -> Document:
    """A fact as `sla_facts` kept it; `embedded_fact` drops what the clock document says."""
    doc: Document = {"_id": fact.event_id, "complaint_id": complaint_id, "at": fact.at}
    if isinstance(fact, Routed):
        doc.update(
            kind="routed",
            round=fact.round,
            region=fact.region,
            received_at=fact.received_at,
            agency=fact.agency,
            priority=fact.priority.value,
            triage=fact.triage,
        )
    else:
        doc.update(
            kind="state",
            state=fact.state.value,
            previous_state=fact.previous_state.value if fact.previous_state else None,
            actor=fact.actor,
            agency=fact.agency,
        )
    return doc


def embedded_fact(fact: Fact) -> Document:
    doc = fact_to_doc("", fact)
    del doc["complaint_id"]
    return doc


def fact_from_doc(doc: Mapping[str, Any]) -> Fact:
    if doc["kind"] == "routed":
        return Routed(
            event_id=doc["_id"],
            at=doc["at"],
            round=int(doc["round"]),
            region=doc["region"],
            received_at=doc["received_at"],
            agency=doc.get("agency"),
            priority=Priority(doc["priority"]),
            triage=bool(doc["triage"]),
        )
    previous = doc.get("previous_state")
    return StateChange(
        event_id=doc["_id"],
        at=doc["at"],
        state=State(doc["state"]),
        previous_state=State(previous) if previous else None,
        actor=doc.get("actor"),
        agency=doc.get("agency"),
    )


def clock_summary(plan: Plan, now: datetime) -> Document:
    return {
        "region": plan.region,
        "agency": plan.agency,
        "priority": plan.priority.value,
        "state": plan.state.value,
        "received_at": plan.received_at,
        "routing_round": plan.latest_round,
        "deadlines": plan.deadlines.model_dump(),
        "paused_s": plan.paused.total_seconds(),
        "runs": [
            {
                "clock": run.clock.value,
                "round": run.round,
                "agency": run.agency,
                "priority": run.priority.value,
                "start": run.start,
                "due": run.due,
                "stopped_at": run.stopped_at,
                "paused_since": run.paused_since,
                "resumes_at": run.resumes_at,
            }
            for run in plan.runs
        ],
        "next_due_at": plan.next_due_at,
        "updated_at": now,
    }


class SlaStore(Protocol):
    """Storage the SLA engine needs; `MongoSlaStore` here, an in-memory fake in tests."""

    async def ensure_indexes(self) -> None: ...

    async def add_fact(self, complaint_id: str, fact: Fact) -> ClockState: ...
    async def clock_state(self, complaint_id: str) -> ClockState: ...
    async def save_clock(
        self,
        complaint_id: str,
        summary: Document,
        announce: Sequence[DeadlinesSet] = (),
        *,
        facts_added: int,
        timers: list[Document],
    ) -> Document | None: ...
    async def announce(self, complaint_id: str, stored: Document | None = None) -> int: ...
    async def announce_leftovers(self, older_than: timedelta) -> int: ...

    async def timers_of(self, complaint_id: str) -> list[Document]: ...
    async def insert_timers(self, docs: list[Document]) -> int: ...
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


def breach_query(
    *,
    agency: str | None,
    region: str | None,
    start: datetime | None,
    end: datetime | None,
    clock: str | None = None,
) -> Document:
    query: Document = {}
    if agency is not None:
        query["agency"] = agency
    if region is not None:
        query["region"] = region
    if clock is not None:
        query["clock"] = clock
    period: Document = {}
    if start is not None:
        period["$gte"] = start
    if end is not None:
        period["$lt"] = end
    if period:
        query["due_at"] = period
    return query


def breach_covers(doc: Mapping[str, Any], update: BreachUpdate) -> bool:
    """True when the stored record already holds everything `update` brings."""
    if doc.get("breached_at") is None or doc["breached_at"] > update.seen_at:
        return False
    if update.resolved_at is None and float(doc.get("late_by_s") or 0.0) < update.late_by_s:
        return False
    if update.level is not None:
        if int(doc.get("level_rank") or 0) < LEVEL_RANK[update.level]:
            return False
        if update.level.value not in (doc.get("escalations") or {}):
            return False
    return update.resolved_at is None or doc.get("resolved_at") is not None


class MongoSlaStore:
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
        await ensure_outbox_index(self.clocks)

    # -- facts and clock ------------------------------------------------------

    async def add_fact(self, complaint_id: str, fact: Fact) -> ClockState:
        """Add the fact (a repeated event adds nothing) and return the state with it."""
        change = {"$addToSet": {"facts": embedded_fact(fact)}, "$inc": {"facts_added": 1}}
        for _ in range(2):
            try:
                before = await self.clocks.find_one_and_update(
                    {"_id": complaint_id},
                    change,
                    upsert=True,
                    return_document=ReturnDocument.BEFORE,
                )
                break
            except DuplicateKeyError:
                continue  # another replica inserted it first: now it is an update
        else:
            raise RuntimeError(f"clock of {complaint_id}: the fact could not be added")
        if before is None:
            return ClockState(facts=[fact], facts_added=1, timers=[], new=True)
        if "facts" not in before:
            await self._adopt_old_facts(complaint_id)
        state = await self._state(complaint_id, before)
        known = {f.event_id for f in state.facts}
        facts = state.facts if fact.event_id in known else [*state.facts, fact]
        return ClockState(facts=facts, facts_added=state.facts_added + 1, timers=state.timers)

    async def clock_state(self, complaint_id: str) -> ClockState:
        doc = await self.clocks.find_one({"_id": complaint_id})
        if doc is None:
            return ClockState(facts=[], facts_added=0, timers=[])
        return await self._state(complaint_id, doc)

    async def _state(self, complaint_id: str, doc: Mapping[str, Any]) -> ClockState:
        if "facts" in doc:
            facts = [fact_from_doc(entry) for entry in doc["facts"]]
        else:
            facts = await self._old_facts(complaint_id)
        timers = doc.get("timers")
        return ClockState(
            facts=facts,
            facts_added=int(doc.get("facts_added") or 0),
            timers=list(timers) if timers is not None else None,
        )

    async def _old_facts(self, complaint_id: str) -> list[Fact]:
        docs = await self.facts_coll.find({"complaint_id": complaint_id}).to_list(None)
        return [fact_from_doc(doc) for doc in docs]

    async def _adopt_old_facts(self, complaint_id: str) -> None:
        """Copy an older document's facts from `sla_facts` into it, once."""
        facts = await self._old_facts(complaint_id)
        if facts:
            await self.clocks.update_one(
                {"_id": complaint_id},
                {"$addToSet": {"facts": {"$each": [embedded_fact(f) for f in facts]}}},
            )

    async def save_clock(
        self,
        complaint_id: str,
        summary: Document,
        announce: Sequence[DeadlinesSet] = (),
        *,
        facts_added: int,
        timers: list[Document],
    ) -> Document | None:
        """Store the clock summary, the timers written for it and, in the same write,
        the deadline announcements it calls for (the outbox), if no fact was added
        since `facts_added`; returns the stored document (None: compute again), from
        which `announce` publishes."""
        changes = dict(summary) | {"timers": timers}
        if announce:
            changes |= self._outbox().fields(complaint_id, announce, summary["updated_at"])
        return await self.clocks.find_one_and_update(
            {"_id": complaint_id, "facts_added": facts_added},
            # The version lets the relay clear all in one write when nothing changed.
            {"$set": changes, "$inc": {"version": 1}},
            return_document=ReturnDocument.AFTER,
        )

    # Without an outbox nothing can be pending: `save_clock` refuses to store it.
    async def announce(self, complaint_id: str, stored: Document | None = None) -> int:
        """Publish the complaint's pending announcements, from `stored` if given (the
        document `save_clock` returned), else as read now."""
        if self.outbox is None:
            return 0
        doc = stored if stored is not None else await self.clocks.find_one({"_id": complaint_id})
        return await self.outbox.flush(self.clocks, doc)

    async def announce_leftovers(self, older_than: timedelta) -> int:
        if self.outbox is None:
            return 0
        return await self.outbox.sweep([self.clocks], older_than=older_than)

    def _outbox(self) -> Outbox:
        if self.outbox is None:
            raise RuntimeError("this SLA store has no outbox to announce deadlines through")
        return self.outbox

    # -- timers --------------------------------------------------------------

    async def timers_of(self, complaint_id: str) -> list[Document]:
        return await self.timers.find({"complaint_id": complaint_id}).to_list(None)

    async def insert_timers(self, docs: list[Document]) -> int:
        """Insert the timers not there yet (another replica may have added some)."""
        if not docs:
            return 0
        try:
            result = await self.timers.insert_many(docs, ordered=False)
        except BulkWriteError as error:
            if any(e.get("code") != DUPLICATE_KEY for e in error.details.get("writeErrors", [])):
                raise
            return int(error.details.get("nInserted", 0))
        return len(result.inserted_ids)

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
        query: Document = {"status": PENDING, "due_at": {"$lte": now}}
        if after is not None:
            # Keyset paging past (due, last_id), written as one range on due_at plus a
            # tie-break so that the index lookup (equality, then range) still applies.
            due, last_id = after
            query["due_at"]["$gte"] = due
            query["$or"] = [{"due_at": {"$gt": due}}, {"_id": {"$gt": last_id}}]
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

    async def record_breach(self, update: BreachUpdate) -> None:
        change: Document = {
            "$setOnInsert": {
                "complaint_id": update.complaint_id,
                "region": update.region,
                "agency": update.agency,
                "official": update.official,
                "clock": update.clock,
                "round": update.round,
                "priority": update.priority,
                "due_at": update.due_at,
            },
            "$min": {"breached_at": update.seen_at},
        }
        sets: Document = {}
        highest: Document = {}
        if update.resolved_at is not None:
            # The clock stopped: how late is settled, whatever an escalation guessed.
            sets["resolved_at"] = update.resolved_at
            sets["late_by_s"] = update.late_by_s
        else:
            highest["late_by_s"] = update.late_by_s
        if update.level is not None:
            highest["level_rank"] = LEVEL_RANK[update.level]
            sets[f"escalations.{update.level.value}"] = update.level_at or update.seen_at
        if highest:
            change["$max"] = highest
        if sets:
            change["$set"] = sets
        for _ in range(_VERIFY_ATTEMPTS):
            try:
                await self.breaches_coll.update_one({"_id": update.breach_id}, change, upsert=True)
            except DuplicateKeyError:
                continue  # two first writers: the other inserted; now it is an update
            stored = await self.breaches_coll.find_one({"_id": update.breach_id})
            if stored is not None and breach_covers(stored, update):
                return
        raise RuntimeError(f"breach {update.breach_id}: update not kept after retries")

    async def breaches(
        self,
        *,
        agency: str | None,
        region: str | None,
        clock: str | None,
        start: datetime | None,
        end: datetime | None,
        limit: int,
    ) -> list[Document]:
        query = breach_query(agency=agency, region=region, start=start, end=end, clock=clock)
        cursor = self.breaches_coll.find(query).sort([("due_at", ASCENDING), ("_id", ASCENDING)])
        return await cursor.limit(limit).to_list(limit)

    async def breach_counts(
        self,
        *,
        agency: str | None,
        region: str | None,
        start: datetime | None,
        end: datetime | None,
    ) -> dict[str, int]:
        query = breach_query(agency=agency, region=region, start=start, end=end)
        pipeline = [{"$match": query}, {"$group": {"_id": "$clock", "n": {"$sum": 1}}}]
        rows = await (await self.breaches_coll.aggregate(pipeline)).to_list(None)
        return {row["_id"]: int(row["n"]) for row in rows}
