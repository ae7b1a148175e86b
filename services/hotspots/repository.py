"""Where hotspots and the routed complaints they are made of are kept.

`hotspot_members`: one document per routed complaint (the grouping's view of it,
no text, no contact). `hotspots`: one document per hotspot, with its change
announcements as an outbox (lapor.runtime.outbox): a change is stored with its
`HotspotChanged` and published from there, also after a crash.
"""

from __future__ import annotations

import contextlib
import logging
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass, replace
from datetime import UTC, datetime
from typing import Any, Protocol

from pymongo import ASCENDING, ReturnDocument, UpdateOne
from pymongo.asynchronous.database import AsyncDatabase
from pymongo.errors import DuplicateKeyError

from lapor.contracts import PlaceArea
from lapor.contracts.hotspots import OPEN_HOTSPOT_STATES, HotspotChanged, HotspotState
from lapor.runtime.outbox import Outbox, ensure_outbox_index
from services.hotspots.domain import Answer, Hotspot, Member, Refusal

log = logging.getLogger(__name__)

Document = dict[str, Any]
MEMBERS = "hotspot_members"
PLACE_KEY = "place_key"
# Marks the members stored before `place_key` existed as given one.
_PLACE_KEY_FILLED = "_place_key_filled"
_FILLED_AT_ONCE = 500
STATE_FIELDS = ("state", "outcome", "state_event_id", "state_at")
WRITTEN_FRESH_S = 5.0
HOTSPOTS = "hotspots"
LEASES = "hotspot_leases"


class VersionConflict(Exception):
    """Someone else changed the hotspot since it was read."""


@dataclass(frozen=True)
class StateChange:
    """A complaint's state change as a member keeps it."""

    complaint_id: str
    state: str
    outcome: str | None
    event_id: str
    at: datetime

    def applies_to(self, member: Member) -> bool:
        """Neither a redelivery nor older than the change the member reflects."""
        if member.state_event_id == self.event_id:
            return False
        return member.state_at is None or member.state_at <= self.at

    def fields(self) -> Document:
        return {
            "state": self.state,
            "outcome": self.outcome,
            "state_event_id": self.event_id,
            "state_at": self.at,
        }


class HotspotRepository(Protocol):
    async def member(self, complaint_id: str) -> Member | None: ...

    async def members(self, complaint_ids: Sequence[str]) -> list[Member]: ...

    async def add_member(self, member: Member) -> bool:
        """Store a member heard of for the first time, whole; False if it is stored
        already (nothing written)."""

    async def save_member(self, member: Member) -> Member:
        """Store everything of `member` but its state, which a state change may have
        set meanwhile outside the lease (`record_state`); returns the member as stored."""

    async def save_state(self, member: Member) -> None:
        """Store `member` whole, its state included: only for a member in a hotspot,
        which nothing changes outside the lease."""

    async def record_state(self, change: StateChange) -> bool:
        """Apply a state change to a member in no hotspot, if it is not the one applied
        already nor older than it; False when nothing matched (another case)."""

    async def candidates(
        self, region: str, agency: str, kecamatan: str, since: datetime, until: datetime
    ) -> list[Member]: ...

    async def hotspot(self, hotspot_id: str) -> Hotspot | None: ...

    async def hotspots(self, hotspot_ids: Sequence[str]) -> dict[str, Hotspot]: ...

    async def save_hotspot(self, hotspot: Hotspot, announce: HotspotChanged | None) -> bool:
        """Insert (version 1) or update (the version before must be the stored one);
        raises VersionConflict otherwise. `announce` is stored with the change. False
        when the hotspot was formed before (a redelivery): stored as it was then."""

    async def announce(self, hotspot_id: str) -> None:
        """Publish what is pending of a hotspot's announcements."""

    async def open_hotspots(self, agency: str | None = None) -> list[Hotspot]: ...


def _area(doc: Document | None) -> PlaceArea | None:
    return PlaceArea.model_validate(doc) if doc else None


def _utc(moment: datetime) -> datetime:
    return moment if moment.tzinfo is not None else moment.replace(tzinfo=UTC)


def place_key(region: str, agency: str | None, kecamatan_code: str | None) -> str | None:
    """What a member's candidates share: its region, agency and kecamatan, as one
    indexed value. FerretDB narrows by the leading field of an index only, so a
    lookup by kecamatan alone decoded the members of every agency there."""
    if agency is None or kecamatan_code is None:
        return None
    return f"{region}|{agency}|{kecamatan_code}"


def _place_key_of(doc: Document) -> str | None:
    return place_key(doc["region"], doc.get("agency"), doc.get("kecamatan_code"))


