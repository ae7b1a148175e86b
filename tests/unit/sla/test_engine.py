"""Timers as data, driven by a fake clock through days and holidays in milliseconds.

The engine runs against the in-memory store (tests/unit/sla/fakes.py); the same
engine runs against FerretDB and NATS in tests/integration/test_sla_timers.py.
"""

from __future__ import annotations

import asyncio
from collections import Counter
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import pytest
from prometheus_client import CollectorRegistry

from lapor.calendar import load_calendar
from lapor.contracts import (
    ComplaintRouted,
    ComplaintStateChanged,
    Priority,
    State,
    routed_event_id,
    subjects,
)
from lapor.runtime.outbox import Outbox
from services.sla.engine import SlaEngine
from services.sla.firing import MODELS
from services.sla.handlers import SlaDeps, handle_routed, handle_state_changed
from services.sla.metrics import SlaMetrics
from services.sla.plan import RegionRules
from services.sla.policy import load_policy
from tests.unit.sla.fakes import FakeClock, MemorySlaStore, RecordingPublisher, Sink, routed, state

BANJAR = Path(__file__).resolve().parents[3] / "data" / "regions" / "banjar"
WITA = ZoneInfo("Asia/Makassar")
RULES = {"banjar": RegionRules(load_calendar(BANJAR), load_policy(BANJAR))}
STEP = timedelta(minutes=15)


def wita(month: int, day: int, hour: int = 0, minute: int = 0, second: int = 0) -> datetime:
    year = 2027 if month < 6 else 2026
    return datetime(year, month, day, hour, minute, second, tzinfo=WITA)


class Harness:
    """One SLA service in memory: handlers, engine and sweep on a fake clock."""

    def __init__(
        self,
        start: datetime,
        store: MemorySlaStore | None = None,
        sink: Sink | None = None,
        fail_publish: int = 0,
    ) -> None:
        self.clock = FakeClock(start)
        self.store = store or MemorySlaStore()
        self.sink = sink or Sink()
        self.publishers = {subject: RecordingPublisher(subject, self.sink) for subject in MODELS}
        self.publishers[subjects.SLA_ALERT].fail_times = fail_publish
        self.engine = SlaEngine(
            self.store,
            RULES,
            self.publishers.values(),
            self.clock,
            republish_after=timedelta(seconds=30),
            batch_size=7,
        )
        deadlines = self.publishers[subjects.COMPLAINT_DEADLINES]
        if isinstance(self.store, MemorySlaStore):
            self.store.deadlines = deadlines
        else:  # the real store on the real database
            self.store.outbox = Outbox([deadlines])  # type: ignore[list-item]
        self.deps = SlaDeps(
            engine=self.engine, reply_windows=self.publishers[subjects.SLA_AUTO_CLOSE]
        )
        self.fired_at: dict[str, datetime] = {}

    async def send(self, *events: ComplaintRouted | ComplaintStateChanged) -> None:
        for event in events:
            if isinstance(event, ComplaintRouted):
                await handle_routed(event, self.deps)
            else:
                await handle_state_changed(event, self.deps)

    async def sweep(self) -> None:
        await self.engine.sweep()
        for msg_id in self.sink.ids():
            self.fired_at.setdefault(msg_id, self.clock.now)

    async def run_until(self, end: datetime, step: timedelta = STEP) -> None:
        while self.clock.now < end:
            self.clock.advance(seconds=step.total_seconds())
            await self.sweep()

    def sla_ids(self) -> list[str]:
        """Warnings, breaches, escalations and auto-close: not the deadlines announced."""
        return [
            i for s, i, _ in self.sink.messages if s in MODELS and s != subjects.COMPLAINT_DEADLINES
        ]

    def alerts(self) -> list[dict[str, object]]:
        return self.sink.bodies(subjects.SLA_ALERT)


async def test_a_complaint_left_alone_warns_breaches_and_escalates_over_the_holidays() -> None:
    sla = Harness(wita(12, 21, 10))
    await sla.send(routed("C1", wita(12, 21, 10)))
    plan = await sla.engine.plan_of("C1")
    assert plan is not None
    await sla.run_until(wita(1, 25))

    fired = sla.sla_ids()
    assert len(fired) == len(set(fired)) == len(plan.timers) == 14
    assert set(fired) == {t.id for t in plan.timers}
    for timer in plan.timers:  # each at the first sweep after its moment
        assert timer.due_at <= sla.fired_at[timer.id] < timer.due_at + STEP
    # The dates an operator would check by hand (24 Dec cuti bersama, 25 Dec
    # Christmas, 1 Jan New Year, 5 Jan 2027 Isra Mi'raj).
    assert sla.fired_at["C1:first_response:warn50:0"] == wita(12, 28, 12)
    assert sla.fired_at["C1:first_response:warn80:0"] == wita(12, 30, 8)
    assert sla.fired_at["C1:first_response:breach:0"] == wita(12, 31, 0, 0)
    assert sla.fired_at["C1:first_response:head:0"] == wita(1, 5, 0, 0)
    assert sla.fired_at["C1:first_response:sekda:0"] == wita(1, 9, 0, 0)
    assert sla.fired_at["C1:first_response:ombudsman:0"] == wita(1, 16, 0, 0)

    breach = next(a for a in sla.alerts() if a["event_id"] == "C1:first_response:breach:0")
    assert breach["kind"] == "breach" and breach["percent"] == 100
    assert breach["agency"] == "PUPR" and breach["official"] is None
    assert breach["due_at"] == "2026-12-30T23:59:59+08:00"
    escalations = sla.sink.bodies(subjects.SLA_ESCALATION)
    assert [e["level"] for e in escalations if e["clock"] == "first_response"] == [
        "liaison",
        "head",
        "sekda",
        "ombudsman",
    ]

    record = sla.store.breach_docs["C1:first_response:0"]
    assert record["agency"] == "PUPR" and record["level_rank"] == 4
    assert record.get("resolved_at") is None
    # late_by grows with each level: the Ombudsman notice came 15 days and 1 s late.
    assert record["late_by_s"] == (wita(1, 16) - wita(12, 30, 23, 59, 59)).total_seconds()
    assert set(record["escalations"]) == {"liaison", "head", "sekda", "ombudsman"}
    assert sla.store.open_timers() == {}  # everything fired: nothing left open


