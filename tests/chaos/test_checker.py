"""The chaos check itself, on made-up histories: it must see every anomaly."""

from __future__ import annotations

from typing import Any

import pytest

from lapor.contracts import State
from services.intake import lifecycle
from tests.chaos.jepsen import (
    DEADLINES,
    ROUTED,
    TRANSITIONS,
    History,
    Observed,
    check,
    history_problems,
)


def _history() -> History:
    return History(attempted={"a", "b", "c", "d"}, accepted={"a", "b", "c"})


def _entry(state: str | None, event_id: str) -> dict[str, Any]:
    return {"state": state, "event_id": event_id, "actor": "test", "reason": "test"}


def _record(cid: str, **changes: Any) -> dict[str, Any]:
    """A complaint as the chaos run leaves it: stored, assigned, deadlines set."""
    record: dict[str, Any] = {
        "_id": cid,
        "state": "assigned",
        "agency": "PUPR",
        "outcome": None,
        "deadlines": {"routing": "r", "first_response": "f", "answer": "a"},
        "history": [
            _entry("received", f"received:{cid}"),
            _entry("assigned", f"routed:{cid}:0"),
            _entry(None, f"deadlines:routed:{cid}:0"),
        ],
        "version": 3,
    }
    return record | changes


def _announced(*cids: str) -> list[tuple[str, str, str]]:
    return [
        event
        for cid in cids
        for event in (
            (ROUTED, f"routed:{cid}:0", cid),
            (DEADLINES, f"deadlines:routed:{cid}:0", cid),
        )
    ]


def _clean(**records: dict[str, Any]) -> Observed:
    """Three SMS a, b, c stored as C1, C2, C3, acknowledged, routed, deadlines set."""
    ids = ("C1", "C2", "C3")
    return Observed(
        complaints=[("sms:a", "C1"), ("sms:b", "C2"), ("sms:c", "C3")],
        ack_notifications=[("n1", "C1"), ("n2", "C2"), ("n3", "C3")],
        outbound=[("n1", "C1"), ("n2", "C2"), ("n3", "C3"), ("other", "C1")],
        records={cid: records.get(cid, _record(cid)) for cid in ids},
        events=_announced(*ids),
    )


def test_a_clean_run_passes() -> None:
    verdict = check(_history(), _clean())
    assert verdict.ok, verdict
    assert verdict.acknowledged == 3 and verdict.indeterminate == 1
    assert verdict.counts() == dict.fromkeys(
        ("lost", "duplicated", "unexpected", "invalid_history", "unrouted", "no_deadlines"), 0
    )


def test_every_anomaly_is_reported() -> None:
    complaints = [
        *[("sms:a", "C1"), ("sms:a", "C1b"), ("sms:b", "C2"), ("sms:d", "C4")],
        *[("sms:zz", "C9"), ("web:x", "C10")],
    ]
    observed = Observed(
        # a: two complaints; c: none although accepted; d (indeterminate) stored, unacked.
        complaints=complaints,
        # C2: two acknowledgements; C1b: notification but never on the bus.
        ack_notifications=[
            *[("n1", "C1"), ("n2", "C2"), ("n2b", "C2"), ("n1b", "C1b")],
            ("n9", "C404"),
        ],
        outbound=[("n1", "C1"), ("n1", "C1"), ("n2", "C2"), ("n2b", "C2")],
        records={cid: _record(cid) for _key, cid in complaints},
        events=_announced(*(cid for _key, cid in complaints)),
    )
    verdict = check(_history(), observed)

    assert any("sms c" in x for x in verdict.lost)
    assert any("C1b" in x and "never on the bus" in x for x in verdict.lost)
    assert any("C4" in x and "no acknowledgement" in x for x in verdict.lost)
    assert any("sms a: 2 complaints" in x for x in verdict.duplicated)
    assert any("C2: 2 acknowledgements" in x for x in verdict.duplicated)
    assert any("C1: 2 acknowledgement SMS" in x for x in verdict.duplicated)
    assert len(verdict.unexpected) == 3
    assert not verdict.ok


# -- routing and deadlines: stored and announced ------------------------------------


def test_routing_not_stored_is_reported() -> None:
    # Still `received`: intake never recorded the router's decision.
    stuck = _record(
        "C2",
        state="received",
        agency=None,
        history=[_entry("received", "received:C2"), _entry(None, "deadlines:routed:C2:0")],
        version=2,
    )
    verdict = check(_history(), _clean(C2=stuck))
    assert verdict.unrouted == ["complaint C2: no routing stored (state received)"]
    assert not verdict.ok and verdict.counts()["unrouted"] == 1


def test_routing_not_announced_is_reported() -> None:
    observed = _clean()
    observed.events = [e for e in observed.events if not (e[0] == ROUTED and e[2] == "C3")]
    verdict = check(_history(), observed)
    assert verdict.unrouted == [f"complaint C3: no {ROUTED} in LAPOR_EVENTS"]
    assert not verdict.ok


