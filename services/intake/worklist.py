"""An agency's worklist: small entries, one per complaint that is or was in an
agency's hands, kept at the complaint's version on every write, and read in the
worklist's order through one string key."""

import asyncio
import contextlib
from datetime import UTC, datetime, timedelta
from typing import Any

from pymongo import ASCENDING, DESCENDING
from pymongo.asynchronous.collection import AsyncCollection
from pymongo.asynchronous.database import AsyncDatabase
from pymongo.errors import DuplicateKeyError

from lapor.runtime.write_behind import WriteBehind
from services.intake.domain import WORKLIST_STATES

Document = dict[str, Any]

# The agency worklist: urgent first, always; then the nearest deadline the agency
# still has to meet, complaints without one last; the oldest first among equals.
# FerretDB cannot sort by a computed expression, so the deadline and its flag are
# stored fields, kept up to date on every write (`worklist_fields`).
WORKLIST_ORDER = [
    ("priority_rank", ASCENDING),
    ("has_next_deadline", DESCENDING),
    ("next_deadline", ASCENDING),
    ("received_at", ASCENDING),
    ("_id", ASCENDING),
]


# An agency's open worklist is read from small entries, one per complaint that is or
# was in an agency's hands, kept at the complaint's version on every write: what a
# worklist item shows, filters on and sorts by. `open_agency` None: off every list.
WORKLIST_ENTRIES = "worklist_entries"
WORKLIST_MARK = "worklist_sync"
PENDING = "pending"
_MIGRATED = "~complaints-before-worklist-entries-listed"
_LISTING_AT_ONCE = 16
_ENTRY_FIELDS = (
    "open_agency",
    "agency",
    "region",
    "state",
    "priority",
    "priority_rank",
    "category",
    "received_at",
    "deadlines",
    "next_deadline",
    "has_next_deadline",
    "place",
    "anonymous",
    "text",
    "version",
)
_ENTRY_PROJECTION: Document = dict.fromkeys(_ENTRY_FIELDS, 1)


# A worklist entry's place in the worklist's order as one string (`worklist_key`): an
# index on (open_agency, worklist_key) then serves each page in order, on MongoDB and in
# our FerretDB build (which walks such an index only for one string sort field).
WORKLIST_KEY = "worklist_key"
_KEY_FILLED = "~entries-before-worklist-key"


def _key_time(value: datetime | None) -> str:
    """Fixed width, to the millisecond the database keeps; naive means UTC. A missing
    value sorts first, as a missing field does."""
    if value is None:
        return "-"
    if value.tzinfo is not None:
        value = value.astimezone(UTC).replace(tzinfo=None)
    return value.strftime("%Y%m%dT%H%M%S.") + f"{value.microsecond // 1000:03d}"


def worklist_key(entry: Document) -> str:
    """Sorts as `WORKLIST_ORDER` does: priority rank, deadline first (the flag is
    descending), nearest deadline, oldest received, id. Characters below '"', spaces
    and escapes are avoided: our FerretDB build orders strings by their JSON text."""
    rank, flag = entry.get("priority_rank"), entry.get("has_next_deadline")
    return "|".join(
        (
            "-" if rank is None else f"{int(rank):02d}",
            "2" if flag is None else str(1 - int(flag)),
            _key_time(entry.get("next_deadline")),
            _key_time(entry.get("received_at")),
            str(entry.get("_id")),
        )
    )


def worklist_entry(doc: Document) -> Document:
    entry = {key: doc.get(key) for key in _ENTRY_FIELDS}
    entry["version"] = int(doc.get("version") or 0)
    entry[WORKLIST_KEY] = worklist_key(doc)
    return entry


def worklist_query(agency: str, states: list[str], also: Document | None = None) -> Document:
    """The filter of an agency's worklist. Within the open states it reads the agency's
    entries: `open_agency` equal to the agency (the index's first key; only an agency's
    open complaints have it, so `agency` needs no condition) and any `worklist_key`
    (a string comparison, which matches strings only: the sort key is then a string for
    every entry read, which our FerretDB build requires to walk the index in order)."""
    if set(states) <= WORKLIST_STATES:
        query: Document = {"open_agency": agency, WORKLIST_KEY: {"$gt": ""}}
        if set(states) != WORKLIST_STATES:
            query["state"] = {"$in": states}
    else:
        query = {"agency": agency, "state": {"$in": states}}
    return query | (also or {})


