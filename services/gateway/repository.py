"""The connector's own record of outgoing SMS, one document per notification id:
written before Kannel is called and marked once Kannel accepted, so that a
redelivered message is submitted once."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any, Protocol

from pymongo.asynchronous.database import AsyncDatabase
from pymongo.errors import DuplicateKeyError

SUBMISSIONS = "gateway_submissions"

PENDING, SUBMITTED, REFUSED = "pending", "submitted", "refused"
# Sent to Kannel without an answer: submitted or not, a delivery report will tell.
UNCERTAIN = "uncertain"


@dataclass(frozen=True)
class Submission:
    notification_id: str
    status: str
    error: str | None = None
    # When the last call without an answer was made, and whether a report came since.
    uncertain_at: datetime | None = None
    reported: bool = False


class SubmissionRepository(Protocol):
    async def claim(
        self, notification_id: str, complaint_id: str | None, now: datetime
    ) -> Submission:
        """The record of this notification, created pending if it is new."""
        ...

    async def mark_submitted(self, notification_id: str, answer: str, now: datetime) -> None: ...

    async def mark_uncertain(self, notification_id: str, now: datetime) -> None: ...

    async def mark_refused(self, notification_id: str, error: str, now: datetime) -> None: ...

    async def mark_reported(self, notification_id: str, now: datetime) -> None:
        """A delivery report came: Kannel has the SMS, whatever its answer was."""
        ...

    async def mark_outcome(self, notification_id: str, status: str, now: datetime) -> None: ...


class MongoSubmissions:
    def __init__(self, db: AsyncDatabase[dict[str, Any]]) -> None:
        self._col = db[SUBMISSIONS]

    async def claim(
        self, notification_id: str, complaint_id: str | None, now: datetime
    ) -> Submission:
        try:
            await self._col.insert_one(
                {
                    "_id": notification_id,
                    "status": PENDING,
                    "complaint_id": complaint_id,
                    "created_at": now,
                }
            )
            return Submission(notification_id, PENDING)
        except DuplicateKeyError:
            found = await self._col.find_one({"_id": notification_id})
        if found is None:  # removed in between: treat it as new
            return Submission(notification_id, PENDING)
        return Submission(
            notification_id,
            found["status"],
            found.get("error"),
            found.get("uncertain_at"),
            found.get("reported_at") is not None,
        )

    async def mark_submitted(self, notification_id: str, answer: str, now: datetime) -> None:
        await self._col.update_one(
            {"_id": notification_id},
            {"$set": {"status": SUBMITTED, "kannel_answer": answer, "submitted_at": now}},
        )

    async def mark_uncertain(self, notification_id: str, now: datetime) -> None:
        await self._col.update_one(
            {"_id": notification_id, "status": {"$in": [PENDING, UNCERTAIN]}},
            {"$set": {"status": UNCERTAIN, "uncertain_at": now}},
        )

    async def mark_reported(self, notification_id: str, now: datetime) -> None:
        await self._col.update_one({"_id": notification_id}, {"$set": {"reported_at": now}})

    async def mark_refused(self, notification_id: str, error: str, now: datetime) -> None:
        await self._col.update_one(
            {"_id": notification_id},
            {"$set": {"status": REFUSED, "error": error, "refused_at": now}},
        )

    async def mark_outcome(self, notification_id: str, status: str, now: datetime) -> None:
        await self._col.update_one(
            {"_id": notification_id}, {"$set": {"outcome": status, "outcome_at": now}}
        )


class InMemorySubmissions:
    """The repository for unit tests."""

    def __init__(self) -> None:
        self.records: dict[str, dict[str, Any]] = {}

    async def claim(
        self, notification_id: str, complaint_id: str | None, now: datetime
    ) -> Submission:
        record = self.records.setdefault(
            notification_id, {"status": PENDING, "complaint_id": complaint_id}
        )
        return Submission(
            notification_id,
            record["status"],
            record.get("error"),
            record.get("uncertain_at"),
            record.get("reported_at") is not None,
        )

    async def mark_submitted(self, notification_id: str, answer: str, now: datetime) -> None:
        self.records[notification_id].update(status=SUBMITTED, kannel_answer=answer)

    async def mark_uncertain(self, notification_id: str, now: datetime) -> None:
        self.records[notification_id].update(status=UNCERTAIN, uncertain_at=now)

    async def mark_reported(self, notification_id: str, now: datetime) -> None:
        if notification_id in self.records:
            self.records[notification_id]["reported_at"] = now

    async def mark_refused(self, notification_id: str, error: str, now: datetime) -> None:
        self.records[notification_id].update(status=REFUSED, error=error)

    async def mark_outcome(self, notification_id: str, status: str, now: datetime) -> None:
        if notification_id in self.records:
            self.records[notification_id]["outcome"] = status
