"""The lifecycle rules, table by table: allowed, refused, and what each refusal says."""

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from lapor.contracts import Priority, State
from lapor.contracts.commands import Action, Actor, ComplaintCommand, Outcome, Role
from services.intake.lifecycle import RULES, Known, Refused, check_routing, decide

NOW = datetime(2026, 11, 28, 3, 0, tzinfo=UTC)
OFFICER = Actor(role=Role.AGENCY, id="budi", agency="PUPR")
OTHER_OFFICER = Actor(role=Role.AGENCY, id="sari", agency="DLH")
ADMIN = Actor(role=Role.ADMIN, id="admin1")
CITIZEN = Actor(role=Role.CITIZEN, id="sms:abc")
SYSTEM = Actor(role=Role.SYSTEM, id="sla")
# The region's directory and the complaint a merge names, as the handler looks them up.
KNOWN = Known(agencies={"PUPR", "DLH", "DISHUB"}, duplicate={"_id": "LPR-OTHER"})


def complaint(state: State, **extra: Any) -> dict[str, Any]:
    return {"_id": "LPR-TEST", "region": "banjar", "state": state.value, "agency": "PUPR", **extra}


def command(action: Action, actor: Actor = OFFICER, **fields: Any) -> ComplaintCommand:
    return ComplaintCommand(
        command_id="c1", complaint_id="LPR-TEST", action=action, actor=actor, **fields
    )


@pytest.mark.parametrize(
    ("state", "cmd", "to"),
    [
        (State.ASSIGNED, command(Action.ACKNOWLEDGE), State.IN_PROGRESS),
        (State.IN_PROGRESS, command(Action.ASK, text="Di RT berapa?"), State.NEEDS_INFO),
        (State.NEEDS_INFO, command(Action.REPLY, CITIZEN, text="RT 05"), State.IN_PROGRESS),
        (State.IN_PROGRESS, command(Action.REPLY, CITIZEN, text="foto"), None),
        (State.IN_PROGRESS, command(Action.ANSWER, text="Sudah ditambal"), State.RESPONDED),
        (State.RESPONDED, command(Action.RATE, CITIZEN, score=5), None),
        (State.RESPONDED, command(Action.REOPEN, CITIZEN, text="masih rusak"), State.IN_PROGRESS),
        (
            State.RESPONDED,
            command(Action.CLOSE, outcome=Outcome.RESOLVED),
            State.CLOSED,
        ),
        (State.IN_PROGRESS, command(Action.FORWARD, text="bukan jalan kab."), State.RECEIVED),
        (
            State.TRIAGE,
            command(Action.DECIDE_TRIAGE, ADMIN, agency="DLH", priority=Priority.HIGH),
            State.RECEIVED,
        ),
        (State.TRIAGE, command(Action.REJECT, ADMIN, text="spam"), State.REJECTED),
        (State.ASSIGNED, command(Action.MERGE, ADMIN, duplicate_of="LPR-OTHER"), State.CLOSED),
        (State.RESPONDED, command(Action.AUTO_CLOSE, SYSTEM), State.CLOSED),
    ],
)
def test_allowed_transitions(state: State, cmd: ComplaintCommand, to: State | None) -> None:
    decision = decide(complaint(state, responded_at=NOW), cmd, now=NOW, known=KNOWN)
    assert decision.state == to
    assert decision.reason


@pytest.mark.parametrize(
    ("state", "cmd", "status", "says"),
    [
        (State.ASSIGNED, command(Action.ACKNOWLEDGE, OTHER_OFFICER), 403, "not assigned"),
        (State.ASSIGNED, command(Action.ACKNOWLEDGE, CITIZEN), 403, "citizen may not"),
        (State.RESPONDED, command(Action.ACKNOWLEDGE), 409, "cannot acknowledge"),
        (State.CLOSED, command(Action.ANSWER, text="x"), 409, "closed"),
        (State.IN_PROGRESS, command(Action.ANSWER), 422, "needs the answer"),
        (State.IN_PROGRESS, command(Action.CLOSE), 422, "outcome"),
        (
            State.IN_PROGRESS,
            command(Action.CLOSE, outcome=Outcome.NOT_RESOLVED),
            422,
            "explanation",
        ),
        (State.IN_PROGRESS, command(Action.CLOSE, outcome=Outcome.DUPLICATE), 422, "duplicate"),
        (State.ASSIGNED, command(Action.RATE, CITIZEN, score=4), 409, "cannot rate"),
        (State.TRIAGE, command(Action.DECIDE_TRIAGE, ADMIN), 422, "agency and the priority"),
        (State.ASSIGNED, command(Action.DECIDE_TRIAGE, OFFICER), 403, "agency may not"),
        (State.CLOSED, command(Action.AUTO_CLOSE, SYSTEM), 409, "cannot auto_close"),
    ],
)
def test_refusals_say_why(state: State, cmd: ComplaintCommand, status: int, says: str) -> None:
    with pytest.raises(Refused) as refused:
        decide(complaint(state), cmd, now=NOW)
    assert refused.value.status == status
    assert says in refused.value.reason