def member_doc(member: Member) -> Document:
    doc = asdict(member)
    doc["_id"] = doc.pop("complaint_id")
    doc["keywords"] = list(member.keywords)
    doc["kecamatan"] = member.kecamatan.model_dump() if member.kecamatan else None
    doc["kecamatan_code"] = member.kecamatan.code if member.kecamatan else None
    doc[PLACE_KEY] = place_key(member.region, member.agency, doc["kecamatan_code"])
    doc["desa"] = member.desa.model_dump() if member.desa else None
    return doc


def member_of(doc: Document) -> Member:
    return Member(
        complaint_id=doc["_id"],
        region=doc["region"],
        agency=doc.get("agency"),
        received_at=_utc(doc["received_at"]),
        keywords=tuple(doc.get("keywords") or ()),
        kecamatan=_area(doc.get("kecamatan")),
        desa=_area(doc.get("desa")),
        reporter=doc.get("reporter"),
        confidential=bool(doc.get("confidential")),
        triage=bool(doc.get("triage")),
        category=doc.get("category") or "",
        hotspot_id=doc.get("hotspot_id"),
        kept_apart=bool(doc.get("kept_apart")),
        routed_event_id=doc.get("routed_event_id") or "",
        routed_at=_utc(doc["routed_at"]) if doc.get("routed_at") else None,
        state=doc.get("state"),
        outcome=doc.get("outcome"),
        state_event_id=doc.get("state_event_id") or "",
        state_at=_utc(doc["state_at"]) if doc.get("state_at") else None,
        refusals=tuple(
            Refusal(
                command_id=r["command_id"],
                hotspot_id=r["hotspot_id"],
                round=int(r["round"]),
                reason=r["reason"],
                at=_utc(r["at"]),
            )
            for r in doc.get("refusals") or ()
        ),
    )


def hotspot_doc(hotspot: Hotspot) -> Document:
    return {
        "_id": hotspot.hotspot_id,
        "region": hotspot.region,
        "agency": hotspot.agency,
        "kecamatan": hotspot.kecamatan.model_dump() if hotspot.kecamatan else None,
        "desa": hotspot.desa.model_dump() if hotspot.desa else None,
        "members": list(hotspot.members),
        "size": len(hotspot.members),
        "state": hotspot.state.value,
        "open": hotspot.open,
        "formed_at": hotspot.formed_at,
        "updated_at": hotspot.updated_at,
        "version": hotspot.version,
        "reporters": list(hotspot.reporters),
        "answers": [asdict(a) for a in hotspot.answers],
        "merged_into": hotspot.merged_into,
    }


def hotspot_of(doc: Document) -> Hotspot:
    return Hotspot(
        hotspot_id=doc["_id"],
        region=doc["region"],
        agency=doc["agency"],
        kecamatan=_area(doc.get("kecamatan")),
        desa=_area(doc.get("desa")),
        members=tuple(doc.get("members") or ()),
        state=HotspotState(doc["state"]),
        formed_at=_utc(doc["formed_at"]),
        updated_at=_utc(doc["updated_at"]),
        version=int(doc["version"]),
        reporters=tuple(doc.get("reporters") or ()),
        answers=tuple(
            Answer(round=a["round"], text=a["text"], by=a["by"], at=_utc(a["at"]))
            for a in doc.get("answers") or ()
        ),
        merged_into=doc.get("merged_into"),
    )


# The most candidates read for one grouping, and open hotspots listed at once.
_CANDIDATES = 2000
_OPEN_HOTSPOTS = 5000


def candidates_query(
    region: str, agency: str, kecamatan: str, since: datetime, until: datetime
) -> Document:
    """Members of one place and agency received in [since, until]: an equality on
    the indexed key, then a range of the index's second field."""
    return {
        PLACE_KEY: place_key(region, agency, kecamatan),
        "received_at": {"$gte": since, "$lte": until},
    }


