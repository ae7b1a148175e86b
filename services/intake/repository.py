"""Storage of complaints, rejection records and dead letters (MongoDB or FerretDB v1)."""

import asyncio
import contextlib
from collections import OrderedDict
from collections.abc import Callable, Sequence
from datetime import UTC, datetime
from typing import Any

import bson
from pydantic import BaseModel
from pymongo import ASCENDING, DESCENDING, ReturnDocument
from pymongo.asynchronous.collection import AsyncCollection
from pymongo.asynchronous.database import AsyncDatabase
from pymongo.errors import DuplicateKeyError

from lapor.runtime.outbox import Outbox, ensure_outbox_index
from lapor.runtime.write_behind import WriteBehind
from services.intake.auth import LAST_USE_EVERY, needs_last_use, new_token_id, token_refusal
from services.intake.counts import CountBuffer
from services.intake.domain import (
    WORKLIST_STATES,
    Change,
    Transition,
    after_change,
    changed_fields,
)
from services.intake.ports import TrackingIdTaken

Document = dict[str, Any]

# Each conflict means another writer changed the complaint in between; this many
# in a row means something is wrong, not busy.
_MAX_CONFLICTS = 50


class WriteConflict(RuntimeError):
    """The complaint kept changing under every attempt to decide on it."""


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


class RecentComplaints:
    """The complaints this process wrote last, as it wrote them (copies)."""

    def __init__(self, size: int = 1000) -> None:
        self.size = size
        self._docs: OrderedDict[str, Document] = OrderedDict()

    def put(self, doc: Document) -> None:
        self._docs[doc["_id"]] = dict(doc)
        self._docs.move_to_end(doc["_id"])
        while len(self._docs) > self.size:
            self._docs.popitem(last=False)

    def get(self, complaint_id: str) -> Document | None:
        doc = self._docs.pop(complaint_id, None)
        return dict(doc) if doc is not None else None


