"""Working days and deadline arithmetic of lapor/calendar.py."""

from datetime import UTC, date, datetime, time, timedelta, timezone
from pathlib import Path
from zoneinfo import ZoneInfo

import holidays
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from lapor.calendar import (
    CalendarError,
    WorkingCalendar,
    load_calendar,
    load_days_off,
)

BANJAR_DIR = Path(__file__).resolve().parents[3] / "data" / "regions" / "banjar"
WITA = ZoneInfo("Asia/Makassar")
WIB = timezone(timedelta(hours=7))


def wita(year: int, month: int, day: int, hour: int = 0, minute: int = 0) -> datetime:
    return datetime(year, month, day, hour, minute, tzinfo=WITA)


def end_of(day: date) -> datetime:
    return datetime.combine(day, time(23, 59, 59), tzinfo=WITA)


@pytest.fixture(scope="module")
def banjar() -> WorkingCalendar:
    return load_calendar(BANJAR_DIR)


@pytest.fixture(scope="module")
def national_only() -> WorkingCalendar:
    return WorkingCalendar("Asia/Makassar")


# -- working days ------------------------------------------------------------


def test_weekends_are_not_working_days(banjar: WorkingCalendar) -> None:
    assert banjar.is_working_day(date(2026, 1, 9))  # Friday
    assert not banjar.is_working_day(date(2026, 1, 10))
    assert not banjar.is_working_day(date(2026, 1, 11))
    assert banjar.is_working_day(date(2026, 1, 12))  # Monday
    assert banjar.day_off_reason(date(2026, 1, 10)) == "Sabtu"
    assert banjar.day_off_reason(date(2026, 1, 11)) == "Minggu"


def test_national_holidays_of_2026_lebaran_come_from_the_package() -> None:
    national = holidays.country_holidays("ID", years=2026)
    assert date(2026, 3, 19) in national  # Nyepi
    assert date(2026, 3, 21) in national  # Idul Fitri
    assert date(2026, 3, 22) in national
    # Cuti bersama is not a public holiday: it comes from days_off.yaml.
    assert date(2026, 3, 20) not in national
    assert date(2026, 3, 23) not in national


def test_lebaran_week_2026_has_no_working_day(
    banjar: WorkingCalendar, national_only: WorkingCalendar
) -> None:
    week = [date(2026, 3, 18) + timedelta(days=i) for i in range(7)]  # Wed 18 .. Tue 24
    assert [banjar.is_working_day(d) for d in week] == [False] * 7
    # Without the region's file only the national holidays and the weekend are off.
    assert [national_only.is_working_day(d) for d in week] == [
        True,  # 18 cuti bersama Nyepi
        False,  # 19 Nyepi
        True,  # 20 cuti bersama
        False,  # 21 Idul Fitri (Saturday)
        False,  # 22 Idul Fitri (Sunday)
        True,  # 23 cuti bersama
        True,  # 24 cuti bersama
    ]
    assert banjar.is_working_day(date(2026, 3, 17))
    assert banjar.is_working_day(date(2026, 3, 25))


def test_day_off_reasons_name_the_holiday(banjar: WorkingCalendar) -> None:
    assert banjar.day_off_reason(date(2026, 3, 21)) == "Hari Raya Idul Fitri"
    assert banjar.day_off_reason(date(2026, 3, 23)) == "Cuti bersama Idul Fitri 1447 H"
    assert banjar.day_off_reason(date(2026, 3, 25)) is None


def test_an_aware_datetime_is_judged_by_its_local_date(banjar: WorkingCalendar) -> None:
    # Friday 17:00 UTC is already Saturday 01:00 in WITA.
    assert not banjar.is_working_day(datetime(2026, 1, 9, 17, 0, tzinfo=UTC))
    assert banjar.is_working_day(datetime(2026, 1, 9, 15, 0, tzinfo=UTC))


def test_days_off_file_matches_published_cuti_bersama(banjar: WorkingCalendar) -> None:
    days_off, working_days = load_days_off(BANJAR_DIR / "days_off.yaml")
    published = holidays.country_holidays("ID", years=[2025, 2026, 2027], categories="government")
    assert set(published) == set(days_off)
    assert working_days == {}
    assert all(not banjar.is_working_day(day) for day in days_off)


