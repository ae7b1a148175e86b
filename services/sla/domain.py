"""Pure SLA rules: a complaint's deadlines, its warning and breach points, escalation, auto-close.

No I/O and no clock: every instant is passed in. Inputs are aware datetimes in
any zone; results are in the region's zone (see calendar.py for how working
days, calendar days and clock hours are counted).

Deadlines
    routing counts from receipt, first_response from the latest assignment,
    answer from receipt. The answer deadline is the cap the citizen is told:
    it depends only on receipt and priority, so re-routing never moves it.
    Time spent in `needs_info` (waiting for the citizen's own reply) extends
    it by exactly that time, but by no more than `needs_info.reply_window`
    from the question (`reply_lapses_at`): an unanswered question must not hold
    the agency's clock for ever. The other clocks are not extended: routing
    happens before the agency, and an agency's question to the citizen is
    itself its first response.

Warning points
    A threshold f (0.5, 0.8) of a window from `start` to `due`:
    - clock_hours and calendar_days: start + f x (due - start), elapsed time;
    - working_days: f of the office time in the window, counted from the
      opening of day 1 (the first counted working day) up to `due`. With
      08:00-16:00 offices, 3 working days hold 24 office hours: the 50%
      warning is after 12 of them, 12:00 on day 2; the 80% warning after
      19.2 of them, 11:12 on day 3. A point that falls exactly on closing
      time moves to the next opening, when someone reads it.
    The breach point is always `due` itself (100%).

Escalation
    Each level's delay is counted from the breach, in the chain's unit; a
    delay of 0 means at the breach. Working-day delays follow the working-day
    rule: 2 working days after a breach at 23:59:59 on a Thursday is the end
    of the following Monday.

Auto-close and reopen
    `auto_close_at` is the response time plus `auto_close.no_reply_after`;
    `reopen_until` is the moment (response or closing, whichever was later)
    plus `reopen.reply_window`.
"""

from collections.abc import Iterable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from lapor.calendar import WorkingCalendar
from lapor.contracts import Deadlines, EscalationLevel, Priority, SlaClock
from services.sla.policy import SlaPolicy, Unit, Window

__all__ = [
    "TimerPoint",
    "auto_close_at",
    "compute_deadlines",
    "deadline_timers",
    "escalation_schedule",
    "extend_for_pause",
    "reopen_until",
    "reply_lapses_at",
    "shift",
    "timer_schedule",
    "window_end",
]

BREACH = "breach"
_NO_PAUSE = timedelta(0)
_CLOCK_ORDER = {clock: index for index, clock in enumerate(SlaClock)}


@dataclass(frozen=True, slots=True)
class TimerPoint:
    """One moment at which the sla service must act on a clock."""

    clock: SlaClock
    label: str  # "warn50", "warn80" or "breach"
    fraction: float
    due_at: datetime

    @property
    def key(self) -> str:
        # Stable per complaint and clock, so a re-scheduled timer replaces its
        # predecessor instead of firing twice.
        return f"{self.clock.value}:{self.label}"


def shift(calendar: WorkingCalendar, start: datetime, unit: Unit, amount: int) -> datetime:
    """`start` moved by `amount` of `unit`; 0 means `start` itself (in local time)."""
    if amount < 0:
        raise ValueError(f"amount must not be negative, got {amount}")
    if amount == 0:
        return calendar.local(start)
    if unit is Unit.WORKING_DAYS:
        return calendar.add_working_days(start, amount)
    if unit is Unit.CALENDAR_DAYS:
        return calendar.add_calendar_days(start, amount)
    if unit is Unit.CLOCK_MINUTES:
        return calendar.add_clock_hours(start, amount / 60)
    return calendar.add_clock_hours(start, amount)


def window_end(calendar: WorkingCalendar, start: datetime, window: Window) -> datetime:
    return shift(calendar, start, window.unit, window.amount)


def extend_for_pause(deadlines: Deadlines, paused: timedelta) -> Deadlines:
    """Deadlines with the answer cap moved by the time spent waiting for the citizen."""
    if paused < _NO_PAUSE:
        raise ValueError(f"paused time must not be negative, got {paused}")
    if deadlines.answer is None or paused == _NO_PAUSE:
        return deadlines
    return deadlines.model_copy(update={"answer": deadlines.answer + paused})


