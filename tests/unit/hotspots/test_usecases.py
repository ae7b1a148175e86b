"""Hotspot use cases on the in-memory repository."""

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import timedelta

import pytest

from lapor.contracts.commands import Action, ComplaintCommand
from lapor.contracts.hotspots import HotspotChange, HotspotState
from services.hotspots import handlers
from services.hotspots.domain import Hotspot, Member, Refused
from tests.unit.hotspots.fakes import ADMIN, DINKES, PUPR, SUNGAI_KUPANG, deps, routed


def ids(letters: str) -> list[str]:
    return [f"BJR-{letter}" for letter in letters]


SAME_PERSON = "ab" * 8


async def test_three_citizens_form_one_hotspot_and_a_fourth_problem_stays_out() -> None:
    d, repo, _ = deps()
    await handlers.handle_routed(routed("BJR-A"), d)
    await handlers.handle_routed(routed("BJR-B", hours=3), d)
    await handlers.handle_routed(routed("BJR-C", hours=20), d)
    await handlers.handle_routed(routed("BJR-D", keywords=("sampah", "numpuk", "bau")), d)
    [hotspot] = await repo.open_hotspots()
    assert hotspot.members == ("BJR-A", "BJR-B", "BJR-C")
    assert hotspot.state is HotspotState.SUGGESTED
    assert [e.change for e in repo.published] == [HotspotChange.FORMED, HotspotChange.JOINED]
    assert (await repo.member("BJR-D")).hotspot_id is None  # type: ignore[union-attr]


async def test_a_redelivery_changes_nothing_and_publishes_what_is_pending() -> None:
    d, repo, _ = deps()
    await handlers.handle_routed(routed("BJR-A"), d)
    await handlers.handle_routed(routed("BJR-B"), d)
    published = list(repo.published)
    await handlers.handle_routed(routed("BJR-B"), d)
    assert repo.published == published
    assert (await repo.open_hotspots())[0].version == 1


async def test_one_persons_repeats_form_no_hotspot() -> None:
    d, repo, _ = deps()
    await handlers.handle_routed(routed("BJR-A", reporter=SAME_PERSON), d)
    await handlers.handle_routed(routed("BJR-B", reporter=SAME_PERSON), d)
    assert await repo.open_hotspots() == []


async def test_a_rerouted_member_leaves_and_the_hotspot_dissolves_below_two() -> None:
    d, repo, _ = deps()
    await handlers.handle_routed(routed("BJR-A"), d)
    await handlers.handle_routed(routed("BJR-B"), d)
    # Re-routing carries neither reporter nor confidentiality: the first ones stay.
    moved = routed("BJR-B", agency="BPBD", round_=1).model_copy(update={"reporter": None})
    await handlers.handle_routed(moved, d)
    assert await repo.open_hotspots() == []
    assert repo.published[-1].change is HotspotChange.LEFT
    assert (await repo.member("BJR-B")).reporter is not None  # type: ignore[union-attr]


async def test_confidential_complaints_are_never_grouped() -> None:
    d, repo, _ = deps()
    await handlers.handle_routed(routed("BJR-A", confidential=True), d)
    await handlers.handle_routed(routed("BJR-B"), d)
    assert await repo.open_hotspots() == []


async def test_confirm_split_and_merge() -> None:
    d, repo, _ = deps()
    for cid in ids("ABCD"):
        await handlers.handle_routed(routed(cid), d)
    hotspot_id = (await repo.open_hotspots())[0].hotspot_id
    confirmed = await handlers.confirm(d, hotspot_id, PUPR)
    assert confirmed.state is HotspotState.CONFIRMED
    kept, new = await handlers.split(d, hotspot_id, ["BJR-C", "BJR-D"], True, ADMIN)
    assert (
        kept.members == ("BJR-A", "BJR-B") and new is not None and new.members == ("BJR-C", "BJR-D")
    )
    # Split off by a person: a later complaint does not pull them back automatically.
    await handlers.handle_routed(routed("BJR-E"), d)
    assert (await repo.member("BJR-C")).kept_apart  # type: ignore[union-attr]
    merged = await handlers.merge(d, hotspot_id, new.hotspot_id, ADMIN)
    assert set(merged.members) == {"BJR-A", "BJR-B", "BJR-C", "BJR-D", "BJR-E"}
    assert (await repo.hotspot(new.hotspot_id)).state is HotspotState.DISSOLVED  # type: ignore[union-attr]
    assert [h.hotspot_id for h in await repo.open_hotspots()] == [hotspot_id]


async def test_split_alone_leaves_single_complaints() -> None:
    d, repo, _ = deps()
    for cid in ids("ABC"):
        await handlers.handle_routed(routed(cid), d)
    hotspot_id = (await repo.open_hotspots())[0].hotspot_id
    kept, new = await handlers.split(d, hotspot_id, ["BJR-C"], False, ADMIN)
    assert new is None and kept.members == ("BJR-A", "BJR-B")
    assert (await repo.member("BJR-C")).hotspot_id is None  # type: ignore[union-attr]
    with pytest.raises(Refused):
        await handlers.split(d, hotspot_id, ["BJR-A", "BJR-B"], False, ADMIN)


