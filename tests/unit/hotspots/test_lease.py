"""The grouping lease's own rules, on a fake collection and this process's clock
turned by hand: what costs a command and what does not (the real database's
exclusivity: tests/integration/test_hotspot_lease.py)."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta
from typing import Any

from pymongo.errors import DuplicateKeyError

from services.hotspots.lease import MongoLease

Document = dict[str, Any]
LONG_AGO = datetime(1970, 1, 1, tzinfo=UTC)


class Updated:
    def __init__(self, matched: int) -> None:
        self.matched_count = matched


class FakeLeases:
    """The two commands the lease sends, with the database's answers."""

    def __init__(self) -> None:
        self.docs: dict[str, Document] = {}
        self.commands: list[str] = []
        self.released = asyncio.Event()

    async def find_one_and_update(
        self, query: Document, change: Document, upsert: bool = False
    ) -> Document | None:
        self.commands.append("take")
        doc = self.docs.get(query["_id"])
        if doc is not None and doc["until"] < query["until"]["$lt"]:
            before = dict(doc)
            doc |= change["$set"]
            return before
        if doc is not None:
            raise DuplicateKeyError("held")
        self.docs[query["_id"]] = {"_id": query["_id"]} | change["$set"]
        return None

    async def update_one(self, query: Document, change: Document) -> Updated:
        until = change["$set"]["until"]
        self.commands.append("release" if until.year == 1970 else "renew")
        if until.year == 1970:
            self.released.set()
        doc = self.docs.get(query["_id"])
        if doc is None or doc["owner"] != query["owner"]:
            return Updated(0)
        doc |= change["$set"]
        return Updated(1)


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def lease(
    leases: FakeLeases, clock: Clock, turn_s: float | None = None, linger_s: float = 3600
) -> MongoLease:
    return MongoLease(
        leases,  # type: ignore[arg-type]
        "grouping",
        ttl=timedelta(seconds=30),
        linger_s=linger_s,
        turn_s=turn_s,
        clock=clock,
    )


async def test_blocks_while_held_cost_nothing_and_it_is_renewed_past_half_its_ttl() -> None:
    leases, clock = FakeLeases(), Clock()
    grouping = lease(leases, clock)
    for _ in range(5):
        async with grouping.hold():
            clock.now += 1
    assert leases.commands == ["take"]
    clock.now += 12  # 17 s of 30 used: less than half left
    async with grouping.hold():
        pass
    assert leases.commands == ["take", "renew"]
    async with grouping.hold():
        pass
    assert leases.commands == ["take", "renew"]
    assert grouping.tenure == 1  # kept all along: nobody else held it
    clock.now += 31  # expired: maybe taken elsewhere meanwhile; taken anew, not renewed
    leases.docs["grouping"]["until"] = LONG_AGO
    async with grouping.hold():
        pass
    assert leases.commands == ["take", "renew", "take"]
    assert grouping.tenure == 1  # expired, but taken again by nobody else meanwhile
    clock.now += 31
    leases.docs["grouping"] |= {"owner": "another replica", "until": LONG_AGO}
    async with grouping.hold():
        pass
    assert grouping.tenure == 2  # another replica held it in between
    await grouping.close()
    assert leases.commands[-1] == "release"
    assert leases.docs["grouping"]["until"] == LONG_AGO


async def test_a_renewal_that_finds_another_owner_takes_it_again() -> None:
    leases, clock = FakeLeases(), Clock()
    grouping = lease(leases, clock)
    async with grouping.hold():
        pass
    leases.docs["grouping"]["owner"] = "another replica"  # ours expired there
    leases.docs["grouping"]["until"] = LONG_AGO
    clock.now += 20
    async with grouping.hold():
        pass
    assert leases.commands == ["take", "renew", "take"]
    assert leases.docs["grouping"]["owner"] == grouping.owner
    await grouping.close()


async def test_after_its_turn_it_is_given_back_when_the_block_ends() -> None:
    leases, clock = FakeLeases(), Clock()
    grouping = lease(leases, clock, turn_s=2.0)
    async with grouping.hold():
        clock.now += 1
    async with grouping.hold():
        clock.now += 1.5
    assert leases.commands == ["take", "release"]
    assert not grouping.held()
    await grouping.close()


async def test_an_idle_lease_is_given_back_after_its_linger() -> None:
    leases = FakeLeases()
    grouping = MongoLease(leases, "grouping", linger_s=0.02)  # type: ignore[arg-type]
    async with grouping.hold():
        pass
    async with grouping.hold():
        pass
    async with asyncio.timeout(5):
        await leases.released.wait()
    assert leases.commands == ["take", "release"]
    assert not grouping.held()
    async with grouping.hold():  # taken again when needed
        pass
    assert leases.commands == ["take", "release", "take"]
    await grouping.close()


async def test_two_holders_in_one_process_take_turns() -> None:
    leases = FakeLeases()
    grouping = MongoLease(leases, "grouping")  # type: ignore[arg-type]
    inside, most = 0, 0

    async def work() -> None:
        nonlocal inside, most
        for _ in range(10):
            async with grouping.hold():
                inside += 1
                most = max(most, inside)
                await asyncio.sleep(0)
                inside -= 1

    await asyncio.gather(work(), work(), work())
    assert most == 1
    assert leases.commands == ["take"]
    await grouping.close()
