"""Working-day calendar of a region and the deadline arithmetic built on it.

SLA counts its deadlines with it; the console counts the working days an officer
has left with the same days off, so both say the same.

The rules, as an operator would explain them:

Working day
    Monday to Friday in the region's time zone (Banjar: Asia/Makassar, WITA),
    except Indonesian public holidays (the `holidays` package, "public"
    category) and the region's extra days off (`days_off.yaml`: cuti bersama,
    regional days). A date listed under `working_days` in that file is a
    working day whatever the national list says; it corrects a holiday the
    government moved after the package was released.

"n working days" (routing, first response, auto-close, ...)
    The day the clock starts is day 0 and is not counted; day 1 is the next
    working day. A complaint that arrives at 23:30 on a holiday, on Saturday,
    or on Friday after office hours therefore counts from the next working
    day. The one exception: on a working day *before the office opens*
    (`work_start`, 08:00) that same day is day 1, because the office still
    has all of it. The deadline is the end of day n, 23:59:59 local time.
    So the agency always gets n whole office days, and the deadline is always
    the end of a working day.

"n calendar days" (the answer cap told to the citizen)
    The end (23:59:59 local) of the n-th day after the local day of receipt,
    whatever that day is. Weekends and holidays do not move it: it is a cap.

"n clock hours" (urgent complaints)
    Exactly n hours later, any day and any hour; holidays do not matter.

Every function takes aware datetimes in any zone and returns aware datetimes
in the region's zone, so UTC input and +07:00 input for the same instant give
the same local deadline. Nothing here reads the current time.
"""

from collections.abc import Iterable, Mapping, Sequence
from datetime import UTC, date, datetime, time, timedelta
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import holidays
import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

END_OF_DAY = time(23, 59, 59)
OFFICE_OPENS = time(8, 0)
OFFICE_CLOSES = time(16, 0)

# A data error (say, a whole year marked as days off) must fail loudly rather
# than loop forever looking for the next working day.
_MAX_DAYS_WITHOUT_WORK = 366

_ONE_DAY = timedelta(days=1)


class CalendarError(ValueError):
    """A region's calendar files are missing or invalid."""


def _labelled(days: Iterable[date], default_label: str) -> dict[date, str]:
    if isinstance(days, Mapping):
        return {_as_date(day): str(label) for day, label in days.items()}
    return {_as_date(day): default_label for day in days}


def _as_date(day: date) -> date:
    # datetime is a subclass of date; a datetime here would silently compare
    # unequal to every date key, so refuse it.
    if isinstance(day, datetime):
        raise TypeError(f"expected a date, got a datetime: {day!r}")
    return day


