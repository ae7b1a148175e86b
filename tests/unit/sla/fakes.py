"""In-memory stand-ins for the SLA service's storage, publishers and clock.

`MemorySlaStore` behaves like `MongoSlaStore` on the points the engine relies on:
unique ids (a second insert fails), datetimes come back in UTC truncated to
milliseconds, the due query is ordered by (due_at, _id).
"""

from __future__ import annotations

import asyncio
import copy
from collections.abc import Mapping, Sequence
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from typing import Any

from pydantic import BaseModel

from lapor.contracts import (
    ComplaintRouted,
    ComplaintStateChanged,
    DeadlinesSet,
    Priority,
    State,
)
from services.sla.breach_store import LEVEL_RANK, BreachUpdate
from services.sla.clock_store import IN_DOCUMENT, ClockState, embedded_fact, fact_from_doc
from services.sla.facts import Fact, to_ms
from services.sla.firing import MODELS
from services.sla.repository import CLAIMED, PENDING, Document
from tests.factories import complaint_routed


def bson(value: Any) -> Any:
    """What a value looks like after a round trip through the database."""
    if isinstance(value, datetime):
        return to_ms(value.astimezone(UTC))
    if isinstance(value, Mapping):
        return {key: bson(item) for key, item in value.items()}
    if isinstance(value, list | tuple):
        return [bson(item) for item in value]
    return copy.deepcopy(value)


def _due_after(
    docs: list[Document],
    field: str,
    now: datetime,
    after: tuple[datetime, str] | None,
    limit: int,
) -> list[Document]:
    due = sorted((d for d in docs if d[field] <= now), key=lambda d: (d[field], d["_id"]))
    if after is not None:
        due = [d for d in due if (d[field], d["_id"]) > (after[0], after[1])]
    return [bson(d) for d in due[:limit]]