class MongoHotspots:
    def __init__(self, db: AsyncDatabase[Document], outbox: Outbox) -> None:
        self.members_c = db[MEMBERS]
        self.hotspots_c = db[HOTSPOTS]
        self.outbox = outbox
        # A hotspot as this process last wrote it, for the announcement that follows
        # at once; one left by a failed handler is too old to trust and read again.
        self._written: dict[str, tuple[float, Document]] = {}

    async def ensure_indexes(self) -> None:
        # FerretDB uses an index for the leading top-level field only (and a date
        # range after its equality): the candidates' lookup narrows by place and
        # agency first, the list by `open`.
        await self.members_c.create_index([(PLACE_KEY, ASCENDING), ("received_at", ASCENDING)])
        await self.hotspots_c.create_index([("open", ASCENDING), ("agency", ASCENDING)])
        await ensure_outbox_index(self.hotspots_c)
        await self._fill_place_key()

    async def _fill_place_key(self) -> None:
        """Members stored before `place_key` existed get it (once), or the candidates'
        lookup would miss them. Read in one pass: the filter has no indexed equality."""
        if await self.members_c.find_one({"_id": _PLACE_KEY_FILLED}) is not None:
            return
        fields = {"region": 1, "agency": 1, "kecamatan_code": 1}
        missing = {PLACE_KEY: {"$exists": False}, "region": {"$type": "string"}}
        docs = await self.members_c.find(missing, fields).to_list(None)
        for first in range(0, len(docs), _FILLED_AT_ONCE):
            await self.members_c.bulk_write(
                [
                    UpdateOne({"_id": d["_id"]}, {"$set": {PLACE_KEY: _place_key_of(d)}})
                    for d in docs[first : first + _FILLED_AT_ONCE]
                ],
                ordered=False,
            )
        with contextlib.suppress(DuplicateKeyError):
            await self.members_c.insert_one({"_id": _PLACE_KEY_FILLED})

    async def member(self, complaint_id: str) -> Member | None:
        doc = await self.members_c.find_one({"_id": complaint_id})
        return member_of(doc) if doc else None

    async def members(self, complaint_ids: Sequence[str]) -> list[Member]:
        if not complaint_ids:
            return []
        found = {
            doc["_id"]: member_of(doc)
            async for doc in self.members_c.find({"_id": {"$in": list(complaint_ids)}})
        }
        return [found[c] for c in complaint_ids if c in found]

    async def add_member(self, member: Member) -> bool:
        try:
            await self.members_c.insert_one(member_doc(member))
        except DuplicateKeyError:
            return False
        return True

    async def save_member(self, member: Member) -> Member:
        doc = member_doc(member)
        del doc["_id"]
        state = {name: doc.pop(name) for name in STATE_FIELDS}
        # One findAndModify, as one update would cost: what it returns tells the
        # grouping whether a state change landed since it read the member.
        stored = await self.members_c.find_one_and_update(
            {"_id": member.complaint_id},
            {"$set": doc, "$setOnInsert": state},
            upsert=True,
            return_document=ReturnDocument.AFTER,
        )
        assert stored is not None  # upserted
        return member_of(stored)

    async def save_state(self, member: Member) -> None:
        doc = member_doc(member)
        await self.members_c.replace_one({"_id": doc["_id"]}, doc, upsert=True)

    async def record_state(self, change: StateChange) -> bool:
        # The same rule as StateChange.applies_to; `$or` covers a member that has
        # had no state change yet (state_at null).
        done = await self.members_c.update_one(
            {
                "_id": change.complaint_id,
                "hotspot_id": None,
                "state_event_id": {"$ne": change.event_id},
                "$or": [{"state_at": None}, {"state_at": {"$lte": change.at}}],
            },
            {"$set": change.fields()},
        )
        return done.matched_count == 1

    async def candidates(
        self, region: str, agency: str, kecamatan: str, since: datetime, until: datetime
    ) -> list[Member]:
        query = candidates_query(region, agency, kecamatan, since, until)
        # In one batch: a busy place has more candidates than a first batch's default 101.
        cursor = self.members_c.find(query).limit(_CANDIDATES).batch_size(_CANDIDATES)
        return [member_of(doc) async for doc in cursor]

    async def hotspot(self, hotspot_id: str) -> Hotspot | None:
        doc = await self.hotspots_c.find_one({"_id": hotspot_id})
        return hotspot_of(doc) if doc else None

    async def hotspots(self, hotspot_ids: Sequence[str]) -> dict[str, Hotspot]:
        if not hotspot_ids:
            return {}
        cursor = self.hotspots_c.find({"_id": {"$in": list(set(hotspot_ids))}})
        return {doc["_id"]: hotspot_of(doc) async for doc in cursor}

    async def save_hotspot(self, hotspot: Hotspot, announce: HotspotChanged | None) -> bool:
        doc = hotspot_doc(hotspot)
        events = [announce] if announce is not None else []
        if hotspot.version == 1:
            stored = self.outbox.document(doc, events, hotspot.updated_at)
            try:
                await self.hotspots_c.insert_one(stored)
            except DuplicateKeyError:
                return False  # formed before (a redelivery): its announcement is still there
            self._written[hotspot.hotspot_id] = (time.monotonic(), stored)
            return True
        fields = {k: v for k, v in doc.items() if k != "_id"}
        fields |= self.outbox.fields(hotspot.hotspot_id, events, hotspot.updated_at)
        written = await self.hotspots_c.find_one_and_update(
            {"_id": hotspot.hotspot_id, "version": hotspot.version - 1},
            {"$set": fields},
            return_document=ReturnDocument.AFTER,
        )
        if written is None:
            raise VersionConflict(hotspot.hotspot_id)
        self._written[hotspot.hotspot_id] = (time.monotonic(), written)
        return True

    async def announce(self, hotspot_id: str) -> None:
        # The document this process just wrote holds every announcement pending with
        # it; one written elsewhere since is announced by its writer (JetStream drops
        # a second copy by its message id).
        written_at, doc = self._written.pop(hotspot_id, (0.0, None))
        if doc is None or time.monotonic() - written_at > WRITTEN_FRESH_S:
            doc = await self.hotspots_c.find_one({"_id": hotspot_id})
        await self.outbox.flush(self.hotspots_c, doc)

    async def open_hotspots(self, agency: str | None = None) -> list[Hotspot]:
        query: Document = {"open": True, "size": {"$gte": 2}}
        if agency is not None:
            query["agency"] = agency
        cursor = self.hotspots_c.find(query).sort("_id", ASCENDING)
        # In one batch, as the candidates: the gauge reads them all.
        cursor = cursor.limit(_OPEN_HOTSPOTS).batch_size(_OPEN_HOTSPOTS)
        return [hotspot_of(doc) async for doc in cursor]


