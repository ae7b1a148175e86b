"""The hotspots replicas' lease on the real FerretDB: one holder at a time, a held
lease makes the others wait, a dead holder's lease expires."""

from __future__ import annotations

import asyncio
from datetime import timedelta
from typing import Any

import pytest

from services.hotspots.repository import MongoLease

pytestmark = [pytest.mark.integration]


async def test_two_replicas_never_hold_the_lease_together(mongo: Any) -> None:
    leases = mongo["lapor_hotspot_lease"]["hotspot_leases"]
    await leases.delete_many({})
    replicas = [MongoLease(leases, "grouping", poll_s=0.005) for _ in range(2)]
    holders, most, turns = 0, 0, 0

    async def work(lease: MongoLease) -> None:
        nonlocal holders, most, turns
        for _ in range(15):
            async with lease.hold():
                holders += 1
                most = max(most, holders)
                await asyncio.sleep(0.002)  # a grouping's few database calls
                turns += 1
                holders -= 1

    await asyncio.gather(*(work(lease) for lease in replicas))
    assert (most, turns) == (1, 30)


async def test_a_dead_holders_lease_expires(mongo: Any) -> None:
    leases = mongo["lapor_hotspot_lease"]["hotspot_leases"]
    await leases.delete_many({})
    dead = MongoLease(leases, "grouping", ttl=timedelta(milliseconds=300))
    assert await dead._take("dead-replica")  # taken, never given back
    alive = MongoLease(leases, "grouping", poll_s=0.01)
    assert not await alive._take("alive-replica")
    async with asyncio.timeout(10):
        async with alive.hold():
            doc = await leases.find_one({"_id": "grouping"})
            assert doc["owner"] != "dead-replica"