def _unmark(doc: Document) -> tuple[Document, Document]:
    """The mark's clear: only if no newer write has marked the complaint again."""
    marked = {"_id": doc["_id"], "version": doc.get("version"), WORKLIST_MARK: PENDING}
    return marked, {"$set": {WORKLIST_MARK: None}}


class WorklistEntries:
    """The complaint store's worklist side: listing written complaints, the sweep
    of those still marked, the one-time fills, and the reads of a worklist."""

    database: AsyncDatabase[Document]
    complaints: AsyncCollection[Document]
    worklist_entries: AsyncCollection[Document]
    deferred: WriteBehind | None
    # The version whose mark's clear is queued, by complaint (see `_unmark_later`).
    _unmarking: dict[str, int]

    async def _list(self, doc: Document, *, now: bool = False, later: bool = False) -> None:
        """Bring the complaint's worklist entry up to its version, then clear the mark
        (only if no newer write has marked it again meanwhile). `now`: nothing deferred
        (the sweep); `later`: the entry too goes out with the deferred writes, the mark
        cleared once it was written (a change nobody waits to see listed)."""
        entry = worklist_entry(doc)
        newer = {"_id": doc["_id"], "version": {"$lt": entry["version"]}}
        deferred = None if now else self.deferred
        if deferred is not None and later:
            # A newer version's entry queued meanwhile takes this one's place.
            deferred.update(
                self.worklist_entries.name,
                newer,
                {"$set": entry},
                upsert=True,
                done=lambda: self._unmark_later(deferred, doc),
                replaces=("entry", doc["_id"]),
            )
            return
        with contextlib.suppress(DuplicateKeyError):  # the entry is newer already
            await self.worklist_entries.update_one(newer, {"$set": entry}, upsert=True)
        if deferred is not None:
            self._unmark_later(deferred, doc)
        else:
            await self.complaints.update_one(*_unmark(doc))

    def _unmark_later(self, deferred: WriteBehind, doc: Document) -> None:
        """Queue the mark's clear; one still queued for an older version gives way (it
        could match nothing any more), one for a newer version is kept."""
        complaint_id, version = doc["_id"], int(doc.get("version") or 0)
        if self._unmarking.get(complaint_id, -1) > version:
            return

        def unmarked() -> None:
            if self._unmarking.get(complaint_id) == version:
                del self._unmarking[complaint_id]

        self._unmarking[complaint_id] = version
        deferred.update(
            self.complaints.name, *_unmark(doc), done=unmarked, replaces=("mark", complaint_id)
        )

    async def sync_worklist(
        self, batch: int = 200, rounds: int = 1000, *, grace: timedelta = timedelta(0)
    ) -> int:
        """List the complaints still marked: a crash between a write and its entry,
        complaints stored before the entries existed or loaded in bulk. How many.

        A complaint written less than `grace` ago is left alone: its entry is on its
        way with the deferred writes, which would meet the entry listed here as newer
        than theirs (a duplicate key that sends their whole command again one by one)."""
        query: Document = {WORKLIST_MARK: PENDING}
        if grace > timedelta(0):
            query["updated_at"] = {"$lt": datetime.now(UTC) - grace}
        synced = 0
        for _ in range(rounds):
            docs = await self.complaints.find(query, _ENTRY_PROJECTION, limit=batch).to_list(batch)
            if not docs:
                break
            # One by one (FerretDB v1 answers a bulk of upserts without `nModified`,
            # which pymongo cannot read), a few at a time; each mark cleared at once,
            # or the next round would find it again.
            for first in range(0, len(docs), _LISTING_AT_ONCE):
                await asyncio.gather(
                    *(self._list(d, now=True) for d in docs[first : first + _LISTING_AT_ONCE])
                )
            synced += len(docs)
        return synced

    async def _fill_open_agency(self) -> None:
        """Complaints stored before `open_agency` existed get it (once, by agency) and
        are marked for their worklist entry (`sync_worklist`)."""
        if await self.worklist_entries.find_one({"_id": _MIGRATED}) is not None:
            return
        missing = {"open_agency": {"$exists": False}, "state": {"$in": sorted(WORKLIST_STATES)}}
        groups = await self.complaints.aggregate(
            [{"$match": missing}, {"$group": {"_id": "$agency", "n": {"$sum": 1}}}]
        )
        async for group in groups:
            await self.complaints.update_many(
                {**missing, "agency": group["_id"]},
                {"$set": {"open_agency": group["_id"], WORKLIST_MARK: PENDING}},
            )
        await self.sync_worklist()
        with contextlib.suppress(DuplicateKeyError):
            await self.worklist_entries.insert_one({"_id": _MIGRATED, "open_agency": None})

    async def _fill_worklist_key(self) -> None:
        """Entries listed before `worklist_key` existed get it (once), computed from the
        entry itself; an entry rewritten meanwhile got it with the rewrite. Read in one
        pass: the filter has no indexed equality, so each read scans every entry."""
        if await self.worklist_entries.find_one({"_id": _KEY_FILLED}) is not None:
            return
        missing = {"open_agency": {"$type": "string"}, WORKLIST_KEY: {"$exists": False}}
        fields = {"version": 1, "priority_rank": 1, "has_next_deadline": 1}
        fields |= {"next_deadline": 1, "received_at": 1}
        entries = await self.worklist_entries.find(missing, fields).to_list(None)
        for first in range(0, len(entries), _LISTING_AT_ONCE):
            await asyncio.gather(
                *(
                    self.worklist_entries.update_one(
                        {"_id": entry["_id"], "version": entry.get("version")},
                        {"$set": {WORKLIST_KEY: worklist_key(entry)}},
                    )
                    for entry in entries[first : first + _LISTING_AT_ONCE]
                )
            )
        with contextlib.suppress(DuplicateKeyError):
            await self.worklist_entries.insert_one({"_id": _KEY_FILLED, "open_agency": None})

    async def worklist(
        self,
        agency: str,
        states: list[str],
        limit: int = 200,
        *,
        offset: int = 0,
        also: Document | None = None,
    ) -> list[Document]:
        """An agency's complaints in `states`, in the worklist's order; `also`: more
        conditions (`worklist_query`)."""
        source = self._worklist_source(states)
        order = [(WORKLIST_KEY, ASCENDING)] if source is self.worklist_entries else WORKLIST_ORDER
        cursor = (
            source.find(worklist_query(agency, states, also), _ENTRY_PROJECTION)
            .sort(order)
            .skip(offset)
            .limit(limit)
        )
        return await cursor.to_list(limit)

    async def count_worklist(
        self,
        agency: str,
        states: list[str],
        also: Document | None = None,
        *,
        up_to: int | None = None,
    ) -> int:
        """Without further conditions the open worklist is counted by equalities only,
        one count per state: indexed equalities our FerretDB build counts in the index
        instead of decoding every entry. `up_to`: counting stops past that many (the
        answer is then `up_to + 1`), for conditions the database can only check entry
        by entry."""
        source = self._worklist_source(states)
        if source is self.worklist_entries and not also:
            if set(states) == WORKLIST_STATES:
                return await self._count(source, {"open_agency": agency})
            counts = await asyncio.gather(
                *(self._count(source, {"open_agency": agency, "state": s}) for s in set(states))
            )
            return sum(counts)
        query = worklist_query(agency, states, also)
        return await self._count(source, query, None if up_to is None else up_to + 1)

    async def _count(
        self, source: AsyncCollection[Document], query: Document, limit: int | None = None
    ) -> int:
        """The `count` command: MongoDB's exact count for a filter, which FerretDB can
        answer without a pipeline (`count_documents` sends an aggregation)."""
        command: Document = {"count": source.name, "query": query}
        if limit:
            command["limit"] = limit
        reply = await self.database.command(command)
        return int(reply["n"])

    def _worklist_source(self, states: list[str]) -> AsyncCollection[Document]:
        """The open states read the small worklist entries: the database decodes every
        document it filters, and a complaint with its history is many times larger."""
        return self.worklist_entries if set(states) <= WORKLIST_STATES else self.complaints