async def test_acknowledging_in_time_silences_first_response() -> None:
    sla = Harness(wita(12, 21, 10))
    await sla.send(routed("C1", wita(12, 21, 10)))
    await sla.run_until(wita(12, 23, 9))
    await sla.send(state("C1", "ack", State.IN_PROGRESS, sla.clock.now, State.ASSIGNED))
    await sla.run_until(wita(1, 25))
    assert not [i for i in sla.sla_ids() if ":first_response:" in i]
    assert "C1:answer:breach:0" in sla.sla_ids()
    assert "C1:first_response:0" not in sla.store.breach_docs


async def test_late_acknowledgement_ends_escalation_and_fixes_how_late() -> None:
    sla = Harness(wita(12, 21, 10))
    await sla.send(routed("C1", wita(12, 21, 10)))
    await sla.run_until(wita(12, 31, 10))
    await sla.send(state("C1", "ack", State.IN_PROGRESS, sla.clock.now, State.ASSIGNED))
    await sla.run_until(wita(1, 25))
    first = [i for i in sla.sla_ids() if ":first_response:" in i]
    assert first == [
        "C1:first_response:warn50:0",
        "C1:first_response:warn80:0",
        "C1:first_response:breach:0",
        "C1:first_response:liaison:0",
    ]
    record = sla.store.breach_docs["C1:first_response:0"]
    assert record["resolved_at"] == wita(12, 31, 10)
    assert record["late_by_s"] == 10 * 3600 + 1
    assert record["level_rank"] == 1  # liaison


async def test_a_breach_is_recorded_against_the_officer_who_acknowledged() -> None:
    sla = Harness(wita(12, 21, 10))
    await sla.send(routed("C1", wita(12, 21, 10)))
    await sla.run_until(wita(12, 22, 9))
    ack = state(
        "C1",
        "ack",
        State.IN_PROGRESS,
        sla.clock.now,
        State.ASSIGNED,
        actor="agency:budi.pupr",
        agency="PUPR",
    )
    await sla.send(ack)
    await sla.run_until(wita(1, 25))

    breach = next(a for a in sla.alerts() if a["event_id"] == "C1:answer:breach:0")
    assert breach["agency"] == "PUPR" and breach["official"] == "budi.pupr"
    escalation = next(e for e in sla.sink.bodies(subjects.SLA_ESCALATION) if e["clock"] == "answer")
    assert escalation["official"] == "budi.pupr"
    assert sla.store.breach_docs["C1:answer:0"]["official"] == "budi.pupr"
    # The routing clock is Diskominfo's: no officer of PUPR answers for it.
    plan = await sla.engine.plan_of("C1")
    assert plan is not None and plan.official_for("DISKOMINFO") is None


async def test_a_forward_ends_the_officers_assignment() -> None:
    sla = Harness(wita(12, 21, 10))
    await sla.send(
        routed("C1", wita(12, 21, 10)),
        state(
            "C1",
            "ack",
            State.IN_PROGRESS,
            wita(12, 21, 11),
            State.ASSIGNED,
            actor="agency:budi.pupr",
            agency="PUPR",
        ),
        state("C1", "fwd", State.RECEIVED, wita(12, 21, 12), State.IN_PROGRESS, agency="PUPR"),
        routed("C1", wita(12, 21, 13), round_=1, agency="DISHUB", received_at=wita(12, 21, 10)),
    )
    plan = await sla.engine.plan_of("C1")
    assert plan is not None and plan.agency == "DISHUB" and plan.official is None
    # Only an officer's acknowledgement assigns: an admin's state change does not.
    await sla.send(
        state(
            "C1",
            "ack2",
            State.IN_PROGRESS,
            wita(12, 21, 14),
            State.ASSIGNED,
            actor="admin:sari",
            agency="DISHUB",
        )
    )
    plan = await sla.engine.plan_of("C1")
    assert plan is not None and plan.official is None


async def test_needs_info_pauses_the_answer_and_the_citizen_is_told_the_new_date() -> None:
    sla = Harness(wita(11, 2, 9))
    await sla.send(routed("C1", wita(11, 2, 9)))
    await sla.run_until(wita(11, 6, 10))
    await sla.send(state("C1", "ask", State.NEEDS_INFO, sla.clock.now, State.ASSIGNED))
    # The answer's 50% would have been 9 Nov 16:30: the clock is paused then.
    await sla.run_until(wita(11, 12, 10))
    assert not [i for i in sla.sla_ids() if ":answer:" in i]
    await sla.send(state("C1", "reply", State.IN_PROGRESS, sla.clock.now, State.NEEDS_INFO))

    announced = sla.sink.bodies(subjects.COMPLAINT_DEADLINES)
    assert [a["event_id"] for a in announced] == [
        "deadlines:routed:C1:0",
        "deadlines:state:command:C1:reply",
    ]
    assert announced[0]["deadlines"]["answer"] == "2026-11-16T23:59:59+08:00"
    assert announced[1]["deadlines"]["answer"] == "2026-11-22T23:59:59+08:00"  # + 6 days
    assert announced[1]["state"] == "in_progress"

    await sla.run_until(wita(11, 24))
    answer_alerts = [a for a in sla.alerts() if a["clock"] == "answer"]
    assert [a["percent"] for a in answer_alerts] == [50, 80, 100]
    assert {a["due_at"] for a in answer_alerts} == {"2026-11-22T23:59:59+08:00"}
    assert sla.fired_at["C1:answer:warn50:0"] > wita(11, 12, 10)
    assert sla.fired_at["C1:answer:breach:0"] == wita(11, 23, 0, 0)
    # A repeated delivery of the reply announces nothing new.
    await sla.send(state("C1", "reply", State.IN_PROGRESS, wita(11, 12, 10), State.NEEDS_INFO))
    assert len(sla.sink.bodies(subjects.COMPLAINT_DEADLINES)) == 2


