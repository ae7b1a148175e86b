"""The report reads hotspots from the hotspots service's collection on FerretDB."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from lapor.report import build_report, fetch_report_data

pytestmark = [pytest.mark.integration]

T0 = datetime(2026, 3, 5, tzinfo=UTC)
GAMBUT = {"code": "63.03.03", "name": "Gambut"}


def hotspot(hid: str, size: int, state: str, formed_at: datetime, **extra: Any) -> dict[str, Any]:
    return {
        "_id": hid,
        "region": "banjar",
        "agency": "PUPR",
        "kecamatan": GAMBUT,
        "desa": {"code": "63.03.03.2002", "name": "Gambut Barat"},
        "members": [f"BJR-{hid}-{n}" for n in range(size)],
        "size": size,
        "state": state,
        "open": state in ("suggested", "confirmed"),
        "formed_at": formed_at,
        **extra,
    }


async def test_hotspots_of_the_period_are_ranked_and_counted(own_mongo: Any) -> None:
    db = own_mongo["lapor_report_hotspots"]
    report = build_report(await fetch_report_data(db, region="banjar", as_of=T0))
    assert report["hotspots"] is None  # no hotspots collection: no section
    await db["hotspots"].insert_many(
        [
            hotspot("A", 4, "confirmed", T0),
            hotspot("B", 2, "answered", T0 + timedelta(days=2), agency="BPBD"),
            hotspot("C", 3, "dissolved", T0),  # merged into another
            hotspot("D", 1, "suggested", T0),  # split down to one
            hotspot("E", 6, "suggested", T0 - timedelta(days=60)),  # before the period
            hotspot("F", 5, "suggested", T0, region="tapin"),
        ]
    )
    data = await fetch_report_data(
        db,
        region="banjar",
        start=T0 - timedelta(days=7),
        end=T0 + timedelta(days=7),
        as_of=T0 + timedelta(days=7),
    )
    section = build_report(data)["hotspots"]
    assert [(h["agency"], h["size"], h["state"]) for h in section["largest"]] == [
        ("PUPR", 4, "confirmed"),
        ("BPBD", 2, "answered"),
    ]
    assert section["by_kecamatan"] == [{"kecamatan": "63.03.03", "name": "Gambut", "hotspots": 2}]
    assert "BJR-" not in str(section)