class ComplaintRepository:
    def __init__(
        self,
        db: AsyncDatabase[Document],
        outbox: Outbox | None = None,
        counts: CountBuffer | None = None,
        deferred: WriteBehind | None = None,
    ) -> None:
        # Where clearing a worklist mark may wait to go out with others (None: at once).
        self.deferred = deferred
        self.recent = RecentComplaints()
        # The complaint gauges' counters, told of every stored change (`counts`).
        self.counts = counts
        self.database = db
        self.complaints = db["complaints"]
        self.worklist_entries = db[WORKLIST_ENTRIES]
        self.rejections = db["rejections"]
        self.dead_letters = db["dead_letters"]
        self.tokens = db["api_tokens"]
        self.sender_messages = db["sender_messages"]
        self.rate_notices = db["rate_notices"]
        # Announcements of changes are stored with the change (the outbox).
        self.outbox = outbox

    async def ensure_indexes(self) -> None:
        await self.complaints.create_index("source_key", unique=True)
        await self.complaints.create_index([("state", ASCENDING), ("agency", ASCENDING)])
        await self.complaints.create_index(
            [("reporter_hash", ASCENDING), ("received_at", DESCENDING)]
        )
        await self.rejections.create_index("source_key", unique=True)
        await self.sender_messages.create_index([("phone_hash", ASCENDING), ("at", ASCENDING)])
        await self.complaints.create_index([("agency", ASCENDING), *WORKLIST_ORDER[:3]])
        await self.complaints.create_index(WORKLIST_MARK)
        await self.worklist_entries.create_index(
            [("open_agency", ASCENDING), (WORKLIST_KEY, ASCENDING)]
        )
        await self.worklist_entries.create_index([("open_agency", ASCENDING), ("state", ASCENDING)])
        await self._fill_open_agency()
        await self._fill_worklist_key()
        # The public reads by period (Open311 listing, performance report): equality on
        # the region, then a range of received_at, which our FerretDB build can use too.
        await self.complaints.create_index([("region", ASCENDING), ("received_at", DESCENDING)])
        await ensure_outbox_index(self.complaints)
        await ensure_outbox_index(self.rejections)

    async def add_complaint(
        self, doc: Document, events: Sequence[BaseModel] = ()
    ) -> tuple[Document, bool]:
        """Store a new complaint with its announcements pending; a second delivery
        of the same source returns the first."""
        if events:
            doc = self.outbox_or_fail().document(doc, events, doc["updated_at"])
        try:
            await self.complaints.insert_one(doc)
        except DuplicateKeyError:
            existing = await self.complaints.find_one({"source_key": doc["source_key"]})
            if existing is None:  # the tracking id itself collided: the caller retries
                raise TrackingIdTaken(doc["_id"]) from None
            return existing, False
        # As the database keeps it (times to the millisecond), as a read would return it.
        self.recent.put(bson.decode(bson.encode(doc), self.complaints.codec_options))
        if self.counts is not None:
            self.counts.record(None, doc)
        return doc, True

    async def add_rejection(
        self, doc: Document, events: Sequence[BaseModel] = ()
    ) -> tuple[Document, bool]:
        if events:
            doc = self.outbox_or_fail().document(doc, events, doc["stored_at"])
        try:
            await self.rejections.insert_one(doc)
        except DuplicateKeyError:
            existing = await self.rejections.find_one({"source_key": doc["source_key"]})
            if existing is None:
                raise
            return existing, False
        return doc, True

    async def by_source(self, source_key: str) -> Document | None:
        return await self.complaints.find_one({"source_key": source_key})

    async def get(self, tracking_id: str) -> Document | None:
        return await self.complaints.find_one({"_id": tracking_id})

    async def announce(self, doc: Document | None) -> int:
        """Publish the complaint's pending announcements (see `lapor.runtime.outbox`)."""
        return await self.outbox_or_fail().flush(self.complaints, doc)

    async def announce_rejection(self, doc: Document | None) -> int:
        return await self.outbox_or_fail().flush(self.rejections, doc)

    def outbox_collections(self) -> dict[str, AsyncCollection[Document]]:
        return {"complaints": self.complaints, "rejections": self.rejections}

    async def apply(self, complaint_id: str, transition: Transition) -> Document | None:
        """Apply a transition once, unannounced (notes, stored deadlines).

        Returns the complaint after the change, the unchanged complaint if the
        transition was already applied, or None if there is no such complaint.
        """
        doc, _ = await self.change(complaint_id, lambda _doc: Change(transition))
        return doc

    async def change(
        self, complaint_id: str, decide: Callable[[Document], Change | None]
    ) -> tuple[Document | None, Change | None]:
        """Read the complaint, decide, and write the decision only if the complaint
        is still the one the decision was made on; otherwise read and decide again.

        `decide` sees the stored complaint and returns the change to make, or None
        for none (already applied, no longer wanted); it may raise to refuse.
        Returns the complaint after the write (or as read, when nothing was
        written) and the change written; (None, None) when there is no complaint.
        The precondition is the version in the same atomic update: two replicas
        can never both apply a decision to the same old state.
        """
        # The complaint as this process last wrote it saves the read when nothing
        # changed it since: a write decided on it succeeds only on that version. A
        # decision not to write (nothing to do, a refusal) is never taken on it.
        recent = self.recent.get(complaint_id)
        for _ in range(_MAX_CONFLICTS):
            doc = recent if recent is not None else await self.get(complaint_id)
            if doc is None:
                return None, None
            try:
                change = decide(doc)
            except Exception:
                if recent is None:
                    raise
                change = None
            done = change is None or change.transition.event_id in doc.get("event_ids", [])
            if recent is not None and done:
                recent = None
                continue
            if change is None or done:
                return doc, None  # nothing to do, or a redelivery of what is done
            recent = None
            if (updated := await self._write(doc, change)) is not None:
                return updated, change
        raise WriteConflict(f"{complaint_id}: changed by others {_MAX_CONFLICTS} times in a row")

    async def _write(self, doc: Document, change: Change) -> Document | None:
        transition, now = change.transition, datetime.now(UTC)
        changes = changed_fields(doc, transition, now)
        events = change.announce(after_change(doc, transition, now))
        if events:
            changes |= self.outbox_or_fail().fields(doc["_id"], events, now)
        listed = doc.get("open_agency") is not None or changes.get("open_agency") is not None
        if listed:
            # Written with the change: a crash before the worklist entry follows
            # leaves this mark for the sweep (`sync_worklist`).
            changes[WORKLIST_MARK] = PENDING
        # `event_ids` mirrors the history's event ids as a flat array: FerretDB v1
        # does not apply `$ne` to a dotted path into an array of documents.
        updated = await self.complaints.find_one_and_update(
            {
                "_id": doc["_id"],
                "version": doc.get("version"),
                "event_ids": {"$ne": transition.event_id},
            },
            {
                "$set": changes,
                "$push": {
                    "history": transition.history_entry(),
                    "event_ids": transition.event_id,
                },
            },
            return_document=ReturnDocument.AFTER,
        )
        if updated is not None:
            self.recent.put(updated)
        if updated is not None and self.counts is not None:
            # Only a write that applied counts: a redelivery never gets here.
            self.counts.record(doc, updated)
        if updated is not None and listed:
            await self._list(updated)
        return updated

    async def _list(self, doc: Document, *, now: bool = False) -> None:
        """Bring the complaint's worklist entry up to its version, then clear the mark
        (only if no newer write has marked it again meanwhile); `now`: not deferred."""
        entry = worklist_entry(doc)
        with contextlib.suppress(DuplicateKeyError):  # the entry is newer already
            await self.worklist_entries.update_one(
                {"_id": doc["_id"], "version": {"$lt": entry["version"]}},
                {"$set": entry},
                upsert=True,
            )
        marked = {"_id": doc["_id"], "version": doc.get("version"), WORKLIST_MARK: PENDING}
        unmark = {"$set": {WORKLIST_MARK: None}}
        if self.deferred is not None and not now:
            self.deferred.update(self.complaints.name, marked, unmark)
        else:
            await self.complaints.update_one(marked, unmark)

    async def sync_worklist(self, batch: int = 200, rounds: int = 1000) -> int:
        """List the complaints still marked: a crash between a write and its entry,
        complaints stored before the entries existed or loaded in bulk. How many."""
        synced = 0
        for _ in range(rounds):
            docs = await self.complaints.find(
                {WORKLIST_MARK: PENDING}, _ENTRY_PROJECTION, limit=batch
            ).to_list(batch)
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

    def outbox_or_fail(self) -> Outbox:
        if self.outbox is None:
            raise RuntimeError("this repository has no outbox to announce changes through")
        return self.outbox

    async def record_sender_message(self, source_key: str, phone_hash: str, at: datetime) -> bool:
        """Count each inbound message once, whatever the gateway retries; True the
        first time."""
        try:
            await self.sender_messages.insert_one(
                {"_id": source_key, "phone_hash": phone_hash, "at": at}
            )
        except DuplicateKeyError:
            return False
        return True

    async def count_sender_messages(self, phone_hash: str, since: datetime) -> int:
        return await self.sender_messages.count_documents(
            {"phone_hash": phone_hash, "at": {"$gte": since}}
        )

    async def claim_notice(self, key: str) -> bool:
        """True for the first claimant of a notice key (an insert is atomic on FerretDB too)."""
        try:
            await self.rate_notices.insert_one({"_id": key})
        except DuplicateKeyError:
            return False
        return True

    async def recent_by_sender(self, phone_hash: str, since: datetime) -> list[Document]:
        """The sender's own recent SMS complaints: a number a partner or the web form
        named is a reply contact, not the sender of those complaints."""
        cursor = (
            self.complaints.find(
                {"reporter_hash": phone_hash, "channel": "sms", "received_at": {"$gte": since}},
                {"text": 1, "state": 1, "region": 1},
            )
            .sort("received_at", DESCENDING)
            .limit(20)
        )
        return await cursor.to_list(20)

    async def search(self, query: Document, limit: int) -> list[Document]:
        projection = {"history": 0, "event_ids": 0, "reporter": 0, "reporter_hash": 0}
        cursor = self.complaints.find(query, projection).sort("received_at", DESCENDING)
        return await cursor.limit(limit).to_list(limit)

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

    async def triage_queue(self, limit: int = 200) -> list[Document]:
        """Complaints waiting for an admin's triage decision, the longest waiting first."""
        cursor = (
            self.complaints.find(
                {"state": "triage"},
                {"history": 0, "event_ids": 0, "reporter": 0, "reporter_hash": 0},
            )
            .sort([("received_at", ASCENDING), ("_id", ASCENDING)])
            .limit(limit)
        )
        return await cursor.to_list(limit)

    async def find_token(self, token_hash: str) -> Document | None:
        """The stored token, whether usable or not."""
        return await self.tokens.find_one({"_id": token_hash})

    async def token(self, token_hash: str, now: datetime | None = None) -> Document | None:
        """The token if it may be used (not revoked, not expired), its use recorded."""
        now = now or datetime.now(UTC)
        record = await self.find_token(token_hash)
        if record is None or token_refusal(record, now) is not None:
            return None
        await self.record_token_use(record, now)
        return record

    async def record_token_use(self, record: Document, now: datetime) -> None:
        """Write the last use at most once a minute per token, across all replicas:
        the write applies only while the stored last use is that old."""
        if not needs_last_use(record, now):
            return
        await self.tokens.update_one(
            {
                "_id": record["_id"],
                "$or": [
                    {"last_used_at": None},
                    {"last_used_at": {"$lte": now - LAST_USE_EVERY}},
                ],
            },
            {"$set": {"last_used_at": now}},
        )

    async def list_tokens(self) -> list[Document]:
        """Every token, oldest first. Records from before public ids get one here."""
        async for legacy in self.tokens.find({"id": {"$exists": False}}, {"_id": 1}):
            await self.tokens.update_one(
                {"_id": legacy["_id"], "id": {"$exists": False}}, {"$set": {"id": new_token_id()}}
            )
        # Login sessions are tokens too, but an account's, listed with the accounts.
        machines = {"kind": {"$ne": "session"}}
        return await self.tokens.find(machines).sort("created_at", ASCENDING).to_list(None)

    async def revoke_token(self, token_id: str, now: datetime) -> Document | None:
        """Revoke by public id (a second revocation keeps the first time); None if unknown."""
        await self.tokens.update_one(
            {"id": token_id, "revoked_at": None}, {"$set": {"revoked_at": now}}
        )
        return await self.tokens.find_one({"id": token_id})

    async def add_token(self, doc: Document) -> None:
        await self.tokens.insert_one(doc)

    async def add_dead_letter(self, record: Document) -> None:
        try:
            await self.dead_letters.insert_one(record)
        except DuplicateKeyError:
            pass
