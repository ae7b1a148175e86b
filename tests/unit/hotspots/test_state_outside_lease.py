"""A state change of a complaint in no hotspot is stored with one conditional write,
without the lease; the grouping, which holds the lease, neither loses one that
lands while it works nor leaves its hotspot behind it."""

from __future__ import annotations

import asyncio
from collections import Counter
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from datetime import datetime, timedelta
from typing import Any

import pytest

from lapor.contracts import State
from lapor.contracts.hotspots import HotspotChange, HotspotState
from services.hotspots import handlers
from services.hotspots.api import member_view
from services.hotspots.domain import Member
from services.hotspots.handlers import HotspotDeps
from services.hotspots.repository import InMemoryHotspots, StateChange
from tests.unit.hotspots.fakes import T0, Commands, assigned_by_routing, routed, state_changed


class CountingLease:
    def __init__(self) -> None:
        self.holds = 0

    @property
    def tenure(self) -> int:
        return self.holds

    @asynccontextmanager
    async def hold(self) -> AsyncIterator[None]:
        self.holds += 1
        yield


class Meanwhile(InMemoryHotspots):
    """Runs `meanwhile` once, as the grouping has read its candidates (before it
    stores anything)."""

    def __init__(self) -> None:
        super().__init__()
        self.meanwhile: Callable[[], Awaitable[None]] | None = None
        self.calls: Counter[str] = Counter()

    async def member(self, complaint_id: str) -> Member | None:
        self.calls["member"] += 1
        return await super().member(complaint_id)

    async def record_state(self, change: StateChange) -> bool:
        self.calls["record_state"] += 1
        return await super().record_state(change)

    async def candidates(
        self, region: str, agency: str, kecamatan: str, since: datetime, until: datetime
    ) -> list[Member]:
        found = await super().candidates(region, agency, kecamatan, since, until)
        if self.meanwhile is not None:
            meanwhile, self.meanwhile = self.meanwhile, None
            await meanwhile()
        return found


def crash_once(repo: Meanwhile, method: str) -> None:
    """The repository's `method` fails once, as a crash before it would have written."""
    works = getattr(repo, method)

    async def crash(*args: Any) -> Any:
        setattr(repo, method, works)
        raise ConnectionError("killed")

    setattr(repo, method, crash)


def worker() -> tuple[HotspotDeps, Meanwhile, CountingLease]:
    repo, lease = Meanwhile(), CountingLease()
    return HotspotDeps(repo=repo, commands=Commands(), clock=lambda: T0, lease=lease), repo, lease


async def test_a_complaint_in_no_hotspot_changes_state_without_the_lease() -> None:
    d, repo, lease = worker()
    await handlers.handle_routed(routed("BJR-A"), d)
    holds = lease.holds
    await handlers.handle_state_changed(state_changed("BJR-A", State.ASSIGNED), d)
    assert lease.holds == holds
    member = repo.member_docs["BJR-A"]
    assert (member.state, member.state_event_id) == ("assigned", "state:BJR-A:assigned:1")
    # The same event again, and an older one, change nothing (they take the lease
    # and read, as before).
    await handlers.handle_state_changed(state_changed("BJR-A", State.ASSIGNED), d)
    await handlers.handle_state_changed(state_changed("BJR-A", State.CLOSED, minutes=0.5), d)
    assert repo.member_docs["BJR-A"] == member


async def test_the_move_to_assigned_that_follows_a_routing_costs_nothing() -> None:
    d, repo, lease = worker()
    await handlers.handle_routed(routed("BJR-A"), d)
    repo.calls.clear()
    holds = lease.holds
    await handlers.handle_state_changed(assigned_by_routing("BJR-A"), d)
    # The routing decision, heard on its own, already says it: nothing read or written.
    assert (repo.calls, lease.holds) == ({}, holds)
    assert member_view(repo.member_docs["BJR-A"]).state == "assigned"
    # Forwarded, then routed again: assigned again, though that move is not stored.
    await handlers.handle_state_changed(state_changed("BJR-A", State.RECEIVED, 1), d)
    assert member_view(repo.member_docs["BJR-A"]).state == "received"
    again = routed("BJR-A", round_=1).model_copy(update={"occurred_at": T0 + timedelta(minutes=2)})
    await handlers.handle_routed(again, d)
    await handlers.handle_state_changed(assigned_by_routing("BJR-A", round_=1, minutes=2), d)
    assert member_view(repo.member_docs["BJR-A"]).state == "assigned"