def test_reopen_only_within_the_window() -> None:
    doc = complaint(State.CLOSED, closed_at=NOW - timedelta(days=20))
    with pytest.raises(Refused, match="reply window"):
        decide(
            doc,
            command(Action.REOPEN, CITIZEN, text="x"),
            now=NOW,
            reopen_until=NOW - timedelta(days=6),
        )
    decision = decide(
        doc,
        command(Action.REOPEN, CITIZEN, text="x"),
        now=NOW,
        reopen_until=NOW + timedelta(days=1),
    )
    assert decision.fields["reopen_count"] == 1


def test_forward_counts_bounces_and_remembers_who_refused() -> None:
    doc = complaint(State.ASSIGNED, refused_by=["DLH"], bounces=1, routing_round=1)
    forward = command(Action.FORWARD, text="bukan kami", agency="DISHUB")
    decision = decide(doc, forward, now=NOW, known=KNOWN)
    assert decision.reroute
    assert decision.fields["bounces"] == 2
    assert decision.fields["refused_by"] == ["DLH", "PUPR"]
    assert decision.fields["routing_round"] == 2
    assert decision.fields["agency"] is None


def test_every_action_has_a_rule() -> None:
    assert set(RULES) == set(Action)


@pytest.mark.parametrize(
    ("state", "cmd", "says"),
    [
        (
            State.TRIAGE,
            command(Action.DECIDE_TRIAGE, ADMIN, agency="DINAS_X", priority=Priority.HIGH),
            "unknown agency code 'DINAS_X'",
        ),
        (
            State.IN_PROGRESS,
            command(Action.FORWARD, text="bukan kami", agency="pupr_lama"),
            "unknown agency code 'pupr_lama'",
        ),
        (
            State.IN_PROGRESS,
            command(Action.FORWARD, text="bukan kami", agency="PUPR"),
            "another agency than your own",
        ),
        (
            State.ASSIGNED,
            command(Action.MERGE, ADMIN, duplicate_of="LPR-NOPE"),
            "no existing complaint: LPR-NOPE",
        ),
        (
            State.RESPONDED,
            command(Action.CLOSE, outcome=Outcome.DUPLICATE, duplicate_of="LPR-NOPE"),
            "no existing complaint: LPR-NOPE",
        ),
    ],
)
def test_named_agencies_and_complaints_must_exist(
    state: State, cmd: ComplaintCommand, says: str
) -> None:
    nothing_found = Known(agencies=KNOWN.agencies, duplicate=None)
    with pytest.raises(Refused) as refused:
        decide(complaint(state), cmd, now=NOW, known=nothing_found)
    assert refused.value.status == 422
    assert says in refused.value.reason


def test_a_forward_without_a_suggestion_needs_no_directory() -> None:
    decision = decide(
        complaint(State.ASSIGNED), command(Action.FORWARD, text="bukan kami"), now=NOW
    )
    assert decision.reroute and decision.detail["suggested"] is None


@pytest.mark.parametrize(
    ("doc", "round_"),
    [
        (complaint(State.RECEIVED), 0),
        (complaint(State.RECEIVED, routing_round=2), 2),
    ],
)
def test_routing_applies_to_its_own_round_while_received(doc: dict[str, Any], round_: int) -> None:
    check_routing(doc, round_)


@pytest.mark.parametrize(
    ("doc", "round_", "says"),
    [
        # An admin acted before the router's decision landed.
        (complaint(State.REJECTED), 0, "cannot route a complaint that is rejected"),
        (complaint(State.CLOSED, outcome="duplicate"), 0, "is closed"),
        # Decided by an admin while still received: the router's first round is over.
        (complaint(State.RECEIVED, routing_round=1), 0, "round 0 does not apply"),
        # Forwarded and routed again: a late decision of the earlier round.
        (complaint(State.ASSIGNED, routing_round=1), 0, "round 0 does not apply"),
        (complaint(State.ASSIGNED, routing_round=1), 1, "cannot route"),
        (complaint(State.TRIAGE), 0, "is triage"),
    ],
)
def test_a_routing_decision_that_no_longer_applies_is_refused(
    doc: dict[str, Any], round_: int, says: str
) -> None:
    with pytest.raises(Refused) as refused:
        check_routing(doc, round_)
    assert says in refused.value.reason
