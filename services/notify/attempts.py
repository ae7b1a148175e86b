"""A notification's attempts: the claim of one, how a record carries them, and the
attempts of records stored before they were embedded (`LegacyAttempts`)."""

from dataclasses import dataclass
from datetime import datetime
from typing import Any

from pymongo import DESCENDING
from pymongo.asynchronous.collection import AsyncCollection
from pymongo.errors import DuplicateKeyError

Document = dict[str, Any]

# An attempt whose worker died mid-send: whether the receiver got it is unknown,
# and the receiver's de-duplication by notification id has to settle that.
ABANDONED = "abandoned"


@dataclass(frozen=True)
class Claim:
    """The right to make attempt `n` of a notification."""

    notification_id: str
    n: int
    transport: str
    started_at: datetime
    # Attempt kept in `notification_attempts` (a record stored before attempts were embedded).
    legacy: bool = False

    @property
    def attempt_id(self) -> str:
        return f"{self.notification_id}#{self.n}"

    def as_attempt(self) -> Document:
        return {
            "n": self.n,
            "transport": self.transport,
            "started_at": self.started_at,
            "finished_at": None,
        }


@dataclass(frozen=True)
class InFlight:
    """Another worker is making an attempt right now; look again after `retry_in_s`."""

    retry_in_s: float


def claimed_first_attempt(transport: str, now: datetime) -> Document:
    """The fields that make a new record carry the claim of its attempt 1."""
    return {"attempt": {"n": 1, "transport": transport, "started_at": now, "finished_at": None}}


def claim_of(record: Document) -> Claim | None:
    """The claim a record carries in an unfinished attempt."""
    current = record.get("attempt")
    if not current or current.get("finished_at") is not None:
        return None
    return Claim(record["_id"], int(current["n"]), current["transport"], current["started_at"])


def attempts_in(record: Document) -> list[Document] | None:
    """The attempts a record carries, finished ones first and any in flight last;
    None for a record whose attempts are in `notification_attempts`."""
    if "attempt" not in record:
        return None
    log = sorted(record.get("attempt_log") or [], key=lambda a: int(a["n"]))
    current = record.get("attempt")
    if current and current.get("finished_at") is None:
        log.append(current)
    return log


def age_s(now: datetime, then: datetime) -> float:
    if then.tzinfo is None and now.tzinfo is not None:
        then = then.replace(tzinfo=now.tzinfo)
    return (now - then).total_seconds()


class LegacyAttempts:
    """Attempts of records stored before attempts were embedded: claimed by inserting
    `<id>#<n>` into `notification_attempts`, finished there.

    Needed while such a record may still be pending: at most the retry policy's
    span plus the event's redeliveries (under a day), so the claim and finish can
    go one release after this one has run for a day, once
    `{status: "pending", attempt: {$exists: false}}` finds nothing. Reading their
    history (`attempts_of`) stays as long as those records are kept.
    """

    def __init__(self, attempts: AsyncCollection[Document]) -> None:
        self.attempts = attempts

    async def claim(
        self, notification_id: str, expected_n: int, now: datetime, lease_s: float, transport: str
    ) -> Claim | InFlight:
        """Claim `expected_n` (the record counts finished attempts) without reading
        the log first; if it is taken, the log says what is going on."""
        claim = Claim(notification_id, expected_n, transport, now, legacy=True)
        if await self._insert(claim):
            return claim
        last = await self.attempts.find_one(
            {"notification_id": notification_id}, sort=[("n", DESCENDING)]
        )
        if last is not None and last.get("finished_at") is None:
            age = age_s(now, last["started_at"])
            if age < lease_s:
                return InFlight(max(lease_s - age, 0.5))
            await self.attempts.update_one(
                {"_id": last["_id"]}, {"$set": {"finished_at": now, "outcome": ABANDONED}}
            )
        claim = Claim(notification_id, last["n"] + 1 if last else 1, transport, now, legacy=True)
        return claim if await self._insert(claim) else InFlight(1.0)

    async def _insert(self, claim: Claim) -> bool:
        document = {"_id": claim.attempt_id, "notification_id": claim.notification_id}
        try:
            await self.attempts.insert_one(document | claim.as_attempt())
        except DuplicateKeyError:
            return False
        return True

    async def finish(self, claim: Claim, outcome: str, error: str | None, now: datetime) -> None:
        await self.attempts.update_one(
            {"_id": claim.attempt_id},
            {"$set": {"finished_at": now, "outcome": outcome, "error": error}},
        )

    async def log(self, notification_id: str) -> list[Document]:
        cursor = self.attempts.find({"notification_id": notification_id}).sort("n", 1)
        return await cursor.to_list(None)
