"""A reopened complaint's answer clock: a new round with its own deadline, warnings,
breach and escalation, paused by a question like the first (services/sla/plan.py)."""

from __future__ import annotations

from datetime import datetime
from pathlib import Path
from zoneinfo import ZoneInfo

from lapor.calendar import load_calendar
from lapor.contracts import (
    ComplaintRouted,
    ComplaintStateChanged,
    Priority,
    SlaClock,
    State,
    subjects,
)
from services.sla.announcements import deadline_announcements
from services.sla.clocks import Plan
from services.sla.facts import routed_fact, state_fact, to_ms
from services.sla.plan import RegionRules, build_plan
from services.sla.policy import Unit, Window, load_policy
from tests.unit.sla.fakes import routed, state
from tests.unit.sla.test_engine import Harness

BANJAR = Path(__file__).resolve().parents[3] / "data" / "regions" / "banjar"
WITA = ZoneInfo("Asia/Makassar")
RULES = {"banjar": RegionRules(load_calendar(BANJAR), load_policy(BANJAR))}


def wita(month: int, day: int, hour: int = 0, minute: int = 0) -> datetime:
    return datetime(2026, month, day, hour, minute, tzinfo=WITA)


def plan_of(*events: ComplaintRouted | ComplaintStateChanged) -> Plan:
    facts = [routed_fact(e) if isinstance(e, ComplaintRouted) else state_fact(e) for e in events]
    plan = build_plan("C1", facts, RULES)
    assert plan is not None
    return plan


ANSWERED = (
    routed("C1", wita(11, 2, 9)),
    state("C1", "ack", State.IN_PROGRESS, wita(11, 2, 10), State.ASSIGNED),
    state("C1", "answer", State.RESPONDED, wita(11, 4, 14), State.IN_PROGRESS),
)
# Monday 9 November, 10:00 WITA.
REOPEN = state("C1", "reopen", State.IN_PROGRESS, wita(11, 9, 10), State.RESPONDED)
REPLY = state("C1", "reply", State.IN_PROGRESS, wita(11, 11, 10), State.NEEDS_INFO)


def test_the_banjar_policy_states_the_answer_after_a_reopening() -> None:
    policy = RULES["banjar"].policy
    assert policy.reopen_answer(Priority.NORMAL) == Window(unit=Unit.WORKING_DAYS, amount=5)
    assert policy.reopen_answer(Priority.URGENT) == Window(unit=Unit.CLOCK_HOURS, amount=24)


def test_a_reopening_starts_answer_round_one_with_its_own_timers() -> None:
    plan = plan_of(*ANSWERED, REOPEN)
    first, second = (r for r in plan.runs if r.clock is SlaClock.ANSWER)
    assert first.round == 0 and first.stopped_at == to_ms(wita(11, 4, 14))
    # 5 working days after Monday 9 November: the end of Monday 16 November.
    assert (second.round, second.start, second.stopped_at) == (1, wita(11, 9, 10), None)
    assert second.due == datetime(2026, 11, 16, 23, 59, 59, tzinfo=WITA)
    assert plan.deadlines.answer == second.due
    round_one = {t.id for t in plan.timers if t.clock is SlaClock.ANSWER and t.round == 1}
    assert {"C1:answer:warn50:1", "C1:answer:warn80:1", "C1:answer:breach:1"} <= round_one
    assert "C1:answer:liaison:1" in round_one


def test_the_reopening_announces_the_new_deadline_with_its_round() -> None:
    plan = plan_of(*ANSWERED, REOPEN)
    [announced] = deadline_announcements(plan, state_fact(REOPEN), wita(11, 9, 10))
    assert announced.event_id == f"deadlines:{REOPEN.event_id}"
    assert (announced.answer_round, announced.reopened) == (1, True)
    assert announced.state is State.IN_PROGRESS
    assert announced.deadlines.answer == plan.deadlines.answer


def test_answering_again_stops_the_round_and_a_question_pauses_it() -> None:
    answered_again = plan_of(
        *ANSWERED,
        REOPEN,
        state("C1", "answer2", State.RESPONDED, wita(11, 10, 9), State.IN_PROGRESS),
    )
    assert not [t for t in answered_again.timers if t.round == 1 and t.clock is SlaClock.ANSWER]
    asked = plan_of(
        *ANSWERED,
        REOPEN,
        state("C1", "ask", State.NEEDS_INFO, wita(11, 10, 10), State.IN_PROGRESS),
        REPLY,
    )
    run = asked.run(SlaClock.ANSWER, 1)
    assert run is not None and run.pauses == ((wita(11, 10, 10), wita(11, 11, 10)),)
    # Waiting a day for the citizen moved the deadline by that day.
    assert run.due == datetime(2026, 11, 17, 23, 59, 59, tzinfo=WITA)
    [moved] = deadline_announcements(asked, state_fact(REPLY), wita(11, 11, 10))
    assert moved.cause_event_id == REPLY.event_id and moved.answer_round == 1


async def test_the_breach_of_the_second_round_carries_its_round() -> None:
    sla = Harness(wita(11, 2, 9))
    await sla.send(*ANSWERED)
    sla.clock.set(wita(11, 9, 10))
    await sla.send(REOPEN)
    await sla.run_until(wita(11, 18, 0))
    alerts = [b for b in sla.sink.bodies(subjects.SLA_ALERT) if b["clock"] == "answer"]
    assert {(a["kind"], a["percent"], a["round"]) for a in alerts} >= {
        ("warning", 50, 1),
        ("breach", 100, 1),
    }
    breach = sla.store.breach_docs["C1:answer:1"]
    assert breach["round"] == 1 and breach["agency"] == "PUPR"
