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
from dataclasses import dataclass
from datetime import datetime, timedelta

from lapor.calendar import WorkingCalendar
from lapor.contracts import Deadlines, SlaClock, State
from services.sla.clocks import Pause, Plan, Run, Timer, TimerKind, run_timers
from services.sla.domain import auto_close_at, reply_lapses_at, window_end
from services.sla.facts import Fact, Routed, StateChange, to_ms
from services.sla.policy import SlaPolicy, Window

AUTO_CLOSE_POINT = "auto_close"
REPLY_LAPSED_POINT = "reply_lapsed"

# States that show the agency acted on its assignment. (Letting go of it — a
# forward or a triage decision, state `received` — is matched to its round by
# count, not by time: see _first_response_runs.)
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
ANSWER_STOPS = frozenset({State.RESPONDED, State.CLOSED, State.REJECTED})
_ROUTING_PENDING = frozenset({State.RECEIVED, State.TRIAGE})
_TERMINAL = frozenset({State.CLOSED, State.REJECTED})
# Only a reopening leads from these back to in_progress.
_REOPENED_FROM = frozenset({State.RESPONDED, State.CLOSED})


@dataclass(frozen=True)
class RegionRules:
    calendar: WorkingCalendar
    policy: SlaPolicy


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


@dataclass(frozen=True)
class _Timeline:
    """One complaint's facts in order, with its region's rules: what every clock reads."""

    complaint_id: str
    routes: list[Routed]
    states: list[StateChange]
    calendar: WorkingCalendar
    policy: SlaPolicy
    # Closing, rejection or a later decision that it is out of scope stops every clock.
    terminal: datetime | None

    @property
    def first(self) -> Routed:
        return self.routes[0]

    @property
    def latest(self) -> Routed:
        return self.routes[-1]

    @property
    def holder(self) -> str | None:
        """Who the answer clock holds to: the assigned agency, else the routing agency."""
        return self.latest.agency if self.latest.assigned else self.policy.routing_agency

    def stop_of(self, *candidates: Iterable[datetime]) -> datetime | None:
        moments = [m for group in candidates for m in group]
        if self.terminal is not None:
            moments.append(self.terminal)
        return _earliest(moments)

    def lapse(self, asked_at: datetime) -> datetime:
        return reply_lapses_at(asked_at, self.policy, self.calendar)


def _timeline(
    complaint_id: str, facts: Iterable[Fact], regions: Mapping[str, RegionRules]
) -> _Timeline | None:
    routes, states = _unique(facts)
    if not routes or routes[0].out_of_scope:
        return None
    rules = regions.get(routes[0].region)
    if rules is None:
        raise LookupError(f"no SLA rules for region {routes[0].region!r}")
    terminal = _earliest(
        [s.at for s in states if s.state in _TERMINAL] + [r.at for r in routes if r.out_of_scope]
    )
    return _Timeline(complaint_id, routes, states, rules.calendar, rules.policy, terminal)


def _routing_run(t: _Timeline) -> Run:
    window = t.policy.window(t.first.priority, SlaClock.ROUTING)
    received_at = t.first.received_at
    return Run(
        clock=SlaClock.ROUTING,
        round=0,
        agency=t.policy.routing_agency,
        priority=t.first.priority,
        unit=window.unit,
        start=t.calendar.local(received_at),
        due=window_end(t.calendar, received_at, window),
        stopped_at=t.stop_of(
            [r.at for r in t.routes if r.assigned],
            [s.at for s in t.states if s.state not in _ROUTING_PENDING],
        ),
    )


