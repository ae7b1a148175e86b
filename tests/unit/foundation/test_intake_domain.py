from datetime import UTC, datetime

from lapor.contracts import Channel, ComplaintRouted, Deadlines, DeadlinesSet, Priority, State
from services.intake import domain

NOW = datetime(2026, 11, 28, 1, 0, tzinfo=UTC)


def _complaint() -> dict:
    return domain.new_complaint(
        tracking_id="LPR-TEST", region="banjar", channel=Channel.SMS, text="jalan rusak",
        received_at=NOW, source_key="sms:gw-1", phone_hash="h", anonymous=False,
        confidential=False, truncated=False, stored_at=NOW,
    )  # fmt: skip


def _routed(**overrides: object) -> ComplaintRouted:
    fields: dict = {
        "event_id": "routed:LPR-TEST:0", "occurred_at": NOW, "complaint_id": "LPR-TEST",
        "region": "banjar", "received_at": NOW, "agency": "PUPR",
        "priority": Priority.NORMAL, "category": "jalan", "confidence": 0.9, "triage": False,
        "reasons": ["'jalan rusak' → PUPR"],
    }  # fmt: skip
    fields.update(overrides)
    return ComplaintRouted(**fields)


def test_new_complaint_starts_received_with_one_history_entry() -> None:
    doc = _complaint()
    assert doc["state"] == "received"
    assert [h["state"] for h in doc["history"]] == ["received"]
    assert doc["history"][0]["event_id"] == domain.received_event_id("LPR-TEST")
    assert domain.current_state(doc["history"]) is State.RECEIVED


def test_routing_assigns_triages_or_closes() -> None:
    assert domain.routed_transition(_routed()).state is State.ASSIGNED
    triage = domain.routed_transition(_routed(triage=True, agency=None, candidates=["A", "B"]))
    assert triage.state is State.TRIAGE and triage.fields["agency"] is None
    closed = domain.routed_transition(_routed(agency="OUT_OF_SCOPE"))
    assert closed.state is State.CLOSED and closed.fields["outcome"] == "out_of_scope"


def test_deadlines_do_not_change_the_state_but_are_in_history() -> None:
    event = DeadlinesSet(
        event_id="deadlines:x", occurred_at=NOW, complaint_id="LPR-TEST", region="banjar",
        agency="PUPR", priority=Priority.NORMAL, state=State.ASSIGNED, received_at=NOW,
        deadlines=Deadlines(answer=NOW), cause_event_id="routed:LPR-TEST:0",
    )  # fmt: skip
    transition = domain.deadlines_transition(event)
    entry = transition.history_entry()
    assert transition.state is None and entry["state"] is None
    assert entry["actor"] == "sla" and entry["event_id"] == "deadlines:x"
    history = [*_complaint()["history"], domain.routed_transition(_routed()).history_entry(), entry]
    assert domain.current_state(history) is State.ASSIGNED
