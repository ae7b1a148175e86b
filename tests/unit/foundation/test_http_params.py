"""Query parameters mean what the document says: ISO 8601 text, instants that exist in UTC."""

from datetime import date
from zoneinfo import ZoneInfo

import pytest
from pydantic import TypeAdapter, ValidationError

from lapor.report.period import period_bounds
from lapor.runtime.http import IsoDate, IsoDateTime

WITA = ZoneInfo("Asia/Makassar")


@pytest.mark.parametrize("text", ["0", "20261101", "1700000000", "2026-11-01T00:00:00"])
def test_a_date_is_only_yyyy_mm_dd(text: str) -> None:
    # Pydantic alone reads "0" as 1970-01-01 (Unix time) and ignores a time part.
    with pytest.raises(ValidationError, match="expected YYYY-MM-DD"):
        TypeAdapter(IsoDate).validate_python(text)
    assert TypeAdapter(IsoDate).validate_python("2026-11-01") == date(2026, 11, 1)


@pytest.mark.parametrize("text", ["0", "20261101", "2026-11-01", "1700000000.5"])
def test_a_date_time_is_iso_text(text: str) -> None:
    with pytest.raises(ValidationError, match="ISO 8601"):
        TypeAdapter(IsoDateTime).validate_python(text)


def test_a_date_time_must_exist_in_utc() -> None:
    adapter = TypeAdapter(IsoDateTime)
    with pytest.raises(ValidationError, match="outside the calendar"):
        adapter.validate_python("0001-01-01T00:00:00+01:00")
    assert adapter.validate_python("2026-11-01T08:00:00+08:00").hour == 8


def test_report_periods_at_the_ends_of_the_calendar_are_refused() -> None:
    with pytest.raises(ValueError, match="outside"):
        period_bounds(date(1, 1, 1), None, WITA)  # midnight at +08:00 is before year 1 in UTC
    with pytest.raises(ValueError, match="outside"):
        period_bounds(None, date.max, WITA)  # the day after the last day
    lower, upper = period_bounds(date(2026, 11, 1), date(2026, 11, 30), WITA)
    assert lower is not None and upper is not None and (upper - lower).days == 30