class MemorySlaStore:
    def __init__(self) -> None:
        self.clocks: dict[str, Document] = {}
        self.timers: dict[str, Document] = {}
        self.fired: dict[str, Document] = {}
        self.breach_docs: dict[str, Document] = {}
        self.calls: list[str] = []
        # Deadline announcements stored with the clock summary, not yet published.
        self.pending: dict[str, dict[str, DeadlinesSet]] = {}
        self.deadlines: RecordingPublisher | None = None

    async def _io(self, name: str) -> None:
        # A real database call gives other tasks (another replica) their turn.
        self.calls.append(name)
        await asyncio.sleep(0)

    async def ensure_indexes(self) -> None:
        return None

    # -- facts and clock: one document per complaint, each write atomic as on MongoDB
    async def add_fact(self, complaint_id: str, fact: Fact) -> ClockState:
        await self._io("add_fact")
        before = copy.deepcopy(self.clocks.get(complaint_id))
        doc = self.clocks.setdefault(complaint_id, {"_id": complaint_id})
        entry = bson(embedded_fact(fact))
        facts = doc.setdefault("facts", [])
        if entry not in facts:
            facts.append(entry)
        doc["facts_added"] = int(doc.get("facts_added") or 0) + 1
        if before is None:
            return ClockState(facts=[fact], facts_added=1, timers=[], new=True)
        state = self._state(before)
        known = {f.event_id for f in state.facts}
        facts_with = state.facts if fact.event_id in known else [*state.facts, fact]
        return replace(state, facts=facts_with, facts_added=state.facts_added + 1)

    async def clock_state(self, complaint_id: str) -> ClockState:
        await self._io("clock_state")
        doc = self.clocks.get(complaint_id)
        if doc is None:
            return ClockState(facts=[], facts_added=0, timers=[])
        return self._state(doc)

    @staticmethod
    def _state(doc: Document) -> ClockState:
        timers = doc.get("timers")
        return ClockState(
            facts=[fact_from_doc(bson(entry)) for entry in doc.get("facts", [])],
            facts_added=int(doc.get("facts_added") or 0),
            timers=bson(timers) if timers is not None else None,
            in_document=doc.get("timers_in") == IN_DOCUMENT,
        )

    async def state_of(self, complaint_id: str, doc: Document) -> ClockState:
        return self._state(doc)

    async def clocks_due(
        self, now: datetime, after: tuple[datetime, str] | None, limit: int
    ) -> list[Document]:
        await self._io("clocks_due")
        return _due_after(
            [d for d in self.clocks.values() if d.get("timers_in") == IN_DOCUMENT],
            "timers_due_at",
            now,
            after,
            limit,
        )

    def facts_of(self, complaint_id: str) -> list[Fact]:
        return self._state(self.clocks.get(complaint_id, {})).facts

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
        await self._io("save_clock")
        doc = self.clocks.get(complaint_id)
        if doc is None or doc.get("facts_added") != facts_added:
            return None
        if (doc.get("timers_in") == IN_DOCUMENT) != in_document:
            return None
        doc.update(bson(summary), timers=bson(timers))
        pending = self.pending.setdefault(complaint_id, {})
        pending.update({event.event_id: event for event in announce})
        return bson(doc)

    async def create_clock(
        self,
        complaint_id: str,
        fact: Fact,
        summary: Document,
        announce: Sequence[DeadlinesSet],
        timers: list[Document],
    ) -> Document | None:
        await self._io("create_clock")
        if complaint_id in self.clocks:
            return None
        doc = {"_id": complaint_id, "facts": [bson(embedded_fact(fact))], "facts_added": 1}
        self.clocks[complaint_id] = doc | bson(summary) | {"timers": bson(timers)}
        self.pending.setdefault(complaint_id, {}).update({e.event_id: e for e in announce})
        return bson(self.clocks[complaint_id])

    async def announce(self, complaint_id: str, stored: Document | None = None) -> int:
        if self.deadlines is None:
            raise RuntimeError("no publisher for deadline announcements")
        pending = self.pending.get(complaint_id, {})
        published = 0
        for event_id, event in list(pending.items()):
            await self.deadlines.publish(event, msg_id=event_id)
            del pending[event_id]
            published += 1
        return published

    async def announce_leftovers(self, older_than: timedelta) -> int:
        return sum([await self.announce(complaint_id) for complaint_id in list(self.pending)])

    # -- timers
    def open_timers(self) -> dict[str, Document]:
        """Every timer still to fire: in `sla_timers`, or kept in its clock document
        (as recorded there, with what its id says)."""
        kept: dict[str, Document] = {}
        for clock in self.clocks.values():
            if clock.get("timers_in") != IN_DOCUMENT:
                continue
            for record in clock["timers"]:
                complaint_id, clock_name, point, round_ = record["_id"].rsplit(":", 3)
                kept[record["_id"]] = bson(record) | {
                    "complaint_id": complaint_id,
                    "clock": clock_name,
                    "point": point,
                    "round": int(round_),
                    "status": PENDING,
                }
        return kept | {key: bson(doc) for key, doc in self.timers.items()}

    async def timers_of(self, complaint_id: str) -> list[Document]:
        await self._io("timers_of")
        return [bson(d) for d in self.timers.values() if d["complaint_id"] == complaint_id]

    async def insert_timers(self, docs: list[Document]) -> set[str]:
        await self._io("insert_timers")
        there = set()
        for doc in docs:
            if doc["_id"] in self.timers:
                there.add(doc["_id"])
            else:
                self.timers[doc["_id"]] = bson(doc)
        return there

    async def update_pending_timer(self, timer_id: str, fields: Document) -> None:
        doc = self.timers.get(timer_id)
        if doc is not None and doc["status"] == PENDING:
            doc.update(bson(fields))

    async def delete_pending_timer(self, timer_id: str) -> None:
        doc = self.timers.get(timer_id)
        if doc is not None and doc["status"] == PENDING:
            del self.timers[timer_id]

    async def delete_timer(self, timer_id: str) -> None:
        self.timers.pop(timer_id, None)

    async def mark_timer_claimed(self, timer_id: str, at: datetime) -> None:
        doc = self.timers.get(timer_id)
        if doc is not None:
            doc.update(status=CLAIMED, claimed_at=bson(at))

    async def release_timer(self, timer_id: str) -> None:
        doc = self.timers.get(timer_id)
        if doc is not None and doc["status"] == CLAIMED:
            doc["status"] = PENDING
            doc.pop("claimed_at", None)

    async def due_timers(
        self, now: datetime, after: tuple[datetime, str] | None, limit: int
    ) -> list[Document]:
        await self._io("due_timers")
        pending = [d for d in self.timers.values() if d["status"] == PENDING]
        return _due_after(pending, "due_at", now, after, limit)

    async def claimed_timers(self, claimed_before: datetime | None, limit: int) -> list[Document]:
        found = [
            d
            for d in self.timers.values()
            if d["status"] == CLAIMED
            and (claimed_before is None or d["claimed_at"] <= claimed_before)
        ]
        return [bson(d) for d in sorted(found, key=lambda d: d["claimed_at"])[:limit]]

    # -- ledger
    async def claim(self, doc: Document) -> bool:
        await self._io("claim")
        if doc["_id"] in self.fired:
            return False
        self.fired[doc["_id"]] = bson(doc)
        return True

    async def firing(self, firing_id: str) -> Document | None:
        await self._io("firing")
        doc = self.fired.get(firing_id)
        return bson(doc) if doc is not None else None

    async def fired_ids(self, complaint_id: str) -> set[str]:
        await self._io("fired_ids")
        return {key for key, doc in self.fired.items() if doc["complaint_id"] == complaint_id}

    async def settle(self, firing_id: str, at: datetime) -> bool:
        doc = self.fired.get(firing_id)
        if doc is None or doc.get("settled_at") is not None:
            return False
        doc["settled_at"] = bson(at)
        return True

    async def unsettled(self, limit: int) -> list[Document]:
        found = [d for d in self.fired.values() if d.get("settled_at") is None]
        return [bson(d) for d in sorted(found, key=lambda d: d["claimed_at"])[:limit]]

    # -- breaches
    async def record_breach(self, update: BreachUpdate) -> None:
        doc = self.breach_docs.get(update.breach_id)
        if doc is None:
            doc = bson(
                {
                    "_id": update.breach_id,
                    "complaint_id": update.complaint_id,
                    "region": update.region,
                    "agency": update.agency,
                    "official": update.official,
                    "clock": update.clock,
                    "round": update.round,
                    "priority": update.priority,
                    "due_at": update.due_at,
                }
            )
            self.breach_docs[update.breach_id] = doc
        seen = bson(update.seen_at)
        if doc.get("breached_at") is None or seen < doc["breached_at"]:
            doc["breached_at"] = seen
        if update.resolved_at is None:
            doc["late_by_s"] = max(float(doc.get("late_by_s") or 0.0), update.late_by_s)
        else:
            doc["late_by_s"] = update.late_by_s
        if update.level is not None:
            doc["level_rank"] = max(int(doc.get("level_rank") or 0), LEVEL_RANK[update.level])
            doc.setdefault("escalations", {})[update.level.value] = bson(
                update.level_at or update.seen_at
            )
        if update.resolved_at is not None:
            doc["resolved_at"] = bson(update.resolved_at)

    def _matching(
        self,
        agency: str | None,
        region: str | None,
        start: datetime | None,
        end: datetime | None,
        clock: str | None = None,
    ) -> list[Document]:
        return sorted(
            (
                d
                for d in self.breach_docs.values()
                if (agency is None or d["agency"] == agency)
                and (region is None or d["region"] == region)
                and (clock is None or d["clock"] == clock)
                and (start is None or d["due_at"] >= start)
                and (end is None or d["due_at"] < end)
            ),
            key=lambda d: (d["due_at"], d["_id"]),
        )

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
        return [bson(d) for d in self._matching(agency, region, start, end, clock)[:limit]]

    async def breach_counts(
        self,
        *,
        agency: str | None,
        region: str | None,
        start: datetime | None,
        end: datetime | None,
    ) -> dict[str, int]:
        counts: dict[str, int] = {}
        for doc in self._matching(agency, region, start, end):
            counts[doc["clock"]] = counts.get(doc["clock"], 0) + 1
        return counts


