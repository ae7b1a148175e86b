"""A complaint's clocks, derived from everything SLA has heard about it.

Pure: no I/O, no current time. The input is the set of *facts* stored for one
complaint — routing decisions (`ComplaintRouted`) and state changes
(`ComplaintStateChanged`), each under its event id — and the output is a
`Plan`: the deadlines, each run of each clock (started, due, stopped), and the
timers that must exist (warnings, breach, escalation levels, auto-close).

Because the plan is recomputed from the whole set of facts every time, the
order in which events arrive does not matter, a repeated event changes
nothing, and a stale event (an older routing round, a state change that
arrives late) takes its place in the timeline instead of overwriting newer
information.

Rules (DESIGN.md "Deadlines", issue 5):

routing
    Runs from receipt until the first assignment to an agency (or any state
    past triage, closing, rejection). Held against the policy's
    `routing_agency` (Diskominfo). Not restarted by re-routing.
first_response
    One run per assignment (routing round), from the routing decision. Stops
    at the first state change at or after the assignment that shows the agency
    acted: in_progress, needs_info, responded, closed, rejected; or when it is
    handed over (forwarded, or a triage decision: the state goes back to
    received, round n's hand-over being the (n+1)-th `received`); a later
    routing round also ends it. Re-routing therefore starts a new run for the
    new agency.
answer
    From receipt to the cap of the *first* routing decision's priority; no
    re-routing moves it. Time in needs_info extends it by exactly that time: a
    pause runs from entering needs_info until the next state change, or until
    the policy's reply window (counted from the question) lapses, whichever
    comes first. So the plan knows each pause's latest end without knowing
    what time it is now: an unanswered question ends its pause by itself. The
    answer clock's warnings count running time only: a point that would fall
    after a pause began moves later by the pause's length, so nothing of the
    answer clock is due while the citizen is still being waited for. Stops at
    responded, closed or rejected.
answer after a reopening
    Each reopening by the citizen (in_progress right after responded or
    closed) starts a new run of the answer clock, round n for the n-th
    reopening: from the reopening to `reopen.answer` of the latest priority,
    extended by its own waits for the citizen like the first; it stops at the
    next responded, closed or rejected. Closing before the reopening does not
    stop it. Its start is announced as new deadlines (`reopened`).
reply lapsed
    One per pause that no state change ended in time: at the end of its reply
    window, unless the answer clock stopped first. It announces the answer
    deadline the lapse has fixed (a `DeadlinesSet`, like the end of a pause by
    a reply).
auto-close
    One per `responded` state: `auto_close.no_reply_after` later, unless a
    later state change came first. Whether the citizen reacted without
    changing the state (a rating, a reply) is intake's to judge when it
    closes: SLA only says that the time is up.
reopen window
    Every `responded` or `closed` state opens a new reply window,
    `reopen.reply_window` from that state change, announced at once on the
    auto-close subject (`reopen_announcement`). It needs no plan, so a
    complaint closed as out of scope or merged before it was routed gets
    one too.
firing rule
    A warning, breach or escalation point exists only while its run had not
    stopped at that moment: point < stop.

Timer ids are `<complaint>:<clock>:<point>:<round>`: the round is the routing
round for first_response, 0 for routing and answer (an answer deadline moved
by a pause keeps its id, so a threshold fires once) or the reopening's
ordinal for the answer after a reopening, the ordinal of the
response (1, 2, ...) for auto-close and the ordinal of the pause for a lapsed
reply window.
"""

from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from enum import StrEnum

from lapor.contracts import (
    AGENCY_OUT_OF_SCOPE,
    AutoCloseDue,
    ComplaintRouted,
    ComplaintStateChanged,
    Deadlines,
    DeadlinesSet,
    Priority,
    State,
)
from services.sla.calendar import WorkingCalendar
from services.sla.domain import (
    auto_close_at,
    escalation_schedule,
    reopen_until,
    reply_lapses_at,
    timer_schedule,
    window_end,
)
from services.sla.policy import Clock, EscalationLevel, SlaPolicy, Unit

