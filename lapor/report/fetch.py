"""Reading the report's inputs: `$match`/`$group`/`$sum` where the database can,
one projected query for what needs Python (durations, percentiles, reopenings).

Every pipeline uses only what FerretDB v1 supports. Its `$sum` over a dotted
path (`$rating.score`) silently yields 0, so ratings are grouped by score and
summed here.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from pymongo.asynchronous.database import AsyncDatabase

from lapor.report.build import BreachRow, CountRow, HotspotRow, RatingRow, ReportData
from lapor.report.facts import PROJECTION, ComplaintFacts, facts_from
from lapor.runtime.db import half_open

Document = dict[str, Any]


def complaint_filter(region: str | None, start: datetime | None, end: datetime | None) -> Document:
    """Complaints received in [start, end) in the region."""
    return _in_period("received_at", region, start, end)


def _in_period(
    field: str, region: str | None, start: datetime | None, end: datetime | None
) -> Document:
    """Documents of the region (any region: None) whose `field` is in [start, end)."""
    match: Document = {}
    if region:
        match["region"] = region
    if (period := half_open(start, end)) is not None:
        match[field] = period
    return match


async def _aggregate(db: AsyncDatabase[Document], name: str, pipeline: list[Document]) -> list[Any]:
    cursor = await db[name].aggregate(pipeline)
    return await cursor.to_list(None)


async def fetch_counts(db: AsyncDatabase[Document], match: Document) -> list[CountRow]:
    rows = await _aggregate(
        db,
        "complaints",
        [
            {"$match": match},
            {
                "$group": {
                    "_id": {
                        "agency": "$agency",
                        "category": "$category",
                        "state": "$state",
                        "confidential": "$confidential",
                    },
                    "n": {"$sum": 1},
                }
            },
        ],
    )
    return [
        CountRow(
            agency=row["_id"].get("agency"),
            category=row["_id"].get("category"),
            state=row["_id"].get("state"),
            confidential=bool(row["_id"].get("confidential")),
            n=int(row["n"]),
        )
        for row in rows
    ]


def _public(match: Document) -> Document:
    return {**match, "confidential": {"$ne": True}}


async def fetch_ratings(db: AsyncDatabase[Document], match: Document) -> list[RatingRow]:
    rows = await _aggregate(
        db,
        "complaints",
        [
            {"$match": {**_public(match), "rating.score": {"$exists": True}}},
            {
                "$group": {
                    "_id": {"agency": "$agency", "category": "$category", "score": "$rating.score"},
                    "n": {"$sum": 1},
                }
            },
        ],
    )
    return [
        RatingRow(
            agency=row["_id"].get("agency"),
            category=row["_id"].get("category"),
            score=int(row["_id"]["score"]),
            n=int(row["n"]),
        )
        for row in rows
        if isinstance(row["_id"].get("score"), int | float)
    ]


async def fetch_facts(
    db: AsyncDatabase[Document], match: Document
) -> tuple[list[ComplaintFacts], dict[str, str | None]]:
    """Facts of the non-confidential complaints, and each one's category by id.

    The ids stay here: they only attribute breaches to categories.
    """
    facts: list[ComplaintFacts] = []
    category_of: dict[str, str | None] = {}
    async for doc in db["complaints"].find(_public(match), PROJECTION):
        if not isinstance(doc.get("received_at"), datetime):
            continue
        facts.append(facts_from(doc))
        category_of[str(doc["_id"])] = doc.get("category")
    return facts, category_of


def breach_filter(region: str | None, start: datetime | None, end: datetime | None) -> Document:
    """Breaches recorded in [start, end) in the region."""
    return _in_period("breached_at", region, start, end)


async def fetch_breaches(
    db: AsyncDatabase[Document], match: Document, category_of: dict[str, str | None]
) -> list[BreachRow] | None:
    if "sla_breaches" not in await db.list_collection_names(filter={"name": "sla_breaches"}):
        return None
    # One row per (agency, clock, complaint): the complaint gives the category.
    # A breach of a confidential complaint, or of one received outside the
    # period, counts for its agency only.
    rows = await _aggregate(
        db,
        "sla_breaches",
        [
            {"$match": match},
            {
                "$group": {
                    "_id": {"agency": "$agency", "clock": "$clock", "complaint": "$complaint_id"},
                    "n": {"$sum": 1},
                }
            },
        ],
    )
    totals: dict[tuple[str | None, str | None, str], int] = {}
    for row in rows:
        key = row["_id"]
        category = category_of.get(str(key.get("complaint")))
        group = (key.get("agency"), category, str(key.get("clock")))
        totals[group] = totals.get(group, 0) + int(row["n"])
    return [BreachRow(*group, n) for group, n in totals.items()]


# Shown from two members on; merged and split-away remains are not hotspots.
_NOT_HOTSPOTS = ("dissolved",)


async def fetch_hotspots(
    db: AsyncDatabase[Document], region: str | None, start: datetime | None, end: datetime | None
) -> list[HotspotRow] | None:
    """Hotspots formed in [start, end), from the hotspots service's collection."""
    if "hotspots" not in await db.list_collection_names(filter={"name": "hotspots"}):
        return None
    match: Document = {"size": {"$gte": 2}, "state": {"$nin": list(_NOT_HOTSPOTS)}}
    match |= _in_period("formed_at", region, start, end)
    fields = {"agency": 1, "kecamatan": 1, "desa": 1, "size": 1, "state": 1, "formed_at": 1}
    rows = []
    async for doc in db["hotspots"].find(match, fields).limit(10_000):
        kecamatan, desa = doc.get("kecamatan") or {}, doc.get("desa") or {}
        rows.append(
            HotspotRow(
                agency=str(doc["agency"]),
                kecamatan=kecamatan.get("code"),
                kecamatan_name=kecamatan.get("name"),
                desa_name=desa.get("name"),
                size=int(doc["size"]),
                state=str(doc["state"]),
                formed_at=doc["formed_at"]
                if doc["formed_at"].tzinfo
                else doc["formed_at"].replace(tzinfo=UTC),
            )
        )
    return rows


async def fetch_report_data(
    db: AsyncDatabase[Document],
    *,
    region: str | None = None,
    start: datetime | None = None,
    end: datetime | None = None,
    as_of: datetime | None = None,
) -> ReportData:
    match = complaint_filter(region, start, end)
    facts, category_of = await fetch_facts(db, match)
    return ReportData(
        region=region,
        start=start,
        end=end,
        as_of=as_of or datetime.now(UTC),
        counts=await fetch_counts(db, match),
        ratings=await fetch_ratings(db, match),
        facts=facts,
        breaches=await fetch_breaches(db, breach_filter(region, start, end), category_of),
        hotspots=await fetch_hotspots(db, region, start, end),
    )
