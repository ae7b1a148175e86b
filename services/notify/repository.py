"""Notify's own data: how to reach each complaint's reporter, what the router decided,
and the delivery log of every notification with each of its attempts.

Exactly-once rests on two inserts, atomic on MongoDB and FerretDB alike: a
notification's id is the primary key of `notifications` (one record per
cause, recipient and template), and each attempt claims `<id>#<n>` in
`notification_attempts` before anything is sent. Whoever inserted attempt n
is the only one sending it; a second worker gets a duplicate key and backs off.
Status changes of one notification are serialised in-process because FerretDB
v1 loses concurrent updates of the same document.

A reporter's phone number and e-mail address are stored sealed (AES-GCM,
bound to the complaint id) and opened only here, when a reply must go out.
"""

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Protocol

from pymongo import ASCENDING, DESCENDING
from pymongo.asynchronous.database import AsyncDatabase
from pymongo.errors import DuplicateKeyError

from lapor.runtime.pii import PiiCipher, is_sealed

Document = dict[str, Any]

# The reporter's addresses in a contact: sealed at rest.
_SEALED = ("sms", "email")

PENDING, SENT, DELIVERED, FAILED, WITHHELD = "pending", "sent", "delivered", "failed", "withheld"
FINAL = frozenset({SENT, DELIVERED, FAILED, WITHHELD})


@dataclass(frozen=True)
class Claim:
    """The right to make attempt `n` of a notification."""

    notification_id: str
    n: int

    @property
    def attempt_id(self) -> str:
        return f"{self.notification_id}#{self.n}"


@dataclass(frozen=True)
class InFlight:
    """Another worker is making an attempt right now; look again after `retry_in_s`."""

    retry_in_s: float


class NotifyRecords(Protocol):
    """What notify's use cases read and write: `NotificationRepository` on the database,
    an in-memory stand-in in unit tests."""

    async def save_contact(self, complaint_id: str, contact: Document) -> None: ...

    async def contact(self, complaint_id: str) -> Document | None: ...

    async def note_acknowledged_answer(self, complaint_id: str, answer: datetime) -> None: ...

    async def save_routing(self, routed_event_id: str, routing: Document) -> None: ...

    async def routing(self, routed_event_id: str) -> Document | None: ...

    async def get(self, notification_id: str) -> Document | None: ...


def _attempt_doc(claim: Claim, transport: str, now: datetime) -> Document:
    return {
        "_id": claim.attempt_id,
        "notification_id": claim.notification_id,
        "n": claim.n,
        "transport": transport,
        "started_at": now,
        "finished_at": None,
    }


