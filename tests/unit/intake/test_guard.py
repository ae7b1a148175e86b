"""Rate-limit notices: a sender over a limit is told at most once per window."""

from __future__ import annotations

from collections.abc import Iterable
from datetime import UTC, datetime, timedelta
from itertools import pairwise

import pytest

from services.intake.guard import RateLimit, windows

HOUR, DAY = timedelta(hours=1), timedelta(days=1)
START = datetime(2026, 3, 2, 0, 0, tzinfo=UTC)


def simulate(limit: RateLimit, sent: Iterable[datetime]) -> tuple[list[datetime], list[datetime]]:
    """Intake's decision for each message of one sender, in order: the times of the
    notices sent and of the messages that were over a limit."""
    claimed: set[str] = set()
    seen: list[datetime] = []
    notices: list[datetime] = []
    limited: list[datetime] = []
    for at in sent:
        seen.append(at)  # every message counts, the refused ones too
        hour_ago, day_ago = windows(at)
        last_hour = sum(1 for t in seen if t >= hour_ago)
        last_day = sum(1 for t in seen if t >= day_ago)
        if not limit.exceeded(last_hour, last_day):
            continue
        limited.append(at)
        granted = True
        for key in RateLimit.notice_keys("h" * 32, at, daily=limit.over_daily(last_day)):
            if key in claimed:
                granted = False
                break
            claimed.add(key)
        if granted:
            notices.append(at)
    return notices, limited


def every(step: timedelta, until: timedelta, start: datetime = START) -> list[datetime]:
    return [start + step * n for n in range(int(until / step))]


def most_in_any_window(times: list[datetime], window: timedelta) -> int:
    return max((sum(1 for t in times if s <= t < s + window) for s in times), default=0)


def test_a_sender_over_the_daily_limit_all_day_is_told_about_it_once() -> None:
    # Every 7 minutes stays under 10 per hour: only the daily limit bites.
    notices, limited = simulate(
        RateLimit(per_hour=10, per_day=30), every(timedelta(minutes=7), 2 * DAY)
    )
    assert len(limited) > 100
    assert most_in_any_window(notices, DAY) == 1
    assert len(notices) == 1  # the old hourly key gave one per clock hour: about forty


def test_a_flood_gets_one_notice_per_hour_and_one_per_day_at_most() -> None:
    notices, limited = simulate(
        RateLimit(per_hour=10, per_day=30), every(timedelta(minutes=1), 3 * DAY)
    )
    assert len(limited) > 4000
    assert most_in_any_window(notices, HOUR) == 1
    assert most_in_any_window(notices, DAY) <= 2  # the hourly notice, then the daily one
    assert 2 <= len(notices) <= 5


@pytest.mark.parametrize(
    "offset", [timedelta(0), timedelta(minutes=58), timedelta(hours=23, minutes=58)]
)
def test_notices_never_come_closer_than_their_window_across_slot_edges(offset: timedelta) -> None:
    # A burst that goes over the limit just before a clock hour (or a day) turns.
    burst = every(timedelta(seconds=20), 5 * HOUR, start=START + offset)
    notices, _ = simulate(RateLimit(per_hour=5, per_day=1000), burst)
    assert len(notices) >= 2
    assert all(b - a > HOUR for a, b in pairwise(notices))


def test_within_the_limits_nothing_is_claimed() -> None:
    notices, limited = simulate(RateLimit(per_hour=10, per_day=30), every(HOUR, DAY))
    assert notices == [] and limited == []


def test_keys_are_per_sender_and_name_the_window_kind() -> None:
    at = START + timedelta(hours=5, minutes=3)
    hourly = RateLimit.notice_keys("a" * 32, at, daily=False)
    daily = RateLimit.notice_keys("a" * 32, at, daily=True)
    assert len(hourly) == 2 and set(hourly) < set(daily) and len(daily) == 4
    assert not set(daily) & set(RateLimit.notice_keys("b" * 32, at, daily=True))
