"""The console counts working days left on the region's calendar, as SLA does: its days
off, and the make-up Saturdays that are working days."""

from __future__ import annotations

import re
import secrets
import shutil
from collections.abc import Iterator
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest
from fastapi.testclient import TestClient
from prometheus_client import CollectorRegistry

from lapor.calendar import load_calendar
from services.console import domain
from services.console.in_memory import FakeAccount, InMemoryServices
from services.console.settings import ConsoleSettings
from services.console.wiring import _calendar, create_app
from services.sla.domain import shift
from services.sla.policy import Unit

ROOT = Path(__file__).resolve().parents[3]
ZONE = ZoneInfo("Asia/Makassar")
# Monday 7 December 2026, 10:00 WITA; Saturday 12 December is made a working day.
MONDAY = datetime(2026, 12, 7, 10, 0, tzinfo=ZONE)
MAKE_UP_SATURDAY = date(2026, 12, 12)


def _weekday(year: int, month: int, day: int) -> date:
    found = date(year, month, day)
    while found.weekday() >= 5:
        found += timedelta(days=1)
    return found


def _region(data_dir: Path, days_off_yaml: str) -> Path:
    """A copy of Banjar under `data_dir` with its own days_off.yaml."""
    region = data_dir / "regions" / "banjar"
    shutil.copytree(ROOT / "data" / "regions" / "banjar", region)
    (region / "days_off.yaml").write_text(days_off_yaml)
    return region


def _with_day_off(data_dir: Path, day_off: date) -> Path:
    entry = f"{{date: {day_off.isoformat()}, label: Libur daerah}}"
    return _region(data_dir, f"days_off:\n  {day_off.year}:\n    - {entry}\n")


def _with_make_up_saturday(data_dir: Path) -> Path:
    entry = f"{{date: {MAKE_UP_SATURDAY.isoformat()}, label: Hari kerja pengganti}}"
    return _region(data_dir, f"working_days:\n  - {entry}\n")


def _days(left: domain.TimeLeft | None) -> int:
    assert left is not None and left.text.endswith("hari kerja lagi"), left
    return int(left.text.split()[0])


def test_a_regional_day_off_is_not_a_working_day_left(tmp_path: Path) -> None:
    year = datetime.now(UTC).year
    day_off = _weekday(year, 10, 14)
    with_day_off = _calendar(_with_day_off(tmp_path / "a", day_off), ZONE)
    without = _calendar(_region(tmp_path / "b", "days_off: {}\n"), ZONE)

    assert not with_day_off.is_working_day(day_off)
    # A week before the day off at noon; the deadline a week after it.
    now = datetime.combine(day_off - timedelta(days=7), datetime.min.time(), ZONE)
    deadline = datetime.combine(day_off + timedelta(days=7), datetime.max.time(), ZONE)
    left = domain.time_left(deadline, now, with_day_off)
    assert _days(left) == _days(domain.time_left(deadline, now, without)) - 1


def test_a_make_up_saturday_counts_as_sla_counts_it(tmp_path: Path) -> None:
    region = _with_make_up_saturday(tmp_path)
    # SLA's deadline: five working days from Monday, the make-up Saturday being the fifth.
    deadline = shift(load_calendar(region), MONDAY, Unit.WORKING_DAYS, 5)
    assert deadline.date() == MAKE_UP_SATURDAY

    console_calendar = _calendar(region, ZONE)
    assert _days(domain.time_left(deadline, MONDAY, console_calendar)) == 5
    # Each day later, one working day less, the Saturday included.
    for passed in range(1, 5):
        now = MONDAY + timedelta(days=passed)
        left = domain.time_left(deadline, now, console_calendar)
        assert _days(left) == 5 - passed
        assert _days(left) == load_calendar(region).working_days_between(now, deadline)


def test_an_unreadable_region_calendar_falls_back_to_national_holidays(tmp_path: Path) -> None:
    region = _region(tmp_path, "days_off: [not, a, mapping]\n")
    calendar = _calendar(region, ZONE)
    assert calendar.tz == ZONE
    assert not calendar.is_working_day(date(2026, 12, 25))  # Natal
    assert calendar.is_working_day(date(2026, 12, 24))  # cuti bersama is in the regional file


def test_the_committed_banjar_calendar_closes_the_lebaran_week() -> None:
    calendar = _calendar(ROOT / "data" / "regions" / "banjar", ZONE)
    # 18-24 March 2026: Nyepi, Idul Fitri and cuti bersama (days_off.yaml).
    for day in (18, 19, 20, 23, 24):
        assert not calendar.is_working_day(date(2026, 3, day))


@pytest.fixture
def console_on_a_make_up_week(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> Iterator[tuple[TestClient, datetime]]:
    region = _with_make_up_saturday(tmp_path)
    deadline = shift(load_calendar(region), MONDAY, Unit.WORKING_DAYS, 5)
    services = InMemoryServices()
    services.add_account(FakeAccount("budi", "sandi-budi-123", "Budi", "agency", "PUPR"))
    services.complaints["LPR-1"] = {
        "tracking_id": "LPR-1",
        "region": "banjar",
        "state": "assigned",
        "agency": "PUPR",
        "priority": "normal",
        "received_at": (MONDAY - timedelta(days=1)).isoformat(),
        "deadlines": {"first_response": deadline.isoformat()},
        "next_deadline": deadline.isoformat(),
        "text": "jalan rusak di depan pasar",
        "history": [],
    }
    monkeypatch.setenv("LAPOR_DATA_DIR", str(tmp_path))
    settings = ConsoleSettings(cookie_key=secrets.token_urlsafe(32))  # type: ignore[arg-type]
    app = create_app(
        settings, services=services, clock=lambda: MONDAY, registry=CollectorRegistry()
    )
    with TestClient(app, base_url="https://testserver", follow_redirects=False) as client:
        yield client, deadline


def test_the_complaint_page_shows_the_working_days_sla_counts(
    console_on_a_make_up_week: tuple[TestClient, datetime],
) -> None:
    client, _deadline = console_on_a_make_up_week
    page = client.get("/masuk")
    csrf = re.search(r'name="csrf" value="([^"]+)"', page.text)
    assert csrf is not None
    login = {"username": "budi", "password": "sandi-budi-123", "csrf": csrf.group(1)}
    assert client.post("/masuk", data=login).status_code == 303
    complaint = client.get("/pengaduan/LPR-1")
    assert complaint.status_code == 200
    assert "5 hari kerja lagi" in complaint.text
