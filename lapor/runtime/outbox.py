"""The transactional outbox: an event is stored in the same document write as the
change it announces, and published from there.

A write and a publish are two systems; a crash or a NATS outage between them
would leave a stored change that nobody hears about (SLA would keep the clock
of an answered complaint running). So a service that changes a document others
must hear about puts the announcement into that document, in the same atomic
update, under `outbox.<key>`, and marks the document `announce: "pending"`.
The relay then publishes each pending announcement with its event id as
`Nats-Msg-Id` (JetStream drops a second copy) and clears it after the PubAck.
The handler that made the change flushes right away; a retried message flushes
what is still pending; `run_sweeper` publishes whatever a crash left behind,
at start-up and on a timer.

Announcements are stored as they are published: no announcement carries
personal data in clear (a reporter's reply addresses travel sealed to notify's
public key), so the services that store them hold no key that opens anything.
"""

import asyncio
import hashlib
import logging
from collections.abc import Awaitable, Callable, Iterable, Mapping
from datetime import UTC, datetime, timedelta
from typing import Any

from pydantic import BaseModel
from pymongo import ASCENDING
from pymongo.asynchronous.collection import AsyncCollection

from lapor.runtime.broker import EventPublisher
from lapor.runtime.periodic import start_task
from lapor.runtime.write_behind import WriteBehind

log = logging.getLogger(__name__)

Document = dict[str, Any]

PENDING = "pending"
# The fields a document's announcements live in.
OUTBOX = "outbox"
FLAG = "announce"


def outbox_key(event_id: str) -> str:
    """A field name for an event id: ids may hold dots, which a field name may not."""
    return hashlib.sha256(event_id.encode()).hexdigest()[:24]