async def test_a_first_routing_is_stored_without_a_read_and_grouped_after_a_crash() -> None:
    d, repo, _ = worker()
    await handlers.handle_routed(routed("BJR-A"), d)
    assert repo.calls["member"] == 0  # new: inserted, nothing read
    # A crash after the member was stored in its hotspot, before the hotspot was:
    # the redelivery finds the member in a hotspot that does not list it.
    crash_once(repo, "save_hotspot")
    with pytest.raises(ConnectionError):
        await handlers.handle_routed(routed("BJR-B", hours=1), d)
    assert repo.member_docs["BJR-B"].hotspot_id is not None and not repo.hotspot_docs
    await handlers.handle_routed(routed("BJR-B", hours=1), d)
    [hotspot] = repo.hotspot_docs.values()
    assert sorted(hotspot.members) == ["BJR-A", "BJR-B"]
    assert repo.member_docs["BJR-B"].hotspot_id == hotspot.hotspot_id
    assert repo.member_docs["BJR-A"].hotspot_id == hotspot.hotspot_id
    # Delivered again once grouped: nothing changes.
    published = len(repo.published)
    await handlers.handle_routed(routed("BJR-B", hours=1), d)
    assert len(repo.published) == published


async def test_a_state_change_of_a_complaint_being_grouped_here_waits_for_it() -> None:
    """A state change of a complaint whose first routing this process is grouping waits
    for its member to be stored: then it is one write, no read."""
    d, repo, _ = worker()
    closing: list[asyncio.Task[None]] = []

    async def close_it() -> None:
        closing.append(
            asyncio.create_task(
                handlers.handle_state_changed(state_changed("BJR-C", State.CLOSED), d)
            )
        )
        await asyncio.sleep(0)  # it runs as far as it can while the grouping works

    await handlers.handle_routed(routed("BJR-P"), d)
    repo.meanwhile = close_it
    await handlers.handle_routed(routed("BJR-C", hours=1, keywords=("sampah", "pasar")), d)
    async with asyncio.timeout(5):
        await closing[0]
    assert repo.calls == {"record_state": 1}  # first routings: inserted, nothing read
    assert repo.member_docs["BJR-C"].state == "closed"


async def test_a_member_of_a_hotspot_changes_state_under_the_lease() -> None:
    d, repo, lease = worker()
    await handlers.handle_routed(routed("BJR-A"), d)
    await handlers.handle_routed(routed("BJR-B", hours=1), d)
    holds = lease.holds
    await handlers.handle_state_changed(state_changed("BJR-A", State.CLOSED), d)
    assert lease.holds == holds + 1
    assert repo.member_docs["BJR-A"].state == "closed"


def other_replica(repo: Meanwhile) -> HotspotDeps:
    """Another process on the same database: its own lock, its own handlers."""
    return HotspotDeps(repo=repo, commands=Commands(), clock=lambda: T0, lease=CountingLease())


async def test_a_partner_closed_while_the_grouping_works_stays_closed() -> None:
    d, repo, _ = worker()
    await handlers.handle_routed(routed("BJR-P"), d)

    async def close_partner() -> None:
        other = other_replica(repo)
        await handlers.handle_state_changed(state_changed("BJR-P", State.CLOSED), other)

    repo.meanwhile = close_partner
    await handlers.handle_routed(routed("BJR-C", hours=1), d)
    [hotspot] = repo.hotspot_docs.values()
    partner = repo.member_docs["BJR-P"]
    assert (partner.hotspot_id, partner.state) == (hotspot.hotspot_id, "closed")
    assert hotspot.state is HotspotState.SUGGESTED  # BJR-C is open


async def test_a_hotspot_whose_members_all_closed_while_it_formed_is_closed() -> None:
    d, repo, _ = worker()
    await handlers.handle_routed(routed("BJR-P"), d)
    await handlers.handle_routed(routed("BJR-C", hours=1, agency=None), d)  # triage first

    async def close_both() -> None:
        other = other_replica(repo)
        await handlers.handle_state_changed(state_changed("BJR-P", State.CLOSED), other)
        await handlers.handle_state_changed(state_changed("BJR-C", State.CLOSED, minutes=2), other)

    repo.meanwhile = close_both
    await handlers.handle_routed(routed("BJR-C", hours=1, round_=1), d)  # now to PUPR
    [hotspot] = repo.hotspot_docs.values()
    assert sorted(hotspot.members) == ["BJR-C", "BJR-P"]
    assert [repo.member_docs[m].state for m in ("BJR-C", "BJR-P")] == ["closed", "closed"]
    assert hotspot.state is HotspotState.CLOSED
    assert [e.change for e in repo.published] == [HotspotChange.FORMED, HotspotChange.CLOSED]


async def test_a_partner_left_out_by_a_crash_is_stored_in_its_hotspot_on_the_redelivery() -> None:
    d, repo, _ = worker()
    await handlers.handle_routed(routed("BJR-A"), d)
    crash_once(repo, "save_member")
    with pytest.raises(ConnectionError):
        await handlers.handle_routed(routed("BJR-B", hours=1), d)
    [hotspot] = repo.hotspot_docs.values()
    assert repo.member_docs["BJR-A"].hotspot_id is None  # the partner, not yet
    await handlers.handle_routed(routed("BJR-B", hours=1), d)
    assert repo.member_docs["BJR-A"].hotspot_id == hotspot.hotspot_id