async def test_an_unanswered_question_lapses_and_the_new_date_is_announced_once() -> None:
    sla = Harness(wita(11, 2, 9))
    await sla.send(routed("C1", wita(11, 2, 9)))
    await sla.run_until(wita(11, 6, 10))
    await sla.send(state("C1", "ask", State.NEEDS_INFO, sla.clock.now, State.ASSIGNED))
    # The citizen never replies. Until the window lapses (20 Nov 23:59:59) the
    # answer clock is held: none of its warnings, no breach of its old cap.
    await sla.run_until(wita(11, 20, 23, 45))
    assert not [i for i in sla.sla_ids() if ":answer:" in i]
    assert sla.sink.ids(subjects.COMPLAINT_DEADLINES) == ["deadlines:routed:C1:0"]

    await sla.run_until(wita(11, 21, 0, 0))
    assert sla.sink.ids(subjects.COMPLAINT_DEADLINES)[-1] == "deadlines:C1:answer:reply_lapsed:1"
    lapsed = sla.sink.bodies(subjects.COMPLAINT_DEADLINES)[-1]
    assert lapsed["state"] == "needs_info"
    assert lapsed["cause_event_id"] == "state:command:C1:ask"
    # The cap moved by the whole window: 14 days 13:59:59 after 16 Nov 23:59:59.
    assert lapsed["deadlines"]["answer"] == "2026-12-01T13:59:58+08:00"

    # The clock runs again: the warnings and the breach come at the extended times.
    await sla.run_until(wita(12, 2))
    answer_alerts = [a for a in sla.alerts() if a["clock"] == "answer"]
    assert [a["percent"] for a in answer_alerts] == [50, 80, 100]
    assert {a["due_at"] for a in answer_alerts} == {"2026-12-01T13:59:58+08:00"}
    assert sla.fired_at["C1:answer:warn50:0"] == wita(11, 24, 6, 30)
    assert sla.fired_at["C1:answer:breach:0"] == wita(12, 1, 14, 0)
    # A reply long after the lapse changes the deadline no more, and nothing is announced twice.
    await sla.send(state("C1", "reply", State.IN_PROGRESS, sla.clock.now, State.NEEDS_INFO))
    await sla.run_until(wita(12, 3))
    announced = sla.sink.ids(subjects.COMPLAINT_DEADLINES)
    assert announced == ["deadlines:routed:C1:0", "deadlines:C1:answer:reply_lapsed:1"]
    assert Counter(i for _, i in sla.sink.attempts)["deadlines:C1:answer:reply_lapsed:1"] == 1


async def test_a_reply_in_time_cancels_the_lapse() -> None:
    sla = Harness(wita(11, 2, 9))
    await sla.send(
        routed("C1", wita(11, 2, 9)),
        state("C1", "ask", State.NEEDS_INFO, wita(11, 6, 10), State.ASSIGNED),
    )
    assert "C1:answer:reply_lapsed:1" in sla.store.open_timers()
    sla.clock.set(wita(11, 20, 22))
    await sla.send(state("C1", "reply", State.IN_PROGRESS, sla.clock.now, State.NEEDS_INFO))
    assert "C1:answer:reply_lapsed:1" not in sla.store.open_timers()
    await sla.run_until(wita(11, 22))
    assert sla.sink.ids(subjects.COMPLAINT_DEADLINES) == [
        "deadlines:routed:C1:0",
        "deadlines:state:command:C1:reply",
    ]


async def test_escalations_are_counted_by_level_once_per_firing() -> None:
    registry = CollectorRegistry()
    sla = Harness(wita(12, 21, 10))
    sla.engine.metrics = SlaMetrics(registry)
    await sla.send(routed("C1", wita(12, 21, 10)))
    # The liaison notice is published, then the process dies before settling it.
    sla.clock.set(wita(12, 31, 0, 0))
    escalation = sla.publishers[subjects.SLA_ESCALATION]
    real_settle = sla.store.settle

    async def crash_on_liaison(firing_id: str, at: datetime) -> bool:
        if firing_id == "C1:first_response:liaison:0" and escalation.sink.ids(
            subjects.SLA_ESCALATION
        ):
            sla.store.settle = real_settle  # type: ignore[method-assign]
            raise ConnectionError("simulated: the database went away")
        return await real_settle(firing_id, at)

    sla.store.settle = crash_on_liaison  # type: ignore[method-assign]
    await sla.sweep()

    def count(level: str) -> float:
        value = registry.get_sample_value("lapor_sla_escalations_total", {"level": level})
        return value or 0.0

    assert count("liaison") == 0
    restarted = Harness(sla.clock.now, store=sla.store, sink=sla.sink)
    restarted.engine.metrics = sla.engine.metrics
    await restarted.engine.sweep(startup=True)
    await restarted.engine.sweep()
    assert count("liaison") == 1
    restarted.clock.set(wita(1, 25))
    await restarted.engine.sweep()
    await restarted.engine.sweep(startup=True)
    # Both clocks went up the whole chain (first response and answer): two per level.
    raised = sla.sink.bodies(subjects.SLA_ESCALATION)
    assert len(raised) == len({e["event_id"] for e in raised}) == 8
    levels = ("liaison", "head", "sekda", "ombudsman")
    assert {level: count(level) for level in levels} == dict.fromkeys(levels, 2)


