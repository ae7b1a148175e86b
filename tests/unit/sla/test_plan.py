"""A complaint's clocks derived from its facts (services/sla/plan.py), on the Banjar rules."""

from __future__ import annotations

import itertools
from datetime import datetime, timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest

from lapor.calendar import load_calendar
from lapor.contracts import (
    ComplaintRouted,
    ComplaintStateChanged,
    Priority,
    SlaClock,
    State,
    routing_round,
)
from services.sla.announcements import (
    deadline_announcements,
    lapse_announcement,
    reopen_announcement,
)
from services.sla.clocks import Plan, TimerKind
from services.sla.domain import auto_close_at, escalation_schedule
from services.sla.facts import Fact, routed_fact, state_fact, to_ms
from services.sla.plan import RegionRules, build_plan
from services.sla.policy import load_policy, parse_policy
from tests.unit.sla.fakes import routed, state

BANJAR = Path(__file__).resolve().parents[3] / "data" / "regions" / "banjar"
WITA = ZoneInfo("Asia/Makassar")
RULES = {"banjar": RegionRules(load_calendar(BANJAR), load_policy(BANJAR))}


def wita(month: int, day: int, hour: int = 0, minute: int = 0, second: int = 0) -> datetime:
    year = 2027 if month < 6 else 2026
    return datetime(year, month, day, hour, minute, second, tzinfo=WITA)


Sent = ComplaintRouted | ComplaintStateChanged


def fact(event: Sent) -> Fact:
    return routed_fact(event) if isinstance(event, ComplaintRouted) else state_fact(event)


def plan_of(*events: Sent) -> Plan:
    facts = [fact(e) for e in events]
    plan = build_plan("C1", facts, RULES)
    assert plan is not None
    return plan


def ids(plan: Plan, clock: SlaClock | None = None) -> set[str]:
    return {t.id for t in plan.timers if clock is None or t.clock is clock}


def test_round_comes_from_the_routing_event_id() -> None:
    assert routing_round("routed:LPR-7K2Q:0") == 0
    assert routing_round("routed:LPR-7K2Q:3") == 3
    assert routing_round("something-else") == 0


def test_assignment_over_christmas_and_new_year() -> None:
    plan = plan_of(routed("C1", wita(12, 21, 10)))
    # 5 working days from Monday 21 Dec: 22, 23 (24 cuti bersama, 25 Christmas), 28, 29, 30.
    assert plan.deadlines.first_response == wita(12, 30, 23, 59, 59)
    assert plan.deadlines.answer == wita(1, 4, 23, 59, 59)  # 14 calendar days: a cap
    due = {t.id: t.due_at for t in plan.timers}
    # 50% of 40 office hours: 22 and 23 Dec (16 h), then 4 h on Monday 28 Dec.
    assert due["C1:first_response:warn50:0"] == wita(12, 28, 12)
    # 80% = 32 h ends exactly at closing on 29 Dec: it is read at the next opening.
    assert due["C1:first_response:warn80:0"] == wita(12, 30, 8)
    assert due["C1:first_response:breach:0"] == wita(12, 30, 23, 59, 59)
    assert due["C1:first_response:liaison:0"] == wita(12, 30, 23, 59, 59)
    assert due["C1:first_response:head:0"] == wita(1, 4, 23, 59, 59)  # 31 Dec, (1 Jan) 4 Jan
    assert due["C1:first_response:sekda:0"] == wita(1, 8, 23, 59, 59)  # 5 Jan is Isra Mi'raj
    # Routing was done by the same decision: no routing timer at all.
    assert ids(plan, SlaClock.ROUTING) == set()
    assert plan.run(SlaClock.ROUTING, 0).stopped_at == to_ms(wita(12, 21, 10))  # type: ignore[union-attr]


def test_acknowledging_stops_first_response_only() -> None:
    plan = plan_of(
        routed("C1", wita(12, 21, 10)),
        state("C1", "ack", State.IN_PROGRESS, wita(12, 22, 9), State.ASSIGNED),
    )
    assert ids(plan, SlaClock.FIRST_RESPONSE) == set()
    assert ids(plan, SlaClock.ANSWER) >= {"C1:answer:warn50:0", "C1:answer:breach:0"}


