"""The complaint's clock document (`sla_clocks`): the facts SLA heard, the summary
computed from them, the timers last written for them and the deadline
announcements still to publish, with the older `sla_facts` read once."""

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace
from datetime import datetime, timedelta
from typing import Any

from pymongo import ASCENDING, ReturnDocument
from pymongo.asynchronous.collection import AsyncCollection
from pymongo.errors import DuplicateKeyError

from lapor.contracts import DeadlinesSet, Priority, State
from lapor.runtime.outbox import Outbox
from services.sla.clocks import Plan
from services.sla.facts import Fact, Routed, StateChange

Document = dict[str, Any]


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
    # The timers are kept in this document only, until the first is due (see
    # `IN_DOCUMENT`): none is in `sla_timers` but what a replica left there
    # while moving them.
    in_document: bool = False


# The value of `timers_in` while a clock's timers are kept in its document: a
# complaint answered before its first warning never needs a timer document.
# `timers_due_at` is the first one's moment; the sweep finds the documents due
# through the (timers_in, timers_due_at, _id) index and moves their timers to
# `sla_timers`, where it fires them.
IN_DOCUMENT = "document"


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


def due_query(
    query: Document, field: str, now: datetime, after: tuple[datetime, str] | None
) -> Document:
    """`query` and `field` due by `now`, past the keyset (due, last_id) if given: one
    range on the field plus a tie-break, so that the index lookup (equality, then
    range) still applies."""
    query = {**query, field: {"$lte": now}}
    if after is not None:
        due, last_id = after
        query[field]["$gte"] = due
        query["$or"] = [{field: {"$gt": due}}, {"_id": {"$gt": last_id}}]
    return query


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


class ClockStore:
    outbox: Outbox | None
    facts_coll: AsyncCollection[Document]
    clocks: AsyncCollection[Document]

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
        state = await self.state_of(complaint_id, before)
        known = {f.event_id for f in state.facts}
        facts = state.facts if fact.event_id in known else [*state.facts, fact]
        return replace(state, facts=facts, facts_added=state.facts_added + 1)

    async def clock_state(self, complaint_id: str) -> ClockState:
        doc = await self.clocks.find_one({"_id": complaint_id})
        if doc is None:
            return ClockState(facts=[], facts_added=0, timers=[])
        return await self.state_of(complaint_id, doc)

    async def state_of(self, complaint_id: str, doc: Mapping[str, Any]) -> ClockState:
        """The state a clock document holds (older documents: facts read from `sla_facts`)."""
        if "facts" in doc:
            facts = [fact_from_doc(entry) for entry in doc["facts"]]
        else:
            facts = await self._old_facts(complaint_id)
        timers = doc.get("timers")
        return ClockState(
            facts=facts,
            facts_added=int(doc.get("facts_added") or 0),
            timers=list(timers) if timers is not None else None,
            in_document=doc.get("timers_in") == IN_DOCUMENT,
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
        in_document: bool = False,
    ) -> Document | None:
        """Store the clock summary, the timers written for it and, in the same write,
        the deadline announcements it calls for (the outbox), if no fact was added
        since `facts_added` and the timers are still where `in_document` says;
        returns the stored document (None: compute again), from which `announce`
        publishes."""
        changes = dict(summary) | {"timers": timers}
        if announce:
            changes |= self._outbox().fields(complaint_id, announce, summary["updated_at"])
        kept = IN_DOCUMENT if in_document else {"$ne": IN_DOCUMENT}
        return await self.clocks.find_one_and_update(
            {"_id": complaint_id, "facts_added": facts_added, "timers_in": kept},
            # The version lets the relay clear all in one write when nothing changed.
            {"$set": changes, "$inc": {"version": 1}},
            return_document=ReturnDocument.AFTER,
        )

    async def create_clock(
        self,
        complaint_id: str,
        fact: Fact,
        summary: Document,
        announce: Sequence[DeadlinesSet],
        timers: list[Document],
    ) -> Document | None:
        """The clock document of a complaint not heard of before, as `add_fact` and
        `save_clock` would leave it, in one insert; None if it exists already."""
        doc = {"_id": complaint_id, "facts": [embedded_fact(fact)], "facts_added": 1}
        doc |= dict(summary) | {"timers": timers, "version": 1}
        if announce:
            doc = self._outbox().document(doc, announce, summary["updated_at"])
        try:
            await self.clocks.insert_one(doc)
        except DuplicateKeyError:
            return None
        return doc

    # Without an outbox nothing can be pending: `save_clock` refuses to store it.
    async def announce(self, complaint_id: str, stored: Document | None = None) -> int:
        """Publish the complaint's pending announcements, from `stored` if given (the
        document `save_clock` returned), else as read now."""
        if self.outbox is None:
            return 0
        doc = stored if stored is not None else await self.clocks.find_one({"_id": complaint_id})
        return await self.outbox.flush(self.clocks, doc)

    async def clocks_due(
        self, now: datetime, after: tuple[datetime, str] | None, limit: int
    ) -> list[Document]:
        """Clock documents keeping timers of which the first is due by `now`, in
        (timers_due_at, _id) order, after the keyset `after`."""
        query = due_query({"timers_in": IN_DOCUMENT}, "timers_due_at", now, after)
        cursor = self.clocks.find(query).sort([("timers_due_at", ASCENDING), ("_id", ASCENDING)])
        return await cursor.limit(limit).to_list(limit)

    async def announce_leftovers(self, older_than: timedelta) -> int:
        if self.outbox is None:
            return 0
        return await self.outbox.sweep([self.clocks], older_than=older_than)

    def _outbox(self) -> Outbox:
        if self.outbox is None:
            raise RuntimeError("this SLA store has no outbox to announce deadlines through")
        return self.outbox
