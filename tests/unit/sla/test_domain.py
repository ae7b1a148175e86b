"""Pure SLA rules of services/sla/domain.py on the Banjar calendar and policy."""

import re
from datetime import UTC, date, datetime, time, timedelta, timezone
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from lapor.calendar import WorkingCalendar, load_calendar
from lapor.contracts import Deadlines, EscalationLevel, Priority, SlaClock
from services.sla.domain import (
    TimerPoint,
    auto_close_at,
    compute_deadlines,
    deadline_timers,
    escalation_schedule,
    extend_for_pause,
    reopen_until,
    timer_schedule,
)
from services.sla.policy import SlaPolicy, load_policy, parse_policy

REPO = Path(__file__).resolve().parents[3]
BANJAR_DIR = REPO / "data" / "regions" / "banjar"
WITA = ZoneInfo("Asia/Makassar")
THRESHOLDS = (0.5, 0.8, 1.0)


def wita(year: int, month: int, day: int, hour: int = 0, minute: int = 0) -> datetime:
    return datetime(year, month, day, hour, minute, tzinfo=WITA)


def end_of(day: date) -> datetime:
    return datetime.combine(day, time(23, 59, 59), tzinfo=WITA)


@pytest.fixture(scope="module")
def calendar() -> WorkingCalendar:
    return load_calendar(BANJAR_DIR)


@pytest.fixture(scope="module")
def policy() -> SlaPolicy:
    return load_policy(BANJAR_DIR)


# -- compute_deadlines -----------------------------------------------------------


def test_normal_deadlines_across_lebaran(policy: SlaPolicy, calendar: WorkingCalendar) -> None:
    deadlines = compute_deadlines(
        policy,
        calendar,
        Priority.NORMAL,
        received_at=wita(2026, 3, 17, 10, 0),
        assigned_at=wita(2026, 3, 25, 9, 0),
    )
    assert deadlines == Deadlines(
        routing=end_of(date(2026, 3, 27)),  # 25, 26, 27 after the Lebaran week
        first_response=end_of(date(2026, 4, 1)),  # 26, 27, 30, 31 Mar, 1 Apr
        answer=end_of(date(2026, 3, 31)),  # 14 calendar days, holidays included
    )


def test_first_response_waits_for_an_assignment(
    policy: SlaPolicy, calendar: WorkingCalendar
) -> None:
    deadlines = compute_deadlines(
        policy, calendar, Priority.NORMAL, wita(2026, 1, 12, 10, 0), assigned_at=None
    )
    assert deadlines.first_response is None
    assert deadlines.routing == end_of(date(2026, 1, 15))
    assert deadlines.answer == end_of(date(2026, 1, 26))


def test_rerouting_moves_first_response_but_never_the_answer_cap(
    policy: SlaPolicy, calendar: WorkingCalendar
) -> None:
    received = wita(2026, 1, 12, 10, 0)
    first = compute_deadlines(policy, calendar, Priority.NORMAL, received, wita(2026, 1, 13, 9, 0))
    rerouted = compute_deadlines(
        policy, calendar, Priority.NORMAL, received, wita(2026, 1, 20, 14, 0)
    )
    assert rerouted.answer == first.answer == end_of(date(2026, 1, 26))
    # 14, 15, (16 Isra Mikraj), 19, 20, 21.
    assert first.first_response == end_of(date(2026, 1, 21))
    assert rerouted.first_response == end_of(date(2026, 1, 27))


def test_pause_extends_only_the_answer_cap(policy: SlaPolicy, calendar: WorkingCalendar) -> None:
    received, assigned = wita(2026, 1, 12, 10, 0), wita(2026, 1, 13, 9, 0)
    paused = timedelta(days=2, hours=5)
    plain = compute_deadlines(policy, calendar, Priority.NORMAL, received, assigned)
    extended = compute_deadlines(policy, calendar, Priority.NORMAL, received, assigned, paused)
    assert plain.answer is not None
    assert extended.answer == plain.answer + paused
    assert extended.routing == plain.routing
    assert extended.first_response == plain.first_response
    assert extend_for_pause(plain, paused) == extended
    assert extend_for_pause(plain, timedelta(0)) == plain
    assert extend_for_pause(Deadlines(), paused) == Deadlines()
    with pytest.raises(ValueError, match="negative"):
        extend_for_pause(plain, timedelta(hours=-1))


