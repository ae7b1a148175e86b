"""SLA warns at start-up when a region's days_off.yaml has nothing for this or next year."""

from __future__ import annotations

import logging
import shutil
from datetime import UTC, date, datetime
from pathlib import Path

import pytest
import yaml
from prometheus_client import CollectorRegistry

from lapor.calendar import load_calendar, years_without_days_off
from lapor.runtime.settings import documentation_infra
from services.sla.metrics import SlaMetrics
from services.sla.plan import RegionRules
from services.sla.policy import load_policy
from services.sla.settings import SlaSettings
from services.sla.wiring import check_calendars, create_app

DATA = Path(__file__).resolve().parents[3] / "data"
BANJAR = DATA / "regions" / "banjar"


def data_without(tmp_path: Path, *years: int) -> Path:
    """A copy of the region data with the days off of `years` taken out."""
    data = tmp_path / "data"
    shutil.copytree(DATA, data)
    days_off = data / "regions" / "banjar" / "days_off.yaml"
    parsed = yaml.safe_load(days_off.read_text(encoding="utf-8"))
    for year in years:
        parsed["days_off"].pop(year, None)
    days_off.write_text(yaml.safe_dump(parsed), encoding="utf-8")
    return data


def rules_of(data: Path) -> dict[str, RegionRules]:
    region = data / "regions" / "banjar"
    return {"banjar": RegionRules(load_calendar(region), load_policy(region))}


def test_the_shipped_calendar_covers_this_and_next_year() -> None:
    calendar = load_calendar(BANJAR)
    assert years_without_days_off(calendar, date(2026, 12, 1)) == []
    assert calendar.extra_days_off_in(2026) == 8
    # In 2027 the operator must add 2028 before long.
    assert years_without_days_off(calendar, date(2027, 6, 1)) == [2028]
    assert years_without_days_off(calendar, date(2029, 1, 1)) == [2029, 2030]


def test_a_missing_next_year_is_logged_and_counted(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    data = data_without(tmp_path, 2027)
    registry = CollectorRegistry()
    # 31 Dec 2026 17:00 UTC is already 1 Jan 2027 in WITA: this year is 2027.
    now = datetime(2026, 12, 31, 17, 0, tzinfo=UTC)
    with caplog.at_level(logging.WARNING, logger="services.sla.wiring"):
        missing = check_calendars(rules_of(data), now, SlaMetrics(registry), data)
    assert missing == {"banjar": [2027, 2028]}
    (record,) = [r for r in caplog.records if r.levelno == logging.WARNING]
    message = record.getMessage()
    assert "region banjar is incomplete" in message and "2027 and 2028" in message
    assert str(data / "regions" / "banjar" / "days_off.yaml") in message
    for year in ("2027", "2028"):
        labels = {"region": "banjar", "year": year}
        assert registry.get_sample_value("lapor_sla_calendar_extra_holidays", labels) == 0.0


def test_a_complete_calendar_says_nothing(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    registry = CollectorRegistry()
    now = datetime(2026, 6, 1, tzinfo=UTC)
    with caplog.at_level(logging.WARNING, logger="services.sla.wiring"):
        assert check_calendars(rules_of(DATA), now, SlaMetrics(registry), DATA) == {}
    assert not [r for r in caplog.records if r.levelno >= logging.WARNING]
    labels = {"region": "banjar", "year": "2027"}
    assert registry.get_sample_value("lapor_sla_calendar_extra_holidays", labels) == 8.0


def test_the_service_warns_when_it_starts(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    data = data_without(tmp_path, 2026)
    settings = SlaSettings.model_construct(infra=documentation_infra(data_dir=data))
    with caplog.at_level(logging.WARNING, logger="services.sla.wiring"):
        create_app(settings, clock=lambda: datetime(2026, 3, 1, tzinfo=UTC))
    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert any("lists no days off" in w and "for 2026;" in w for w in warnings), warnings