def test_late_acknowledgement_keeps_the_breach_and_what_fell_before_it() -> None:
    plan = plan_of(
        routed("C1", wita(12, 21, 10)),
        state("C1", "ack", State.IN_PROGRESS, wita(12, 31, 10), State.ASSIGNED),
    )
    assert ids(plan, SlaClock.FIRST_RESPONSE) == {
        "C1:first_response:warn50:0",
        "C1:first_response:warn80:0",
        "C1:first_response:breach:0",
        "C1:first_response:liaison:0",
    }
    run = plan.run(SlaClock.FIRST_RESPONSE, 0)
    assert run is not None and run.late


def test_pause_extends_the_answer_by_the_time_waited() -> None:
    received = wita(11, 2, 9)
    plan = plan_of(
        routed("C1", received),
        state("C1", "ask", State.NEEDS_INFO, wita(11, 6, 10), State.ASSIGNED),
        state("C1", "reply", State.IN_PROGRESS, wita(11, 12, 10), State.NEEDS_INFO),
    )
    assert plan.paused == timedelta(days=6)
    assert plan.deadlines.answer == wita(11, 16, 23, 59, 59) + timedelta(days=6)
    breach = plan.timer("C1:answer:breach:0")
    assert breach is not None and breach.due_at == wita(11, 22, 23, 59, 59)
    # The question to the citizen was the agency's first response (its 50% had passed).
    assert ids(plan, SlaClock.FIRST_RESPONSE) == {"C1:first_response:warn50:0"}


def test_while_waiting_for_the_citizen_nothing_of_the_answer_is_due_before_the_lapse() -> None:
    asked = wita(11, 6, 10)  # Friday
    plan = plan_of(
        routed("C1", wita(11, 2, 9)),
        state("C1", "ask", State.NEEDS_INFO, asked, State.ASSIGNED),
    )
    # 10 working days from Friday 6 Nov: 9..13 and 16..20 Nov.
    lapse = wita(11, 20, 23, 59, 59)
    answer = plan.run(SlaClock.ANSWER, 0)
    assert answer is not None
    assert answer.paused_since == to_ms(asked) and answer.resumes_at == lapse
    # Without a reply the pause ends by itself: the cap moves by the whole window.
    assert plan.paused == lapse - asked
    assert plan.deadlines.answer == wita(11, 16, 23, 59, 59) + (lapse - asked)
    lapsed = plan.timer("C1:answer:reply_lapsed:1")
    assert lapsed is not None and lapsed.kind is TimerKind.REPLY_LAPSED
    assert lapsed.due_at == lapse
    answer_timers = [t for t in plan.timers if t.clock is SlaClock.ANSWER]
    assert {t.point for t in answer_timers} >= {"warn50", "warn80", "breach", "reply_lapsed"}
    assert min(t.due_at for t in answer_timers) == lapse
    # The 50% point fell on 9 Nov 16:30, while waiting: it moves by the whole wait.
    warn50 = plan.timer("C1:answer:warn50:0")
    assert warn50 is not None and warn50.due_at == wita(11, 9, 16, 30) + (lapse - asked)


def test_a_reply_within_the_window_cancels_the_lapse() -> None:
    plan = plan_of(
        routed("C1", wita(11, 2, 9)),
        state("C1", "ask", State.NEEDS_INFO, wita(11, 6, 10), State.ASSIGNED),
        state("C1", "reply", State.IN_PROGRESS, wita(11, 20, 23), State.NEEDS_INFO),
    )
    assert plan.timer("C1:answer:reply_lapsed:1") is None
    assert plan.paused == wita(11, 20, 23) - wita(11, 6, 10)
    answer = plan.run(SlaClock.ANSWER, 0)
    assert answer is not None and answer.paused_since is None and answer.resumes_at is None


def test_a_reply_after_the_lapse_moves_nothing_and_announces_nothing() -> None:
    events: list[Sent] = [
        routed("C1", wita(11, 2, 9)),
        state("C1", "ask", State.NEEDS_INFO, wita(11, 6, 10), State.ASSIGNED),
    ]
    lapsed = plan_of(*events)
    late_reply = state("C1", "reply", State.IN_PROGRESS, wita(11, 23, 9), State.NEEDS_INFO)
    replied = plan_of(*events, late_reply)
    assert replied.deadlines == lapsed.deadlines
    assert replied.paused == lapsed.paused == wita(11, 20, 23, 59, 59) - wita(11, 6, 10)
    assert deadline_announcements(replied, fact(late_reply), wita(11, 23, 9)) == []
    answer = replied.run(SlaClock.ANSWER, 0)
    assert answer is not None and answer.paused_since is None
    # Asked again after the late reply: a new pause with a window of its own.
    again = plan_of(
        *events,
        late_reply,
        state("C1", "ask2", State.NEEDS_INFO, wita(11, 24, 9), State.IN_PROGRESS),
    )
    assert {t.id for t in again.timers if t.kind is TimerKind.REPLY_LAPSED} == {
        "C1:answer:reply_lapsed:1",
        "C1:answer:reply_lapsed:2",
    }
    assert again.timer("C1:answer:reply_lapsed:2").due_at == wita(12, 8, 23, 59, 59)  # type: ignore[union-attr]


