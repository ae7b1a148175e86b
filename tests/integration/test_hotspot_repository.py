"""The hotspots repository on the real FerretDB: a state change of a member in no
hotspot is one conditional write; the grouping's member writes never undo one."""

from __future__ import annotations

import itertools
from datetime import timedelta
from typing import Any

import pytest

from lapor.contracts import State
from lapor.contracts.hotspots import HotspotChanged, HotspotState
from lapor.runtime.outbox import Outbox
from services.hotspots import handlers
from services.hotspots.domain import Hotspot
from services.hotspots.handlers import HotspotDeps
from services.hotspots.repository import (
    MEMBERS,
    PLACE_KEY,
    MongoHotspots,
    StateChange,
    candidates_query,
    hotspot_doc,
    member_doc,
)
from tests.integration.command_log import listened
from tests.unit.hotspots.fakes import T0, Commands, routed, state_changed

pytestmark = [pytest.mark.integration]


class Announced:
    """Stands in for the HotspotChanged publisher: JetStream is not under test here."""

    subject = "lapor.hotspot.changed"
    schema = HotspotChanged

    def __init__(self) -> None:
        self.sent: list[HotspotChanged] = []

    async def publish(self, message: HotspotChanged, msg_id: str) -> bool:
        self.sent.append(message)
        return True


class Meanwhile(MongoHotspots):
    """Runs `meanwhile` once, when the grouping stores a hotspot (after it read the
    candidates, before it stored the members)."""

    meanwhile: Any = None

    async def save_hotspot(self, hotspot: Hotspot, announce: HotspotChanged | None) -> bool:
        if self.meanwhile is not None:
            meanwhile, self.meanwhile = self.meanwhile, None
            await meanwhile()
        return await super().save_hotspot(hotspot, announce)


async def repository(mongo: Any, name: str) -> tuple[Meanwhile, Announced]:
    db = mongo[name]
    for collection in ("hotspot_members", "hotspots"):
        await db[collection].delete_many({})
    announced = Announced()
    repo = Meanwhile(db, Outbox([announced]))  # type: ignore[list-item]
    await repo.ensure_indexes()
    return repo, announced


def change(complaint_id: str, state: str, minutes: float, event: str = "") -> StateChange:
    return StateChange(
        complaint_id=complaint_id,
        state=state,
        outcome=None,
        event_id=event or f"state:{complaint_id}:{state}:{minutes}",
        at=T0 + timedelta(minutes=minutes),
    )


async def test_a_state_change_applies_once_in_order_and_only_outside_hotspots(
    mongo: Any,
) -> None:
    repo, _ = await repository(mongo, "lapor_hotspot_repo_state")
    deps = HotspotDeps(repo=repo, commands=Commands(), clock=lambda: T0)
    await handlers.handle_routed(routed("BJR-A"), deps)
    assert not await repo.record_state(change("BJR-X", "assigned", 1))  # never routed
    assert await repo.record_state(change("BJR-A", "assigned", 1))  # no state yet
    assert not await repo.record_state(change("BJR-A", "assigned", 1))  # the same again
    assert not await repo.record_state(change("BJR-A", "closed", 0.5))  # older
    assert await repo.record_state(change("BJR-A", "in_progress", 1, event="other"))  # same time
    assert await repo.record_state(change("BJR-A", "closed", 2))
    member = await repo.member("BJR-A")
    assert member is not None
    assert (member.state, member.state_event_id) == ("closed", "state:BJR-A:closed:2")
    assert member.state_at == T0 + timedelta(minutes=2)

    await handlers.handle_routed(routed("BJR-B", hours=1), deps)  # reopened below
    await repo.members_c.update_one({"_id": "BJR-A"}, {"$set": {"hotspot_id": "HS-X"}})
    assert not await repo.record_state(change("BJR-A", "in_progress", 3))  # in a hotspot
    assert (await repo.member("BJR-A")).state == "closed"  # type: ignore[union-attr]


async def test_saving_a_member_keeps_the_state_stored_meanwhile(mongo: Any) -> None:
    repo, _ = await repository(mongo, "lapor_hotspot_repo_save")
    deps = HotspotDeps(repo=repo, commands=Commands(), clock=lambda: T0)
    await handlers.handle_routed(routed("BJR-A"), deps)
    read = await repo.member("BJR-A")
    assert read is not None and read.state is None
    assert await repo.record_state(change("BJR-A", "closed", 1))
    saved = await repo.save_member(read)
    assert (saved.state, saved.state_event_id) == ("closed", "state:BJR-A:closed:1")
    doc = await repo.members_c.database[MEMBERS].find_one({"_id": "BJR-A"})
    assert doc["state"] == "closed"


async def test_a_hotspot_formed_while_its_members_closed_is_closed(mongo: Any) -> None:
    repo, announced = await repository(mongo, "lapor_hotspot_repo_race")
    ticks = itertools.count()
    # Announcements go out in the order of their times: a clock that moves.
    deps = HotspotDeps(
        repo=repo, commands=Commands(), clock=lambda: T0 + timedelta(seconds=next(ticks))
    )
    await handlers.handle_routed(routed("BJR-P"), deps)
    await handlers.handle_routed(routed("BJR-C", hours=1, agency=None), deps)

    async def close_both() -> None:
        # Another replica's handlers: their own lock, the same database.
        other = HotspotDeps(repo=repo, commands=Commands(), clock=deps.clock)
        await handlers.handle_state_changed(state_changed("BJR-P", State.CLOSED, 1), other)
        await handlers.handle_state_changed(state_changed("BJR-C", State.CLOSED, 2), other)

    repo.meanwhile = close_both
    await handlers.handle_routed(routed("BJR-C", hours=1, round_=1), deps)
    members = await repo.members(["BJR-C", "BJR-P"])
    assert [(m.state, m.hotspot_id) for m in members] == [("closed", "HS-BJR-C")] * 2
    hotspot = await repo.hotspot("HS-BJR-C")
    assert hotspot is not None and hotspot.state is HotspotState.CLOSED
    assert [e.state for e in announced.sent] == [HotspotState.SUGGESTED, HotspotState.CLOSED]


