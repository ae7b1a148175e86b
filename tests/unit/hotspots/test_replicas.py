"""Two replicas grouping at once: each has its own process lock, they share the
database (the in-memory repository, which yields between calls as a real one
does) and the lease."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any

from services.hotspots import handlers
from services.hotspots.handlers import HotspotDeps
from services.hotspots.lease import InMemoryLease
from services.hotspots.repository import InMemoryHotspots
from tests.unit.hotspots.fakes import T0, Commands, routed


class Yielding:
    """The shared repository, giving the other worker a turn before every call."""

    def __init__(self, repo: InMemoryHotspots) -> None:
        self.repo = repo

    def __getattr__(self, name: str) -> Callable[..., Any]:
        method = getattr(self.repo, name)

        async def call(*args: Any, **kwargs: Any) -> Any:
            await asyncio.sleep(0)
            return await method(*args, **kwargs)

        return call


def worker(repo: InMemoryHotspots, lease: InMemoryLease | None) -> HotspotDeps:
    return HotspotDeps(repo=Yielding(repo), commands=Commands(), clock=lambda: T0, lease=lease)  # type: ignore[arg-type]


async def race(lease: InMemoryLease | None) -> InMemoryHotspots:
    repo = InMemoryHotspots()
    first, second = worker(repo, lease), worker(repo, lease)
    await handlers.handle_routed(routed("BJR-A"), first)
    # Two new reports of A's problem, one on each replica, at the same moment.
    await asyncio.gather(
        handlers.handle_routed(routed("BJR-B", hours=1), first),
        handlers.handle_routed(routed("BJR-C", hours=2), second),
    )
    return repo


async def test_two_replicas_sharing_the_lease_form_one_hotspot() -> None:
    lease = InMemoryLease()
    repo = await race(lease)
    [hotspot] = await repo.open_hotspots()
    assert sorted(hotspot.members) == ["BJR-A", "BJR-B", "BJR-C"]
    for member in ("BJR-A", "BJR-B", "BJR-C"):
        assert repo.member_docs[member].hotspot_id == hotspot.hotspot_id
    assert lease.most_holders == 1


async def test_without_the_lease_the_replicas_would_split_one_problem() -> None:
    """Why the lease is there: each replica alone picks A as its new partner."""
    repo = await race(None)
    hotspots = await repo.open_hotspots()
    assert len(hotspots) == 2
    assert all("BJR-A" in h.members for h in hotspots)