def test_an_answer_while_waiting_ends_the_pause_before_its_lapse() -> None:
    plan = plan_of(
        routed("C1", wita(11, 2, 9)),
        state("C1", "ask", State.NEEDS_INFO, wita(11, 6, 10), State.ASSIGNED),
        state("C1", "answer", State.RESPONDED, wita(11, 9, 10), State.NEEDS_INFO),
    )
    assert not [t for t in plan.timers if t.kind is TimerKind.REPLY_LAPSED]
    assert plan.paused == timedelta(days=3)


def test_the_reply_window_is_the_region_policy() -> None:
    rules = RULES["banjar"]
    short = RegionRules(
        rules.calendar,
        parse_policy({"needs_info": {"reply_window": {"unit": "clock_hours", "amount": 48}}}),
    )
    facts = [
        fact(routed("C1", wita(11, 2, 9))),
        fact(state("C1", "ask", State.NEEDS_INFO, wita(11, 6, 10), State.ASSIGNED)),
    ]
    plan = build_plan("C1", facts, {"banjar": short})
    assert plan is not None
    assert plan.timer("C1:answer:reply_lapsed:1").due_at == wita(11, 8, 10)  # type: ignore[union-attr]
    assert plan.paused == timedelta(hours=48)
    assert plan.deadlines.answer == wita(11, 18, 23, 59, 59)


def test_the_lapse_announces_the_answer_deadline_it_fixed() -> None:
    plan = plan_of(
        routed("C1", wita(11, 2, 9)),
        state("C1", "ask", State.NEEDS_INFO, wita(11, 6, 10), State.ASSIGNED),
    )
    timer = plan.timer("C1:answer:reply_lapsed:1")
    assert timer is not None
    announced = lapse_announcement(plan, timer, wita(11, 21))
    assert announced.event_id == "deadlines:C1:answer:reply_lapsed:1"
    assert announced.cause_event_id == "state:command:C1:ask"
    assert announced.state is State.NEEDS_INFO
    assert announced.agency == "PUPR"
    assert announced.deadlines == plan.deadlines
    assert announced.deadlines.answer == wita(12, 1, 13, 59, 58)


def test_two_pauses_add_up_and_an_answer_during_a_pause_ends_it() -> None:
    plan = plan_of(
        routed("C1", wita(11, 2, 9)),
        state("C1", "ask1", State.NEEDS_INFO, wita(11, 3, 10), State.ASSIGNED),
        state("C1", "reply1", State.IN_PROGRESS, wita(11, 4, 10), State.NEEDS_INFO),
        state("C1", "ask2", State.NEEDS_INFO, wita(11, 5, 10), State.IN_PROGRESS),
        state("C1", "answer", State.RESPONDED, wita(11, 5, 22), State.NEEDS_INFO),
    )
    assert plan.paused == timedelta(days=1, hours=12)
    answer = plan.run(SlaClock.ANSWER, 0)
    assert answer is not None and answer.stopped_at == to_ms(wita(11, 5, 22))
    assert not answer.late


def test_rerouting_restarts_first_response_and_never_moves_the_answer_cap() -> None:
    before = plan_of(routed("C1", wita(11, 2, 9)))
    after = plan_of(
        routed("C1", wita(11, 2, 9)),
        state("C1", "forward", State.RECEIVED, wita(11, 3, 10), State.ASSIGNED),
        routed(
            "C1",
            wita(11, 3, 10, 0, 5),
            round_=1,
            agency="DLH",
            priority=Priority.URGENT,
            received_at=wita(11, 2, 9),
        ),
    )
    assert after.deadlines.answer == before.deadlines.answer == wita(11, 16, 23, 59, 59)
    # Urgent now: 24 clock hours from the new assignment, for the new agency.
    assert after.deadlines.first_response == wita(11, 4, 10, 0, 5)
    assert ids(after, SlaClock.FIRST_RESPONSE) == {
        f"C1:first_response:{point}:1"
        for point in ("warn50", "warn80", "breach", "liaison", "head", "sekda", "ombudsman")
    }
    assert {t.agency for t in after.timers if t.clock is SlaClock.FIRST_RESPONSE} == {"DLH"}
    old = after.run(SlaClock.FIRST_RESPONSE, 0)
    assert old is not None and old.stopped_at == to_ms(wita(11, 3, 10))