class NotificationRepository:
    def __init__(self, db: AsyncDatabase[Document], cipher: PiiCipher) -> None:
        self.cipher = cipher
        self.contacts = db["notify_contacts"]
        self.routings = db["notify_routings"]
        self.notifications = db["notifications"]
        self.attempts = db["notification_attempts"]
        self.sms_budget = db["notify_sms_budget"]

    async def ensure_indexes(self) -> None:
        await self.notifications.create_index([("complaint_id", ASCENDING)])
        await self.notifications.create_index([("status", ASCENDING), ("updated_at", ASCENDING)])
        await self.attempts.create_index([("notification_id", ASCENDING), ("n", DESCENDING)])

    # --- what notify remembers of complaints ---------------------------------------

    async def save_contact(self, complaint_id: str, contact: Document) -> None:
        stored = dict(contact)
        for key in _SEALED:
            if stored.get(key):
                stored[key] = self.cipher.seal(stored[key], complaint_id)
        await self.contacts.update_one({"_id": complaint_id}, {"$set": stored}, upsert=True)

    async def contact(self, complaint_id: str) -> Document | None:
        found = await self.contacts.find_one({"_id": complaint_id})
        if found is None:
            return None
        for key in _SEALED:
            # A value stored before sealing was introduced is read as it is.
            if is_sealed(found.get(key)):
                found[key] = self.cipher.open(found[key], complaint_id)
        return found

    async def note_acknowledged_answer(self, complaint_id: str, answer: datetime) -> None:
        """Keep the answer date of the first acknowledgement; later ones change nothing."""
        await self.contacts.update_one(
            {"_id": complaint_id, "acknowledged_answer": {"$exists": False}},
            {"$set": {"acknowledged_answer": answer}},
        )

    async def region_of(self, complaint_id: str) -> str | None:
        """The complaint's region; None when notify never heard of the complaint."""
        found = await self.contacts.find_one({"_id": complaint_id}, {"region": 1})
        return None if found is None else str(found.get("region") or "")

    async def save_routing(self, routed_event_id: str, routing: Document) -> None:
        # Keyed by the routed event: DeadlinesSet names it as its cause.
        await self.routings.update_one({"_id": routed_event_id}, {"$set": routing}, upsert=True)

    async def routing(self, routed_event_id: str) -> Document | None:
        return await self.routings.find_one({"_id": routed_event_id})

    # --- the delivery log ----------------------------------------------------------

    async def open(self, notification: Document) -> Document:
        """The log record of a notification, created pending if it is new."""
        try:
            await self.notifications.insert_one(notification)
        except DuplicateKeyError:
            existing = await self.notifications.find_one({"_id": notification["_id"]})
            if existing is None:  # cannot happen: nothing deletes records
                raise
            return existing
        return notification

    async def get(self, notification_id: str) -> Document | None:
        return await self.notifications.find_one({"_id": notification_id})

    async def for_complaint(self, complaint_id: str) -> list[Document]:
        cursor = self.notifications.find({"complaint_id": complaint_id}).sort("created_at", 1)
        return await cursor.to_list(None)

    async def claim_attempt(
        self,
        notification_id: str,
        now: datetime,
        lease_s: float,
        transport: str,
        *,
        expected_n: int | None = None,
    ) -> Claim | InFlight:
        """Claim the next attempt. `expected_n`, when the caller knows every attempt
        before it finished (the record's `attempts` is written only after its attempt
        finished), is claimed without reading the log first; if it is taken, the log
        says what is going on."""
        if expected_n is not None:
            claim = Claim(notification_id, expected_n)
            try:
                await self.attempts.insert_one(_attempt_doc(claim, transport, now))
            except DuplicateKeyError:
                pass  # an attempt the record does not know of yet: read the log
            else:
                return claim
        last = await self.attempts.find_one(
            {"notification_id": notification_id}, sort=[("n", DESCENDING)]
        )
        if last is not None and last.get("finished_at") is None:
            age = (now - last["started_at"]).total_seconds()
            if age < lease_s:
                return InFlight(max(lease_s - age, 0.5))
            # Its worker died mid-send; whether the receiver got it is unknown, and the
            # receiver's de-duplication by notification id has to settle that.
            await self.attempts.update_one(
                {"_id": last["_id"]},
                {"$set": {"finished_at": now, "outcome": "abandoned"}},
            )
        claim = Claim(notification_id, last["n"] + 1 if last else 1)
        try:
            await self.attempts.insert_one(_attempt_doc(claim, transport, now))
        except DuplicateKeyError:
            return InFlight(1.0)
        return claim

    async def finish_attempt(
        self, claim: Claim, outcome: str, error: str | None, now: datetime
    ) -> None:
        await self.attempts.update_one(
            {"_id": claim.attempt_id},
            {"$set": {"finished_at": now, "outcome": outcome, "error": error}},
        )

    async def attempt_log(self, notification_id: str) -> list[Document]:
        cursor = self.attempts.find({"notification_id": notification_id}).sort("n", 1)
        return await cursor.to_list(None)

    async def note_retry(
        self,
        notification_id: str,
        attempts: int,
        error: str | None,
        next_attempt_at: datetime,
        now: datetime,
    ) -> None:
        await self._transition(
            notification_id,
            (PENDING,),
            {
                "attempts": attempts,
                "last_error": error,
                "next_attempt_at": next_attempt_at,
                "updated_at": now,
            },
        )

    async def mark_sent(
        self, notification_id: str, attempts: int, transport: str, now: datetime
    ) -> bool:
        return await self._transition(
            notification_id,
            (PENDING,),
            {
                "status": SENT,
                "attempts": attempts,
                "transport": transport,
                "sent_at": now,
                "updated_at": now,
                "next_attempt_at": None,
            },
        )

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
        fields: Document = {
            "status": FAILED,
            "failure_reason": reason,
            "last_error": error,
            "failed_at": now,
            "updated_at": now,
            "next_attempt_at": None,
            "failure_announced": False,
        }
        if attempts is not None:
            fields["attempts"] = attempts
        return await self._transition(notification_id, (PENDING, SENT), fields)

    async def mark_withheld(self, notification_id: str, reason: str, now: datetime) -> bool:
        return await self._transition(
            notification_id,
            (PENDING,),
            {"status": WITHHELD, "withheld_reason": reason, "updated_at": now},
        )

    # --- the daily SMS budget ------------------------------------------------------

    async def spend_sms_budget(self, region: str, day: str, budget: int) -> bool:
        """Count one citizen SMS of `region` on `day` if the budget allows it.

        One counter document per region and day; the increment is conditional on
        the count being under the budget in the same update (atomic on MongoDB and
        on our FerretDB build), so concurrent senders, in one replica or many,
        never spend more than the budget. A refusal is counted as held back.
        """
        key = {"_id": f"{region}:{day}"}
        for _ in range(2):
            spent = await self.sms_budget.update_one(
                {**key, "sent": {"$lt": budget}}, {"$inc": {"sent": 1}}
            )
            if spent.matched_count == 1:
                return True
            if budget <= 0 or await self.sms_budget.find_one(key) is not None:
                break
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

    async def claim_budget(self, notification_id: str, day: str, now: datetime) -> bool:
        """True for the one delivery of a pending SMS that counts it against a budget;
        a retry or redelivery of an SMS already counted is not counted again."""
        result = await self.notifications.update_one(
            {"_id": notification_id, "status": PENDING, "budget_day": {"$exists": False}},
            {"$set": {"budget_day": day, "budget_claimed_at": now}},
        )
        return result.matched_count == 1

    async def note_budget(self, notification_id: str, outcome: str) -> None:
        """What the budget decided for a claimed SMS (`spent` or `held`)."""
        await self.notifications.update_one({"_id": notification_id}, {"$set": {"budget": outcome}})

    async def sms_budget_day(self, region: str, day: str) -> Document | None:
        return await self.sms_budget.find_one({"_id": f"{region}:{day}"})

    async def mark_announced(self, notification_id: str) -> None:
        await self.notifications.update_one(
            {"_id": notification_id}, {"$set": {"failure_announced": True}}
        )

    async def unannounced_failures(self, limit: int = 500) -> list[Document]:
        """Failures stored with `failure_announced: False` whose announcement a crash
        or an outage cut off (the status index finds them)."""
        cursor = self.notifications.find({"status": FAILED, "failure_announced": False})
        return await cursor.limit(limit).to_list(limit)

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