AUTO_CLOSE_POINT = "auto_close"
REPLY_LAPSED_POINT = "reply_lapsed"

# States that show the agency acted on its assignment. (Letting go of it — a
# forward or a triage decision, state `received` — is matched to its round by
# count, not by time: see build_plan.)
_FIRST_RESPONSE_STOPS = frozenset(
    {
        State.IN_PROGRESS,
        State.NEEDS_INFO,
        State.RESPONDED,
        State.CLOSED,
        State.REJECTED,
        State.TRIAGE,
    }
)
_ANSWER_STOPS = frozenset({State.RESPONDED, State.CLOSED, State.REJECTED})
_ROUTING_PENDING = frozenset({State.RECEIVED, State.TRIAGE})
_TERMINAL = frozenset({State.CLOSED, State.REJECTED})
# Only a reopening leads from these back to in_progress.
_REOPENED_FROM = frozenset({State.RESPONDED, State.CLOSED})
# The states after which the citizen may reopen, each time for a new window.
REPLY_WINDOW_STATES = frozenset({State.RESPONDED, State.CLOSED})


@dataclass(frozen=True)
class RegionRules:
    calendar: WorkingCalendar
    policy: SlaPolicy


def to_ms(moment: datetime) -> datetime:
    """`moment` truncated to milliseconds, the precision MongoDB keeps."""
    return moment.replace(microsecond=moment.microsecond - moment.microsecond % 1000)


def routing_round(event_id: str) -> int:
    """The round of a routing decision from its id `routed:<complaint>:<round>`; 0 otherwise."""
    _, _, tail = event_id.rpartition(":")
    return int(tail) if event_id.startswith("routed:") and tail.isdigit() else 0


# -- facts ---------------------------------------------------------------------


@dataclass(frozen=True)
class Routed:
    """A routing decision: round n assigned the complaint (or sent it to triage)."""

    event_id: str
    at: datetime
    round: int
    region: str
    received_at: datetime
    agency: str | None
    priority: Priority
    triage: bool

    @property
    def out_of_scope(self) -> bool:
        return not self.triage and self.agency == AGENCY_OUT_OF_SCOPE

    @property
    def assigned(self) -> bool:
        return not self.triage and self.agency is not None and not self.out_of_scope


@dataclass(frozen=True)
class StateChange:
    event_id: str
    at: datetime
    state: State
    previous_state: State | None = None
    # Who made the change (`agency:<officer>` for an officer) and the agency holding it.
    actor: str | None = None
    agency: str | None = None


Fact = Routed | StateChange


def routed_fact(event: ComplaintRouted) -> Routed:
    return Routed(
        event_id=event.event_id,
        at=to_ms(event.occurred_at),
        round=routing_round(event.event_id),
        region=event.region,
        received_at=to_ms(event.received_at),
        agency=event.agency,
        priority=event.priority,
        triage=event.triage,
    )


def state_fact(event: ComplaintStateChanged) -> StateChange:
    return StateChange(
        event_id=event.event_id,
        at=to_ms(event.occurred_at),
        state=event.state,
        previous_state=event.previous_state,
        actor=event.actor,
        agency=event.agency,
    )


# -- plan ------------------------------------------------------------------------


class TimerKind(StrEnum):
    WARNING = "warning"
    BREACH = "breach"
    ESCALATION = "escalation"
    AUTO_CLOSE = "auto_close"
    REPLY_LAPSED = "reply_lapsed"


@dataclass(frozen=True)
class Run:
    """One run of a clock: who is held to it, from when, until when, and if it stopped."""

    clock: Clock
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
    clock: Clock
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


def firing_id(complaint_id: str, clock: Clock | str, point: str, round_: int) -> str:
    return f"{complaint_id}:{Clock(clock).value}:{point}:{round_}"


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

    def run(self, clock: Clock, round_: int) -> Run | None:
        return next((r for r in self.runs if r.clock is clock and r.round == round_), None)

    def official_for(self, agency: str | None) -> str | None:
        """The assigned official, for a clock the agency holding the complaint is held to."""
        return self.official if agency is not None and agency == self.agency else None

    def answer_run(self) -> Run | None:
        """The answer clock of the latest round: what the citizen is owed now."""
        answers = [r for r in self.runs if r.clock is Clock.ANSWER]
        return max(answers, key=lambda r: r.round, default=None)

    @property
    def next_due_at(self) -> datetime | None:
        return min((t.due_at for t in self.timers), default=None)