class WorkingCalendar:
    """Working days and deadlines of one region; immutable apart from its holiday cache."""

    def __init__(
        self,
        tz: str,
        country: str = "ID",
        extra_days_off: Iterable[date] = (),
        work_start: time = OFFICE_OPENS,
        work_end: time = OFFICE_CLOSES,
        *,
        extra_working_days: Iterable[date] = (),
        holiday_categories: Sequence[str] = ("public",),
    ) -> None:
        try:
            self.tz = ZoneInfo(tz)
        except (ZoneInfoNotFoundError, ValueError) as exc:
            raise ValueError(f"unknown time zone {tz!r}") from exc
        if country not in holidays.list_supported_countries():
            raise ValueError(f"holidays has no calendar for country {country!r}")
        if not work_start < work_end:
            raise ValueError(f"office hours must open before they close: {work_start}-{work_end}")
        self.country = country
        self.work_start = work_start
        self.work_end = work_end
        self.holiday_categories = tuple(holiday_categories)
        self._days_off = _labelled(extra_days_off, "hari libur daerah")
        self._working_days = _labelled(extra_working_days, "hari kerja")
        both = sorted(self._days_off.keys() & self._working_days.keys())
        if both:
            raise ValueError(f"dates listed both as day off and as working day: {both}")
        self._holidays_by_year: dict[int, dict[date, str]] = {}

    def __repr__(self) -> str:
        return f"WorkingCalendar(tz={self.tz.key!r}, country={self.country!r})"

    # -- days ---------------------------------------------------------------

    def local(self, moment: datetime) -> datetime:
        """The same instant in the region's time zone; naive input is refused."""
        if moment.tzinfo is None or moment.utcoffset() is None:
            raise ValueError(f"an aware datetime is required, got naive {moment!r}")
        return moment.astimezone(self.tz)

    def _holidays(self, year: int) -> dict[date, str]:
        cached = self._holidays_by_year.get(year)
        if cached is None:
            found = holidays.country_holidays(
                self.country, years=year, categories=self.holiday_categories, language="id"
            )
            cached = dict(found.items())
            self._holidays_by_year[year] = cached
        return cached

    def day_off_reason(self, day: date) -> str | None:
        """Why `day` is not a working day (holiday name, label, weekend), or None if it is one."""
        if isinstance(day, datetime):
            day = self.local(day).date()
        if day in self._working_days:
            return None
        if day in self._days_off:
            return self._days_off[day]
        holiday = self._holidays(day.year).get(day)
        if holiday is not None:
            return holiday
        if day.weekday() == 5:
            return "Sabtu"
        if day.weekday() == 6:
            return "Minggu"
        return None

    def extra_days_off_in(self, year: int) -> int:
        """How many days off of the region's own list (days_off.yaml) fall in `year`."""
        return sum(1 for day in self._days_off if day.year == year)

    def is_working_day(self, day: date) -> bool:
        """True for a working day; an aware datetime is judged by its local date."""
        return self.day_off_reason(day) is None

    def next_working_day(self, day: date) -> date:
        """The first working day strictly after `day`."""
        candidate = day
        for _ in range(_MAX_DAYS_WITHOUT_WORK):
            candidate += _ONE_DAY
            if self.is_working_day(candidate):
                return candidate
        raise ValueError(f"no working day within a year after {day}; check days_off.yaml")

    def first_counted_day(self, start: datetime) -> date:
        """Day 1 of a working-day count starting at `start` (see module docstring)."""
        local = self.local(start)
        if self.is_working_day(local.date()) and local.time() < self.work_start:
            return local.date()
        return self.next_working_day(local.date())

    def end_of_day(self, day: date) -> datetime:
        return datetime.combine(day, END_OF_DAY, tzinfo=self.tz)

    def opening(self, day: date) -> datetime:
        return datetime.combine(day, self.work_start, tzinfo=self.tz)

    def closing(self, day: date) -> datetime:
        return datetime.combine(day, self.work_end, tzinfo=self.tz)

    # -- deadlines ----------------------------------------------------------

    def add_working_days(self, start: datetime, n: int) -> datetime:
        """End (23:59:59 local) of the n-th counted working day after `start`; n >= 1."""
        if n < 1:
            raise ValueError(f"n must be at least 1, got {n}")
        day = self.first_counted_day(start)
        for _ in range(n - 1):
            day = self.next_working_day(day)
        return self.end_of_day(day)

    def add_calendar_days(self, start: datetime, n: int) -> datetime:
        """End (23:59:59 local) of the n-th day after the local day of `start`; n >= 1."""
        if n < 1:
            raise ValueError(f"n must be at least 1, got {n}")
        return self.end_of_day(self.local(start).date() + timedelta(days=n))

    def add_clock_hours(self, start: datetime, hours: float) -> datetime:
        """Exactly `hours` elapsed hours later, in local time; hours > 0."""
        if hours <= 0:
            raise ValueError(f"hours must be positive, got {hours}")
        # Elapsed time is added in UTC: wall-clock addition would be wrong in
        # zones with daylight saving time.
        return self.local(self.local(start).astimezone(UTC) + timedelta(hours=hours))

    def working_days_between(self, start: datetime, end: datetime) -> int:
        """Whole working days counted from `start` that are over by `end`.

        The inverse of `add_working_days`: the largest n with
        `add_working_days(start, n) <= end`, or 0 if there is none.
        """
        local_end = self.local(end)
        last = local_end.date()
        if local_end.time() < END_OF_DAY:
            last -= _ONE_DAY
        day = self.first_counted_day(start)
        count = 0
        while day <= last:
            count += 1
            day = self.next_working_day(day)
        return count

    # -- office time (for proportional warnings on working-day clocks) --------

    def counting_start(self, start: datetime) -> datetime:
        """When a working-day clock started at `start` begins to run: day 1's opening."""
        return self.opening(self.first_counted_day(start))

    def office_time_between(self, start: datetime, end: datetime) -> timedelta:
        """Office hours on working days that lie between `start` and `end`."""
        local_start, local_end = self.local(start), self.local(end)
        total = timedelta(0)
        day = local_start.date()
        while day <= local_end.date():
            if self.is_working_day(day):
                begin = max(local_start, self.opening(day))
                finish = min(local_end, self.closing(day))
                if begin < finish:
                    total += finish - begin
            day += _ONE_DAY
        return total

    def add_office_time(self, start: datetime, amount: timedelta) -> datetime:
        """The instant at which `amount` of office time after `start` has passed.

        A point that falls exactly on closing time is moved to the next
        working day's opening, when someone is there to read a warning.
        """
        if amount < timedelta(0):
            raise ValueError(f"amount must not be negative, got {amount}")
        moment = self.local(start)
        day = moment.date()
        remaining = amount
        while True:
            if self.is_working_day(day):
                begin = max(moment, self.opening(day))
                available = self.closing(day) - begin
                if remaining < available:
                    return begin + remaining
                if available > timedelta(0):
                    remaining -= available
            day = self.next_working_day(day)
            moment = self.opening(day)


