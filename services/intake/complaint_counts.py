"""Complaint gauges kept as counters: what each complaint counts for, and how to read them.

Reading every open complaint for the gauges takes minutes with a million stored
on FerretDB. Instead intake adds each transition's difference to a few small
counter documents (`services.intake.counts`), and a gauge refresh reads a
handful of them, whatever the number of complaints.

What a complaint counts for (`contribution`) is a set of (document, field)
keys, each worth one:

- `open`: `o|state|agency|priority` and `k|kecamatan` of every open complaint;
- time does not change a transition-kept count, so deadlines are counted by
  when they fall, to the second: `day|clock|YYYYMMDD` holds `group|HHMMSS`
  and `days|clock` holds `group|YYYYMMDD` (UTC) of each running deadline.
  Due and overdue are then sums over the buckets before and after now: the
  days before today from `days|clock`, today and tomorrow second by second.
  The group is `-` for the three clocks; the pseudo clock `urgent_ack` (an
  urgent complaint assigned and not acknowledged within an hour) is grouped
  by agency.

Field names may not contain `.` (a path separator in updates): a kecamatan
code's dots are stored as `:`.
"""

from __future__ import annotations

import asyncio
from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any, Protocol

from pymongo.asynchronous.database import AsyncDatabase

from lapor.contracts import Priority, State

Document = dict[str, Any]
Key = tuple[str, str]  # (counter document, field)
Labels = tuple[str, ...]

COUNTS = "complaint_counts"
OPEN_DOC = "open"
URGENT_ACK = "urgent_ack"
NO_GROUP = "-"
# Where the last reconciliation's outcome is kept, for every replica's gauges.
RECONCILED_DOC = "reconciled"
UPDATES_AT_ONCE = 32

# Kept here rather than imported from services.intake.metrics, which imports this module.
OPEN_STATES: tuple[str, ...] = tuple(
    s.value
    for s in (
        State.RECEIVED,
        State.TRIAGE,
        State.ASSIGNED,
        State.IN_PROGRESS,
        State.NEEDS_INFO,
        State.RESPONDED,
    )
)
CLOCK_STATES: Mapping[str, tuple[str, ...]] = {
    "routing": (State.RECEIVED.value, State.TRIAGE.value),
    "first_response": (State.ASSIGNED.value,),
    "answer": (State.ASSIGNED.value, State.IN_PROGRESS.value),
}
DEADLINE_CLOCKS: tuple[str, ...] = (*CLOCK_STATES, URGENT_ACK)
DUE_SOON = timedelta(hours=24)
URGENT_ACK_AFTER = timedelta(hours=1)
NONE = "none"
UNKNOWN_KECAMATAN = "unknown"


def label_value(value: Any) -> str:
    return str(value) if value not in (None, "") else NONE


def aware(value: datetime) -> datetime:
    return value if value.tzinfo is not None else value.replace(tzinfo=UTC)


def kecamatan_of(complaint: Mapping[str, Any]) -> str:
    kecamatan = (complaint.get("place") or {}).get("kecamatan") or {}
    return str(kecamatan.get("code") or UNKNOWN_KECAMATAN)


def assigned_since(history: Sequence[Mapping[str, Any]]) -> datetime | None:
    """When the complaint entered its current assignment (latest `assigned` entry)."""
    times = [aware(h["at"]) for h in history if h.get("state") == State.ASSIGNED and h.get("at")]
    return max(times) if times else None


def _day(at: datetime) -> str:
    return at.astimezone(UTC).strftime("%Y%m%d")


def day_doc(clock: str, day: str) -> str:
    return f"day|{clock}|{day}"


def days_doc(clock: str) -> str:
    return f"days|{clock}"


def _deadline_keys(clock: str, group: str, at: datetime) -> tuple[Key, Key]:
    at = aware(at).astimezone(UTC)
    day = _day(at)
    return (day_doc(clock, day), f"{group}|{at:%H%M%S}"), (days_doc(clock), f"{group}|{day}")