def test_triage_runs_the_routing_clock_against_diskominfo() -> None:
    plan = plan_of(routed("C1", wita(11, 2, 9), triage=True))
    assert plan.deadlines.first_response is None
    assert plan.deadlines.routing == wita(11, 5, 23, 59, 59)
    routing = [t for t in plan.timers if t.clock is SlaClock.ROUTING]
    assert {t.point for t in routing} >= {"warn50", "warn80", "breach", "liaison"}
    assert {t.agency for t in routing} == {"DISKOMINFO"}
    decided = plan_of(
        routed("C1", wita(11, 2, 9), triage=True),
        routed("C1", wita(11, 3, 11), round_=1, agency="PUPR", received_at=wita(11, 2, 9)),
    )
    assert ids(decided, SlaClock.ROUTING) == set()


def test_auto_close_after_a_response_unless_the_citizen_reacts() -> None:
    responded_at = wita(11, 10, 14)
    plan = plan_of(
        routed("C1", wita(11, 2, 9)),
        state("C1", "ack", State.IN_PROGRESS, wita(11, 3, 9), State.ASSIGNED),
        state("C1", "answer", State.RESPONDED, responded_at, State.IN_PROGRESS),
    )
    close = plan.timer("C1:answer:auto_close:1")
    assert close is not None and close.kind is TimerKind.AUTO_CLOSE
    assert close.due_at == auto_close_at(
        responded_at, RULES["banjar"].policy, RULES["banjar"].calendar
    )
    assert close.due_at == wita(11, 24, 23, 59, 59)
    # Answered in time, after the 50% warning.
    assert ids(plan, SlaClock.ANSWER) == {"C1:answer:warn50:0", "C1:answer:auto_close:1"}
    reopened = plan_of(
        routed("C1", wita(11, 2, 9)),
        state("C1", "ack", State.IN_PROGRESS, wita(11, 3, 9), State.ASSIGNED),
        state("C1", "answer", State.RESPONDED, responded_at, State.IN_PROGRESS),
        state("C1", "reopen", State.IN_PROGRESS, wita(11, 12, 9), State.RESPONDED),
        state("C1", "answer2", State.RESPONDED, wita(11, 13, 9), State.IN_PROGRESS),
    )
    assert ids(reopened, SlaClock.ANSWER) == {"C1:answer:warn50:0", "C1:answer:auto_close:2"}


def test_closing_or_rejecting_stops_everything() -> None:
    for final in (State.CLOSED, State.REJECTED):
        plan = plan_of(
            routed("C1", wita(12, 21, 10)),
            state("C1", "end", final, wita(12, 22, 10), State.ASSIGNED),
        )
        assert plan.timers == ()
        assert all(run.stopped_at == to_ms(wita(12, 22, 10)) for run in plan.runs[1:])


def test_escalation_follows_the_policy_chain() -> None:
    plan = plan_of(routed("C1", wita(12, 21, 10)))
    breach = wita(12, 30, 23, 59, 59)
    rules = RULES["banjar"]
    expected = escalation_schedule(breach, rules.policy, rules.calendar, Priority.NORMAL)
    got = [
        (t.level, t.due_at)
        for t in plan.timers
        if t.clock is SlaClock.FIRST_RESPONSE and t.kind is TimerKind.ESCALATION
    ]
    assert got == expected


def test_out_of_scope_runs_no_clock() -> None:
    facts = [routed_fact(routed("C1", wita(11, 2, 9), agency="OUT_OF_SCOPE"))]
    assert build_plan("C1", facts, RULES) is None
    assert (
        build_plan("C1", [state_fact(state("C1", "x", State.IN_PROGRESS, wita(11, 2, 9)))], RULES)
        is None
    )


def test_unknown_region_is_an_error() -> None:
    with pytest.raises(LookupError):
        build_plan("C1", [routed_fact(routed("C1", wita(11, 2, 9), region="atlantis"))], RULES)


