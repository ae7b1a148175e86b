"""The Open311 listing and the performance report read through the (region,
received_at) index: `USING INDEX` in the SQLite plan of our FerretDB build (always
run), IXSCAN on MongoDB (with LAPOR_TEST_MONGO_URL)."""

from __future__ import annotations

import json
import os
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
import pytest_asyncio

from lapor.report.fetch import _public, complaint_filter
from services.intake.georeport import requests_query
from services.intake.repository import ComplaintRepository

pytestmark = [pytest.mark.integration, pytest.mark.security]

NOW = datetime(2026, 6, 1, 12, 0, tzinfo=UTC)
DB = "lapor_bounded_read_plans"


def _docs() -> list[dict[str, Any]]:
    return [
        {
            "_id": f"LPR-{i:04d}",
            "source_key": f"web:{i}",
            "region": "banjar" if i % 2 else "tapin",
            "state": "assigned",
            "agency": "PUPR",
            "category": "jalan",
            "received_at": NOW - timedelta(hours=7 * i),
            "confidential": i % 5 == 0,
        }
        for i in range(300)
    ]


def _queries() -> dict[str, dict[str, Any]]:
    listing = requests_query({}, now=NOW, region="banjar", status="open")
    assert listing is not None
    report = complaint_filter("banjar", NOW - timedelta(days=30), NOW)
    return {"open311 listing": listing, "report facts": _public(report), "report counts": report}


async def _prepared(client: Any) -> Any:
    db = client[DB]
    await client.drop_database(DB)
    await ComplaintRepository(db).ensure_indexes()
    await db.complaints.insert_many(_docs())
    return db


async def _explain(db: Any, query: dict[str, Any]) -> dict[str, Any]:
    return await db.command(
        "explain",
        {"find": "complaints", "filter": query, "sort": {"received_at": -1}, "limit": 1000},
    )


async def test_listing_and_report_use_the_index_on_ferretdb(own_mongo: Any) -> None:
    """`own_mongo` is always this build of FerretDB, whatever LAPOR_TEST_MONGO_URL says."""
    db = await _prepared(own_mongo)
    try:
        for name, query in _queries().items():
            explained = await _explain(db, query)
            assert "ferretdbVersion" in explained.get("serverInfo", {}), explained
            plan = " ".join(explained["queryPlanner"]["Plan"])
            assert "USING INDEX" in plan and "region_1_received_at_-1" in plan, (name, plan)
            assert "SCAN" not in plan, (name, plan)
            # The index narrows; the whole filter still decides.
            found = [d["_id"] async for d in db.complaints.find(query).sort("received_at", -1)]
            expected = [
                d["_id"]
                for d in _docs()
                if d["region"] == "banjar"
                and NOW - timedelta(days=30) <= d["received_at"] < NOW
                and not (name != "report counts" and d["confidential"])
            ]
            if name != "open311 listing":
                assert found == expected, name
        # The report's counts and ratings: a `$match` first, pushed down the same way.
        pipeline = [{"$match": _queries()["report counts"]}, {"$group": {"_id": "$agency"}}]
        explained = await db.command(
            "explain", {"aggregate": "complaints", "pipeline": pipeline, "cursor": {}}
        )
        plan = " ".join(explained["queryPlanner"]["Plan"])
        assert "USING INDEX" in plan and "SCAN" not in plan, plan
        # Without the region the same range has no index to use: the bound is the region.
        unbounded = await _explain(db, {"received_at": {"$gte": NOW - timedelta(days=30)}})
        assert "USING INDEX" not in " ".join(unbounded["queryPlanner"]["Plan"])
    finally:
        await own_mongo.drop_database(DB)


@pytest_asyncio.fixture
async def real_mongo() -> AsyncIterator[Any]:
    url = os.environ.get("LAPOR_TEST_MONGO_URL")
    if not url:
        pytest.skip("LAPOR_TEST_MONGO_URL is not set: no MongoDB to explain on")
    from pymongo import AsyncMongoClient

    client: AsyncMongoClient[dict[str, Any]] = AsyncMongoClient(url, tz_aware=True)
    yield client
    await client.close()


async def test_listing_and_report_use_the_index_on_mongodb(real_mongo: Any) -> None:
    db = await _prepared(real_mongo)
    try:
        info = await real_mongo.server_info()
        if "ferretdbVersion" in info:
            pytest.skip("LAPOR_TEST_MONGO_URL is a FerretDB: see the test above")
        for name, query in _queries().items():
            plan = json.dumps((await _explain(db, query))["queryPlanner"]["winningPlan"])
            assert "IXSCAN" in plan and "region_1_received_at_-1" in plan, (name, plan)
            assert "COLLSCAN" not in plan, (name, plan)
        pipeline = [{"$match": _queries()["report counts"]}, {"$group": {"_id": "$agency"}}]
        explained = await db.command(
            "explain", {"aggregate": "complaints", "pipeline": pipeline, "cursor": {}}
        )
        assert "IXSCAN" in json.dumps(explained, default=str)
    finally:
        await real_mongo.drop_database(DB)