def test_a_listed_working_day_overrides_the_national_list() -> None:
    moved = WorkingCalendar("Asia/Makassar", extra_working_days={date(2026, 3, 19): "pindah"})
    assert moved.is_working_day(date(2026, 3, 19))


def test_holidays_are_known_for_years_far_ahead(banjar: WorkingCalendar) -> None:
    assert not banjar.is_working_day(date(2031, 1, 1))
    assert not banjar.is_working_day(date(2031, 8, 17))


# -- add_working_days --------------------------------------------------------


def test_receipt_day_is_not_counted(banjar: WorkingCalendar) -> None:
    assert banjar.add_working_days(wita(2026, 1, 12, 10, 0), 1) == end_of(date(2026, 1, 13))
    assert banjar.add_working_days(wita(2026, 1, 12, 10, 0), 3) == end_of(date(2026, 1, 15))


def test_before_opening_on_a_working_day_that_day_counts(banjar: WorkingCalendar) -> None:
    assert banjar.add_working_days(wita(2026, 1, 9, 7, 30), 1) == end_of(date(2026, 1, 9))
    assert banjar.add_working_days(wita(2026, 1, 9, 8, 0), 1) == end_of(date(2026, 1, 12))


def test_friday_after_hours_counts_from_monday(banjar: WorkingCalendar) -> None:
    assert banjar.add_working_days(wita(2026, 1, 9, 17, 0), 1) == end_of(date(2026, 1, 12))
    assert banjar.add_working_days(wita(2026, 1, 9, 17, 0), 3) == end_of(date(2026, 1, 14))


def test_weekend_arrival_counts_from_monday(banjar: WorkingCalendar) -> None:
    assert banjar.add_working_days(wita(2026, 1, 10, 3, 0), 1) == end_of(date(2026, 1, 12))
    assert banjar.add_working_days(wita(2026, 1, 11, 23, 59), 1) == end_of(date(2026, 1, 12))


def test_lebaran_week_is_skipped(banjar: WorkingCalendar, national_only: WorkingCalendar) -> None:
    received = wita(2026, 3, 17, 10, 0)
    assert banjar.add_working_days(received, 1) == end_of(date(2026, 3, 25))
    assert banjar.add_working_days(received, 3) == end_of(date(2026, 3, 27))
    assert national_only.add_working_days(received, 1) == end_of(date(2026, 3, 18))


def test_holiday_night_arrival(banjar: WorkingCalendar) -> None:
    # 23:30 WITA on Nyepi, inside the Lebaran week.
    received = wita(2026, 3, 19, 23, 30)
    assert banjar.add_working_days(received, 1) == end_of(date(2026, 3, 25))
    assert banjar.add_working_days(received, 3) == end_of(date(2026, 3, 27))
    # 23:30 on Christmas 2025: 26 Dec is cuti bersama, then the weekend.
    assert banjar.add_working_days(wita(2025, 12, 25, 23, 30), 1) == end_of(date(2025, 12, 29))


def test_year_boundary(banjar: WorkingCalendar) -> None:
    received = wita(2025, 12, 24, 14, 0)
    # 25 Christmas, 26 cuti bersama, weekend, 29, 30, 31, 1 Jan New Year, 2, 5.
    assert banjar.add_working_days(received, 3) == end_of(date(2025, 12, 31))
    assert banjar.add_working_days(received, 4) == end_of(date(2026, 1, 2))
    assert banjar.add_working_days(received, 5) == end_of(date(2026, 1, 5))
    assert banjar.add_working_days(wita(2025, 12, 31, 9, 0), 1) == end_of(date(2026, 1, 2))


def test_the_same_instant_in_any_zone_gives_the_same_local_deadline(
    banjar: WorkingCalendar,
) -> None:
    instant_wita = wita(2026, 1, 12, 8, 30)
    same = [
        instant_wita,
        datetime(2026, 1, 12, 0, 30, tzinfo=UTC),
        datetime(2026, 1, 12, 7, 30, tzinfo=WIB),
    ]
    deadlines = {banjar.add_working_days(moment, 1) for moment in same}
    # Read as UTC wall time (00:30, before opening) it would wrongly be Monday.
    assert deadlines == {end_of(date(2026, 1, 13))}
    deadline = deadlines.pop()
    assert deadline.utcoffset() == timedelta(hours=8)
    assert deadline.tzinfo == WITA