EVENTS: list[Sent] = [
    routed("C1", wita(11, 2, 9)),
    state("C1", "ack", State.IN_PROGRESS, wita(11, 3, 9), State.ASSIGNED),
    state("C1", "ask", State.NEEDS_INFO, wita(11, 4, 9), State.IN_PROGRESS),
    state("C1", "reply", State.IN_PROGRESS, wita(11, 6, 9), State.NEEDS_INFO),
    state("C1", "forward", State.RECEIVED, wita(11, 6, 12), State.IN_PROGRESS),
    routed("C1", wita(11, 6, 12, 0, 1), round_=1, agency="DLH", received_at=wita(11, 2, 9)),
]


def test_arrival_order_and_repeats_do_not_matter() -> None:
    reference = plan_of(*EVENTS)
    for order in itertools.permutations(EVENTS):
        plan = plan_of(*order, order[0], order[-1])  # with two repeated deliveries
        assert plan.timers == reference.timers
        assert plan.deadlines == reference.deadlines
        assert [(t.id, t.due_at, t.agency) for t in plan.timers] == [
            (t.id, t.due_at, t.agency) for t in reference.timers
        ]
    assert reference.paused == timedelta(days=2)


def test_announcements_latest_round_and_end_of_pause_only() -> None:
    plan = plan_of(*EVENTS)
    now = wita(11, 6, 12, 0, 2)
    latest = fact(EVENTS[-1])
    assert [a.event_id for a in deadline_announcements(plan, latest, now)] == [
        "deadlines:routed:C1:1"
    ]
    # A stale (older) routing round announces nothing.
    assert deadline_announcements(plan, fact(EVENTS[0]), now) == []
    for pause_fact in (fact(EVENTS[2]), fact(EVENTS[3])):
        (announced,) = deadline_announcements(plan, pause_fact, now)
        assert announced.event_id == "deadlines:state:command:C1:reply"
        assert announced.cause_event_id == "state:command:C1:reply"
        assert announced.state is State.IN_PROGRESS
        assert announced.deadlines.answer == wita(11, 18, 23, 59, 59)
    assert deadline_announcements(plan, fact(EVENTS[1]), now) == []


def test_a_router_clock_slightly_behind_does_not_end_the_new_round() -> None:
    plan = plan_of(
        routed("C1", wita(11, 2, 9)),
        state("C1", "forward", State.RECEIVED, wita(11, 3, 10, 0, 5), State.ASSIGNED),
        # The router's clock is two seconds behind intake's.
        routed("C1", wita(11, 3, 10, 0, 3), round_=1, agency="DLH", received_at=wita(11, 2, 9)),
    )
    new = plan.run(SlaClock.FIRST_RESPONSE, 1)
    assert new is not None and new.stopped_at is None
    old = plan.run(SlaClock.FIRST_RESPONSE, 0)
    assert old is not None and old.stopped_at == to_ms(wita(11, 3, 10, 0, 3))
    assert "C1:first_response:breach:1" in ids(plan)
    # The second hand-over ends round 1.
    again = plan_of(
        routed("C1", wita(11, 2, 9)),
        state("C1", "forward", State.RECEIVED, wita(11, 3, 10, 0, 5), State.ASSIGNED),
        routed("C1", wita(11, 3, 10, 0, 3), round_=1, agency="DLH", received_at=wita(11, 2, 9)),
        state("C1", "forward2", State.RECEIVED, wita(11, 4, 10), State.ASSIGNED),
    )
    round_one = again.run(SlaClock.FIRST_RESPONSE, 1)
    assert round_one is not None and round_one.stopped_at == to_ms(wita(11, 4, 10))


def test_a_response_or_closing_announces_its_reopen_window_from_itself() -> None:
    rules = RULES["banjar"]
    now = wita(11, 6, 10)
    for to in (State.RESPONDED, State.CLOSED):
        # Friday 6 Nov after opening: day 1 is Monday 9 Nov, day 10 Friday 20 Nov.
        event = state("C1", "end", to, wita(11, 6, 9), State.IN_PROGRESS)
        window = reopen_announcement(event, rules, now)
        assert window is not None and window.kind == "reopen_window"
        assert window.event_id == "reopen-window:state:command:C1:end"
        assert window.cause_event_id == event.event_id
        assert window.responded_at == wita(11, 6, 9)
        assert window.reopen_until == wita(11, 20, 23, 59, 59)
    for other in (State.IN_PROGRESS, State.NEEDS_INFO, State.REJECTED, State.ASSIGNED):
        assert reopen_announcement(state("C1", "x", other, wita(11, 6, 9)), rules, now) is None