async def test_rerouting_restarts_first_response_for_the_new_agency_only() -> None:
    sla = Harness(wita(11, 2, 9))
    await sla.send(routed("C1", wita(11, 2, 9)))
    await sla.run_until(wita(11, 6, 10))
    assert sla.sla_ids() == ["C1:first_response:warn50:0"]
    await sla.send(
        state("C1", "forward", State.RECEIVED, wita(11, 6, 10), State.ASSIGNED),
        routed("C1", wita(11, 6, 10, 0, 1), round_=1, agency="DLH", received_at=wita(11, 2, 9)),
    )
    announced = sla.sink.bodies(subjects.COMPLAINT_DEADLINES)
    assert announced[-1]["event_id"] == "deadlines:routed:C1:1"
    assert announced[-1]["deadlines"]["answer"] == announced[0]["deadlines"]["answer"]
    assert announced[-1]["deadlines"]["first_response"] == "2026-11-13T23:59:59+08:00"
    assert not any(
        ":first_response:" in d["_id"] and d["round"] == 0 for d in sla.store.open_timers().values()
    )

    await sla.run_until(wita(11, 14, 1))
    first = [a for a in sla.alerts() if a["clock"] == "first_response"]
    assert [(a["event_id"], a["agency"]) for a in first] == [
        ("C1:first_response:warn50:0", "PUPR"),
        ("C1:first_response:warn50:1", "DLH"),
        ("C1:first_response:warn80:1", "DLH"),
        ("C1:first_response:breach:1", "DLH"),
    ]
    assert sla.store.breach_docs["C1:first_response:1"]["agency"] == "DLH"


async def test_events_out_of_order_and_repeated_give_the_same_timers() -> None:
    in_order = Harness(wita(11, 2, 9))
    shuffled = Harness(wita(11, 2, 9))
    events: list[ComplaintRouted | ComplaintStateChanged] = [
        routed("C1", wita(11, 2, 9)),
        state("C1", "ack", State.IN_PROGRESS, wita(11, 3, 9), State.ASSIGNED),
        state("C1", "forward", State.RECEIVED, wita(11, 3, 12), State.IN_PROGRESS),
        routed("C1", wita(11, 3, 12, 0, 1), round_=1, agency="DLH", received_at=wita(11, 2, 9)),
    ]
    await in_order.send(*events)
    await shuffled.send(events[3], events[1], events[3], events[0], events[2], events[1])
    assert {k: (d["due_at"], d["agency"]) for k, d in in_order.store.open_timers().items()} == {
        k: (d["due_at"], d["agency"]) for k, d in shuffled.store.open_timers().items()
    }
    # The stale round 0, delivered after round 1, announced nothing.
    assert shuffled.sink.ids(subjects.COMPLAINT_DEADLINES) == ["deadlines:routed:C1:1"]


async def test_a_response_auto_closes_after_ten_working_days_once() -> None:
    sla = Harness(wita(11, 2, 9))
    await sla.send(
        routed("C1", wita(11, 2, 9)),
        state("C1", "ack", State.IN_PROGRESS, wita(11, 2, 10), State.ASSIGNED),
        state("C1", "answer", State.RESPONDED, wita(11, 5, 14), State.IN_PROGRESS),
    )
    await sla.run_until(wita(12, 10))
    (closing,) = closings(sla)
    assert closing["event_id"] == "C1:answer:auto_close:1"
    assert closing["responded_at"] == "2026-11-05T14:00:00+08:00"
    # 10 working days after Thursday 5 Nov: 6, 9..13, 16..19 Nov.
    assert sla.fired_at["C1:answer:auto_close:1"] == wita(11, 20, 0, 0)


async def test_a_reaction_cancels_auto_close_and_closing_cancels_everything() -> None:
    sla = Harness(wita(11, 2, 9))
    await sla.send(
        routed("C1", wita(11, 2, 9)),
        state("C1", "answer", State.RESPONDED, wita(11, 3, 14), State.ASSIGNED),
    )
    assert "C1:answer:auto_close:1" in sla.store.open_timers()
    await sla.run_until(wita(11, 10))
    await sla.send(state("C1", "reopen", State.IN_PROGRESS, sla.clock.now, State.RESPONDED))
    assert "C1:answer:auto_close:1" not in sla.store.open_timers()
    await sla.send(state("C1", "close", State.CLOSED, sla.clock.now, State.IN_PROGRESS))
    assert sla.store.open_timers() == {}
    await sla.run_until(wita(12, 31))
    assert closings(sla) == []


def closings(sla: Harness) -> list[dict[str, Any]]:
    """The auto-close events; reopen windows share their subject."""
    bodies = sla.sink.bodies(subjects.SLA_AUTO_CLOSE)
    return [body for body in bodies if body["kind"] == "auto_close"]


def windows(sla: Harness) -> list[tuple[str, str, str]]:
    return [
        (body["cause_event_id"], body["responded_at"], body["reopen_until"])
        for body in sla.sink.bodies(subjects.SLA_AUTO_CLOSE)
        if body["kind"] == "reopen_window"
    ]