def _first_response_runs(t: _Timeline) -> list[Run]:
    """One run per assignment.

    Every hand-over (a forward, a triage decision) puts the complaint back to
    `received` and opens the next routing round: the k-th hand-over ends round
    k-1. Matching by count rather than by time keeps a router clock that runs
    a little behind intake's from ending the new round at once.
    """
    handovers = [s.at for s in t.states if s.state is State.RECEIVED]
    runs: list[Run] = []
    for index, route in enumerate(t.routes):
        if not route.assigned:
            continue
        handover = handovers[route.round] if route.round < len(handovers) else None
        window = t.policy.window(route.priority, SlaClock.FIRST_RESPONSE)
        acted = [s.at for s in t.states if s.at >= route.at and s.state in _FIRST_RESPONSE_STOPS]
        runs.append(
            Run(
                clock=SlaClock.FIRST_RESPONSE,
                round=route.round,
                agency=route.agency,
                priority=route.priority,
                unit=window.unit,
                start=t.calendar.local(route.at),
                due=window_end(t.calendar, route.at, window),
                stopped_at=t.stop_of(
                    [r.at for r in t.routes[index + 1 :]],
                    acted,
                    [handover] if handover is not None else [],
                ),
            )
        )
    return runs


def _answer_round(
    t: _Timeline,
    round_: int,
    start: datetime,
    window: Window,
    states: list[StateChange],
    stop: datetime | None,
) -> tuple[Run, list[Pause], timedelta]:
    """A run of the answer clock from `start`, extended by its waits for the citizen
    among `states`, with those waits and their total."""
    pauses = _pauses(states, stop, t.lapse)
    paused = sum((p.length(stop) for p in pauses), timedelta(0))
    # Still no reply: the last question holds the clock until its window lapses.
    waiting = (
        pauses[-1] if pauses and stop is None and t.states[-1].state is State.NEEDS_INFO else None
    )
    run = Run(
        clock=SlaClock.ANSWER,
        round=round_,
        agency=t.holder,
        priority=t.latest.priority,
        unit=window.unit,
        start=t.calendar.local(start),
        due=t.calendar.local(window_end(t.calendar, start, window) + paused),
        stopped_at=stop,
        paused_since=waiting.started.at if waiting else None,
        resumes_at=waiting.lapses_at if waiting else None,
        pauses=tuple(
            (p.started.at, p.started.at + p.length(stop))
            for p in pauses
            if p.length(stop) > timedelta(0)
        ),
    )
    return run, pauses, paused


def _first_answer(t: _Timeline) -> tuple[Run, list[Pause], timedelta]:
    """Round 0: from receipt to the cap of the first routing decision's priority."""
    stop = t.stop_of([s.at for s in t.states if s.state in ANSWER_STOPS])
    window = t.policy.window(t.first.priority, SlaClock.ANSWER)
    return _answer_round(t, 0, t.first.received_at, window, t.states, stop)


def _reopenings(states: list[StateChange]) -> list[StateChange]:
    return [
        s for s in states if s.state is State.IN_PROGRESS and s.previous_state in _REOPENED_FROM
    ]


def _reopened_answer(t: _Timeline, ordinal: int, reopening: StateChange) -> tuple[Run, list[Pause]]:
    """Answer round `ordinal`: the answer the agency owes after the citizen reopened.
    Closing before the reopening does not stop it."""
    # In the same millisecond, a change out of in_progress can only follow the reopening.
    after = [
        s
        for s in t.states
        if s.at > reopening.at
        or (s.at == reopening.at and s is not reopening and s.previous_state is State.IN_PROGRESS)
    ]
    stop = _earliest(
        [s.at for s in after if s.state in ANSWER_STOPS]
        + [r.at for r in t.routes if r.out_of_scope and r.at > reopening.at]
    )
    window = t.policy.reopen_answer(t.latest.priority)
    run, pauses, _ = _answer_round(t, ordinal, reopening.at, window, after, stop)
    return run, pauses


