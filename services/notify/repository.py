"""Notify's own data: how to reach each complaint's reporter, what the router decided,
and the delivery log of every notification with each of its attempts.

Exactly-once rests on one document per notification. Its id is the primary key
of `notifications` (one record per cause, recipient and template), so the
insert decides who opens it; the record carries its current attempt
(`attempt`: n, transport, started_at, finished_at, outcome) and the finished
ones (`attempt_log`). Claiming attempt n is one conditional update of the
record (pending, and attempt n-1 finished or its lease expired), and finishing
it is one update together with the status change (sent, retry, failed): both
atomic on MongoDB and on our FerretDB build (its patch 0004 serialises update
and findAndModify per collection). Whoever holds attempt n is the only one
sending it; a new record is inserted with attempt 1 already claimed when it is
sent at once. A worker that finds another's attempt unfinished past its lease
records it as abandoned and takes the next one.

Records stored before attempts were embedded have no `attempt` field: their
attempts stay in `notification_attempts` (`<id>#<n>`, claimed by insert) and are
read and finished there (see `LegacyAttempts`). The reverse does not hold: a
process of that earlier version does not see a claim embedded in a record, so
the two must not run side by side (stop the old replicas, then start the new).

A reporter's phone number and e-mail address are stored sealed (AES-GCM,
bound to the complaint id) and opened only when a reply must go out
(`services.notify.contact_store`); the attempts' own records are in
`services.notify.attempts`.
"""

from collections import OrderedDict
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from enum import Enum
from typing import Any, Protocol

from pymongo import ASCENDING, DESCENDING, UpdateOne
from pymongo.asynchronous.database import AsyncDatabase
from pymongo.errors import BulkWriteError, DuplicateKeyError

from lapor.runtime.db import refused_as_duplicates
from lapor.runtime.pii import PiiCipher
from lapor.runtime.write_behind import WriteBehind
from services.notify.attempts import (
    ABANDONED,
    Claim,
    InFlight,
    LegacyAttempts,
    age_s,
    attempts_in,
)
from services.notify.contact_store import ContactStore

Document = dict[str, Any]


PENDING, SENT, DELIVERED, FAILED, WITHHELD = "pending", "sent", "delivered", "failed", "withheld"
FINAL = frozenset({SENT, DELIVERED, FAILED, WITHHELD})


@dataclass(frozen=True)
class Finishing:
    """How attempt `claim.n` ended, and the status change it leads to (`settle`)."""

    claim: Claim
    outcome: str
    error: str | None
    now: datetime
    settle: Document


@dataclass(frozen=True)
class Opened:
    record: Document
    # True when this call stored the record: whatever it carried (attempt 1's claim,
    # the budget's claim) belongs to the caller.
    created: bool


class Finished(Enum):
    """How finishing an attempt ended."""

    MOVED = "moved"  # outcome recorded and the status changed with it
    KEPT = "kept"  # outcome recorded; the status had moved on already (a receipt)
    LOST = "lost"  # the claim was taken over after its lease: nothing recorded


class NotifyRecords(Protocol):
    """What notify's use cases read and write: `NotificationRepository` on the database,
    an in-memory stand-in in unit tests."""

    async def save_contact(self, complaint_id: str, contact: Document) -> None: ...

    async def contact(self, complaint_id: str) -> Document | None: ...

    async def first_acknowledged(self, complaint_id: str) -> datetime | None:
        """The answer date the complaint's first acknowledgement told, if it had one."""

    async def routing(self, routed_event_id: str, contact: Document | None) -> Document | None: ...

    async def get(self, notification_id: str) -> Document | None: ...


# A process takes this many units of a region's daily SMS budget at once: one counter
# write for that many SMS. Units it holds at a restart or at the day's end stay
# counted as sent, which errs on the side of the budget.
BUDGET_UNITS_AT_ONCE = 16


