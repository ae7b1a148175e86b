"""The FerretDB we build looks documents up through their indexes.

Upstream v1.24.2 writes the _id path in its queries differently from the
expression of the _id index, so SQLite scanned the whole table for every
lookup, update and delete by _id; and it pushed no other filter down, so the
server decoded every document of a collection for a lookup by complaint or
notification id (ferretdb/patches/). Without the fixes the plans below say
SCAN and the pipeline slows down with every stored complaint.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

pytestmark = [pytest.mark.integration]


async def test_lookups_by_id_use_the_id_index(mongo: Any) -> None:
    db = mongo["lapor_ferretdb_build"]
    await db.complaints.insert_many([{"_id": f"LPR-{i:04d}", "n": i} for i in range(50)])
    try:
        explained = await db.command(
            "explain", {"find": "complaints", "filter": {"_id": "LPR-0007"}}
        )
        if "ferretdbVersion" not in explained.get("serverInfo", {}):
            pytest.skip("not FerretDB: MongoDB always uses its _id index")
        plan = " ".join(explained["queryPlanner"]["Plan"])
        assert explained["filterPushdown"] is True
        assert "USING INDEX" in plan and "SCAN" not in plan, plan
        # And the answer is still the right document.
        found = await db.complaints.find_one({"_id": "LPR-0007"})
        assert found is not None and found["n"] == 7
        await db.complaints.update_one({"_id": "LPR-0008"}, {"$set": {"n": -8}})
        assert (await db.complaints.find_one({"_id": "LPR-0008"}))["n"] == -8
    finally:
        await mongo.drop_database("lapor_ferretdb_build")


async def test_equality_on_an_indexed_field_uses_that_index(mongo: Any) -> None:
    db = mongo["lapor_ferretdb_build"]
    await db.attempts.create_index([("notification_id", 1), ("n", -1)])
    await db.attempts.insert_many(
        [{"notification_id": f"N{i}", "n": n, "note": "x"} for i in range(30) for n in (1, 2)]
    )
    try:
        explained = await db.command(
            "explain", {"find": "attempts", "filter": {"notification_id": "N7", "n": 2}}
        )
        if "ferretdbVersion" not in explained.get("serverInfo", {}):
            pytest.skip("not FerretDB")
        plan = " ".join(explained["queryPlanner"]["Plan"])
        assert "USING INDEX" in plan, plan
        # The index narrows the rows; the whole filter still decides.
        assert await db.attempts.count_documents({"notification_id": "N7"}) == 2
        assert await db.attempts.count_documents({"notification_id": "N7", "n": 2}) == 1
        assert await db.attempts.count_documents({"notification_id": "N7", "n": 3}) == 0
        unindexed = await db.command("explain", {"find": "attempts", "filter": {"note": "x"}})
        assert "SCAN" in " ".join(unindexed["queryPlanner"]["Plan"])
        assert await db.attempts.count_documents({"note": "x"}) == 60
    finally:
        await mongo.drop_database("lapor_ferretdb_build")


async def test_a_date_range_after_an_indexed_equality_uses_that_index(mongo: Any) -> None:
    """The SLA sweep: pending timers due by now, so its cost follows the timers due."""
    db = mongo["lapor_ferretdb_build"]
    await db.timers.create_index([("status", 1), ("due_at", 1), ("_id", 1)])
    start = datetime(2026, 12, 1, tzinfo=UTC)
    docs = [
        {
            "_id": f"T{i:03d}",
            "status": "pending" if i % 3 else "fired",
            "due_at": start + timedelta(hours=i),
        }
        for i in range(120)
    ]
    await db.timers.insert_many(docs)
    try:
        now = start + timedelta(hours=40)
        sweep = {"status": "pending", "due_at": {"$lte": now}}
        explained = await db.command("explain", {"find": "timers", "filter": sweep})
        if "ferretdbVersion" not in explained.get("serverInfo", {}):
            pytest.skip("not FerretDB")
        plan = " ".join(explained["queryPlanner"]["Plan"])
        assert "USING INDEX" in plan and "<" in plan, plan

        def expected(query: dict[str, Any]) -> list[str]:
            low = query["due_at"].get("$gte", datetime.min.replace(tzinfo=UTC))
            high = query["due_at"].get("$lte", datetime.max.replace(tzinfo=UTC))
            return [
                d["_id"] for d in docs if d["status"] == "pending" and low <= d["due_at"] <= high
            ]

        async def found(query: dict[str, Any]) -> list[str]:
            return [d["_id"] async for d in db.timers.find(query).sort([("due_at", 1), ("_id", 1)])]

        # Bounds are inclusive, as MongoDB's: the timer due exactly now is due.
        assert await found(sweep) == expected(sweep) and "T040" in await found(sweep)
        window = {"status": "pending", "due_at": {"$gte": start + timedelta(hours=10), "$lte": now}}
        assert await found(window) == expected(window)
        # What the clause cannot express is left to the server's own filter.
        odd = {"status": "pending", "due_at": {"$lte": now, "$ne": start + timedelta(hours=1)}}
        assert "T001" not in await found(odd) and "T002" in await found(odd)
    finally:
        await mongo.drop_database("lapor_ferretdb_build")


async def test_the_sweep_pages_through_due_timers_by_the_index(mongo: Any) -> None:
    """Every due timer once, in (due_at, _id) order, also where many share a moment."""
    from services.sla.repository import MongoSlaStore

    db = mongo["lapor_ferretdb_build"]
    store = MongoSlaStore(db)
    await store.ensure_indexes()
    start = datetime(2026, 12, 1, tzinfo=UTC)
    # Runs of five timers due at the same moment, so pages end inside a run.
    docs = [
        {"_id": f"T{i:03d}", "status": "pending", "due_at": start + timedelta(hours=i // 5)}
        for i in range(60)
    ]
    await db.sla_timers.insert_many(
        [*docs, {"_id": "LATE", "status": "pending", "due_at": start + timedelta(days=30)}]
    )
    try:
        now = start + timedelta(days=1)
        seen: list[str] = []
        after = None
        while batch := await store.due_timers(now, after, 7):
            seen += [d["_id"] for d in batch]
            after = (batch[-1]["due_at"], batch[-1]["_id"])
        assert seen == [d["_id"] for d in docs]
        page = {
            "status": "pending",
            "due_at": {"$lte": now, "$gte": start},
            "$or": [{"due_at": {"$gt": start}}, {"_id": {"$gt": "T002"}}],
        }
        explained = await db.command("explain", {"find": "sla_timers", "filter": page})
        if "ferretdbVersion" in explained.get("serverInfo", {}):
            plan = " ".join(explained["queryPlanner"]["Plan"])
            assert "USING INDEX" in plan and ">?" in plan and "<?" in plan, plan
    finally:
        await mongo.drop_database("lapor_ferretdb_build")


async def test_the_server_logs_what_its_loggers_were_derived_with(tmp_path: Any) -> None:
    """The log handler formats a derived logger's attributes only when it writes a
    record (ferretdb/main.go); they are still written with it."""
    import asyncio

    from pymongo import AsyncMongoClient

    from tools.devstack import free_port
    from tools.devstack.ferretdb import ensure_ferretdb

    port = free_port()
    server = await asyncio.create_subprocess_exec(
        str(ensure_ferretdb()),
        *("-listen", f"127.0.0.1:{port}", "-data", str(tmp_path)),
        stderr=asyncio.subprocess.PIPE,
    )
    try:
        client: AsyncMongoClient[dict[str, Any]] = AsyncMongoClient(
            f"mongodb://127.0.0.1:{port}", serverSelectionTimeoutMS=20_000
        )
        await client.admin.command("ping")
        await client.close()
    finally:
        server.terminate()
        _, stderr = await server.communicate()
    text = stderr.decode()
    assert 'level=INFO msg="Connection started" name=listener conn="127.0.0.1:' in text, text
    assert 'msg="Listening on TCP 127.0.0.1:' in text and "name=listener" in text, text