def test_naive_datetimes_are_refused(banjar: WorkingCalendar) -> None:
    with pytest.raises(ValueError, match="aware"):
        banjar.add_working_days(datetime(2026, 1, 12, 10, 0), 1)


@pytest.mark.parametrize("n", [0, -1])
def test_non_positive_counts_are_refused(banjar: WorkingCalendar, n: int) -> None:
    with pytest.raises(ValueError):
        banjar.add_working_days(wita(2026, 1, 12, 10, 0), n)
    with pytest.raises(ValueError):
        banjar.add_calendar_days(wita(2026, 1, 12, 10, 0), n)
    with pytest.raises(ValueError):
        banjar.add_clock_hours(wita(2026, 1, 12, 10, 0), n)


# -- clock hours and calendar days ---------------------------------------------


def test_clock_hours_ignore_holidays_and_nights(banjar: WorkingCalendar) -> None:
    # 22:00 on a cuti bersama day, into Idul Fitri.
    assert banjar.add_clock_hours(wita(2026, 3, 20, 22, 0), 24) == wita(2026, 3, 21, 22, 0)
    assert banjar.add_clock_hours(datetime(2026, 3, 20, 14, 0, tzinfo=UTC), 4) == wita(
        2026, 3, 21, 2, 0
    )


def test_calendar_days_end_at_local_midnight_whatever_the_day(banjar: WorkingCalendar) -> None:
    assert banjar.add_calendar_days(wita(2026, 3, 17, 10, 0), 14) == end_of(date(2026, 3, 31))
    # Ends on the Idul Fitri Saturday: a cap is not moved by holidays.
    assert banjar.add_calendar_days(wita(2026, 3, 18, 10, 0), 3) == end_of(date(2026, 3, 21))
    assert banjar.add_calendar_days(wita(2025, 12, 25, 23, 30), 14) == end_of(date(2026, 1, 8))
    # 17:00 UTC on the 16th is already the 17th in WITA.
    assert banjar.add_calendar_days(datetime(2026, 3, 16, 17, 0, tzinfo=UTC), 14) == end_of(
        date(2026, 3, 31)
    )


# -- working_days_between ------------------------------------------------------


def test_working_days_between(banjar: WorkingCalendar) -> None:
    start = wita(2026, 3, 17, 10, 0)
    assert banjar.working_days_between(start, start) == 0
    assert banjar.working_days_between(start, wita(2026, 3, 25, 12, 0)) == 0
    assert banjar.working_days_between(start, end_of(date(2026, 3, 25))) == 1
    assert banjar.working_days_between(start, wita(2026, 3, 30, 9, 0)) == 3
    assert banjar.working_days_between(wita(2026, 3, 30, 9, 0), start) == 0


# -- office time -----------------------------------------------------------------


def test_office_time_between_skips_nights_and_days_off(banjar: WorkingCalendar) -> None:
    assert banjar.office_time_between(wita(2026, 1, 12, 10, 0), wita(2026, 1, 13, 9, 0)) == (
        timedelta(hours=7)
    )
    assert banjar.office_time_between(wita(2026, 3, 17, 12, 0), wita(2026, 3, 25, 10, 0)) == (
        timedelta(hours=6)
    )


def test_add_office_time(banjar: WorkingCalendar) -> None:
    assert banjar.add_office_time(wita(2026, 1, 12, 10, 0), timedelta(hours=5)) == wita(
        2026, 1, 12, 15, 0
    )
    # Exactly at closing time: moved to the next opening.
    assert banjar.add_office_time(wita(2026, 1, 12, 10, 0), timedelta(hours=6)) == wita(
        2026, 1, 13, 8, 0
    )
    assert banjar.add_office_time(wita(2026, 3, 17, 15, 0), timedelta(hours=2)) == wita(
        2026, 3, 25, 9, 0
    )


# -- construction and loading --------------------------------------------------