class InMemoryHotspots:
    """The repository for unit tests: same rules, announcements collected in order."""

    def __init__(self) -> None:
        self.member_docs: dict[str, Member] = {}
        self.hotspot_docs: dict[str, Hotspot] = {}
        self.pending: dict[str, list[HotspotChanged]] = {}
        self.published: list[HotspotChanged] = []

    async def member(self, complaint_id: str) -> Member | None:
        return self.member_docs.get(complaint_id)

    async def members(self, complaint_ids: Sequence[str]) -> list[Member]:
        return [self.member_docs[c] for c in complaint_ids if c in self.member_docs]

    async def add_member(self, member: Member) -> bool:
        if member.complaint_id in self.member_docs:
            return False
        self.member_docs[member.complaint_id] = member
        return True

    async def save_member(self, member: Member) -> Member:
        stored = self.member_docs.get(member.complaint_id)
        if stored is not None:
            member = replace(member, **{name: getattr(stored, name) for name in STATE_FIELDS})
        self.member_docs[member.complaint_id] = member
        return member

    async def save_state(self, member: Member) -> None:
        self.member_docs[member.complaint_id] = replace(member)

    async def record_state(self, change: StateChange) -> bool:
        stored = self.member_docs.get(change.complaint_id)
        if stored is None or stored.hotspot_id is not None or not change.applies_to(stored):
            return False
        self.member_docs[change.complaint_id] = replace(
            stored,
            state=change.state,
            outcome=change.outcome,
            state_event_id=change.event_id,
            state_at=change.at,
        )
        return True

    async def candidates(
        self, region: str, agency: str, kecamatan: str, since: datetime, until: datetime
    ) -> list[Member]:
        return [
            m
            for m in self.member_docs.values()
            if m.region == region
            and m.agency == agency
            and m.kecamatan is not None
            and m.kecamatan.code == kecamatan
            and since <= m.received_at <= until
        ]

    async def hotspot(self, hotspot_id: str) -> Hotspot | None:
        return self.hotspot_docs.get(hotspot_id)

    async def hotspots(self, hotspot_ids: Sequence[str]) -> dict[str, Hotspot]:
        return {h: self.hotspot_docs[h] for h in hotspot_ids if h in self.hotspot_docs}

    async def save_hotspot(self, hotspot: Hotspot, announce: HotspotChanged | None) -> bool:
        stored = self.hotspot_docs.get(hotspot.hotspot_id)
        if hotspot.version == 1 and stored is not None:
            return False
        if hotspot.version > 1 and (stored is None or stored.version != hotspot.version - 1):
            raise VersionConflict(hotspot.hotspot_id)
        self.hotspot_docs[hotspot.hotspot_id] = hotspot
        if announce is not None:
            self.pending.setdefault(hotspot.hotspot_id, []).append(announce)
        return True

    async def announce(self, hotspot_id: str) -> None:
        self.published += self.pending.pop(hotspot_id, [])

    async def open_hotspots(self, agency: str | None = None) -> list[Hotspot]:
        return sorted(
            (
                h
                for h in self.hotspot_docs.values()
                if h.state in OPEN_HOTSPOT_STATES
                and len(h.members) >= 2
                and (agency is None or h.agency == agency)
            ),
            key=lambda h: h.hotspot_id,
        )