async def test_answer_all_sends_one_command_per_member_once() -> None:
    d, repo, commands = deps()
    for cid in ids("ABC"):
        await handlers.handle_routed(routed(cid), d)
    hotspot_id = (await repo.open_hotspots())[0].hotspot_id
    sent = await handlers.answer_all(d, hotspot_id, "Jalan sudah ditimbun.", PUPR)
    again = await handlers.answer_all(d, hotspot_id, "Jalan sudah ditimbun.", PUPR)
    assert sent.command_ids == again.command_ids and len(commands.sent) == 3
    for cid in ids("ABC"):
        command = commands.sent[f"hotspot-answer:{hotspot_id}:1:{cid}"]
        assert isinstance(command, ComplaintCommand)
        assert command.action is Action.ANSWER and command.complaint_id == cid
        assert command.actor.id == "budi" and command.actor.agency == "PUPR"
    assert (await repo.hotspot(hotspot_id)).state is HotspotState.ANSWERED  # type: ignore[union-attr]
    second = await handlers.answer_all(d, hotspot_id, "Perbaikan selesai minggu depan.", PUPR)
    assert second.round == 2 and len(commands.sent) == 6


@pytest.mark.security
async def test_another_agency_neither_sees_nor_answers() -> None:
    d, repo, commands = deps()
    for cid in ids("AB"):
        await handlers.handle_routed(routed(cid), d)
    hotspot_id = (await repo.open_hotspots())[0].hotspot_id
    for action in (
        handlers.visible(d, hotspot_id, DINKES),
        handlers.confirm(d, hotspot_id, DINKES),
        handlers.answer_all(d, hotspot_id, "bukan urusan kami", DINKES),
    ):
        with pytest.raises(Refused) as refused:
            await action
        assert refused.value.status == 404
    # Admins see it, but answers come from the holding agency (the lifecycle's rule).
    with pytest.raises(Refused) as refused:
        await handlers.answer_all(d, hotspot_id, "dijawab admin", ADMIN)
    assert refused.value.status == 403
    assert commands.sent == {}


async def test_a_complaint_in_another_desa_stays_out_of_the_hotspot() -> None:
    d, repo, _ = deps()
    await handlers.handle_routed(routed("BJR-A"), d)
    await handlers.handle_routed(routed("BJR-B", desa=None), d)  # names only the kecamatan
    await handlers.handle_routed(routed("BJR-C", desa=SUNGAI_KUPANG), d)
    [hotspot] = await repo.open_hotspots()
    assert hotspot.members == ("BJR-A", "BJR-B")


async def test_an_earlier_rounds_decision_arriving_late_changes_nothing() -> None:
    d, repo, _ = deps()
    await handlers.handle_routed(routed("BJR-A"), d)
    first = routed("BJR-B")
    rerouted = routed("BJR-B", agency="BPBD", round_=1).model_copy(
        update={"occurred_at": first.occurred_at + timedelta(minutes=5)}
    )
    await handlers.handle_routed(first, d)
    await handlers.handle_routed(rerouted, d)
    await handlers.handle_routed(first, d)  # redelivered after the re-routing
    assert (await repo.member("BJR-B")).agency == "BPBD"  # type: ignore[union-attr]
    assert await repo.open_hotspots() == []


async def test_a_join_reads_only_the_members_that_were_not_candidates() -> None:
    """B, a candidate, is taken as read with the candidates; A, received before the
    newcomer's window, is read."""
    d, repo, _ = deps()
    await handlers.handle_routed(routed("BJR-A"), d)
    await handlers.handle_routed(routed("BJR-B", hours=100), d)
    asked: list[list[str]] = []
    members = repo.members

    async def recorded(complaint_ids: list[str]) -> list[Member]:
        asked.append(list(complaint_ids))
        return await members(complaint_ids)

    repo.members = recorded  # type: ignore[method-assign]
    await handlers.handle_routed(routed("BJR-C", hours=200), d)
    [hotspot] = await repo.open_hotspots()
    assert hotspot.members == ("BJR-A", "BJR-B", "BJR-C")
    assert asked == [["BJR-A"]]


class KeptLease:
    """A lease this process keeps until `tenure` is moved on (another replica held it)."""

    tenure = 1

    @asynccontextmanager
    async def hold(self) -> AsyncIterator[None]:
        yield


async def test_hotspots_are_read_once_while_the_lease_is_kept() -> None:
    d, repo, _ = deps()
    lease = KeptLease()
    d.lease = lease
    asked: list[list[str]] = []
    hotspots = repo.hotspots

    async def recorded(hotspot_ids: list[str]) -> dict[str, Hotspot]:
        asked.append(sorted(set(hotspot_ids)))
        return await hotspots(hotspot_ids)

    repo.hotspots = recorded  # type: ignore[method-assign]
    for n, letter in enumerate("ABCD"):
        await handlers.handle_routed(routed(f"BJR-{letter}", hours=n), d)
    [hotspot] = await repo.open_hotspots()
    assert hotspot.members == ("BJR-A", "BJR-B", "BJR-C", "BJR-D")
    # Known as B formed it and C and D joined it: never read.
    assert [ids for ids in asked if ids] == []
    # Another replica held the lease meanwhile: read again.
    lease.tenure = 2
    await handlers.handle_routed(routed("BJR-E", hours=5), d)
    assert [ids for ids in asked if ids] == [[hotspot.hotspot_id]]
