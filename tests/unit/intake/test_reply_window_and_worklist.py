"""The reply window on the complaint record, and the stored worklist order (pure rules)."""

from datetime import UTC, datetime, timedelta
from typing import Any

from lapor.contracts import AutoCloseDue, ComplaintRouted, Priority, State
from lapor.contracts.commands import Action, Actor, ComplaintCommand, Outcome, Role
from services.intake import domain, lifecycle

NOW = datetime(2026, 11, 28, 1, 0, tzinfo=UTC)
OFFICER = Actor(role=Role.AGENCY, id="budi", agency="PUPR")


def _command(action: Action, **fields: Any) -> ComplaintCommand:
    return ComplaintCommand(
        command_id=f"c-{action.value}",
        complaint_id="LPR-TEST",
        action=action,
        actor=fields.pop("actor", OFFICER),
        **fields,
    )


def _transition(doc: dict[str, Any], command: ComplaintCommand) -> domain.Transition:
    decision = lifecycle.decide(doc, command, now=NOW)
    return domain.command_transition(command, decision, NOW)


def _doc(state: State, **extra: Any) -> dict[str, Any]:
    return {"_id": "LPR-TEST", "region": "banjar", "state": state.value, "agency": "PUPR", **extra}


def test_an_answer_and_a_closing_each_open_a_window_sla_will_fill_in() -> None:
    answer = _transition(_doc(State.IN_PROGRESS), _command(Action.ANSWER, text="Sudah"))
    assert answer.fields["reopen_from"] == "state:command:c-answer"
    assert answer.fields["reopen_until"] is None  # the window of an earlier answer is gone
    closed = _transition(
        _doc(State.RESPONDED, reopen_until=NOW),
        _command(Action.CLOSE, outcome=Outcome.RESOLVED),
    )
    assert closed.fields["reopen_from"] == "state:command:c-close"
    assert closed.fields["reopen_until"] is None and closed.fields["closed_at"] == NOW
    ack = _transition(_doc(State.ASSIGNED), _command(Action.ACKNOWLEDGE))
    assert "reopen_from" not in ack.fields


def test_the_state_change_leaves_the_window_to_sla() -> None:
    transition = _transition(_doc(State.IN_PROGRESS), _command(Action.ANSWER, text="Sudah"))
    doc = {**_doc(State.RESPONDED), "history": [transition.history_entry()]}
    changed = domain.state_changed_event(doc, transition)
    assert changed is not None
    assert changed.event_id == transition.fields["reopen_from"]
    assert changed.reopen_until is None


def test_out_of_scope_is_closed_at_the_routing_decision_with_a_window() -> None:
    routed = ComplaintRouted(
        event_id="routed:LPR-TEST:0",
        occurred_at=NOW,
        complaint_id="LPR-TEST",
        region="banjar",
        received_at=NOW - timedelta(minutes=1),
        agency="OUT_OF_SCOPE",
        priority=Priority.NORMAL,
        category="pidana",
        confidence=0.9,
        triage=False,
    )
    closed = domain.routed_transition(routed)
    assert closed.state is State.CLOSED and closed.fields["closed_at"] == NOW
    assert closed.fields["reopen_from"] == "state:routed:LPR-TEST:0"
    assigned = domain.routed_transition(routed.model_copy(update={"agency": "PUPR"}))
    assert "closed_at" not in assigned.fields and "reopen_from" not in assigned.fields


def test_sla_s_window_is_recorded_as_a_history_entry() -> None:
    until = datetime(2026, 12, 12, 23, 59, 59, tzinfo=UTC)
    event = AutoCloseDue(
        event_id="reopen-window:state:command:c-answer",
        occurred_at=NOW,
        complaint_id="LPR-TEST",
        region="banjar",
        responded_at=NOW,
        kind="reopen_window",
        reopen_until=until,
        cause_event_id="state:command:c-answer",
    )
    transition = domain.reopen_window_transition(event)
    assert transition.state is None and transition.fields == {"reopen_until": until}
    assert transition.history_entry()["actor"] == "sla"
    # Old payloads, without a kind, are auto-close orders as before.
    old = AutoCloseDue.model_validate(
        {
            "event_id": "C1:answer:auto_close:1",
            "occurred_at": NOW.isoformat(),
            "complaint_id": "LPR-TEST",
            "region": "banjar",
            "responded_at": NOW.isoformat(),
        }
    )
    assert old.kind == "auto_close" and old.reopen_until is None


FIRST = NOW + timedelta(days=2)
ANSWER = NOW + timedelta(days=10)


def test_the_next_deadline_is_the_nearest_one_the_agency_still_has_to_meet() -> None:
    deadlines = {"routing": NOW, "first_response": FIRST, "answer": ANSWER}
    assert domain.next_deadline(_doc(State.ASSIGNED, deadlines=deadlines)) == FIRST
    # Re-routed late: the answer cap, fixed at receipt, can come before the new first response.
    late = {**deadlines, "first_response": ANSWER + timedelta(days=1)}
    assert domain.next_deadline(_doc(State.ASSIGNED, deadlines=late)) == ANSWER
    for acted in (State.IN_PROGRESS, State.NEEDS_INFO):
        assert domain.next_deadline(_doc(acted, deadlines=deadlines)) == ANSWER
    for done in (State.RESPONDED, State.CLOSED, State.RECEIVED, State.TRIAGE):
        assert domain.next_deadline(_doc(done, deadlines=deadlines)) is None
    # Assigned, but SLA has not announced the deadlines yet.
    assert domain.next_deadline(_doc(State.ASSIGNED, deadlines={"answer": None})) is None
    assert domain.worklist_fields(_doc(State.ASSIGNED)) == {
        "next_deadline": None,
        "has_next_deadline": 0,
        "open_agency": "PUPR",
        "worklist_sync": "pending",
    }
    assert domain.worklist_fields(_doc(State.IN_PROGRESS, deadlines=deadlines)) == {
        "next_deadline": ANSWER,
        "has_next_deadline": 1,
        "open_agency": "PUPR",
        "worklist_sync": "pending",
    }
    # Out of the agency's hands: off its open worklist.
    assert domain.worklist_fields(_doc(State.CLOSED))["open_agency"] is None