async def test_every_answer_and_closing_opens_its_own_reopen_window() -> None:
    sla = Harness(wita(11, 2, 9))
    await sla.send(
        routed("C1", wita(11, 2, 9)),
        state("C1", "answer", State.RESPONDED, wita(11, 5, 14), State.ASSIGNED),
    )
    # 10 working days after Thursday 5 Nov, counted on the Banjar calendar.
    assert windows(sla) == [
        ("state:command:C1:answer", "2026-11-05T14:00:00+08:00", "2026-11-19T23:59:59+08:00")
    ]
    sla.clock.set(wita(11, 9, 10))
    await sla.send(
        state("C1", "reopen", State.IN_PROGRESS, wita(11, 9, 10), State.RESPONDED),
        state("C1", "answer2", State.RESPONDED, wita(12, 23, 15), State.IN_PROGRESS),
        # Redelivered: announced again under the same id, which the bus drops.
        state("C1", "answer2", State.RESPONDED, wita(12, 23, 15), State.IN_PROGRESS),
        state("C1", "close", State.CLOSED, wita(12, 28, 9), State.RESPONDED),
    )
    # From the new answer, not the first: 24 Dec (cuti bersama), Christmas, New
    # Year's Day, Isra Mikraj (5 Jan) and the weekends do not count.
    assert windows(sla)[1:] == [
        ("state:command:C1:answer2", "2026-12-23T15:00:00+08:00", "2027-01-12T23:59:59+08:00"),
        ("state:command:C1:close", "2026-12-28T09:00:00+08:00", "2027-01-13T23:59:59+08:00"),
    ]
    assert (
        sla.sink.ids(subjects.SLA_AUTO_CLOSE).count("reopen-window:state:command:C1:answer2") == 1
    )


async def test_a_complaint_that_runs_no_clock_still_gets_a_reopen_window() -> None:
    sla = Harness(wita(11, 2, 9))
    # Out of scope at once: the router closed it; no plan, no timers.
    await sla.send(
        routed("C1", wita(11, 2, 9), agency="OUT_OF_SCOPE"),
        state("C1", "oos", State.CLOSED, wita(11, 2, 9), State.RECEIVED),
        # Merged by an admin before any routing decision.
        state("C2", "merge", State.CLOSED, wita(11, 2, 10), State.RECEIVED),
    )
    assert sla.store.open_timers() == {}
    assert [(cause, until) for cause, _, until in windows(sla)] == [
        ("state:command:C1:oos", "2026-11-16T23:59:59+08:00"),
        ("state:command:C2:merge", "2026-11-16T23:59:59+08:00"),
    ]


async def test_a_publish_that_fails_after_the_claim_goes_out_once_later() -> None:
    sla = Harness(wita(12, 21, 10), fail_publish=1)
    await sla.send(routed("C1", wita(12, 21, 10)))
    sla.clock.set(wita(12, 28, 12))
    await sla.sweep()  # claimed, publish failed: the claim stays, the timer is claimed
    assert sla.sla_ids() == []
    assert sla.store.fired["C1:first_response:warn50:0"]["settled_at"] is None
    assert sla.store.open_timers()["C1:first_response:warn50:0"]["status"] == "claimed"
    sla.clock.advance(seconds=10)
    await sla.sweep()  # within the grace time another replica may still be on it
    assert sla.sla_ids() == []
    sla.clock.advance(seconds=30)
    await sla.sweep()
    assert sla.sla_ids() == ["C1:first_response:warn50:0"]
    assert Counter(i for _, i in sla.sink.attempts)["C1:first_response:warn50:0"] == 2
    assert "C1:first_response:warn50:0" not in sla.store.open_timers()
    await sla.run_until(wita(12, 29))
    assert [i for i in sla.sla_ids() if ":first_response:" in i] == ["C1:first_response:warn50:0"]


async def test_deadlines_whose_publish_failed_are_announced_by_the_sweep() -> None:
    sla = Harness(wita(12, 21, 10))
    sla.publishers[subjects.COMPLAINT_DEADLINES].fail_times = 1
    with pytest.raises(ConnectionError):
        await sla.send(routed("C1", wita(12, 21, 10)))
    assert sla.sink.ids(subjects.COMPLAINT_DEADLINES) == []
    assert sla.store.clocks["C1"]["deadlines"]["answer"] is not None
    # The routing decision never comes back (dead-lettered, say): the sweep announces.
    await sla.engine.sweep()
    [announced] = sla.sink.bodies(subjects.COMPLAINT_DEADLINES)
    assert announced["complaint_id"] == "C1" and announced["deadlines"]["answer"]
    await sla.engine.sweep()
    assert len(sla.sink.ids(subjects.COMPLAINT_DEADLINES)) == 1


async def test_a_restart_republishes_unsettled_claims_at_once() -> None:
    crashed = Harness(wita(12, 21, 10), fail_publish=1)
    await crashed.send(routed("C1", wita(12, 21, 10)))
    crashed.clock.set(wita(12, 28, 12))
    await crashed.sweep()
    restarted = Harness(wita(12, 28, 12), store=crashed.store, sink=crashed.sink)
    await restarted.engine.sweep(startup=True)
    assert restarted.sla_ids() == ["C1:first_response:warn50:0"]
    assert restarted.store.fired["C1:first_response:warn50:0"]["settled_at"] is not None


