"""A complaint's clocks as data: the runs of each clock, the waits for the citizen, the
timers that must fire, and the plan that holds them (built in services/sla/plan.py).

Timer ids are `<complaint>:<clock>:<point>:<round>` (see plan.py for the rounds).
"""

from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from enum import StrEnum

from lapor.calendar import WorkingCalendar
from lapor.contracts import Deadlines, EscalationLevel, Priority, SlaClock, State
from services.sla.domain import escalation_schedule, timer_schedule
from services.sla.facts import Routed, StateChange, to_ms
from services.sla.policy import SlaPolicy, Unit


class TimerKind(StrEnum):
    WARNING = "warning"
    BREACH = "breach"
    ESCALATION = "escalation"
    AUTO_CLOSE = "auto_close"
    REPLY_LAPSED = "reply_lapsed"


@dataclass(frozen=True)
class Run:
    """One run of a clock: who is held to it, from when, until when, and if it stopped."""

    clock: SlaClock
    round: int
    agency: str | None
    priority: Priority
    unit: Unit
    start: datetime
    due: datetime
    stopped_at: datetime | None = None
    # Waiting for the citizen since, and at the latest until the reply window lapses.
    paused_since: datetime | None = None
    resumes_at: datetime | None = None
    # Every wait for the citizen as [start, end), cut at the stop (answer only).
    pauses: tuple[tuple[datetime, datetime], ...] = ()

    @property
    def key(self) -> str:
        return f"{self.clock.value}:{self.round}"

    @property
    def late(self) -> bool:
        """Stopped, but only after its deadline."""
        return self.stopped_at is not None and self.due < self.stopped_at

    def running_at(self, moment: datetime) -> bool:
        return self.stopped_at is None or moment < self.stopped_at


@dataclass(frozen=True)
class Timer:
    """A moment at which SLA must publish something, identified for exactly-once firing."""

    complaint_id: str
    clock: SlaClock
    point: str
    round: int
    kind: TimerKind
    due_at: datetime
    deadline: datetime = field(compare=False)  # the run's deadline (auto-close: due_at)
    agency: str | None = field(default=None, compare=False)
    priority: Priority = field(default=Priority.NORMAL, compare=False)
    percent: int | None = field(default=None, compare=False)
    level: EscalationLevel | None = field(default=None, compare=False)
    responded_at: datetime | None = field(default=None, compare=False)

    @property
    def id(self) -> str:
        return firing_id(self.complaint_id, self.clock, self.point, self.round)

    @property
    def run_key(self) -> str:
        return f"{self.clock.value}:{self.round}"


def firing_id(complaint_id: str, clock: SlaClock | str, point: str, round_: int) -> str:
    return f"{complaint_id}:{SlaClock(clock).value}:{point}:{round_}"


@dataclass(frozen=True)
class Pause:
    """Time waiting for the citizen: from entering needs_info to the next state change,
    or to the end of the reply window if no state change came before it."""

    started: StateChange
    ended: StateChange | None  # None: the reply window lapsed (or will) first
    lapses_at: datetime

    @property
    def lapsed(self) -> bool:
        return self.ended is None

    @property
    def end(self) -> datetime:
        return self.ended.at if self.ended is not None else self.lapses_at

    def length(self, stop: datetime | None) -> timedelta:
        end = self.end if stop is None else min(self.end, stop)
        return max(end - self.started.at, timedelta(0))


@dataclass(frozen=True)
class Plan:
    complaint_id: str
    region: str
    received_at: datetime
    agency: str | None  # the agency holding the complaint now (None in triage)
    priority: Priority  # the latest routing decision's
    state: State
    latest_round: int
    deadlines: Deadlines
    runs: tuple[Run, ...]
    timers: tuple[Timer, ...]
    pauses: tuple[Pause, ...]
    paused: timedelta
    latest_route: Routed
    # The answer round each of `pauses` belongs to (0 the first answer, n the n-th reopening).
    pause_rounds: tuple[int, ...] = ()
    # The reopenings, in order: reopening n starts answer round n.
    reopenings: tuple[StateChange, ...] = ()
    # The officer of the holding agency who acknowledged it: the one a breach is
    # recorded against, besides the agency.
    official: str | None = None

    def timer(self, timer_id: str) -> Timer | None:
        return next((t for t in self.timers if t.id == timer_id), None)

    def run(self, clock: SlaClock, round_: int) -> Run | None:
        return next((r for r in self.runs if r.clock is clock and r.round == round_), None)

    def official_for(self, agency: str | None) -> str | None:
        """The assigned official, for a clock the agency holding the complaint is held to."""
        return self.official if agency is not None and agency == self.agency else None

    def answer_run(self) -> Run | None:
        """The answer clock of the latest round: what the citizen is owed now."""
        answers = [r for r in self.runs if r.clock is SlaClock.ANSWER]
        return max(answers, key=lambda r: r.round, default=None)

    @property
    def next_due_at(self) -> datetime | None:
        return min((t.due_at for t in self.timers), default=None)


def run_timers(
    complaint_id: str, run: Run, policy: SlaPolicy, calendar: WorkingCalendar
) -> list[Timer]:
    """The warnings and the breach of a run, then its escalation levels."""
    working = run.unit is Unit.WORKING_DAYS
    waited = sum((end - start for start, end in run.pauses), timedelta(0))
    timers: list[Timer] = []
    for point in timer_schedule(
        run.clock,
        run.start,
        run.due - waited,
        policy.thresholds,
        calendar=calendar if working else None,
    ):
        breach = point.fraction == 1.0
        # The warnings are fractions of running time; the breach is the deadline itself.
        due_at = run.due if breach else _after_pauses(point.due_at, run.pauses)
        if not run.running_at(due_at):
            continue
        timers.append(
            Timer(
                complaint_id=complaint_id,
                clock=run.clock,
                point=point.label,
                round=run.round,
                kind=TimerKind.BREACH if breach else TimerKind.WARNING,
                due_at=to_ms(due_at),
                deadline=run.due,
                agency=run.agency,
                priority=run.priority,
                percent=round(point.fraction * 100),
            )
        )
    return timers + _escalation_timers(complaint_id, run, policy, calendar)


def _escalation_timers(
    complaint_id: str, run: Run, policy: SlaPolicy, calendar: WorkingCalendar
) -> list[Timer]:
    if not run.running_at(run.due):
        return []
    return [
        Timer(
            complaint_id=complaint_id,
            clock=run.clock,
            point=level.value,
            round=run.round,
            kind=TimerKind.ESCALATION,
            due_at=to_ms(at),
            deadline=run.due,
            agency=run.agency,
            priority=run.priority,
            level=level,
        )
        for level, at in escalation_schedule(run.due, policy, calendar, run.priority)
        if run.running_at(at)
    ]


def _after_pauses(moment: datetime, pauses: Iterable[tuple[datetime, datetime]]) -> datetime:
    """Where a point of running time lands once the waits for the citizen are left out."""
    for start, end in sorted(pauses):
        if start <= moment:
            moment += end - start
    return moment
