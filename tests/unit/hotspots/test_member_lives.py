"""Hotspots follow their members' complaints: closings, reopenings, intake's refusals."""

import pytest

from lapor.contracts import State
from lapor.contracts.commands import Action, CommandRejected
from lapor.contracts.hotspots import HotspotChange, HotspotState
from services.hotspots import handlers
from services.hotspots.api import member_view
from services.hotspots.domain import Refused, answer_command_of
from tests.unit.hotspots.fakes import PUPR, T0, deps, routed, state_changed


async def two_member_hotspot() -> tuple[handlers.HotspotDeps, str]:
    d, repo, _ = deps()
    await handlers.handle_routed(routed("BJR-A"), d)
    await handlers.handle_routed(routed("BJR-B", hours=2), d)
    [hotspot] = await repo.open_hotspots()
    return d, hotspot.hotspot_id


async def test_a_withdrawn_member_is_shown_and_the_last_closing_closes_the_hotspot() -> None:
    d, hotspot_id = await two_member_hotspot()
    await handlers.handle_state_changed(
        state_changed("BJR-A", State.CLOSED, outcome="withdrawn"), d
    )
    withdrawn = await d.repo.member("BJR-A")
    assert withdrawn is not None and withdrawn.closed
    assert member_view(withdrawn).outcome == "withdrawn"
    assert [h.hotspot_id for h in await d.repo.open_hotspots()] == [hotspot_id]

    await handlers.handle_state_changed(
        state_changed("BJR-B", State.CLOSED, outcome="duplicate", minutes=2), d
    )
    closed = await d.repo.hotspot(hotspot_id)
    assert closed is not None and closed.state is HotspotState.CLOSED
    assert await d.repo.open_hotspots() == []
    published = d.repo.published  # type: ignore[attr-defined]
    assert published[-1].change is HotspotChange.CLOSED
    assert published[-1].affected == ["BJR-B"]
    with pytest.raises(Refused):
        await handlers.answer_all(d, hotspot_id, "Sudah diperbaiki.", PUPR)


async def test_a_redelivered_or_late_state_change_changes_nothing() -> None:
    d, _ = await two_member_hotspot()
    closing = state_changed("BJR-A", State.CLOSED, minutes=5, outcome="resolved")
    await handlers.handle_state_changed(closing, d)
    await handlers.handle_state_changed(closing, d)
    # An older change (in progress) arriving after the closing keeps it closed.
    await handlers.handle_state_changed(state_changed("BJR-A", State.IN_PROGRESS, minutes=1), d)
    member = await d.repo.member("BJR-A")
    assert member is not None and member.state == "closed"
    await handlers.handle_state_changed(state_changed("BJR-B", State.CLOSED, minutes=6), d)
    await handlers.handle_state_changed(state_changed("BJR-B", State.CLOSED, minutes=6), d)
    published = d.repo.published  # type: ignore[attr-defined]
    assert [e.change for e in published].count(HotspotChange.CLOSED) == 1


async def test_a_reopened_member_opens_its_closed_hotspot_again() -> None:
    d, hotspot_id = await two_member_hotspot()
    await handlers.handle_state_changed(state_changed("BJR-A", State.CLOSED, minutes=1), d)
    await handlers.handle_state_changed(state_changed("BJR-B", State.CLOSED, minutes=2), d)
    await handlers.handle_state_changed(state_changed("BJR-B", State.IN_PROGRESS, minutes=3), d)
    reopened = await d.repo.hotspot(hotspot_id)
    assert reopened is not None and reopened.state is HotspotState.CONFIRMED
    assert [h.hotspot_id for h in await d.repo.open_hotspots()] == [hotspot_id]


async def test_a_closed_complaint_forms_no_new_hotspot() -> None:
    d, repo, _ = deps()
    await handlers.handle_routed(routed("BJR-A"), d)
    await handlers.handle_state_changed(state_changed("BJR-A", State.CLOSED), d)
    await handlers.handle_routed(routed("BJR-B", hours=1), d)
    assert await repo.open_hotspots() == []


async def test_intakes_refusal_of_an_answer_is_kept_with_the_member_once() -> None:
    d, hotspot_id = await two_member_hotspot()
    sent = await handlers.answer_all(d, hotspot_id, "Jalan sudah ditimbun.", PUPR)
    refused_id = next(c for c in sent.command_ids if c.endswith(":BJR-A"))
    rejected = CommandRejected(
        event_id="rejected-1",
        occurred_at=T0,
        command_id=refused_id,
        complaint_id="BJR-A",
        action=Action.ANSWER,
        reason="complaint is closed",
    )
    await handlers.handle_command_rejected(rejected, d)
    await handlers.handle_command_rejected(rejected, d)
    other = rejected.model_copy(update={"command_id": "console-answer-1", "event_id": "r2"})
    await handlers.handle_command_rejected(other, d)
    member = await d.repo.member("BJR-A")
    assert member is not None
    [refusal] = member_view(member).refusals
    assert (refusal.hotspot_id, refusal.round, refusal.reason) == (
        hotspot_id,
        1,
        "complaint is closed",
    )
    assert (await d.repo.member("BJR-B")).refusals == ()  # type: ignore[union-attr]


def test_answer_command_ids_read_back() -> None:
    assert answer_command_of("hotspot-answer:HS-BJR-A-3:2:BJR-C") == ("HS-BJR-A-3", 2, "BJR-C")
    assert answer_command_of("hotspot-answer:HS-X:two:BJR-C") is None
    assert answer_command_of("console:HS-X:1:BJR-C") is None