class Sink:
    """What reached the bus, shared by several publishers (one per subject)."""

    def __init__(self) -> None:
        self.attempts: list[tuple[str, str]] = []
        self.messages: list[tuple[str, str, dict[str, Any]]] = []
        self._seen: set[str] = set()

    def ids(self, subject: str | None = None) -> list[str]:
        return [msg_id for s, msg_id, _ in self.messages if subject is None or s == subject]

    def bodies(self, subject: str) -> list[dict[str, Any]]:
        return [body for s, _, body in self.messages if s == subject]


class RecordingPublisher:
    """Publishes into a `Sink`, dropping a repeated message id as JetStream does."""

    def __init__(self, subject: str, sink: Sink, fail_times: int = 0) -> None:
        self.subject = subject
        self.schema = MODELS[subject]
        self.sink = sink
        self.fail_times = fail_times

    async def publish(self, message: BaseModel, msg_id: str) -> bool:
        self.sink.attempts.append((self.subject, msg_id))
        if self.fail_times > 0:
            self.fail_times -= 1
            raise ConnectionError("simulated: the bus is unreachable")
        if msg_id in self.sink._seen:
            return False
        self.sink._seen.add(msg_id)
        self.sink.messages.append((self.subject, msg_id, message.model_dump(mode="json")))
        return True


class FakeClock:
    def __init__(self, start: datetime) -> None:
        self.now = start

    def __call__(self) -> datetime:
        return self.now

    def advance(self, **delta: float) -> datetime:
        self.now = self.now + timedelta(**delta)
        return self.now

    def set(self, moment: datetime) -> datetime:
        self.now = moment
        return self.now


def routed(
    complaint_id: str,
    at: datetime,
    *,
    round_: int = 0,
    agency: str | None = "PUPR",
    priority: Priority = Priority.NORMAL,
    triage: bool = False,
    received_at: datetime | None = None,
    region: str = "banjar",
) -> ComplaintRouted:
    return complaint_routed(
        complaint_id,
        round_=round_,
        at=at,
        received_at=received_at,
        region=region,
        agency=None if triage else agency,
        priority=priority,
        triage=triage,
    )


def state(
    complaint_id: str,
    name: str,
    to: State,
    at: datetime,
    previous: State | None = None,
    region: str = "banjar",
    *,
    actor: str = "agency:officer",
    agency: str | None = None,
) -> ComplaintStateChanged:
    return ComplaintStateChanged(
        event_id=f"state:command:{complaint_id}:{name}",
        occurred_at=at,
        complaint_id=complaint_id,
        region=region,
        state=to,
        previous_state=previous,
        actor=actor,
        agency=agency,
        reason=name,
        cause_event_id=f"command:{complaint_id}:{name}",
    )