def compute_deadlines(
    policy: SlaPolicy,
    calendar: WorkingCalendar,
    priority: Priority,
    received_at: datetime,
    assigned_at: datetime | None,
    paused: timedelta = _NO_PAUSE,
) -> Deadlines:
    """All deadlines of a complaint; first_response only once it is assigned."""
    rules = policy.priorities[priority]
    deadlines = Deadlines(
        routing=window_end(calendar, received_at, rules.routing),
        first_response=(
            None if assigned_at is None else window_end(calendar, assigned_at, rules.first_response)
        ),
        answer=window_end(calendar, received_at, rules.answer),
    )
    return extend_for_pause(deadlines, paused)


def _label(fraction: float) -> str:
    return BREACH if fraction == 1.0 else f"warn{round(fraction * 100)}"


def _point_at(
    start: datetime, due: datetime, fraction: float, calendar: WorkingCalendar | None
) -> datetime:
    if fraction == 1.0:
        return due
    if calendar is not None:
        origin = calendar.counting_start(start)
        office = calendar.office_time_between(origin, due)
        if office > _NO_PAUSE:
            return calendar.add_office_time(origin, office * fraction)
    # In UTC, because aware arithmetic within one zone is wall-clock
    # arithmetic; whole seconds keep the times in notices readable.
    start_utc, due_utc = start.astimezone(UTC), due.astimezone(UTC)
    elapsed = timedelta(seconds=round((due_utc - start_utc).total_seconds() * fraction))
    return (start_utc + elapsed).astimezone(due.tzinfo)


def timer_schedule(
    clock: SlaClock,
    start: datetime,
    due: datetime,
    thresholds: Iterable[float],
    *,
    calendar: WorkingCalendar | None = None,
) -> list[TimerPoint]:
    """Warning points and the breach of one clock, in time order.

    Pass `calendar` for a working-day window: the fractions are then of office
    time (module docstring); without it they are of elapsed time. The breach
    (1.0) is always included, at `due`.
    """
    if start.tzinfo is None or due.tzinfo is None:
        raise ValueError("start and due must be aware datetimes")
    if due <= start:
        raise ValueError(f"due {due} is not after start {start}")
    fractions = sorted({*thresholds, 1.0})
    if any(not 0 < f <= 1 for f in fractions):
        raise ValueError(f"thresholds are fractions in (0, 1]: {fractions}")
    points = [
        TimerPoint(clock, _label(f), f, _point_at(start, due, f, calendar)) for f in fractions
    ]
    if len({p.label for p in points}) != len(points):
        raise ValueError(f"thresholds must differ by at least one percent: {fractions}")
    return points


def deadline_timers(
    policy: SlaPolicy,
    calendar: WorkingCalendar,
    priority: Priority,
    deadlines: Deadlines,
    received_at: datetime,
    assigned_at: datetime | None = None,
) -> list[TimerPoint]:
    """Every warning and breach point of the given deadlines, in time order."""
    starts = {SlaClock.ROUTING: received_at, SlaClock.ANSWER: received_at}
    if assigned_at is not None:
        starts[SlaClock.FIRST_RESPONSE] = assigned_at
    points: list[TimerPoint] = []
    for clock in SlaClock:
        due: datetime | None = getattr(deadlines, clock.value)
        if due is None:
            continue
        if clock not in starts:
            raise ValueError(f"{clock.value} deadline given without its start")
        working = policy.window(priority, clock).unit is Unit.WORKING_DAYS
        points += timer_schedule(
            clock,
            starts[clock],
            due,
            policy.thresholds,
            calendar=calendar if working else None,
        )
    return sorted(points, key=lambda p: (p.due_at, _CLOCK_ORDER[p.clock], p.fraction))


def escalation_schedule(
    breach_at: datetime,
    policy: SlaPolicy,
    calendar: WorkingCalendar,
    priority: Priority = Priority.NORMAL,
) -> list[tuple[EscalationLevel, datetime]]:
    """Who is notified when, after a breach at `breach_at`, in chain order."""
    chain = policy.escalation_for(priority)
    return [
        (level, shift(calendar, breach_at, chain.unit, delay))
        for level, delay in chain.levels.items()
    ]


def auto_close_at(responded_at: datetime, policy: SlaPolicy, calendar: WorkingCalendar) -> datetime:
    """When a response without any reaction from the citizen closes as no_reply."""
    return window_end(calendar, responded_at, policy.auto_close.no_reply_after)


def reopen_until(since: datetime, policy: SlaPolicy, calendar: WorkingCalendar) -> datetime:
    """Until when the citizen may reopen, counted from the response or closing."""
    return window_end(calendar, since, policy.reopen.reply_window)


def reply_lapses_at(asked_at: datetime, policy: SlaPolicy, calendar: WorkingCalendar) -> datetime:
    """When an agency's question left unanswered stops holding the answer clock."""
    return window_end(calendar, asked_at, policy.needs_info.reply_window)