def contribution(complaint: Mapping[str, Any] | None) -> Counter[Key]:
    """The counter keys a stored complaint adds one to (none once it is closed)."""
    keys: Counter[Key] = Counter()
    if complaint is None:
        return keys
    state = complaint.get("state")
    if state not in OPEN_STATES:
        return keys
    agency = label_value(complaint.get("agency"))
    keys[(OPEN_DOC, f"o|{state}|{agency}|{label_value(complaint.get('priority'))}")] += 1
    keys[(OPEN_DOC, "k|" + kecamatan_of(complaint).replace(".", ":"))] += 1
    deadlines = complaint.get("deadlines") or {}
    for clock, states in CLOCK_STATES.items():
        deadline = deadlines.get(clock)
        if state in states and isinstance(deadline, datetime):
            keys.update(_deadline_keys(clock, NO_GROUP, deadline))
    if state == State.ASSIGNED and complaint.get("priority") == Priority.URGENT:
        since = assigned_since(complaint.get("history") or [])
        if since is not None:
            keys.update(_deadline_keys(URGENT_ACK, agency, since + URGENT_ACK_AFTER))
    return keys


def difference(before: Mapping[str, Any] | None, after: Mapping[str, Any] | None) -> Counter[Key]:
    """What a change from `before` to `after` adds to each key (negative: takes away)."""
    change: Counter[Key] = Counter(contribution(after))
    change.subtract(contribution(before))
    return Counter({key: n for key, n in change.items() if n})


class CountStore(Protocol):
    """The counter documents: `{_id, c: {field: count}}`."""

    async def increment(self, changes: Mapping[Key, int]) -> None:
        """Add each change to its counter, atomically per document."""

    async def read(self, ids: Sequence[str]) -> dict[str, dict[str, int]]:
        """The counts of the named documents (missing ones left out)."""

    async def read_all(self) -> dict[str, dict[str, int]]: ...


def by_document(changes: Mapping[Key, int]) -> dict[str, dict[str, int]]:
    grouped: dict[str, dict[str, int]] = {}
    for (doc_id, name), n in changes.items():
        if n:
            grouped.setdefault(doc_id, {})[name] = grouped.get(doc_id, {}).get(name, 0) + n
    return grouped


class MongoCountStore:
    """The counters in intake's `complaint_counts` (MongoDB, or FerretDB, whose
    updates our build applies atomically per collection: ferretdb/patches/0004)."""

    def __init__(self, db: AsyncDatabase[Document]) -> None:
        self.db = db
        self.collection = db[COUNTS]

    async def increment(self, changes: Mapping[Key, int]) -> None:
        statements = [
            {
                "q": {"_id": doc_id},
                "u": {"$inc": {f"c.{name}": n for name, n in fields.items()}},
                "upsert": True,
            }
            for doc_id, fields in by_document(changes).items()
        ]
        # A plain `update` command, not bulk_write: FerretDB v1 answers a bulk of
        # upserts without `nModified`. At most UPDATES_AT_ONCE statements each: one
        # command of 100 updates of existing documents hung our FerretDB build.
        for first in range(0, len(statements), UPDATES_AT_ONCE):
            reply = await self.db.command(
                {
                    "update": COUNTS,
                    "updates": statements[first : first + UPDATES_AT_ONCE],
                    "ordered": False,
                }
            )
            if reply.get("writeErrors"):
                raise RuntimeError(f"counter update failed: {reply['writeErrors'][:1]}")

    async def read(self, ids: Sequence[str]) -> dict[str, dict[str, int]]:
        # One lookup by `_id` each: FerretDB answers those through its index.
        docs = await asyncio.gather(
            *(self.collection.find_one({"_id": doc_id}, {"c": 1}) for doc_id in ids)
        )
        return {doc["_id"]: _counts(doc) for doc in docs if doc is not None}

    async def read_all(self) -> dict[str, dict[str, int]]:
        return {
            doc["_id"]: _counts(doc)
            async for doc in self.collection.find({"c": {"$exists": True}}, {"c": 1})
        }


def _counts(doc: Mapping[str, Any]) -> dict[str, int]:
    return {name: int(n) for name, n in (doc.get("c") or {}).items()}


class MemoryCountStore:
    """The counters for unit tests."""

    def __init__(self) -> None:
        self.docs: dict[str, dict[str, int]] = {}

    async def increment(self, changes: Mapping[Key, int]) -> None:
        for doc_id, fields in by_document(changes).items():
            doc = self.docs.setdefault(doc_id, {})
            for name, n in fields.items():
                doc[name] = doc.get(name, 0) + n

    async def read(self, ids: Sequence[str]) -> dict[str, dict[str, int]]:
        return {i: dict(self.docs[i]) for i in ids if i in self.docs}

    async def read_all(self) -> dict[str, dict[str, int]]:
        return {i: dict(doc) for i, doc in self.docs.items()}


