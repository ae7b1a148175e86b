"""The FerretDB we build looks documents up through their indexes.

Upstream v1.24.2 writes the _id path in its queries differently from the
expression of the _id index, so SQLite scanned the whole table for every
lookup, update and delete by _id; and it pushed no other filter down, so the
server decoded every document of a collection for a lookup by complaint or
notification id (ferretdb/patches/). Without the fixes the plans below say
SCAN and the pipeline slows down with every stored complaint.
"""

from __future__ import annotations

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
