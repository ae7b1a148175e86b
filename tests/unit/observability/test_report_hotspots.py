"""The report's hotspot section: the largest first, counts per agency and kecamatan."""

from __future__ import annotations

import dataclasses
from datetime import UTC, datetime, timedelta

from lapor.report import Labels, build_report, render_html, render_text
from lapor.report.build import HotspotRow
from tests.unit.observability import scenario

T0 = datetime(2026, 3, 5, tzinfo=UTC)


def rows() -> list[HotspotRow]:
    return [
        HotspotRow("PUPR", "63.03.03", "Gambut", "Gambut Barat", 3, "confirmed", T0),
        HotspotRow("BPBD", "63.03.17", "Paramasan", "Paramasan Bawah", 5, "answered", T0),
        HotspotRow("PUPR", "63.03.03", "Gambut", None, 2, "suggested", T0 + timedelta(days=1)),
        HotspotRow("PDAM", None, None, None, 2, "suggested", T0),
    ]


def report(hotspots: list[HotspotRow] | None) -> dict:  # type: ignore[type-arg]
    data = scenario.report_data(scenario.complaints(), with_breaches=False)
    labels = Labels(agencies={"PUPR": "Dinas PUPR"})
    return build_report(dataclasses.replace(data, hotspots=hotspots), labels=labels)


def test_the_largest_hotspots_come_first_with_counts_per_agency_and_kecamatan() -> None:
    section = report(rows())["hotspots"]
    assert section["total"] == 4 and section["open"] == 3 and section["complaints"] == 12
    assert [(h["agency"], h["size"]) for h in section["largest"]] == [
        ("BPBD", 5),
        ("PUPR", 3),
        ("PDAM", 2),
        ("PUPR", 2),
    ]
    assert section["largest"][1]["agency_name"] == "Dinas PUPR"
    assert section["by_agency"][0] == {"agency": "PUPR", "name": "Dinas PUPR", "hotspots": 2}
    assert section["by_kecamatan"][0] == {"kecamatan": "63.03.03", "name": "Gambut", "hotspots": 2}
    assert {"kecamatan": "unknown", "name": "tidak diketahui", "hotspots": 1} in section[
        "by_kecamatan"
    ]


def test_text_and_page_show_the_section_without_ids() -> None:
    built = report(rows())
    text = render_text(built)
    assert "hotspots (one problem, many reporters): 4 (3 open) with 12 complaints" in text
    assert "Paramasan Bawah, Paramasan" in text and "per agency: PUPR 2" in text
    page = render_html(built)
    assert "Titik rawan" in page and "Gambut Barat, Gambut" in page and "dikonfirmasi" in page
    assert "HS-" not in text + page  # hotspot ids carry a tracking id


def test_without_the_hotspots_service_there_is_no_section() -> None:
    built = report(None)
    assert built["hotspots"] is None
    assert "hotspots" not in render_text(built) and "Titik rawan" not in render_html(built)