def years_without_days_off(calendar: WorkingCalendar, today: date) -> list[int]:
    """This year and the next, where the region's days_off.yaml lists no day for them.

    Cuti bersama are decreed year by year and every year has some, so an empty
    year means nobody has entered them yet: working-day deadlines would then
    fall on days when the offices are closed.
    """
    return [year for year in (today.year, today.year + 1) if not calendar.extra_days_off_in(year)]


# -- region files -----------------------------------------------------------


class _OfficeHours(BaseModel):
    model_config = ConfigDict(extra="forbid")

    start: time
    end: time

    @field_validator("start", "end", mode="before")
    @classmethod
    def _quoted(cls, value: Any) -> Any:
        # Unquoted 7:30 is read by YAML 1.1 as the base-60 integer 450, which
        # would otherwise become 00:07:30 without a word.
        if not isinstance(value, str):
            raise ValueError('write office hours as quoted strings, e.g. "07:30"')
        return value


class _RegionFile(BaseModel):
    # Other parts of the system keep their own keys in region.yaml.
    model_config = ConfigDict(extra="allow")

    timezone: str
    country: str = "ID"
    office_hours: _OfficeHours | None = None


class _Day(BaseModel):
    model_config = ConfigDict(extra="forbid", populate_by_name=True)

    day: date = Field(alias="date")
    label: str = Field(min_length=1)


class _DaysOffFile(BaseModel):
    model_config = ConfigDict(extra="forbid")

    days_off: dict[int, list[_Day]] = Field(default_factory=dict)
    working_days: list[_Day] = Field(default_factory=list)

    @field_validator("days_off", mode="before")
    @classmethod
    def _none_is_empty(cls, value: Any) -> Any:
        return {} if value is None else value

    @field_validator("days_off")
    @classmethod
    def _years_match(cls, value: dict[int, list[_Day]]) -> dict[int, list[_Day]]:
        for year, days in value.items():
            wrong = [d.day.isoformat() for d in days if d.day.year != year]
            if wrong:
                raise ValueError(f"dates listed under {year} belong to another year: {wrong}")
        return value


def _read_yaml(path: Path) -> Any:
    try:
        return yaml.safe_load(path.read_text(encoding="utf-8"))
    except yaml.YAMLError as exc:
        raise CalendarError(f"{path}: not valid YAML: {exc}") from exc


def _no_duplicates(days: list[_Day], path: Path) -> None:
    seen: set[date] = set()
    for entry in days:
        if entry.day in seen:
            raise CalendarError(f"{path}: {entry.day} is listed twice")
        seen.add(entry.day)


def load_days_off(path: Path) -> tuple[dict[date, str], dict[date, str]]:
    """(days off, forced working days) from a days_off.yaml; a missing file means none."""
    if not path.exists():
        return {}, {}
    raw = _read_yaml(path) or {}
    try:
        parsed = _DaysOffFile.model_validate(raw)
    except ValidationError as exc:
        raise CalendarError(f"{path}: {exc}") from exc
    days_off = [entry for entries in parsed.days_off.values() for entry in entries]
    _no_duplicates(days_off, path)
    _no_duplicates(parsed.working_days, path)
    return (
        {entry.day: entry.label for entry in days_off},
        {entry.day: entry.label for entry in parsed.working_days},
    )


def load_calendar(region_dir: Path) -> WorkingCalendar:
    """The calendar of a region directory (`region.yaml` and optional `days_off.yaml`)."""
    region_path = region_dir / "region.yaml"
    if not region_path.exists():
        raise CalendarError(f"{region_path}: missing")
    try:
        region = _RegionFile.model_validate(_read_yaml(region_path))
    except ValidationError as exc:
        raise CalendarError(f"{region_path}: {exc}") from exc
    days_off, working_days = load_days_off(region_dir / "days_off.yaml")
    hours = region.office_hours
    try:
        return WorkingCalendar(
            region.timezone,
            country=region.country,
            extra_days_off=days_off,
            work_start=hours.start if hours else OFFICE_OPENS,
            work_end=hours.end if hours else OFFICE_CLOSES,
            extra_working_days=working_days,
        )
    except ValueError as exc:
        raise CalendarError(f"{region_dir}: {exc}") from exc