def _earliest(moments: Iterable[datetime]) -> datetime | None:
    return min(moments, default=None)


def _unique(facts: Iterable[Fact]) -> tuple[list[Routed], list[StateChange]]:
    by_id: dict[str, Fact] = {}
    for fact in facts:
        by_id.setdefault(fact.event_id, fact)
    routes = sorted(
        (f for f in by_id.values() if isinstance(f, Routed)), key=lambda r: (r.round, r.at)
    )
    states = sorted(
        (f for f in by_id.values() if isinstance(f, StateChange)),
        key=lambda s: (s.at, s.event_id),
    )
    return routes, states


def _pauses(
    states: list[StateChange], stop: datetime | None, lapse: Callable[[datetime], datetime]
) -> list[Pause]:
    pauses: list[Pause] = []
    index = 0
    while index < len(states):
        fact = states[index]
        if fact.state is State.NEEDS_INFO and (stop is None or fact.at < stop):
            lapses_at = to_ms(lapse(fact.at))
            following = index + 1
            while (
                following < len(states)
                and states[following].state is State.NEEDS_INFO
                and states[following].at < lapses_at
            ):
                # Asked again while waiting: one pause, and the window still counts from
                # the first question, so that asking again cannot hold the clock longer.
                following += 1
            after = states[following] if following < len(states) else None
            ended = after if after is not None and after.at < lapses_at else None
            pauses.append(Pause(fact, ended, lapses_at))
            index = following
        else:
            index += 1
    return pauses


def _after_pauses(moment: datetime, pauses: Iterable[tuple[datetime, datetime]]) -> datetime:
    """Where a point of running time lands once the waits for the citizen are left out."""
    for start, end in sorted(pauses):
        if start <= moment:
            moment += end - start
    return moment


def _run_timers(
    complaint_id: str, run: Run, policy: SlaPolicy, calendar: WorkingCalendar
) -> list[Timer]:
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
    if run.running_at(run.due):
        for level, at in escalation_schedule(run.due, policy, calendar, run.priority):
            if run.running_at(at):
                timers.append(
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
                )
    return timers


