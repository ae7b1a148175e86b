"""The console counts working days left with the region's days off, as SLA does."""

from __future__ import annotations

import shutil
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

from services.console import domain
from services.console.wiring import _holidays

ROOT = Path(__file__).resolve().parents[3]
ZONE = ZoneInfo("Asia/Makassar")


def _weekday(year: int, month: int, day: int) -> date:
    found = date(year, month, day)
    while found.weekday() >= 5:
        found += timedelta(days=1)
    return found


def _region(tmp_path: Path, day_off: date) -> Path:
    region = tmp_path / "banjar"
    region.mkdir()
    shutil.copy(ROOT / "data" / "regions" / "banjar" / "region.yaml", region / "region.yaml")
    entry = f"{{date: {day_off.isoformat()}, label: Libur daerah}}"
    (region / "days_off.yaml").write_text(f"days_off:\n  {day_off.year}:\n    - {entry}\n")
    return region


def test_a_regional_day_off_is_not_a_working_day_left(tmp_path: Path) -> None:
    year = datetime.now(UTC).year
    day_off = _weekday(year, 10, 14)
    closed = _holidays(_region(tmp_path, day_off))

    assert day_off in closed
    # A week before the day off at noon; the deadline a week after it.
    now = datetime.combine(day_off - timedelta(days=7), datetime.min.time(), ZONE)
    deadline = datetime.combine(day_off + timedelta(days=7), datetime.max.time(), ZONE)
    left = domain.time_left(deadline, now, ZONE, closed)
    without = domain.time_left(deadline, now, ZONE, closed - {day_off})
    assert left is not None and without is not None
    assert int(left.text.split()[0]) == int(without.text.split()[0]) - 1


def test_the_committed_banjar_calendar_closes_the_lebaran_week() -> None:
    closed = _holidays(ROOT / "data" / "regions" / "banjar")
    if datetime.now(UTC).year - 1 <= 2026 <= datetime.now(UTC).year + 1:
        # 18-24 March 2026: Nyepi, Idul Fitri and cuti bersama (days_off.yaml).
        assert {date(2026, 3, d) for d in (18, 19, 20, 23, 24)} <= closed