async def test_a_busy_places_candidates_and_many_open_hotspots_are_read_in_one_command(
    servers: Any,
) -> None:
    """More than a first batch's default 101 still cost one find."""
    client, listener = listened(servers.mongo)
    try:
        repo, _ = await repository(client, "lapor_hotspot_repo_busy")
        for n in range(150):
            member = handlers.member_from(routed(f"BJR-{n:03d}", hours=n / 10), None)
            assert await repo.add_member(member)
        listener.names.clear()
        found = await repo.candidates(
            "banjar", "PUPR", "63.03.03", T0 - timedelta(days=1), T0 + timedelta(days=2)
        )
        assert len(found) == 150
        assert listener.names == ["find"]
        await repo.hotspots_c.insert_many(
            [
                hotspot_doc(
                    Hotspot(
                        hotspot_id=f"HS-{n:03d}",
                        region="banjar",
                        agency="PUPR",
                        kecamatan=None,
                        desa=None,
                        members=(f"BJR-{n:03d}", f"BJR-{n + 1:03d}"),
                        state=HotspotState.SUGGESTED,
                        formed_at=T0,
                        updated_at=T0,
                    )
                )
                for n in range(150)
            ]
        )
        listener.names.clear()
        assert len(await repo.open_hotspots()) == 150
        assert listener.names == ["find"]
    finally:
        await client.close()


async def test_a_first_routing_stores_its_grouped_member_with_one_insert(servers: Any) -> None:
    """Grouped before it is stored: no write of the member after its hotspot's."""
    client, listener = listened(servers.mongo)
    try:
        repo, _ = await repository(client, "lapor_hotspot_repo_first")
        deps = HotspotDeps(repo=repo, commands=Commands(), clock=lambda: T0)
        for n, letter in enumerate("AB"):
            await handlers.handle_routed(routed(f"BJR-{letter}", hours=n), deps)
        listener.clear()
        await handlers.handle_routed(routed("BJR-C", hours=2), deps)
        # Reads aside, and the announcement cleared once published (`update:hotspots`).
        writes = [t for t in listener.targets if t.split(":")[0] in ("insert", "findAndModify")]
        assert writes == ["insert:hotspot_members", "findAndModify:hotspots"]
        [hotspot] = await repo.open_hotspots()
        assert hotspot.members == ("BJR-A", "BJR-B", "BJR-C")
        stored = await repo.member("BJR-C")
        assert stored is not None and stored.hotspot_id == hotspot.hotspot_id
        assert stored.routed_event_id == routed("BJR-C", hours=2).event_id
    finally:
        await client.close()


async def test_the_candidates_lookup_narrows_by_place_and_agency_through_one_index(
    mongo: Any,
) -> None:
    """A busy kecamatan has members of many agencies: the lookup's index equality names
    the agency too, so the server decodes only the candidates, not all of them."""
    repo, _ = await repository(mongo, "lapor_hotspot_repo_key")
    agencies = ("PUPR", "PDAM", "DLH")
    for n in range(30):
        event = routed(f"BJR-{n:03d}", hours=n / 10, agency=agencies[n % 3])
        assert await repo.add_member(handlers.member_from(event, None))
    since, until = T0 - timedelta(days=1), T0 + timedelta(days=2)
    found = await repo.candidates("banjar", "PDAM", "63.03.03", since, until)
    assert sorted(m.complaint_id for m in found) == [f"BJR-{n:03d}" for n in range(1, 30, 3)]
    assert await repo.candidates("banjar", "PDAM", "63.03.04", since, until) == []
    explained = await mongo["lapor_hotspot_repo_key"].command(
        "explain",
        {"find": MEMBERS, "filter": candidates_query("banjar", "PDAM", "63.03.03", since, until)},
    )
    if "ferretdbVersion" not in explained.get("serverInfo", {}):
        pytest.skip("not FerretDB")
    plan = " ".join(explained["queryPlanner"]["Plan"])
    assert "USING INDEX" in plan and "place_key" in plan and "<" in plan, plan


async def test_members_stored_before_the_place_key_are_found_after_a_restart(
    mongo: Any,
) -> None:
    repo, _ = await repository(mongo, "lapor_hotspot_repo_fill")
    old = member_doc(handlers.member_from(routed("BJR-OLD", hours=1), None))
    del old[PLACE_KEY]
    await repo.members_c.insert_one(old)
    await repo.members_c.delete_many({"_id": {"$regex": "^_place"}})

    await repo.ensure_indexes()  # as a restarted service does

    found = await repo.candidates(
        "banjar", "PUPR", "63.03.03", T0 - timedelta(days=1), T0 + timedelta(days=2)
    )
    assert [m.complaint_id for m in found] == ["BJR-OLD"]