def _per_clock() -> dict[Labels, float]:
    return {(clock,): 0.0 for clock in CLOCK_STATES}


@dataclass
class CountedFigures:
    """The complaint gauges as the counters give them at `now`."""

    now: datetime
    open: dict[Labels, float] = field(default_factory=dict)
    open_by_kecamatan: dict[Labels, float] = field(default_factory=dict)
    deadlines_due: dict[Labels, float] = field(default_factory=_per_clock)
    deadlines_overdue: dict[Labels, float] = field(default_factory=_per_clock)
    urgent_unacknowledged: dict[Labels, float] = field(default_factory=dict)
    urgent_oldest_age_s: float = 0.0

    @property
    def triage_queue(self) -> float:
        return sum(n for (state, _, _), n in self.open.items() if state == State.TRIAGE)


async def read_figures(store: CountStore, now: datetime) -> CountedFigures:
    """The gauges from a dozen small documents: the open counts, each clock's days,
    and each clock's today and tomorrow, second by second."""
    now = aware(now).astimezone(UTC).replace(microsecond=0)
    today, tomorrow = _day(now), _day(now + DUE_SOON)
    ids = [OPEN_DOC]
    for clock in DEADLINE_CLOCKS:
        ids += [days_doc(clock), day_doc(clock, today), day_doc(clock, tomorrow)]
    docs = await store.read(list(dict.fromkeys(ids)))
    figures = CountedFigures(now)
    for name, n in docs.get(OPEN_DOC, {}).items():
        kind, _, rest = name.partition("|")
        if n <= 0:
            continue
        if kind == "o":
            state, agency, priority = rest.split("|")
            figures.open[(state, agency, priority)] = float(n)
        elif kind == "k":
            figures.open_by_kecamatan[(rest.replace(":", "."),)] = float(n)
    for clock in DEADLINE_CLOCKS:
        overdue, due = _deadline_sums(docs, clock, now)
        if clock == URGENT_ACK:
            figures.urgent_unacknowledged = {(g,): float(n) for g, n in overdue.items() if n > 0}
            oldest = await _earliest(store, docs, clock)
            if oldest is not None:
                since = oldest - URGENT_ACK_AFTER
                figures.urgent_oldest_age_s = max(0.0, (now - since).total_seconds())
        else:
            figures.deadlines_overdue[(clock,)] = float(sum(overdue.values()))
            figures.deadlines_due[(clock,)] = float(sum(due.values()))
    return figures


def _at(day: str, hhmmss: str) -> datetime:
    return datetime.strptime(day + hhmmss, "%Y%m%d%H%M%S").replace(tzinfo=UTC)


def _deadline_sums(
    docs: Mapping[str, Mapping[str, int]], clock: str, now: datetime
) -> tuple[Counter[str], Counter[str]]:
    """Per group: deadlines before `now` (overdue) and within the next 24 hours (due)."""
    overdue: Counter[str] = Counter()
    due: Counter[str] = Counter()
    today, tomorrow = _day(now), _day(now + DUE_SOON)
    for name, n in docs.get(days_doc(clock), {}).items():
        group, _, day = name.partition("|")
        if day < today:
            overdue[group] += n
    for day in dict.fromkeys((today, tomorrow)):
        for name, n in docs.get(day_doc(clock, day), {}).items():
            group, _, hhmmss = name.partition("|")
            at = _at(day, hhmmss)
            if at < now:
                overdue[group] += n
            elif at < now + DUE_SOON:
                due[group] += n
    return overdue, due


async def _earliest(
    store: CountStore, docs: Mapping[str, Mapping[str, int]], clock: str
) -> datetime | None:
    """The earliest running deadline of `clock` (one more read when it is not today's)."""
    days = sorted(
        day
        for name, n in docs.get(days_doc(clock), {}).items()
        if n > 0
        for day in [name.partition("|")[2]]
    )
    for day in days:
        doc_id = day_doc(clock, day)
        seconds = docs.get(doc_id)
        if seconds is None:
            seconds = (await store.read([doc_id])).get(doc_id, {})
        times = [name.partition("|")[2] for name, n in seconds.items() if n > 0]
        if times:
            return _at(day, min(times))
    return None