def build_plan(
    complaint_id: str, facts: Iterable[Fact], regions: Mapping[str, RegionRules]
) -> Plan | None:
    """The complaint's clocks and timers; None while no routing decision is known
    (or when the first decision put it out of scope: it is closed at once)."""
    routes, states = _unique(facts)
    if not routes:
        return None
    first, latest = routes[0], routes[-1]
    if first.out_of_scope:
        return None
    rules = regions.get(first.region)
    if rules is None:
        raise LookupError(f"no SLA rules for region {first.region!r}")
    calendar, policy = rules.calendar, rules.policy
    received_at = first.received_at

    # Closing, rejection or a later decision that it is out of scope stops every clock.
    terminal = _earliest(
        [s.at for s in states if s.state in _TERMINAL] + [r.at for r in routes if r.out_of_scope]
    )

    def stop_of(*candidates: Iterable[datetime]) -> datetime | None:
        moments = [m for group in candidates for m in group]
        if terminal is not None:
            moments.append(terminal)
        return _earliest(moments)

    runs: list[Run] = []

    routing_window = policy.window(first.priority, Clock.ROUTING)
    runs.append(
        Run(
            clock=Clock.ROUTING,
            round=0,
            agency=policy.routing_agency,
            priority=first.priority,
            unit=routing_window.unit,
            start=calendar.local(received_at),
            due=window_end(calendar, received_at, routing_window),
            stopped_at=stop_of(
                [r.at for r in routes if r.assigned],
                [s.at for s in states if s.state not in _ROUTING_PENDING],
            ),
        )
    )

    # Every hand-over (a forward, a triage decision) puts the complaint back to
    # `received` and opens the next routing round: the k-th hand-over ends round
    # k-1. Matching by count rather than by time keeps a router clock that runs
    # a little behind intake's from ending the new round at once.
    handovers = [s.at for s in states if s.state is State.RECEIVED]
    for index, route in enumerate(routes):
        if not route.assigned:
            continue
        handover = handovers[route.round] if route.round < len(handovers) else None
        window = policy.window(route.priority, Clock.FIRST_RESPONSE)
        runs.append(
            Run(
                clock=Clock.FIRST_RESPONSE,
                round=route.round,
                agency=route.agency,
                priority=route.priority,
                unit=window.unit,
                start=calendar.local(route.at),
                due=window_end(calendar, route.at, window),
                stopped_at=stop_of(
                    [r.at for r in routes[index + 1 :]],
                    [s.at for s in states if s.at >= route.at and s.state in _FIRST_RESPONSE_STOPS],
                    [handover] if handover is not None else [],
                ),
            )
        )

    answer_window = policy.window(first.priority, Clock.ANSWER)
    answer_stop = stop_of([s.at for s in states if s.state in _ANSWER_STOPS])
    pauses = _pauses(states, answer_stop, lambda at: reply_lapses_at(at, policy, calendar))
    paused = sum((p.length(answer_stop) for p in pauses), timedelta(0))
    # Still no reply: the last question holds the clock until its window lapses.
    waiting = (
        pauses[-1]
        if pauses and answer_stop is None and states[-1].state is State.NEEDS_INFO
        else None
    )
    cap = window_end(calendar, received_at, answer_window)
    runs.append(
        Run(
            clock=Clock.ANSWER,
            round=0,
            agency=latest.agency if latest.assigned else policy.routing_agency,
            priority=latest.priority,
            unit=answer_window.unit,
            start=calendar.local(received_at),
            due=calendar.local(cap + paused),
            stopped_at=answer_stop,
            paused_since=waiting.started.at if waiting else None,
            resumes_at=waiting.lapses_at if waiting else None,
            pauses=tuple(
                (p.started.at, p.started.at + p.length(answer_stop))
                for p in pauses
                if p.length(answer_stop) > timedelta(0)
            ),
        )
    )

    answer_runs = [runs[-1]]
    pause_rounds = [0] * len(pauses)
    reopenings = [
        s for s in states if s.state is State.IN_PROGRESS and s.previous_state in _REOPENED_FROM
    ]
    for ordinal, reopening in enumerate(reopenings, start=1):
        run, round_pauses = _reopened_run(
            ordinal, reopening, states, routes, latest, policy, calendar
        )
        runs.append(run)
        answer_runs.append(run)
        pauses += round_pauses
        pause_rounds += [ordinal] * len(round_pauses)

    timers: list[Timer] = []
    for run in runs:
        timers += _run_timers(complaint_id, run, policy, calendar)

    for ordinal, (pause, round_) in enumerate(zip(pauses, pause_rounds, strict=True), start=1):
        answer_run = answer_runs[round_]
        if pause.lapsed and answer_run.running_at(pause.lapses_at):
            timers.append(
                Timer(
                    complaint_id=complaint_id,
                    clock=Clock.ANSWER,
                    point=REPLY_LAPSED_POINT,
                    round=ordinal,
                    kind=TimerKind.REPLY_LAPSED,
                    due_at=pause.lapses_at,
                    deadline=answer_run.due,
                    agency=answer_run.agency,
                    priority=answer_run.priority,
                )
            )

    responses = [s for s in states if s.state is State.RESPONDED]
    for ordinal, response in enumerate(responses, start=1):
        due = auto_close_at(response.at, policy, calendar)
        position = states.index(response)
        reaction = states[position + 1] if position + 1 < len(states) else None
        if reaction is None or due < reaction.at:
            timers.append(
                Timer(
                    complaint_id=complaint_id,
                    clock=Clock.ANSWER,
                    point=AUTO_CLOSE_POINT,
                    round=ordinal,
                    kind=TimerKind.AUTO_CLOSE,
                    due_at=to_ms(due),
                    deadline=due,
                    agency=latest.agency,
                    priority=latest.priority,
                    responded_at=calendar.local(response.at),
                )
            )

    latest_first_response = next(
        (
            r
            for r in runs
            if r.clock is Clock.FIRST_RESPONSE and latest.assigned and r.round == latest.round
        ),
        None,
    )
    routing_run = runs[0]
    if states:
        state = states[-1].state
    else:
        state = State.TRIAGE if latest.triage else State.ASSIGNED
    return Plan(
        complaint_id=complaint_id,
        region=first.region,
        received_at=calendar.local(received_at),
        agency=latest.agency if latest.assigned else None,
        priority=latest.priority,
        state=state,
        latest_round=latest.round,
        deadlines=Deadlines(
            routing=routing_run.due,
            first_response=latest_first_response.due if latest_first_response else None,
            answer=answer_runs[-1].due,
            first_answer=answer_runs[0].due,
        ),
        runs=tuple(runs),
        timers=tuple(sorted(timers, key=lambda t: (t.due_at, t.id))),
        pauses=tuple(pauses),
        paused=paused,
        latest_route=latest,
        official=assigned_official(states, latest),
        pause_rounds=tuple(pause_rounds),
        reopenings=tuple(reopenings),
    )