async def test_two_replicas_sweeping_together_never_fire_twice() -> None:
    store, sink = MemorySlaStore(), Sink()
    one = Harness(wita(11, 2, 9), store=store, sink=sink)
    two = Harness(wita(11, 2, 9), store=store, sink=sink)
    for n in range(40):
        replica = one if n % 2 else two
        await replica.send(routed(f"C{n}", wita(11, 2, 9) + timedelta(minutes=n)))
    while one.clock.now < wita(12, 1):
        one.clock.advance(hours=1)
        two.clock.set(one.clock.now)
        await asyncio.gather(one.engine.sweep(), two.engine.sweep())
    attempts = Counter(msg_id for _, msg_id in sink.attempts)
    assert attempts and max(attempts.values()) == 1
    expected = set()
    for n in range(40):
        plan = await one.engine.plan_of(f"C{n}")
        assert plan is not None
        expected |= {t.id for t in plan.timers if t.due_at <= one.clock.now}
    assert len(expected) == 40 * 14
    assert set(one.sla_ids()) == expected
    claimed_by = Counter(doc["claimed_by"] for doc in store.fired.values())
    assert set(claimed_by) == {one.engine.replica, two.engine.replica}


async def test_after_days_down_a_warning_past_its_deadline_is_skipped() -> None:
    sla = Harness(wita(12, 21, 10))
    await sla.send(routed("C1", wita(12, 21, 10)))
    sla.clock.set(wita(12, 31, 9))  # down since before the first warning
    await sla.sweep()
    # The first response's warnings come too late to help: its deadline has passed.
    # The answer's 50% warning is still worth sending: its deadline is ahead.
    assert sla.sla_ids() == [
        "C1:answer:warn50:0",
        "C1:first_response:breach:0",
        "C1:first_response:liaison:0",
    ]
    for point in ("warn50", "warn80"):
        assert sla.store.fired[f"C1:first_response:{point}:0"]["outcome"] == "skipped"
    await sla.run_until(wita(1, 2))
    assert "C1:first_response:warn80:0" not in sla.sla_ids()


async def test_triage_holds_diskominfo_to_routing_until_decided() -> None:
    sla = Harness(wita(11, 2, 9))
    await sla.send(routed("C1", wita(11, 2, 9), triage=True))
    await sla.run_until(wita(11, 4, 13))
    assert [(a["clock"], a["percent"], a["agency"]) for a in sla.alerts()] == [
        ("routing", 50, "DISKOMINFO")
    ]
    await sla.send(routed("C1", sla.clock.now, round_=1, agency="PUPR", received_at=wita(11, 2, 9)))
    await sla.run_until(wita(11, 7))
    assert [a["clock"] for a in sla.alerts()] == ["routing"]
    assert not [d for d in sla.store.open_timers().values() if d["clock"] == "routing"]


async def test_urgent_first_response_counts_clock_hours_through_the_weekend() -> None:
    sla = Harness(wita(11, 7, 22))  # Saturday night
    await sla.send(routed("C1", wita(11, 7, 22), priority=Priority.URGENT, agency="RSUD"))
    await sla.run_until(wita(11, 9, 0), step=timedelta(minutes=1))
    first = {str(a["event_id"]): sla.fired_at[str(a["event_id"])] for a in sla.alerts()}
    assert first["C1:first_response:warn50:0"] == wita(11, 8, 10)
    assert first["C1:first_response:warn80:0"] == wita(11, 8, 17, 12)
    assert first["C1:first_response:breach:0"] == wita(11, 8, 22)
    escalations = {
        e["level"]: sla.fired_at[str(e["event_id"])]
        for e in sla.sink.bodies(subjects.SLA_ESCALATION)
    }
    assert escalations == {"liaison": wita(11, 8, 22), "head": wita(11, 9, 0)}


async def test_the_sweep_reads_only_what_is_due() -> None:
    sla = Harness(wita(11, 2, 9))
    for n in range(300):
        await sla.send(routed(f"C{n}", wita(11, 2, 9)))
    await sla.send(routed("DUE", wita(11, 2, 9), priority=Priority.URGENT, agency="RSUD"))
    sla.store.calls.clear()
    sla.clock.set(wita(11, 2, 21, 0, 1))  # only the urgent complaint's 50% is due
    report = await sla.engine.sweep()
    assert report.fired == 1
    assert sla.sla_ids() == ["DUE:first_response:warn50:0"]
    calls = Counter(sla.store.calls)
    assert calls["clock_state"] == 1 and calls["claim"] == 1


async def test_a_stop_that_reaches_sla_late_settles_how_late_it_really_was() -> None:
    sla = Harness(wita(11, 2, 9))
    await sla.send(routed("C1", wita(11, 2, 9)))
    # The agency acknowledged on 10 Nov 10:00, but SLA hears of it only on 12 Nov:
    # meanwhile the head of the agency was told (11 Nov 23:59:59).
    await sla.run_until(wita(11, 12, 9))
    assert "C1:first_response:head:0" in sla.sla_ids()
    await sla.send(state("C1", "ack", State.IN_PROGRESS, wita(11, 10, 10), State.ASSIGNED))
    record = sla.store.breach_docs["C1:first_response:0"]
    assert record["resolved_at"] == wita(11, 10, 10)
    assert record["late_by_s"] == 10 * 3600 + 1
    assert record["level_rank"] == 2  # head: the notice went out, and stays on record
    assert not [d for d in sla.store.open_timers().values() if d["clock"] == "first_response"]


async def test_a_new_complaint_costs_one_insert_and_its_timers_wait_in_it() -> None:
    sla = Harness(wita(11, 2, 9))
    await sla.send(routed("C1", wita(11, 2, 9)))
    # Its first routing: the clock document is stored whole, its timers in it.
    assert Counter(sla.store.calls) == {"create_clock": 1}
    assert sla.store.timers == {} and len(sla.store.clocks["C1"]["timers"]) == 14
    sla.store.calls.clear()
    await sla.send(state("C1", "ack", State.IN_PROGRESS, wita(11, 3, 9), State.ASSIGNED))
    # Replanned in the document: the first response's timers go without a write.
    assert Counter(sla.store.calls) == {"add_fact": 1, "save_clock": 1}
    assert sla.store.timers == {}
    assert {t.split(":", 2)[1] for t in sla.store.open_timers()} == {"answer"}


