"""The hotspots replicas' lease on the real FerretDB: one holder at a time, a held
lease makes the others wait, a dead holder's lease expires."""

from __future__ import annotations

import asyncio
import itertools
from datetime import timedelta
from typing import Any

import pytest

from services.hotspots.lease import MongoLease
from tests.e2e.helpers import eventually

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


async def test_replicas_that_keep_it_while_busy_are_still_never_inside_together(
    mongo: Any,
) -> None:
    """Kept between blocks, renewed, given back after a turn or when idle: with
    two workers per replica and pauses that let it go, one holder at a time."""
    leases = mongo["lapor_hotspot_lease"]["hotspot_leases"]
    await leases.delete_many({})
    replicas = [
        MongoLease(leases, "grouping", poll_s=0.005, linger_s=0.01, turn_s=0.05) for _ in range(2)
    ]
    inside: list[str] = []
    most, holders = 0, []

    async def work(lease: MongoLease, pause_every: int) -> None:
        nonlocal most
        for n in range(20):
            async with lease.hold():
                inside.append(lease.owner)
                most = max(most, len(inside))
                holders.append(lease.owner)
                await asyncio.sleep(0.002)
                inside.remove(lease.owner)
            if n % pause_every == 0:
                await asyncio.sleep(0.03)  # idle longer than the linger

    await asyncio.gather(*(work(lease, k + 2) for lease in replicas for k in range(2)))
    assert most == 1
    assert len(holders) == 80
    handovers = sum(1 for a, b in itertools.pairwise(holders) if a != b)
    assert handovers >= 2  # it did change hands while both worked
    for lease in replicas:
        await lease.close()


async def test_a_busy_replica_gives_the_other_its_turn(mongo: Any) -> None:
    leases = mongo["lapor_hotspot_lease"]["hotspot_leases"]
    await leases.delete_many({})
    busy = MongoLease(leases, "grouping", poll_s=0.005, turn_s=0.2)
    other = MongoLease(leases, "grouping", poll_s=0.005)
    done = asyncio.Event()

    async def keep_busy() -> None:
        while not done.is_set():
            async with busy.hold():
                await asyncio.sleep(0.001)

    worker = asyncio.create_task(keep_busy())

    async def held() -> bool:
        return busy.held()

    await eventually(held, timeout=10, interval=0.001)
    async with asyncio.timeout(10):
        async with other.hold():  # long before the ttl: busy gave it back
            done.set()
    await worker
    await busy.close()
    await other.close()


async def test_an_idle_replica_gives_it_back_after_the_linger_and_on_stopping(
    mongo: Any,
) -> None:
    leases = mongo["lapor_hotspot_lease"]["hotspot_leases"]
    await leases.delete_many({})
    first = MongoLease(leases, "grouping", linger_s=0.05)
    async with first.hold():
        pass
    assert not await MongoLease(leases, "grouping")._take("another-replica")  # lingering

    async def given_back() -> bool:
        return bool((await leases.find_one({"_id": "grouping"}))["until"].year == 1970)

    await eventually(given_back, timeout=10, interval=0.01)
    assert not first.held()

    stopping = MongoLease(leases, "grouping", linger_s=3600)
    async with stopping.hold():
        pass
    await stopping.close()
    assert await MongoLease(leases, "grouping")._take("another-replica")
    await first.close()  # not the owner: changes nothing
    assert (await leases.find_one({"_id": "grouping"}))["owner"] == "another-replica"


async def test_the_tenure_moves_on_only_when_another_replica_held_the_lease(
    mongo: Any,
) -> None:
    leases = mongo["lapor_hotspot_lease"]["hotspot_leases"]
    await leases.delete_many({})
    first, second = (MongoLease(leases, "grouping", turn_s=None) for _ in range(2))
    async with first.hold():
        pass
    held = first.tenure
    await first.close()  # given back, and taken again by nobody else
    async with first.hold():
        pass
    assert first.tenure == held
    await first.close()
    async with second.hold():
        pass
    await second.close()
    async with first.hold():
        pass
    assert first.tenure == held + 1
    await first.close()