def test_triage_and_out_of_scope_count_as_routed() -> None:
    triage = _record(
        "C1",
        state="triage",
        agency=None,
        history=[
            _entry("received", "received:C1"),
            _entry("triage", "routed:C1:0"),
            _entry(None, "deadlines:routed:C1:0"),
        ],
    )
    # Out of scope: closed at once; SLA runs no clock, so no deadlines are expected.
    out = _record(
        "C2",
        state="closed",
        agency="OUT_OF_SCOPE",
        outcome="out_of_scope",
        deadlines={"routing": None, "first_response": None, "answer": None},
        history=[_entry("received", "received:C2"), _entry("closed", "routed:C2:0")],
        version=2,
    )
    observed = _clean(C1=triage, C2=out)
    observed.events = [e for e in observed.events if e[1] != "deadlines:routed:C2:0"]
    verdict = check(_history(), observed)
    assert verdict.ok, verdict


def test_deadlines_not_stored_is_reported() -> None:
    bare = _record("C1", deadlines={"routing": None, "first_response": None, "answer": None})
    verdict = check(_history(), _clean(C1=bare))
    assert verdict.no_deadlines == ["complaint C1: no answer deadline stored"]
    assert not verdict.ok


def test_deadlines_not_announced_is_reported() -> None:
    observed = _clean()
    observed.events = [e for e in observed.events if not (e[0] == DEADLINES and e[2] == "C2")]
    verdict = check(_history(), observed)
    assert verdict.no_deadlines == [f"complaint C2: no {DEADLINES} in LAPOR_EVENTS"]
    assert not verdict.ok


def test_an_event_stored_twice_in_the_stream_is_a_duplicate() -> None:
    observed = _clean()
    observed.events.append((ROUTED, "routed:C1:0", "C1"))
    verdict = check(_history(), observed)
    assert verdict.duplicated == [f"event routed:C1:0 ({ROUTED}) 2 times in LAPOR_EVENTS"]


# -- the history: a path through the state machine ---------------------------------


def test_the_transitions_are_the_lifecycles() -> None:
    for rule in lifecycle.RULES.values():
        for source in rule.from_states:
            if rule.to_state is not None:
                assert (source, rule.to_state) in TRANSITIONS
    # routing decisions, and the citizen's reply that resumes a question
    assert {(State.RECEIVED, State.ASSIGNED), (State.RECEIVED, State.TRIAGE)} <= TRANSITIONS
    assert (State.NEEDS_INFO, State.IN_PROGRESS) in TRANSITIONS
    # never: an answer before an agency has it, leaving an archived complaint,
    # a second routing of the same round
    assert (State.RECEIVED, State.RESPONDED) not in TRANSITIONS
    assert not any(source is State.REJECTED for source, _to in TRANSITIONS)
    assert (State.ASSIGNED, State.ASSIGNED) not in TRANSITIONS


def test_a_long_valid_history_passes() -> None:
    states = [
        "received", "assigned", None, "in_progress", "needs_info", None, "in_progress",
        "responded", None, "closed", "in_progress", "received", "triage", "received",
        "assigned", "responded", "closed",
    ]  # fmt: skip
    history = [_entry(state, f"e{i}") for i, state in enumerate(states)]
    record = _record("C1", state="closed", history=history, version=len(history))
    assert history_problems(record) == []


BAD_HISTORIES = {
    "starts elsewhere": (
        _record("C1", history=[_entry("assigned", "routed:C1:0"), _entry(None, "d")], version=2),
        "history starts in 'assigned'",
    ),
    "routed twice": (
        _record(
            "C1",
            history=[
                _entry("received", "received:C1"),
                _entry("assigned", "routed:C1:0"),
                _entry("assigned", "routed:C1:0b"),
            ],
        ),
        "entry 2 (routed:C1:0b) assigned -> assigned is no transition of the lifecycle",
    ),
    "answered unassigned": (
        _record(
            "C1",
            state="responded",
            history=[
                _entry("received", "received:C1"),
                _entry("responded", "command:x"),
                _entry(None, "d"),
            ],
        ),
        "received -> responded is no transition",
    ),
    "event twice": (
        _record(
            "C1",
            history=[
                _entry("received", "received:C1"),
                _entry("assigned", "routed:C1:0"),
                _entry(None, "routed:C1:0"),
            ],
        ),
        "event ids twice in the history: ['routed:C1:0']",
    ),
    "version behind": (_record("C1", version=2), "version 2 but 3 history entries"),
    "state not the history's": (
        _record("C1", state="received"),
        "stored state 'received', history ends 'assigned'",
    ),
    "unknown state": (
        _record(
            "C1",
            history=[
                _entry("received", "received:C1"),
                _entry("lost", "x"),
                _entry("assigned", "routed:C1:0"),
            ],
        ),
        "entry 1 has unknown state 'lost'",
    ),
    "empty": (_record("C1", history=[]), "empty history"),
}


@pytest.mark.parametrize("case", BAD_HISTORIES)
def test_an_invalid_history_is_reported(case: str) -> None:
    record, expected = BAD_HISTORIES[case]
    problems = history_problems(record)
    assert any(expected in p for p in problems), problems
    verdict = check(_history(), _clean(C1=record))
    assert verdict.counts()["invalid_history"] == 1
    assert not verdict.ok


def test_version_is_checked_only_where_stored() -> None:
    record = _record("C1")
    del record["version"]
    assert history_problems(record) == []


def test_invalid_history_counts_complaints() -> None:
    # Two problems of one complaint, one of another: two invalid histories.
    first = _record("C1", state="received", version=9)
    second = _record("C3", version=1)
    verdict = check(_history(), _clean(C1=first, C3=second))
    assert len(verdict.invalid_history) == 3
    assert verdict.counts()["invalid_history"] == 2
