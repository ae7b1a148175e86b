"""What SLA announces from a plan: new deadlines (`DeadlinesSet`) and reply windows.

The ids are deterministic, so a redelivered event or a repeated sweep announces
the same thing under the same id and JetStream keeps it once.
"""

from datetime import datetime, timedelta

from lapor.contracts import AutoCloseDue, ComplaintStateChanged, DeadlinesSet, SlaClock, State
from services.sla.clocks import Plan, Timer
from services.sla.domain import reopen_until
from services.sla.facts import Fact, Routed
from services.sla.plan import ANSWER_STOPS, RegionRules

# The states after which the citizen may reopen, each time for a new window.
REPLY_WINDOW_STATES = frozenset({State.RESPONDED, State.CLOSED})


def _deadlines_set(
    plan: Plan,
    occurred_at: datetime,
    cause: str,
    state: State,
    agency: str | None,
    *,
    event_id: str | None = None,
    reopened: bool = False,
) -> DeadlinesSet:
    """The plan's deadlines as told after `cause` (by default under `deadlines:<cause>`)."""
    answer = plan.answer_run()
    return DeadlinesSet(
        event_id=event_id or f"deadlines:{cause}",
        occurred_at=occurred_at,
        complaint_id=plan.complaint_id,
        region=plan.region,
        agency=agency,
        priority=plan.priority,
        state=state,
        received_at=plan.received_at,
        deadlines=plan.deadlines,
        cause_event_id=cause,
        answer_round=answer.round if answer is not None else 0,
        reopened=reopened,
    )


def deadline_announcements(plan: Plan, fact: Fact, occurred_at: datetime) -> list[DeadlinesSet]:
    """The `DeadlinesSet` events that `fact` calls for, under deterministic ids.

    - the latest routing decision announces the deadlines (an older round is stale);
    - the latest reopening announces the deadline of its new answer round;
    - the end of a pause (leaving needs_info, not by answering or closing) announces
      the answer deadline moved by the time waited; the id follows the state change
      that ended the pause, so intake records it once and notify tells the citizen.

    A pause that ends by its reply window lapsing has no fact to hang on: the
    sweep announces it when its timer fires (`lapse_announcement`).
    """
    if isinstance(fact, Routed):
        if fact.event_id != plan.latest_route.event_id or fact.out_of_scope:
            return []
        state = State.TRIAGE if fact.triage else State.ASSIGNED
        first = _deadlines_set(plan, occurred_at, fact.event_id, state, fact.agency)
        routing = {"category": fact.category, "routing_confidence": fact.confidence}
        return [first.model_copy(update=routing)]
    latest_answer = plan.answer_run()
    current_round = latest_answer.round if latest_answer is not None else 0
    announced: list[DeadlinesSet] = []
    for ordinal, reopening in enumerate(plan.reopenings, start=1):
        # Only the latest round's deadlines are the ones to tell; an older
        # reopening arriving late has been overtaken.
        if fact.event_id == reopening.event_id and ordinal == current_round:
            announced.append(
                _deadlines_set(
                    plan, occurred_at, fact.event_id, State.IN_PROGRESS, plan.agency, reopened=True
                )
            )
    for pause, round_ in zip(plan.pauses, plan.pause_rounds, strict=True):
        ended = pause.ended
        if ended is None or fact.event_id not in (pause.started.event_id, ended.event_id):
            continue
        if ended.state in ANSWER_STOPS or pause.length(None) <= timedelta(0):
            continue
        answer = plan.run(SlaClock.ANSWER, round_)
        if answer is None or round_ != current_round or not answer.running_at(ended.at):
            continue
        announced.append(
            _deadlines_set(plan, occurred_at, ended.event_id, ended.state, plan.agency)
        )
    return announced


def lapse_announcement(plan: Plan, timer: Timer, occurred_at: datetime) -> DeadlinesSet:
    """The answer deadline fixed by a reply window that lapsed without a reply.

    Announced like the end of a pause by a reply, so that intake records the
    date and notify tells the citizen; the state is still needs_info.
    """
    pause = plan.pauses[timer.round - 1]
    return _deadlines_set(
        plan,
        occurred_at,
        pause.started.event_id,
        State.NEEDS_INFO,
        plan.agency,
        event_id=f"deadlines:{timer.id}",
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