def test_urgent_clock_hours_ignore_holidays_and_nights(
    policy: SlaPolicy, calendar: WorkingCalendar
) -> None:
    # 23:30 WITA on a cuti bersama day, the eve of Idul Fitri.
    deadlines = compute_deadlines(
        policy,
        calendar,
        Priority.URGENT,
        received_at=wita(2026, 3, 20, 23, 30),
        assigned_at=wita(2026, 3, 21, 1, 0),
    )
    assert deadlines.routing == wita(2026, 3, 21, 3, 30)
    assert deadlines.first_response == wita(2026, 3, 22, 1, 0)
    assert deadlines.answer == end_of(date(2026, 3, 23))


def test_high_priority(policy: SlaPolicy, calendar: WorkingCalendar) -> None:
    # Friday after hours.
    deadlines = compute_deadlines(
        policy,
        calendar,
        Priority.HIGH,
        received_at=wita(2026, 1, 9, 17, 0),
        assigned_at=wita(2026, 1, 12, 9, 0),
    )
    assert deadlines.routing == end_of(date(2026, 1, 12))
    assert deadlines.first_response == end_of(date(2026, 1, 14))
    assert deadlines.answer == end_of(date(2026, 1, 16))


def test_input_zone_does_not_change_deadlines(policy: SlaPolicy, calendar: WorkingCalendar) -> None:
    received = wita(2025, 12, 31, 7, 45)
    assigned = wita(2026, 1, 2, 15, 0)
    as_utc = compute_deadlines(
        policy, calendar, Priority.NORMAL, received.astimezone(UTC), assigned.astimezone(UTC)
    )
    wib = timezone(timedelta(hours=7))
    as_wib = compute_deadlines(
        policy, calendar, Priority.NORMAL, received.astimezone(wib), assigned.astimezone(wib)
    )
    as_wita = compute_deadlines(policy, calendar, Priority.NORMAL, received, assigned)
    assert as_utc == as_wib == as_wita
    assert as_wita.routing == end_of(date(2026, 1, 5))  # 31 Dec counts: before opening
    for moment in (as_utc.routing, as_utc.first_response, as_utc.answer):
        assert moment is not None
        assert moment.utcoffset() == timedelta(hours=8)


def test_a_region_override_is_used(calendar: WorkingCalendar) -> None:
    stricter = parse_policy({"priorities": {"normal": {"answer": {"amount": 10}}}})
    deadlines = compute_deadlines(
        stricter, calendar, Priority.NORMAL, wita(2026, 1, 12, 10, 0), None
    )
    assert deadlines.answer == end_of(date(2026, 1, 22))


# -- timers ------------------------------------------------------------------------


def test_clock_hour_timer_points() -> None:
    start = wita(2026, 3, 20, 10, 0)
    points = timer_schedule(SlaClock.FIRST_RESPONSE, start, start + timedelta(hours=24), THRESHOLDS)
    assert [(p.label, p.due_at) for p in points] == [
        ("warn50", wita(2026, 3, 20, 22, 0)),
        ("warn80", wita(2026, 3, 21, 5, 12)),
        ("breach", wita(2026, 3, 21, 10, 0)),
    ]
    assert [p.key for p in points] == [
        "first_response:warn50",
        "first_response:warn80",
        "first_response:breach",
    ]


def test_working_day_timer_points_are_in_office_time(calendar: WorkingCalendar) -> None:
    # Monday 10:00; day 1 is Tuesday, due end of Thursday: 24 office hours.
    start = wita(2026, 1, 12, 10, 0)
    due = calendar.add_working_days(start, 3)
    points = timer_schedule(SlaClock.ROUTING, start, due, [0.5, 0.8], calendar=calendar)
    assert [(p.label, p.due_at) for p in points] == [
        ("warn50", wita(2026, 1, 14, 12, 0)),
        ("warn80", wita(2026, 1, 15, 11, 12)),
        ("breach", end_of(date(2026, 1, 15))),
    ]


