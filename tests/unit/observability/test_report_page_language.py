"""The report page says lang="id": it reads as Indonesian to citizens and leaders,
with no code, slug or raw timestamp left in it."""

from __future__ import annotations

import dataclasses
import re
from datetime import date
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import pytest

from lapor.report import CountRow, Labels, build_report, render_html
from lapor.report.period import load_labels, period_bounds
from tests.unit.observability import scenario

ROOT = Path(__file__).resolve().parents[3]
WITA = ZoneInfo("Asia/Makassar")


def _data_with_unrouted_and_many() -> Any:
    docs = [
        *scenario.complaints(),
        # The router found no vocabulary: no agency, its "unclassified" category.
        scenario.complaint("U1", None, "belum_terklasifikasi", [(0.5, "triage")]),
    ]
    data = scenario.report_data(docs, with_breaches=True)
    many = CountRow("PUPR", "jalan", "assigned", confidential=False, n=1234)
    start, end = period_bounds(date(2026, 3, 1), date(2026, 3, 31), WITA)
    return dataclasses.replace(data, counts=[*data.counts, many], start=start, end=end)


@pytest.fixture(scope="module")
def report() -> dict[str, Any]:
    return build_report(_data_with_unrouted_and_many(), labels=load_labels(ROOT / "data", "banjar"))


@pytest.fixture(scope="module")
def page(report: dict[str, Any]) -> str:
    return render_html(report)


def _visible(page: str) -> str:
    return re.sub(r"<[^>]+>", " ", re.sub(r"<style>.*?</style>", "", page, flags=re.S))


def test_numbers_have_a_decimal_comma_and_a_thousands_dot(page: str) -> None:
    text = _visible(page)
    assert "1,2 hari" in text and "4,0 hari" in text  # medians: 30 h and 96 h
    assert "4,5" in text  # the average rating
    assert "1.240" in text and "1240" not in text  # PUPR's complaints received
    assert not re.search(r"\d\.\d hari", text)


def test_data_per_is_a_date_and_time_in_the_regions_zone(page: str) -> None:
    # As of 2026-04-01 01:00 UTC, which is 09:00 in Banjar.
    assert "data per 1 April 2026 09.00 WITA" in page
    assert "2026-04-01T" not in page and "+00:00" not in page


def test_the_period_is_given_as_local_days(page: str) -> None:
    assert "Periode 1 Maret 2026 – 31 Maret 2026" in page


def test_the_region_is_named_not_given_as_its_id(page: str) -> None:
    assert "<h1>Kinerja penanganan aduan — Kabupaten Banjar</h1>" in page
    assert "<title>Kinerja penanganan aduan — Kabupaten Banjar</title>" in page
    assert "banjar" not in _visible(page)


def test_categories_show_their_label_and_unrouted_complaints_read_in_indonesian(
    page: str,
) -> None:
    text = _visible(page)
    assert "belum_terklasifikasi" not in text and "Belum terklasifikasi (triase)" in text
    assert "UNASSIGNED" not in text and "Belum ditentukan (triase)" in text
    assert "Jalan rusak" in text  # from the directory of Kabupaten Banjar


def test_programs_keep_the_codes(report: dict[str, Any]) -> None:
    unassigned = next(row for row in report["agencies"] if row["agency"] == "UNASSIGNED")
    assert unassigned["name"] == "Belum ditentukan (triase)"
    assert report["region"] == "banjar" and report["region_name"] == "Kabupaten Banjar"
    assert report["timezone"] == "Asia/Makassar"
    assert any(row["category"] == "belum_terklasifikasi" for row in report["categories"])


def test_a_category_without_a_label_is_still_readable() -> None:
    assert Labels().category("saluran_air_tersumbat") == "Saluran air tersumbat"
    assert Labels(categories={"jalan": "Jalan rusak"}).category("jalan") == "Jalan rusak"
