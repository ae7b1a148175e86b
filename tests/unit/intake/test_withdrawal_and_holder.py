"""Withdrawal by the citizen, BATAL by SMS, and what a citizen's change tells the agency."""

from datetime import UTC, datetime
from typing import Any

import pytest

from lapor.contracts import State
from lapor.contracts.commands import Action, Actor, ComplaintCommand, Outcome, Role
from services.intake import domain
from services.intake.lifecycle import Known, Refused, decide
from services.intake.sms import DEFAULT_REGIONS, Invalid, NewComplaint, Withdraw, parse_sms

NOW = datetime(2026, 11, 28, 3, 0, tzinfo=UTC)
CITIZEN = Actor(role=Role.CITIZEN, id="sms:abc")
OFFICER = Actor(role=Role.AGENCY, id="budi", agency="PUPR")
ID = "LPR-7K3M-9QX2T"


def complaint(state: State, **extra: Any) -> dict[str, Any]:
    return {"_id": ID, "region": "banjar", "state": state.value, "agency": "PUPR", **extra}


def command(action: Action, actor: Actor = CITIZEN, **fields: Any) -> ComplaintCommand:
    return ComplaintCommand(command_id="c1", complaint_id=ID, action=action, actor=actor, **fields)


OPEN = [
    State.RECEIVED,
    State.TRIAGE,
    State.ASSIGNED,
    State.IN_PROGRESS,
    State.NEEDS_INFO,
    State.RESPONDED,
]


@pytest.mark.parametrize("state", OPEN)
def test_the_citizen_withdraws_an_open_complaint(state: State) -> None:
    decision = decide(complaint(state), command(Action.WITHDRAW), now=NOW)
    assert decision.state is State.CLOSED
    assert decision.fields == {"outcome": Outcome.WITHDRAWN.value, "closed_at": NOW}
    assert decision.detail == {"outcome": "withdrawn"}


def test_a_reason_is_kept_when_given() -> None:
    decision = decide(
        complaint(State.ASSIGNED), command(Action.WITHDRAW, text=" sudah beres "), now=NOW
    )
    assert decision.detail == {"outcome": "withdrawn", "text": "sudah beres"}


@pytest.mark.parametrize("state", [State.CLOSED, State.REJECTED])
def test_what_is_over_cannot_be_withdrawn(state: State) -> None:
    with pytest.raises(Refused) as refused:
        decide(complaint(state), command(Action.WITHDRAW), now=NOW)
    assert refused.value.status == 409


@pytest.mark.parametrize(
    "actor",
    [OFFICER, Actor(role=Role.ADMIN, id="admin1"), Actor(role=Role.SYSTEM, id="sla")],
)
def test_only_the_citizen_withdraws(actor: Actor) -> None:
    with pytest.raises(Refused) as refused:
        decide(complaint(State.ASSIGNED), command(Action.WITHDRAW, actor), now=NOW)
    assert refused.value.status == 403


def test_a_withdrawn_complaint_is_neither_reopened_nor_rated() -> None:
    withdrawn = complaint(State.CLOSED, outcome="withdrawn")
    with pytest.raises(Refused, match="withdrew"):
        decide(withdrawn, command(Action.REOPEN, text="ternyata belum"), now=NOW)
    with pytest.raises(Refused, match="withdrew"):
        decide(withdrawn, command(Action.RATE, score=5), now=NOW)


@pytest.mark.parametrize(
    ("text", "parsed"),
    [
        (f"BATAL {ID}", Withdraw(ID, "")),
        (f"batal: {ID.lower()} sudah diperbaiki", Withdraw(ID, "sudah diperbaiki")),
        (f"BANJAR BATAL {ID} salah kirim", Withdraw(ID, "salah kirim")),
    ],
)
def test_batal_by_sms(text: str, parsed: Withdraw) -> None:
    assert parse_sms(text, DEFAULT_REGIONS) == parsed


def test_batal_without_an_id_is_answered_and_a_complaint_may_start_with_batal() -> None:
    assert isinstance(parse_sms("BATAL LPR-XXXX", DEFAULT_REGIONS), Invalid)
    text = "BANJAR batal berangkat karena jembatan putus di desa kami"
    assert isinstance(parse_sms(text, DEFAULT_REGIONS), NewComplaint)


def test_the_acknowledging_officer_holds_it_until_a_forward() -> None:
    acknowledged = decide(complaint(State.ASSIGNED), command(Action.ACKNOWLEDGE, OFFICER), now=NOW)
    assert acknowledged.fields == {"officer": "budi"}
    forward = command(Action.FORWARD, OFFICER, text="bukan kami", agency="DLH")
    forwarded = decide(
        complaint(State.IN_PROGRESS, officer="budi"), forward, now=NOW, known=Known({"DLH"})
    )
    assert forwarded.fields["officer"] is None


def _changed(doc: dict[str, Any], cmd: ComplaintCommand) -> Any:
    decision = decide(doc, cmd, now=NOW)
    transition = domain.command_transition(cmd, decision, NOW)
    after = domain.after_change(doc, transition, NOW)
    return domain.state_changed_event(after, transition)


def test_a_citizens_change_announces_the_action_their_text_and_the_officer() -> None:
    doc = {
        **complaint(State.NEEDS_INFO, officer="budi"),
        "history": [{"at": NOW, "state": "needs_info", "event_id": "e0"}],
        "event_ids": ["e0"],
    }
    event = _changed(doc, command(Action.REPLY, text="RT 05"))
    assert (event.action, event.message, event.officer) == ("reply", "RT 05", "budi")
    assert event.state is State.IN_PROGRESS
    withdrawn = _changed(doc, command(Action.WITHDRAW))
    assert (withdrawn.action, withdrawn.outcome, withdrawn.message) == (
        "withdraw",
        "withdrawn",
        None,
    )