def test_a_warning_at_closing_time_moves_to_the_next_opening(calendar: WorkingCalendar) -> None:
    start = wita(2026, 1, 12, 10, 0)
    due = calendar.add_working_days(start, 2)
    points = timer_schedule(SlaClock.ROUTING, start, due, THRESHOLDS, calendar=calendar)
    assert points[0].due_at == wita(2026, 1, 14, 8, 0)


def test_working_day_timer_points_skip_lebaran(calendar: WorkingCalendar) -> None:
    start = wita(2026, 3, 17, 10, 0)
    due = calendar.add_working_days(start, 3)
    points = timer_schedule(SlaClock.ROUTING, start, due, THRESHOLDS, calendar=calendar)
    assert [p.due_at for p in points] == [
        wita(2026, 3, 26, 12, 0),
        wita(2026, 3, 27, 11, 12),
        end_of(date(2026, 3, 27)),
    ]


def test_invalid_timer_windows_are_refused() -> None:
    start = wita(2026, 1, 12, 10, 0)
    with pytest.raises(ValueError, match="not after"):
        timer_schedule(SlaClock.ANSWER, start, start, THRESHOLDS)
    with pytest.raises(ValueError, match="aware"):
        timer_schedule(SlaClock.ANSWER, start.replace(tzinfo=None), start, THRESHOLDS)
    with pytest.raises(ValueError, match="fractions"):
        timer_schedule(SlaClock.ANSWER, start, start + timedelta(hours=1), [1.5])


def test_deadline_timers_cover_every_set_deadline(
    policy: SlaPolicy, calendar: WorkingCalendar
) -> None:
    received = wita(2026, 1, 12, 10, 0)
    unassigned = compute_deadlines(policy, calendar, Priority.NORMAL, received, None)
    points = deadline_timers(policy, calendar, Priority.NORMAL, unassigned, received)
    assert {p.clock for p in points} == {SlaClock.ROUTING, SlaClock.ANSWER}
    assert len(points) == 6
    assert [p.due_at for p in points] == sorted(p.due_at for p in points)
    routing = [p.due_at for p in points if p.clock is SlaClock.ROUTING]
    assert routing[0] == wita(2026, 1, 14, 12, 0)  # office time: working-day window
    answer = [p.due_at for p in points if p.clock is SlaClock.ANSWER]
    # Half of 14 days 13:59:59 of elapsed time, to the whole second.
    assert answer[0] == wita(2026, 1, 19, 17, 0)

    assigned = wita(2026, 1, 13, 9, 0)
    full = compute_deadlines(policy, calendar, Priority.NORMAL, received, assigned)
    points = deadline_timers(policy, calendar, Priority.NORMAL, full, received, assigned)
    assert len(points) == 9
    with pytest.raises(ValueError, match="first_response"):
        deadline_timers(policy, calendar, Priority.NORMAL, full, received)


STARTS = st.datetimes(
    min_value=datetime(2024, 6, 1),
    max_value=datetime(2027, 11, 30),
    timezones=st.sampled_from([UTC, WITA, timezone(timedelta(hours=7))]),
)


@settings(max_examples=150, deadline=None)
@given(
    received=STARTS,
    delay=st.timedeltas(min_value=timedelta(0), max_value=timedelta(days=20)),
    priority=st.sampled_from(list(Priority)),
    paused=st.timedeltas(min_value=timedelta(0), max_value=timedelta(days=10)),
)
def test_timer_points_are_ordered_and_inside_their_window(
    policy: SlaPolicy,
    calendar: WorkingCalendar,
    received: datetime,
    delay: timedelta,
    priority: Priority,
    paused: timedelta,
) -> None:
    assigned = received + delay
    deadlines = compute_deadlines(policy, calendar, priority, received, assigned, paused)
    starts = {
        SlaClock.ROUTING: received,
        SlaClock.FIRST_RESPONSE: assigned,
        SlaClock.ANSWER: received,
    }
    points = deadline_timers(policy, calendar, priority, deadlines, received, assigned)
    for clock, start in starts.items():
        own: list[TimerPoint] = [p for p in points if p.clock is clock]
        assert [p.label for p in own] == ["warn50", "warn80", "breach"]
        times = [p.due_at for p in own]
        assert start < times[0] < times[1] < times[2]
        assert times[2] == getattr(deadlines, clock.value)
    assert deadlines.answer is not None
    assert deadlines.answer >= calendar.add_calendar_days(received, 3) + paused