def test_invalid_construction_is_refused() -> None:
    with pytest.raises(ValueError, match="time zone"):
        WorkingCalendar("Asia/Banjarmasin")
    with pytest.raises(ValueError, match="office hours"):
        WorkingCalendar("Asia/Makassar", work_start=time(16), work_end=time(8))
    with pytest.raises(ValueError, match="both"):
        WorkingCalendar(
            "Asia/Makassar",
            extra_days_off=[date(2026, 1, 12)],
            extra_working_days=[date(2026, 1, 12)],
        )
    with pytest.raises(TypeError):
        WorkingCalendar("Asia/Makassar", extra_days_off=[wita(2026, 1, 12)])


def test_banjar_calendar_loads(banjar: WorkingCalendar) -> None:
    assert banjar.tz.key == "Asia/Makassar"
    assert (banjar.work_start, banjar.work_end) == (time(8), time(16))


def write_region(tmp_path: Path, region: str, days_off: str | None = None) -> Path:
    (tmp_path / "region.yaml").write_text(region, encoding="utf-8")
    if days_off is not None:
        (tmp_path / "days_off.yaml").write_text(days_off, encoding="utf-8")
    return tmp_path


def test_region_without_days_off_file(tmp_path: Path) -> None:
    calendar = load_calendar(write_region(tmp_path, "name: X\ntimezone: Asia/Jakarta\n"))
    assert calendar.tz.key == "Asia/Jakarta"
    assert calendar.is_working_day(date(2026, 3, 20))


def test_region_office_hours(tmp_path: Path) -> None:
    region = 'timezone: Asia/Makassar\noffice_hours: {start: "07:30", end: "16:00"}\n'
    calendar = load_calendar(write_region(tmp_path, region))
    assert calendar.add_working_days(wita(2026, 1, 12, 7, 45), 1) == end_of(date(2026, 1, 13))


@pytest.mark.parametrize(
    ("region", "days_off", "message"),
    [
        ("timezone: Asia/Makassar\noffice_hours: {start: 7:30, end: '16:00'}\n", None, "quoted"),
        ("name: X\n", None, "timezone"),
        ("timezone: Mars/Olympus\n", None, "time zone"),
        (
            "timezone: Asia/Makassar\n",
            "days_off:\n  2026:\n    - {date: 2025-01-02, label: x}\n",
            "another year",
        ),
        (
            "timezone: Asia/Makassar\n",
            "days_off:\n  2026:\n    - {date: 2026-01-02, label: a}\n"
            "    - {date: 2026-01-02, label: b}\n",
            "twice",
        ),
        ("timezone: Asia/Makassar\n", "days_off:\n  2026:\n    - {date: 2026-01-02}\n", "label"),
        ("timezone: Asia/Makassar\n", "holidays: []\n", "holidays"),
        ("timezone: Asia/Makassar\n", "days_off: [\n", "YAML"),
    ],
)
def test_invalid_region_files_fail_fast(
    tmp_path: Path, region: str, days_off: str | None, message: str
) -> None:
    with pytest.raises(CalendarError, match=message):
        load_calendar(write_region(tmp_path, region, days_off))


def test_missing_region_file(tmp_path: Path) -> None:
    with pytest.raises(CalendarError, match="missing"):
        load_calendar(tmp_path)


# -- properties ------------------------------------------------------------------

ZONES = st.sampled_from([UTC, WITA, WIB, ZoneInfo("Asia/Jakarta"), timezone(timedelta(hours=-5))])
STARTS = st.datetimes(
    min_value=datetime(2024, 6, 1), max_value=datetime(2027, 12, 31), timezones=ZONES
)


@settings(max_examples=200, deadline=None)
@given(start=STARTS, n=st.integers(min_value=1, max_value=40))
def test_add_working_days_properties(banjar: WorkingCalendar, start: datetime, n: int) -> None:
    due = banjar.add_working_days(start, n)
    assert banjar.is_working_day(due.date())
    assert due.tzinfo == WITA
    assert due.time() == time(23, 59, 59)
    assert due > start
    assert banjar.add_working_days(start, n + 1) > due
    assert banjar.working_days_between(start, due) == n
    assert banjar.working_days_between(start, due - timedelta(seconds=1)) == n - 1
    # At least n whole office days lie inside the window.
    assert banjar.office_time_between(start, due) >= n * timedelta(hours=8)