async def test_kept_timers_go_to_the_timers_when_the_first_is_due_and_fire_once() -> None:
    sla = Harness(wita(11, 2, 9))
    await sla.send(routed("C1", wita(11, 2, 9)))
    plan = await sla.engine.plan_of("C1")
    assert plan is not None
    first = min(plan.timers, key=lambda t: t.due_at)
    assert sla.store.clocks["C1"]["timers_due_at"] == first.due_at
    await sla.run_until(first.due_at - STEP)
    assert sla.store.timers == {} and sla.sla_ids() == []
    await sla.run_until(first.due_at + STEP)
    # Moved by the sweep that found the first due, which fired it.
    assert sla.sla_ids() == [first.id]
    assert set(sla.store.timers) == {t.id for t in plan.timers} - {first.id}
    assert sla.store.clocks["C1"]["timers_in"] is None
    sla.store.calls.clear()
    await sla.send(state("C1", "ack", State.IN_PROGRESS, wita(11, 4, 9), State.ASSIGNED))
    # From then on a replan writes `sla_timers`, as it finds them recorded.
    assert {t.split(":", 2)[1] for t in sla.store.timers} == {"answer"}
    assert "timers_of" not in sla.store.calls
    await sla.run_until(wita(12, 31))
    fired = sla.sla_ids()
    assert len(fired) == len(set(fired)) and first.id in fired


async def test_a_move_left_unfinished_is_finished_without_firing_twice() -> None:
    sla = Harness(wita(11, 2, 9))
    await sla.send(routed("C1", wita(11, 2, 9)))
    plan = await sla.engine.plan_of("C1")
    assert plan is not None
    first, second, *_ = sorted(plan.timers, key=lambda t: t.due_at)
    # A replica moved two of them and stopped before recording it; one of them
    # had already fired (its claim is in the ledger) and the other is stale.
    stale = first.due_at + timedelta(days=30)
    sla.store.timers[second.id] = {
        "_id": second.id,
        "complaint_id": "C1",
        "status": "pending",
        "due_at": stale,
        "deadline": second.deadline,
        "agency": second.agency,
        "priority": "normal",
    }
    sla.store.fired[first.id] = {
        "_id": first.id,
        "complaint_id": "C1",
        "settled_at": wita(11, 2, 9),
    }
    await sla.run_until(second.due_at + STEP)
    assert sla.sla_ids() == [second.id]  # the first fired before: not again
    assert sla.fired_at[second.id] < second.due_at + STEP
    assert sla.store.clocks["C1"]["timers_in"] is None


def slower_replica(
    store: MemorySlaStore, held: str
) -> tuple[MemorySlaStore, asyncio.Event, asyncio.Event]:
    """The same database reached by a slower replica, whose call `held` waits (`waiting`
    is set) until `gate` is set."""
    gate, waiting = asyncio.Event(), asyncio.Event()
    call = getattr(MemorySlaStore, held)

    async def hold(self: MemorySlaStore, *args: Any, **kwargs: Any) -> Any:
        waiting.set()
        await gate.wait()
        return await call(self, *args, **kwargs)

    slow = type("Slower", (MemorySlaStore,), {held: hold})()
    slow.__dict__ = store.__dict__
    return slow, waiting, gate


async def test_a_fact_heard_while_another_replica_moves_the_timers_is_planned_over_them() -> None:
    store, sink = MemorySlaStore(), Sink()
    # Its replan kept the timers in the document, and is not stored yet.
    slow, waiting, gate = slower_replica(store, "save_clock")
    one = Harness(wita(11, 2, 9), store=store, sink=sink)
    two = Harness(wita(11, 2, 9), store=slow, sink=sink)
    alone = Harness(wita(11, 2, 9))
    routing = routed("C1", wita(11, 2, 9))
    await one.send(routing)
    plan = await one.engine.plan_of("C1")
    assert plan is not None
    due = min(t.due_at for t in plan.timers)
    ack = state("C1", "ack", State.IN_PROGRESS, due, State.ASSIGNED)
    await alone.send(routing, ack)
    for harness in (one, two, alone):
        harness.clock.set(due)
    heard = asyncio.create_task(two.send(ack))
    await waiting.wait()  # its fact is added, its replan not stored
    await one.engine.sweep()  # the first timer is due: moved, with both facts
    assert store.clocks["C1"]["timers_in"] is None
    gate.set()
    await heard
    await alone.engine.sweep()
    # The replan that kept them in the document is refused and done again over
    # the timers moved: the document does not claim to keep them any more.
    assert store.clocks["C1"]["timers_in"] is None
    assert {k: d["due_at"] for k, d in store.timers.items()} == {
        k: d["due_at"] for k, d in alone.store.open_timers().items()
    }
    assert {t["_id"] for t in store.clocks["C1"]["timers"]} == set(alone.store.open_timers())


def assigned_by_routing(complaint_id: str, at: datetime, round_: int = 0) -> ComplaintStateChanged:
    """The state change intake publishes on storing round `round_`'s routing decision."""
    cause = routed_event_id(complaint_id, round_)
    return state(
        complaint_id, "assign", State.ASSIGNED, at, State.RECEIVED, actor="router"
    ).model_copy(update={"event_id": f"state:{cause}", "cause_event_id": cause, "agency": "PUPR"})