def _reopened_run(
    ordinal: int,
    reopening: StateChange,
    states: list[StateChange],
    routes: list[Routed],
    latest: Routed,
    policy: SlaPolicy,
    calendar: WorkingCalendar,
) -> tuple[Run, list[Pause]]:
    """Answer round `ordinal`: the answer the agency owes after the citizen reopened."""
    # In the same millisecond, a change out of in_progress can only follow the reopening.
    after = [
        s
        for s in states
        if s.at > reopening.at
        or (s.at == reopening.at and s is not reopening and s.previous_state is State.IN_PROGRESS)
    ]
    stop = _earliest(
        [s.at for s in after if s.state in _ANSWER_STOPS]
        + [r.at for r in routes if r.out_of_scope and r.at > reopening.at]
    )
    pauses = _pauses(after, stop, lambda at: reply_lapses_at(at, policy, calendar))
    paused = sum((p.length(stop) for p in pauses), timedelta(0))
    waiting = (
        pauses[-1] if pauses and stop is None and states[-1].state is State.NEEDS_INFO else None
    )
    window = policy.reopen_answer(latest.priority)
    due = window_end(calendar, reopening.at, window)
    run = Run(
        clock=Clock.ANSWER,
        round=ordinal,
        agency=latest.agency if latest.assigned else policy.routing_agency,
        priority=latest.priority,
        unit=window.unit,
        start=calendar.local(reopening.at),
        due=calendar.local(due + paused),
        stopped_at=stop,
        paused_since=waiting.started.at if waiting else None,
        resumes_at=waiting.lapses_at if waiting else None,
        pauses=tuple(
            (p.started.at, p.started.at + p.length(stop))
            for p in pauses
            if p.length(stop) > timedelta(0)
        ),
    )
    return run, pauses


_OFFICER = "agency:"


def assigned_official(states: Sequence[StateChange], latest: Routed) -> str | None:
    """The officer who acknowledged the complaint for the agency holding it now.

    An acknowledgement by an officer of the agency of the latest routing decision,
    made after that decision, assigns them; a forward to another agency ends it.
    """
    if not latest.assigned:
        return None
    for change in reversed(states):
        if change.at < latest.at:
            break
        if (
            change.state is State.IN_PROGRESS
            and change.agency == latest.agency
            and change.actor is not None
            and change.actor.startswith(_OFFICER)
        ):
            return change.actor.removeprefix(_OFFICER) or None
    return None


# -- announcements -------------------------------------------------------------------