class NotificationRepository(ContactStore):
    def __init__(
        self, db: AsyncDatabase[Document], cipher: PiiCipher, deferred: WriteBehind | None = None
    ) -> None:
        self.cipher = cipher
        # Where noting an announced failure may wait to go out with others (None: at
        # once); until it has, the sweep does not announce that failure again.
        self.deferred = deferred
        self._announcing: set[str] = set()
        self.saved: OrderedDict[str, Document] = OrderedDict()
        self.contacts = db["notify_contacts"]
        self.routings = db["notify_routings"]
        self.notifications = db["notifications"]
        self.attempts = db["notification_attempts"]
        self.legacy = LegacyAttempts(self.attempts)
        self.sms_budget = db["notify_sms_budget"]
        # Units of a region's daily SMS budget this process took and has not spent yet
        # (region → day, units), and the days whose last units go one by one.
        self._units: dict[str, tuple[str, int]] = {}
        self._singly: set[str] = set()

    async def first_acknowledged(self, complaint_id: str) -> datetime | None:
        # The complaint's few records, through its index; the contact kept the date
        # before it went into the acknowledgement's record.
        first = await self.notifications.find_one(
            {"complaint_id": complaint_id, "acknowledged_answer": {"$exists": True}},
            {"acknowledged_answer": 1},
            sort=[("created_at", ASCENDING)],
        )
        if first is not None:
            return first["acknowledged_answer"]
        contact = await self.contacts.find_one({"_id": complaint_id}, {"acknowledged_answer": 1})
        return (contact or {}).get("acknowledged_answer")

    async def ensure_indexes(self) -> None:
        await self.notifications.create_index([("complaint_id", ASCENDING)])
        await self.notifications.create_index([("status", ASCENDING), ("updated_at", ASCENDING)])
        await self.attempts.create_index([("notification_id", ASCENDING), ("n", DESCENDING)])

    # --- the delivery log ----------------------------------------------------------

    async def open(self, notification: Document) -> Opened:
        """The log record of a notification, stored as given if it is new."""
        return (await self.open_all([notification]))[0]

    async def open_all(self, notifications: Sequence[Document]) -> list[Opened]:
        """The log records of notifications that go out together: the new ones stored
        as given, in one command; those stored before (a redelivery) read."""
        try:
            await self.notifications.insert_many(list(notifications), ordered=False)
            known: set[int] = set()
        except BulkWriteError as error:
            known = refused_as_duplicates(error)
        opened = []
        for index, notification in enumerate(notifications):
            if index not in known:
                opened.append(Opened(notification, created=True))
                continue
            existing = await self.notifications.find_one({"_id": notification["_id"]})
            if existing is None:  # cannot happen: nothing deletes records
                raise RuntimeError(f"notification {notification['_id']} refused, yet not stored")
            opened.append(Opened(existing, created=False))
        return opened

    async def get(self, notification_id: str) -> Document | None:
        return await self.notifications.find_one({"_id": notification_id})

    async def for_complaint(self, complaint_id: str) -> list[Document]:
        cursor = self.notifications.find({"complaint_id": complaint_id}).sort("created_at", 1)
        return await cursor.to_list(None)

    async def claim_attempt(
        self, record: Document, now: datetime, lease_s: float, transport: str
    ) -> Claim | InFlight:
        """Claim the attempt after the one `record` (as last read or written) carries.

        One conditional update: the record must still be pending with that attempt
        finished, or unfinished past its lease (then it is logged as abandoned). If
        another worker got there first, look again a little later.
        """
        nid = record["_id"]
        if "attempt" not in record:
            expected = int(record.get("attempts") or 0) + 1
            return await self.legacy.claim(nid, expected, now, lease_s, transport)
        current = record.get("attempt")
        guard: Document = {"_id": nid, "status": PENDING}
        change: Document = {}
        if current is None:
            guard["attempt"] = None
            n = 1
        elif current.get("finished_at") is not None:
            guard |= {"attempt.n": current["n"], "attempt.finished_at": {"$ne": None}}
            n = int(current["n"]) + 1
        else:
            age = age_s(now, current["started_at"])
            if age < lease_s:
                return InFlight(max(lease_s - age, 0.5))
            guard |= {"attempt.n": current["n"], "attempt.finished_at": None}
            abandoned = current | {"finished_at": now, "outcome": ABANDONED, "error": None}
            change["$push"] = {"attempt_log": abandoned}
            n = int(current["n"]) + 1
        claim = Claim(nid, n, transport, now)
        change["$set"] = {"attempt": claim.as_attempt(), "updated_at": now}
        result = await self.notifications.update_one(guard, change)
        return claim if result.matched_count == 1 else InFlight(1.0)

    async def finish_attempt(
        self,
        claim: Claim,
        outcome: str,
        error: str | None,
        now: datetime,
        settle: Document,
    ) -> Finished:
        """Record how attempt `claim.n` ended and, if the notification is still
        pending, apply `settle` (its status change) in the same update."""
        return (await self.finish_attempts([Finishing(claim, outcome, error, now, settle)]))[0]

    async def finish_attempts(self, finishing: Sequence[Finishing]) -> list[Finished]:
        """Several attempts' endings (the notices of one event), each as `finish_attempt`,
        in one command when each notification is still pending, as it nearly always is.

        When fewer matched, each record tells whether its own statement applied: the
        holder of attempt n is the only one who finishes it, so attempt n finished
        means it did; else the outcome alone is recorded where the attempt is still
        held (a receipt moved the status on meanwhile)."""
        if any(f.claim.legacy for f in finishing):
            return [await self._finish_legacy(f) for f in finishing]
        statements = [
            UpdateOne(_held(f.claim) | {"status": PENDING}, _settled(f)) for f in finishing
        ]
        result = await self.notifications.bulk_write(statements, ordered=False)
        if result.matched_count == len(finishing):
            return [Finished.MOVED] * len(finishing)
        return [await self._finished_how(f) for f in finishing]

    async def _finished_how(self, finishing: Finishing) -> Finished:
        claim = finishing.claim
        record = await self.notifications.find_one({"_id": claim.notification_id}, {"attempt": 1})
        attempt = (record or {}).get("attempt") or {}
        if attempt.get("n") == claim.n and attempt.get("finished_at") is not None:
            return Finished.MOVED
        change = _settled(finishing, with_status=False)
        if (await self.notifications.update_one(_held(claim), change)).matched_count:
            return Finished.KEPT
        return Finished.LOST

    async def _finish_legacy(self, f: Finishing) -> Finished:
        await self.legacy.finish(f.claim, f.outcome, f.error, f.now)
        fields = {"attempts": f.claim.n, "updated_at": f.now}
        moved = await self._transition(f.claim.notification_id, (PENDING,), f.settle | fields)
        return Finished.MOVED if moved else Finished.KEPT

    async def attempts_of(self, record: Document) -> list[Document]:
        """Every attempt of a notification in order, the one in flight included."""
        embedded = attempts_in(record)
        return embedded if embedded is not None else await self.legacy.log(record["_id"])

    async def attempt_log(self, notification_id: str) -> list[Document]:
        record = await self.get(notification_id)
        return [] if record is None else await self.attempts_of(record)

    async def mark_delivered(self, notification_id: str, at: datetime, now: datetime) -> bool:
        return await self._transition(
            notification_id,
            (PENDING, SENT),
            {"status": DELIVERED, "delivered_at": at, "updated_at": now},
        )

    async def mark_failed(
        self,
        notification_id: str,
        *,
        reason: str,
        error: str,
        attempts: int | None,
        now: datetime,
    ) -> bool:
        fields = failed_fields(reason, error, now)
        if attempts is not None:
            fields["attempts"] = attempts
        return await self._transition(notification_id, (PENDING, SENT), fields)

    async def mark_withheld(self, notification_id: str, reason: str, now: datetime) -> bool:
        return await self._transition(
            notification_id,
            (PENDING,),
            {"status": WITHHELD, "withheld_reason": reason, "updated_at": now},
        )

    async def withhold_claimed(self, claim: Claim, reason: str, now: datetime) -> bool:
        """Withhold a new record whose budget said no before its claimed attempt 1
        started: the claim is released (no attempt happened) in the same update."""
        return await self._transition(
            claim.notification_id,
            (PENDING,),
            {
                "status": WITHHELD,
                "withheld_reason": reason,
                "budget": "held",
                "attempt": None,
                "updated_at": now,
            },
        )

    # --- the daily SMS budget ------------------------------------------------------

    async def spend_sms_budget(self, region: str, day: str, budget: int) -> bool:
        """Count one citizen SMS of `region` on `day` if the budget allows it.

        One counter document per region and day; the increment is conditional on
        the count being under the budget in the same update (atomic on MongoDB and
        on our FerretDB build), so concurrent senders, in one replica or many,
        never spend more than the budget. A refusal is counted as held back.
        While the day has room, the count is raised `BUDGET_UNITS_AT_ONCE` at a
        time and this process spends those units without a write.
        """
        if self._hold(region, day, -1):
            return True
        region_day = f"{region}:{day}"
        if budget >= BUDGET_UNITS_AT_ONCE and region_day not in self._singly:
            if await self._take_units(region, day, budget):
                self._hold(region, day, BUDGET_UNITS_AT_ONCE - 1)
                return True
            self._singly = {k for k in self._singly if k.endswith(day)} | {region_day}
        key = {"_id": region_day}
        for _ in range(3):
            spent = await self.sms_budget.update_one(
                {**key, "sent": {"$lt": budget}}, {"$inc": {"sent": 1}}
            )
            if spent.matched_count == 1:
                return True
            if budget <= 0:
                break
            counter = await self.sms_budget.find_one(key)
            if counter is not None:
                if int(counter.get("sent") or 0) >= budget:
                    break
                continue  # another sender opened the day after our update: count against it
            try:
                await self.sms_budget.insert_one(
                    {**key, "region": region, "day": day, "sent": 1, "held": 0}
                )
                return True
            except DuplicateKeyError:
                continue  # another sender opened the day first: count against it
        try:
            await self.sms_budget.update_one(
                key,
                {"$inc": {"held": 1}, "$setOnInsert": {"region": region, "day": day, "sent": 0}},
                upsert=True,
            )
        except DuplicateKeyError:
            await self.sms_budget.update_one(key, {"$inc": {"held": 1}})
        return False

    def _hold(self, region: str, day: str, change: int) -> bool:
        """Add `change` to the units held for the region's `day` (other days' are
        void); False, and nothing changed, if that would leave fewer than none."""
        held_day, units = self._units.get(region, (day, 0))
        units = units if held_day == day else 0
        if units + change < 0:
            return False
        self._units[region] = (day, units + change)
        return True

    async def _take_units(self, region: str, day: str, budget: int) -> bool:
        """`BUDGET_UNITS_AT_ONCE` units of the day's budget in one write, while it has
        room for all of them (the day's last units go one by one)."""
        room = {"_id": f"{region}:{day}", "sent": {"$lte": budget - BUDGET_UNITS_AT_ONCE}}
        take = {"$inc": {"sent": BUDGET_UNITS_AT_ONCE}}
        opening = {"$setOnInsert": {"region": region, "day": day, "held": 0}}
        try:
            await self.sms_budget.update_one(room, take | opening, upsert=True)
            return True
        except DuplicateKeyError:  # the day is open: opened just now by another, or full
            return (await self.sms_budget.update_one(room, take)).matched_count == 1

    async def claim_budget(self, notification_id: str, day: str, now: datetime) -> bool:
        """True for the one delivery of a pending SMS that counts it against a budget;
        a retry or redelivery of an SMS already counted is not counted again. A new
        record carries this claim from its insert (`budget_claim`)."""
        result = await self.notifications.update_one(
            {"_id": notification_id, "status": PENDING, "budget_day": {"$exists": False}},
            {"$set": budget_claim(day, now)},
        )
        return result.matched_count == 1

    async def note_budget(self, notification_id: str, outcome: str) -> None:
        """What the budget decided for a claimed SMS (`spent` or `held`)."""
        await self.notifications.update_one({"_id": notification_id}, {"$set": {"budget": outcome}})

    async def sms_budget_day(self, region: str, day: str) -> Document | None:
        return await self.sms_budget.find_one({"_id": f"{region}:{day}"})

    async def mark_announced(self, notification_id: str) -> None:
        record, change = {"_id": notification_id}, {"$set": {"failure_announced": True}}
        if self.deferred is None:
            await self.notifications.update_one(record, change)
            return
        self._announcing.add(notification_id)
        self.deferred.update(
            self.notifications.name,
            record,
            change,
            done=lambda: self._announcing.discard(notification_id),
        )

    async def unannounced_failures(self, limit: int = 500) -> list[Document]:
        """Failures stored with `failure_announced: False` whose announcement a crash
        or an outage cut off (the status index finds them)."""
        cursor = self.notifications.find({"status": FAILED, "failure_announced": False})
        found = await cursor.limit(limit).to_list(limit)
        return [record for record in found if record["_id"] not in self._announcing]

    async def _transition(
        self, notification_id: str, allowed: Sequence[str], fields: Document
    ) -> bool:
        """Apply `fields` if the status is still one of `allowed`; False if it moved on.

        The status precondition is part of the atomic update, so two replicas never
        both move one notification on from the same status.
        """
        result = await self.notifications.update_one(
            {"_id": notification_id, "status": {"$in": list(allowed)}}, {"$set": fields}
        )
        return result.matched_count == 1


def budget_claim(day: str, now: datetime) -> Document:
    return {"budget_day": day, "budget_claimed_at": now}


def failed_fields(reason: str, error: str, now: datetime) -> Document:
    """A notification given up: its announcement is pending until published."""
    return {
        "status": FAILED,
        "failure_reason": reason,
        "last_error": error,
        "failed_at": now,
        "updated_at": now,
        "next_attempt_at": None,
        "failure_announced": False,
    }


def _held(claim: Claim) -> Document:
    """The record while attempt `claim.n` is held and unfinished."""
    return {"_id": claim.notification_id, "attempt.n": claim.n, "attempt.finished_at": None}


def _settled(f: Finishing, *, with_status: bool = True) -> Document:
    """The attempt's ending, recorded in the record and its log, with `settle` too."""
    ended = {"finished_at": f.now, "outcome": f.outcome, "error": f.error}
    fields: Document = {"attempts": f.claim.n, "updated_at": f.now}
    fields |= {f"attempt.{key}": value for key, value in ended.items()}
    return {
        "$set": fields | (f.settle if with_status else {}),
        "$push": {"attempt_log": f.claim.as_attempt() | ended},
    }
