"""The accountability record of breached clock runs (`sla_breaches`), one document
per run, merged from what each firing or replan knows."""

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from pymongo import ASCENDING
from pymongo.asynchronous.collection import AsyncCollection
from pymongo.errors import DuplicateKeyError

from lapor.contracts import EscalationLevel
from lapor.runtime.db import half_open

Document = dict[str, Any]

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
    if (period := half_open(start, end)) is not None:
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


class BreachStore:
    breaches_coll: AsyncCollection[Document]

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