def _lapse_timers(
    t: _Timeline, pauses: list[Pause], pause_rounds: list[int], answers: list[Run]
) -> list[Timer]:
    """One per wait for the citizen that its reply window ended, while its answer ran."""
    timers: list[Timer] = []
    for ordinal, (pause, round_) in enumerate(zip(pauses, pause_rounds, strict=True), start=1):
        answer = answers[round_]
        if pause.lapsed and answer.running_at(pause.lapses_at):
            timers.append(
                Timer(
                    complaint_id=t.complaint_id,
                    clock=SlaClock.ANSWER,
                    point=REPLY_LAPSED_POINT,
                    round=ordinal,
                    kind=TimerKind.REPLY_LAPSED,
                    due_at=pause.lapses_at,
                    deadline=answer.due,
                    agency=answer.agency,
                    priority=answer.priority,
                )
            )
    return timers


def _auto_close_timers(t: _Timeline) -> list[Timer]:
    """One per response that no later state change came before."""
    timers: list[Timer] = []
    responses = [s for s in t.states if s.state is State.RESPONDED]
    for ordinal, response in enumerate(responses, start=1):
        due = auto_close_at(response.at, t.policy, t.calendar)
        position = t.states.index(response)
        reaction = t.states[position + 1] if position + 1 < len(t.states) else None
        if reaction is None or due < reaction.at:
            timers.append(
                Timer(
                    complaint_id=t.complaint_id,
                    clock=SlaClock.ANSWER,
                    point=AUTO_CLOSE_POINT,
                    round=ordinal,
                    kind=TimerKind.AUTO_CLOSE,
                    due_at=to_ms(due),
                    deadline=due,
                    agency=t.latest.agency,
                    priority=t.latest.priority,
                    responded_at=t.calendar.local(response.at),
                )
            )
    return timers


def build_plan(
    complaint_id: str, facts: Iterable[Fact], regions: Mapping[str, RegionRules]
) -> Plan | None:
    """The complaint's clocks and timers; None while no routing decision is known
    (or when the first decision put it out of scope: it is closed at once)."""
    t = _timeline(complaint_id, facts, regions)
    if t is None:
        return None
    first_answer, pauses, paused = _first_answer(t)
    runs = [_routing_run(t), *_first_response_runs(t), first_answer]
    answers = [first_answer]
    pause_rounds = [0] * len(pauses)
    reopenings = _reopenings(t.states)
    for ordinal, reopening in enumerate(reopenings, start=1):
        run, round_pauses = _reopened_answer(t, ordinal, reopening)
        runs.append(run)
        answers.append(run)
        pauses += round_pauses
        pause_rounds += [ordinal] * len(round_pauses)
    timers = [
        timer for run in runs for timer in run_timers(complaint_id, run, t.policy, t.calendar)
    ]
    timers += _lapse_timers(t, pauses, pause_rounds, answers)
    timers += _auto_close_timers(t)
    latest = t.latest
    first_response = next(
        (
            r
            for r in runs
            if r.clock is SlaClock.FIRST_RESPONSE and latest.assigned and r.round == latest.round
        ),
        None,
    )
    return Plan(
        complaint_id=complaint_id,
        region=t.first.region,
        received_at=t.calendar.local(t.first.received_at),
        agency=latest.agency if latest.assigned else None,
        priority=latest.priority,
        state=_current_state(t),
        latest_round=latest.round,
        deadlines=Deadlines(
            routing=runs[0].due,
            first_response=first_response.due if first_response else None,
            answer=answers[-1].due,
            first_answer=answers[0].due,
        ),
        runs=tuple(runs),
        timers=tuple(sorted(timers, key=lambda timer: (timer.due_at, timer.id))),
        pauses=tuple(pauses),
        paused=paused,
        latest_route=latest,
        official=assigned_official(t.states, latest),
        pause_rounds=tuple(pause_rounds),
        reopenings=tuple(reopenings),
    )


def _current_state(t: _Timeline) -> State:
    # The move to assigned or triage that a routing decision causes is not kept as a
    # fact (ComplaintStateChanged.follows_routing): a decision after the last state
    # change stands for it. Intake dates that move with the decision's own time.
    if t.states and t.states[-1].at >= t.latest.at:
        return t.states[-1].state
    return State.TRIAGE if t.latest.triage else State.ASSIGNED


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