# -- escalation, auto-close, reopen --------------------------------------------------


def test_escalation_follows_the_chain_in_working_days(
    policy: SlaPolicy, calendar: WorkingCalendar
) -> None:
    # Breach at the end of Thursday; Friday 16 January 2026 is Isra Mikraj.
    breach = end_of(date(2026, 1, 15))
    schedule = escalation_schedule(breach, policy, calendar)
    assert schedule == [
        (EscalationLevel.LIAISON, breach),
        (EscalationLevel.HEAD, end_of(date(2026, 1, 20))),  # 19, 20
        (EscalationLevel.SEKDA, end_of(date(2026, 1, 23))),  # 19 .. 23
        (EscalationLevel.OMBUDSMAN, end_of(date(2026, 1, 30))),  # 19 .. 30
    ]


def test_urgent_escalation_runs_on_clock_hours(
    policy: SlaPolicy, calendar: WorkingCalendar
) -> None:
    breach = wita(2026, 3, 21, 1, 0)  # Idul Fitri, at night
    schedule = escalation_schedule(breach, policy, calendar, Priority.URGENT)
    assert schedule == [
        (EscalationLevel.LIAISON, breach),
        (EscalationLevel.HEAD, wita(2026, 3, 21, 3, 0)),
        (EscalationLevel.SEKDA, wita(2026, 3, 21, 7, 0)),
        (EscalationLevel.OMBUDSMAN, wita(2026, 3, 22, 1, 0)),
    ]


@pytest.mark.parametrize("priority", list(Priority))
def test_escalation_is_ordered_for_every_priority(
    policy: SlaPolicy, calendar: WorkingCalendar, priority: Priority
) -> None:
    breach = datetime(2026, 3, 19, 15, 30, tzinfo=UTC)
    schedule = escalation_schedule(breach, policy, calendar, priority)
    assert tuple(level for level, _ in schedule) == tuple(EscalationLevel)
    times = [at for _, at in schedule]
    assert times == sorted(times)
    assert times[0] == breach


def test_auto_close_after_ten_working_days(policy: SlaPolicy, calendar: WorkingCalendar) -> None:
    # 16, 17, (Lebaran week), 25, 26, 27, 30, 31 Mar, 1, 2, (Good Friday), 6 Apr.
    responded = wita(2026, 3, 13, 15, 0)
    assert auto_close_at(responded, policy, calendar) == end_of(date(2026, 4, 6))
    assert reopen_until(responded, policy, calendar) == end_of(date(2026, 4, 6))


def test_clock_minutes_count_elapsed_minutes(calendar: WorkingCalendar) -> None:
    policy = parse_policy(
        {"version": 1, "auto_close": {"no_reply_after": {"unit": "clock_minutes", "amount": 90}}}
    )
    # Good Friday night: minutes, like hours, ignore holidays and office time.
    responded = wita(2026, 4, 3, 23, 0)
    assert auto_close_at(responded, policy, calendar) == wita(2026, 4, 4, 0, 30)


def test_no_reading_of_the_current_time() -> None:
    pattern = re.compile(r"\.(now|today|utcnow)\(|time\.time\(|monotonic\(")
    sla = REPO / "services" / "sla"
    for path in (REPO / "lapor" / "calendar.py", sla / "policy.py", sla / "domain.py"):
        source = path.read_text(encoding="utf-8")
        assert not pattern.search(source), path.name