class Outbox:
    """Puts announcements into a document's write and publishes them from there."""

    def __init__(
        self,
        publishers: Iterable[EventPublisher],
        deferred: WriteBehind | None = None,
        subject_of: Callable[[BaseModel], str | None] | None = None,
    ) -> None:
        publishers = list(publishers)
        # An event goes to the first publisher of its schema, unless `subject_of`
        # names another of the same schema for it.
        self._by_schema: dict[type[BaseModel], EventPublisher] = {}
        for publisher in publishers:
            self._by_schema.setdefault(publisher.schema, publisher)
        self._by_subject = {p.subject: p for p in publishers}
        self._subject_of = subject_of
        # Clearing what was published may follow a moment later, with others' clears
        # in one command; until then this process does not publish those again.
        self.deferred = deferred
        self._clearing: set[str] = set()
        # The version each owner's queued clear is for, by (collection, owner id).
        self._clear_version: dict[tuple[str, Any], Any] = {}

    def fields(self, owner_id: str, events: Iterable[BaseModel], at: datetime) -> Document:
        """`$set` fields that store `events` as pending announcements of `owner_id`."""
        fields: Document = {}
        for event in events:
            event_id = str(getattr(event, "event_id"))  # noqa: B009 - every announcement has one
            subject = self._subject_of(event) if self._subject_of is not None else None
            publisher = self._by_subject[subject] if subject else self._by_schema[type(event)]
            body = event.model_dump_json(by_alias=True)
            entry: Document = {
                "event_id": event_id,
                "subject": publisher.subject,
                "at": at,
                "body": body,
            }
            fields[f"{OUTBOX}.{outbox_key(event_id)}"] = entry
        if fields:
            fields[FLAG] = PENDING
        return fields

    def document(self, doc: Document, events: Iterable[BaseModel], at: datetime) -> Document:
        """A new document with `events` pending in it, for an insert."""
        stored = dict(doc)
        pending: Document = {}
        for path, value in self.fields(doc["_id"], events, at).items():
            if path == FLAG:
                stored[FLAG] = value
            else:
                pending[path.removeprefix(f"{OUTBOX}.")] = value
        if pending:
            stored[OUTBOX] = pending
        return stored

    async def flush(self, collection: AsyncCollection[Document], doc: Document | None) -> int:
        """Publish `doc`'s pending announcements in the order they were stored, then
        clear them; returns how many were published. A failed publish raises and
        leaves the rest pending for a retry or the sweeper."""
        if doc is None or not (pending := doc.get(OUTBOX)):
            return 0
        entries = sorted(
            ((key, entry) for key, entry in pending.items() if key not in self._clearing),
            key=lambda item: (item[1]["at"], item[0]),
        )
        if not entries:
            if self.deferred is not None:
                # All published, their clear queued for the version they were read in:
                # a newer version (a write that announced nothing) takes the clear over.
                self._clear_later(collection.name, doc, [])
            return 0
        for _key, entry in entries:
            publisher = self._by_subject[entry["subject"]]
            body = self._body(doc["_id"], entry)
            await publisher.publish(
                publisher.schema.model_validate_json(body), msg_id=entry["event_id"]
            )
        await self._clear(collection, doc, [key for key, _ in entries])
        return len(entries)

    def _body(self, owner_id: str, entry: Document) -> str:
        if "body" not in entry:
            # Sealed whole by an earlier version, whose services held the private key:
            # none does now, so such leftovers must be published before an upgrade.
            raise RuntimeError(f"a sealed announcement of {owner_id} this service cannot open")
        return str(entry["body"])

    async def _clear(
        self, collection: AsyncCollection[Document], doc: Document, keys: list[str]
    ) -> None:
        if self.deferred is not None and keys:
            self._clear_later(collection.name, doc, keys)
            return
        # Nothing written since `doc` was read (the usual case): clear all in one write.
        # Clearing does not change `version`, so a writer holding this version still
        # succeeds afterwards, and its new announcement is set on its own.
        unchanged: Document = {"_id": doc["_id"], "version": doc.get("version")}
        done = await collection.update_one(unchanged, {"$unset": {OUTBOX: "", FLAG: ""}})
        if done.matched_count:
            return
        await collection.update_one(
            {"_id": doc["_id"]}, {"$unset": {f"{OUTBOX}.{key}": "" for key in keys}}
        )
        await collection.update_one(
            {"_id": doc["_id"], OUTBOX: {}}, {"$unset": {OUTBOX: "", FLAG: ""}}
        )

    def _clear_later(self, collection: str, doc: Document, keys: list[str]) -> None:
        """One statement, queued: the version that was read holds nothing unpublished.

        A newer version holds announcements of its own, or none; its flush aims the
        clear at itself, in place of this statement. A version written elsewhere is
        cleared by its writer's flush or, after a crash, by the sweeper (published
        again, JetStream drops the copy). Nothing unpublished is ever cleared."""
        assert self.deferred is not None
        owner, version = (collection, doc["_id"]), doc.get("version")
        if owner in self._clear_version:
            aimed = self._clear_version[owner]
            if version == aimed and not keys:
                return
            if isinstance(version, int) and isinstance(aimed, int) and version < aimed:
                return  # read before the version the queued clear is for, which covers it
        self._clear_version[owner] = version
        self._clearing.update(keys)

        def cleared() -> None:
            self._clearing.difference_update(keys)
            if owner in self._clear_version and self._clear_version[owner] == version:
                del self._clear_version[owner]

        self.deferred.update(
            collection,
            {"_id": doc["_id"], "version": version},
            {"$unset": {OUTBOX: "", FLAG: ""}},
            done=cleared,
            replaces=(OUTBOX, doc["_id"]),
        )

    async def sweep(
        self,
        collections: Iterable[AsyncCollection[Document]],
        *,
        older_than: timedelta,
        now: datetime | None = None,
        limit: int = 500,
    ) -> int:
        """Publish what is pending longer than `older_than` (a crash, an outage)."""
        cutoff = (now or datetime.now(UTC)) - older_than
        published = 0
        for collection in collections:
            cursor = collection.find({FLAG: PENDING}).limit(limit)
            async for doc in cursor:
                entries = (doc.get(OUTBOX) or {}).values()
                if entries and min(entry["at"] for entry in entries) > cutoff:
                    continue  # its own handler is most likely publishing it right now
                if not entries:
                    await self._clear(collection, doc, [])
                    continue
                published += await self.flush(collection, doc)
        return published


async def ensure_outbox_index(collection: AsyncCollection[Document]) -> None:
    """The sweeper's lookup: equality on the flag, through an index (also on FerretDB)."""
    await collection.create_index([(FLAG, ASCENDING)])


def start_sweeper(
    outbox: Outbox,
    collections: Mapping[str, AsyncCollection[Document]],
    *,
    interval_s: float = 15.0,
    grace: timedelta = timedelta(seconds=10),
) -> Callable[[], Awaitable[None]]:
    """Sweep once at start-up (everything pending), then every `interval_s` seconds
    (what is pending longer than `grace`); returns the function that stops it."""
    rounds = 0

    async def sweep() -> int:
        nonlocal rounds
        rounds += 1
        older_than = timedelta(0) if rounds == 1 else grace
        return await outbox.sweep(collections.values(), older_than=older_than)

    return start_periodic("outbox", sweep, interval_s)


def start_periodic(
    name: str, job: Callable[[], Awaitable[int]], interval_s: float
) -> Callable[[], Awaitable[None]]:
    """Run `job` now and then every `interval_s` seconds until stopped; a failed round
    (the database or NATS away) is logged and the next one tries again. `job`
    returns how many leftovers it published."""

    async def loop() -> None:
        while True:
            try:
                if published := await job():
                    log.info("%s sweep published %d pending announcements", name, published)
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                log.warning("%s sweep failed (%s); next try in %.0f s", name, exc, interval_s)
            await asyncio.sleep(interval_s)

    return start_task(f"{name}-sweeper", loop())