def deadline_announcements(plan: Plan, fact: Fact, occurred_at: datetime) -> list[DeadlinesSet]:
    """The `DeadlinesSet` events that `fact` calls for, under deterministic ids.

    - the latest routing decision announces the deadlines (an older round is stale);
    - the end of a pause (leaving needs_info, not by answering or closing) announces
      the answer deadline moved by the time waited; the id follows the state change
      that ended the pause, so intake records it once and notify tells the citizen.

    A pause that ends by its reply window lapsing has no fact to hang on: the
    sweep announces it when its timer fires (`lapse_announcement`).
    """
    announced: list[DeadlinesSet] = []
    latest_answer = plan.answer_run()
    current_round = latest_answer.round if latest_answer is not None else 0

    def deadlines_set(
        event_id: str, state: State, cause: str, agency: str | None, *, reopened: bool = False
    ) -> DeadlinesSet:
        return DeadlinesSet(
            event_id=event_id,
            occurred_at=occurred_at,
            complaint_id=plan.complaint_id,
            region=plan.region,
            agency=agency,
            priority=plan.priority,
            state=state,
            received_at=plan.received_at,
            deadlines=plan.deadlines,
            cause_event_id=cause,
            answer_round=current_round,
            reopened=reopened,
        )

    if isinstance(fact, Routed):
        latest = plan.latest_route
        if fact.event_id == latest.event_id and not fact.out_of_scope:
            announced.append(
                deadlines_set(
                    f"deadlines:{fact.event_id}",
                    State.TRIAGE if fact.triage else State.ASSIGNED,
                    fact.event_id,
                    fact.agency,
                )
            )
        return announced
    for ordinal, reopening in enumerate(plan.reopenings, start=1):
        # Only the latest round's deadlines are the ones to tell; an older
        # reopening arriving late has been overtaken.
        if fact.event_id == reopening.event_id and ordinal == current_round:
            announced.append(
                deadlines_set(
                    f"deadlines:{fact.event_id}",
                    State.IN_PROGRESS,
                    fact.event_id,
                    plan.agency,
                    reopened=True,
                )
            )
    for pause, round_ in zip(plan.pauses, plan.pause_rounds, strict=True):
        ended = pause.ended
        if ended is None or fact.event_id not in (pause.started.event_id, ended.event_id):
            continue
        if ended.state in _ANSWER_STOPS or pause.length(None) <= timedelta(0):
            continue
        answer = plan.run(Clock.ANSWER, round_)
        if answer is None or round_ != current_round or not answer.running_at(ended.at):
            continue
        announced.append(
            deadlines_set(f"deadlines:{ended.event_id}", ended.state, ended.event_id, plan.agency)
        )
    return announced


def lapse_announcement(plan: Plan, timer: Timer, occurred_at: datetime) -> DeadlinesSet:
    """The answer deadline fixed by a reply window that lapsed without a reply.

    Announced like the end of a pause by a reply, so that intake records the
    date and notify tells the citizen; the state is still needs_info.
    """
    pause = plan.pauses[timer.round - 1]
    answer = plan.answer_run()
    return DeadlinesSet(
        event_id=f"deadlines:{timer.id}",
        occurred_at=occurred_at,
        complaint_id=plan.complaint_id,
        region=plan.region,
        agency=plan.agency,
        priority=plan.priority,
        state=State.NEEDS_INFO,
        received_at=plan.received_at,
        deadlines=plan.deadlines,
        cause_event_id=pause.started.event_id,
        answer_round=answer.round if answer is not None else 0,
    )


def reopen_announcement(
    event: ComplaintStateChanged, rules: RegionRules, occurred_at: datetime
) -> AutoCloseDue | None:
    """The reply window that a response or a closing opens, or None for other states.

    Counted from the state change itself, so after a reopening and a new answer
    the window is the new answer's; the id follows the state change, so a
    redelivery announces the same window again under the same id.
    """
    if event.state not in REPLY_WINDOW_STATES:
        return None
    return AutoCloseDue(
        event_id=f"reopen-window:{event.event_id}",
        occurred_at=occurred_at,
        complaint_id=event.complaint_id,
        region=event.region,
        responded_at=rules.calendar.local(event.occurred_at),
        kind="reopen_window",
        reopen_until=reopen_until(event.occurred_at, rules.policy, rules.calendar),
        cause_event_id=event.event_id,
    )