async def test_the_move_to_assigned_that_follows_a_routing_costs_no_write() -> None:
    sla = Harness(wita(11, 2, 9))
    await sla.send(routed("C1", wita(11, 2, 9)))
    timers = dict(sla.store.open_timers())
    sla.store.calls.clear()
    await sla.send(assigned_by_routing("C1", wita(11, 2, 9)))
    # SLA heard the routing decision itself: the change it caused adds nothing to store.
    assert sla.store.calls == []
    assert sla.store.open_timers() == timers
    assert sla.store.clocks["C1"]["state"] == "assigned"


async def test_a_routings_deadlines_carry_its_category_and_confidence() -> None:
    sla = Harness(wita(11, 2, 9))
    event = routed("C1", wita(11, 2, 9))
    await sla.send(event)
    [announced] = sla.sink.bodies(subjects.COMPLAINT_DEADLINES)
    # For the agency's assignment notice, which notify words from them.
    assert (announced["category"], announced["routing_confidence"]) == (
        event.category,
        event.confidence,
    )


async def test_a_complaint_routed_again_after_a_forward_is_assigned_again() -> None:
    sla = Harness(wita(12, 21, 10))
    await sla.send(
        routed("C1", wita(12, 21, 10)),
        assigned_by_routing("C1", wita(12, 21, 10)),
        state("C1", "fwd", State.RECEIVED, wita(12, 21, 12), State.ASSIGNED, agency="PUPR"),
    )
    assert sla.store.clocks["C1"]["state"] == "received"
    await sla.send(
        routed("C1", wita(12, 21, 13), round_=1, agency="DISHUB", received_at=wita(12, 21, 10)),
        assigned_by_routing("C1", wita(12, 21, 13), round_=1),
    )
    assert sla.store.clocks["C1"]["state"] == "assigned"
    await sla.send(
        state("C1", "ack", State.IN_PROGRESS, wita(12, 21, 14), State.ASSIGNED, agency="DISHUB")
    )
    assert sla.store.clocks["C1"]["state"] == "in_progress"


async def test_a_first_routing_heard_after_another_fact_or_again_is_stored_the_usual_way() -> None:
    sla = Harness(wita(11, 2, 9))
    ack = state("C1", "ack", State.IN_PROGRESS, wita(11, 2, 10), State.ASSIGNED)
    await sla.send(ack, routed("C1", wita(11, 2, 9)))
    assert {f.event_id for f in sla.store.facts_of("C1")} == {ack.event_id, "routed:C1:0"}
    timers = dict(sla.store.open_timers())
    assert {t.split(":", 2)[1] for t in timers} == {"answer"}
    announced = sla.sink.ids()
    sla.store.calls.clear()
    await sla.send(routed("C1", wita(11, 2, 9)))  # a redelivery
    assert sla.store.open_timers() == timers and set(sla.sink.ids()) == set(announced)
    assert "add_fact" in sla.store.calls
    reference = Harness(wita(11, 2, 9))
    await reference.send(routed("C1", wita(11, 2, 9)), ack)
    assert set(reference.store.open_timers()) == set(timers)


async def test_a_summary_computed_before_another_replicas_fact_is_not_stored() -> None:
    store, sink = MemorySlaStore(), Sink()
    # Its summary is computed, not stored yet: a new complaint's is inserted whole.
    slow, waiting, gate = slower_replica(store, "create_clock")
    one = Harness(wita(11, 2, 9), store=slow, sink=sink)
    two = Harness(wita(11, 2, 9), store=store, sink=sink)
    alone = Harness(wita(11, 2, 9))
    events: list[ComplaintRouted | ComplaintStateChanged] = [
        routed("C1", wita(11, 2, 9)),
        state("C1", "ack", State.IN_PROGRESS, wita(11, 3, 9), State.ASSIGNED),
    ]
    await alone.send(*events)
    first = asyncio.create_task(one.send(events[0]))
    await waiting.wait()  # its fact and timers are stored, its summary not yet
    await two.send(events[1])
    gate.set()
    await first
    # The routing alone planned first_response timers; the summary stored says the
    # complaint is in progress, and the timers match both facts.
    assert store.clocks["C1"]["state"] == alone.store.clocks["C1"]["state"] == "in_progress"
    assert {t["_id"] for t in store.clocks["C1"]["timers"]} == set(alone.store.open_timers())
    assert {k: d["due_at"] for k, d in store.open_timers().items()} == {
        k: d["due_at"] for k, d in alone.store.open_timers().items()
    }


async def test_two_replicas_recording_one_complaint_at_once_end_with_every_fact() -> None:
    store, sink = MemorySlaStore(), Sink()
    one = Harness(wita(11, 2, 9), store=store, sink=sink)
    two = Harness(wita(11, 2, 9), store=store, sink=sink)
    alone = Harness(wita(11, 2, 9))
    events: list[ComplaintRouted | ComplaintStateChanged] = [
        routed("C1", wita(11, 2, 9)),
        state("C1", "ack", State.IN_PROGRESS, wita(11, 3, 9), State.ASSIGNED),
        state("C1", "ask", State.NEEDS_INFO, wita(11, 3, 10), State.IN_PROGRESS),
    ]
    await alone.send(*events)
    # Each event on another replica, interleaved at every database call.
    await asyncio.gather(*(h.send(e) for h, e in zip((one, two, one), events, strict=True)))
    assert {k: d["due_at"] for k, d in store.open_timers().items()} == {
        k: d["due_at"] for k, d in alone.store.open_timers().items()
    }
    assert store.clocks["C1"]["state"] == alone.store.clocks["C1"]["state"] == "needs_info"
    assert {t["_id"] for t in store.clocks["C1"]["timers"]} == set(alone.store.open_timers())
