"""The lifecycle rules, table by table: allowed, refused, and what each refusal says."""

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from lapor.contracts import Priority, State
from lapor.contracts.commands import Action, Actor, ComplaintCommand, Outcome, Role
from services.intake.lifecycle import (
    RULES,
    Known,
    Refused,
    auto_close_outcome,
    check_routing,
    decide,
    reopen_window_applies,
)

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


def test_reopen_only_within_the_window_sla_stored() -> None:
    reopen = command(Action.REOPEN, CITIZEN, text="x")
    closed_long_ago = complaint(
        State.CLOSED, closed_at=NOW - timedelta(days=20), reopen_until=NOW - timedelta(days=6)
    )
    with pytest.raises(Refused, match="reply window for reopening has passed") as refused:
        decide(closed_long_ago, reopen, now=NOW)
    assert refused.value.status == 409
    assert "2026-11-22T03:00:00+00:00" in refused.value.reason
    # The window is the stored one, whatever the closing date: a closing a while
    # ago with a window stretched by holidays may still be reopened.
    within = complaint(
        State.CLOSED, closed_at=NOW - timedelta(days=20), reopen_until=NOW + timedelta(days=1)
    )
    decision = decide(within, reopen, now=NOW)
    assert decision.fields["reopen_count"] == 1
    # Open again: no closing, no window; the next answer opens a new one.
    assert decision.fields["closed_at"] is None
    assert decision.fields["reopen_until"] is None and decision.fields["reopen_from"] is None
    # Until SLA has said, nothing limits the citizen.
    assert decide(complaint(State.RESPONDED, reopen_until=None), reopen, now=NOW).state is (
        State.IN_PROGRESS
    )


def test_a_reopen_window_applies_only_to_the_latest_answer_or_closing() -> None:
    answered = complaint(State.RESPONDED, reopen_from="state:command:answer-2")
    assert reopen_window_applies(answered, "state:command:answer-2")
    # The window of the first answer, arriving after a reopening and a new answer.
    assert not reopen_window_applies(answered, "state:command:answer-1")
    assert not reopen_window_applies(answered, None)
    # Reopened meanwhile: no window applies until the next answer.
    reopened = complaint(State.IN_PROGRESS, reopen_from=None)
    assert not reopen_window_applies(reopened, "state:command:answer-2")
    closed = complaint(State.CLOSED, reopen_from="state:routed:LPR-TEST:0")
    assert reopen_window_applies(closed, "state:routed:LPR-TEST:0")


def test_merging_records_when_it_was_closed() -> None:
    merge = command(Action.MERGE, ADMIN, duplicate_of="LPR-OTHER")
    decision = decide(complaint(State.TRIAGE), merge, now=NOW, known=KNOWN)
    assert decision.state is State.CLOSED and decision.fields["closed_at"] == NOW


ANSWERED_AT = NOW - timedelta(days=14)


@pytest.mark.parametrize(
    ("extra", "outcome"),
    [
        ({}, "no_reply"),
        (
            {"rating": {"score": 5, "comment": "", "at": ANSWERED_AT + timedelta(hours=1)}},
            "resolved",
        ),
        (
            {"rating": {"score": 3, "comment": "", "at": ANSWERED_AT + timedelta(hours=1)}},
            "resolved",
        ),
        (
            {"rating": {"score": 2, "comment": "", "at": ANSWERED_AT + timedelta(hours=1)}},
            "not_resolved",
        ),
        # A rating of an earlier answer (before a reopening) says nothing of this one.
        (
            {"rating": {"score": 5, "comment": "", "at": ANSWERED_AT - timedelta(days=3)}},
            "no_reply",
        ),
        # A reply before the answer (to a question) is not a reaction to the answer.
        ({"replied_at": ANSWERED_AT - timedelta(days=1)}, "no_reply"),
        # The rating decides, also when the citizen wrote as well.
        (
            {
                "replied_at": ANSWERED_AT + timedelta(hours=2),
                "rating": {"score": 1, "comment": "", "at": ANSWERED_AT + timedelta(hours=1)},
            },
            "not_resolved",
        ),
    ],
)
def test_auto_close_outcome_follows_the_citizens_reaction(
    extra: dict[str, Any], outcome: str
) -> None:
    doc = complaint(State.RESPONDED, responded_at=ANSWERED_AT, **extra)
    decision = decide(doc, command(Action.AUTO_CLOSE, SYSTEM), now=NOW)
    assert decision.state is State.CLOSED
    assert decision.fields["outcome"] == outcome and decision.fields["closed_at"] == NOW
    if outcome == "no_reply":
        assert decision.reason == "closed: no reaction from the citizen"
    else:
        assert decision.fields["outcome_note"] == auto_close_outcome(doc)[1]
        assert "rated the answer" in decision.reason


def test_a_reply_to_the_answer_is_not_closed_as_no_reply() -> None:
    doc = complaint(
        State.RESPONDED, responded_at=ANSWERED_AT, replied_at=ANSWERED_AT + timedelta(days=2)
    )
    with pytest.raises(Refused, match="citizen replied to the answer") as refused:
        decide(doc, command(Action.AUTO_CLOSE, SYSTEM), now=NOW)
    assert refused.value.status == 409
    # The reply itself is what marks the reaction.
    reply = decide(
        complaint(State.RESPONDED), command(Action.REPLY, CITIZEN, text="masih rusak"), now=NOW
    )
    assert reply.state is None and reply.fields == {"replied_at": NOW}


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
