"""The hotspot pages against the in-memory services, fed with the hotspots API's own
views: list, one hotspot with its members, confirm, split, merge, answer all."""

from __future__ import annotations

from dataclasses import replace
from datetime import timedelta
from typing import Any

import pytest
from fastapi.testclient import TestClient

from lapor.contracts.hotspots import HotspotState
from services.console.in_memory import InMemoryServices
from services.hotspots.api import HotspotDetail, member_view, view
from services.hotspots.domain import Hotspot, Member, Refusal
from tests.unit.console.test_pages import (  # noqa: F401 (fixtures)
    client,
    cookie_key,
    csrf_of,
    log_in,
    services,
)
from tests.unit.hotspots.fakes import GAMBUT, GAMBUT_BARAT, T0


def member(tracking_id: str, **fields: Any) -> Member:
    return replace(
        Member(
            complaint_id=tracking_id,
            region="banjar",
            agency="PUPR",
            received_at=T0,
            keywords=("jalan", "banjir"),
            kecamatan=GAMBUT,
            desa=GAMBUT_BARAT,
            category="jalan",
        ),
        **fields,
    )


def detail(hotspot_id: str, agency: str, members: list[Member]) -> dict[str, Any]:
    hotspot = Hotspot(
        hotspot_id=hotspot_id,
        region="banjar",
        agency=agency,
        kecamatan=GAMBUT,
        desa=GAMBUT_BARAT,
        members=tuple(m.complaint_id for m in members),
        state=HotspotState.SUGGESTED,
        formed_at=T0,
        updated_at=T0 + timedelta(hours=1),
        version=2,
    )
    record = HotspotDetail(
        **view(hotspot).model_dump(), member_details=[member_view(m) for m in members]
    )
    return record.model_dump(mode="json")


@pytest.fixture
def with_hotspots(services: InMemoryServices) -> InMemoryServices:  # noqa: F811
    refused = Refusal("hotspot-answer:HS-LPR-1:1:LPR-1", "HS-LPR-1", 1, "complaint is closed", T0)
    services.hotspot_records["HS-LPR-1"] = detail(
        "HS-LPR-1",
        "PUPR",
        [
            member("LPR-1", state="closed", outcome="withdrawn", refusals=(refused,)),
            member("LPR-2", state="in_progress"),
            member("LPR-3"),
        ],
    )
    services.hotspot_records["HS-LPR-7"] = detail(
        "HS-LPR-7", "PUPR", [member("LPR-7"), member("LPR-8")]
    )
    services.hotspot_records["HS-LPR-9"] = detail(
        "HS-LPR-9", "DINKES", [member("LPR-9", agency="DINKES"), member("LPR-10")]
    )
    return services


def test_an_officer_lists_their_agencys_hotspots_largest_first(
    client: TestClient,  # noqa: F811
    with_hotspots: InMemoryServices,
) -> None:
    log_in(client, "budi", "sandi-budi-123")
    page = client.get("/hotspot")
    assert page.status_code == 200
    assert page.text.index("HS-LPR-1") < page.text.index("HS-LPR-7")
    assert "HS-LPR-9" not in page.text  # DINKES's
    assert "Gambut Barat" in page.text and "Diusulkan" in page.text


def test_an_admin_lists_every_agency_and_filters_by_one(
    client: TestClient,  # noqa: F811
    with_hotspots: InMemoryServices,
) -> None:
    log_in(client, "admin", "sandi-admin-123")
    assert "HS-LPR-9" in client.get("/hotspot").text
    only = client.get("/hotspot?agency=dinkes").text
    assert "HS-LPR-9" in only and "HS-LPR-1" not in only


def test_one_hotspot_shows_members_their_states_and_intakes_refusals(
    client: TestClient,  # noqa: F811
    with_hotspots: InMemoryServices,
) -> None:
    log_in(client, "budi", "sandi-budi-123")
    page = client.get("/hotspot/HS-LPR-1")
    assert page.status_code == 200
    assert 'href="/pengaduan/LPR-1"' in page.text and 'href="/pengaduan/LPR-3"' in page.text
    assert "Putaran 1: complaint is closed" in page.text
    assert "Dicabut pelapor" in page.text
    # The same agency's other open hotspot is offered for a merge.
    assert '<option value="HS-LPR-7">' in page.text


def test_confirm_merge_and_answer_all_go_to_the_service(
    client: TestClient,  # noqa: F811
    with_hotspots: InMemoryServices,
) -> None:
    log_in(client, "budi", "sandi-budi-123")
    csrf = csrf_of(client.get("/hotspot/HS-LPR-1").text)
    done = client.post("/hotspot/HS-LPR-1/konfirmasi", data={"csrf": csrf})
    assert done.status_code == 303
    assert done.headers["location"] == "/hotspot/HS-LPR-1?ok=konfirmasi"
    assert with_hotspots.hotspot_records["HS-LPR-1"]["state"] == "confirmed"
    assert "Hotspot dikonfirmasi." in client.get(done.headers["location"]).text

    merged = client.post("/hotspot/HS-LPR-1/gabungkan", data={"csrf": csrf, "other": "HS-LPR-7"})
    assert merged.status_code == 303
    assert with_hotspots.hotspot_records["HS-LPR-1"]["members"][-2:] == ["LPR-7", "LPR-8"]
    assert with_hotspots.hotspot_records["HS-LPR-7"]["state"] == "dissolved"

    answered = client.post(
        "/hotspot/HS-LPR-1/jawab", data={"csrf": csrf, "text": "Jalan ditimbun besok."}
    )
    assert answered.status_code == 303
    assert with_hotspots.hotspot_answers == [
        {"hotspot": "HS-LPR-1", "text": "Jalan ditimbun besok."}
    ]


def test_the_services_refusal_is_shown_on_the_hotspot_page(
    client: TestClient,  # noqa: F811
    with_hotspots: InMemoryServices,
) -> None:
    log_in(client, "admin", "sandi-admin-123")
    page = client.get("/hotspot/HS-LPR-1")
    assert 'id="answer"' not in page.text  # answers come from the holding agency
    refused = client.post(
        "/hotspot/HS-LPR-1/jawab", data={"csrf": csrf_of(page.text), "text": "dari admin"}
    )
    assert refused.status_code == 403
    assert "Ditolak" in refused.text and "holding agency" in refused.text
    assert with_hotspots.hotspot_answers == []


@pytest.mark.security
def test_another_agencys_hotspot_and_forms_without_csrf_are_refused(
    client: TestClient,  # noqa: F811
    with_hotspots: InMemoryServices,
) -> None:
    log_in(client, "budi", "sandi-budi-123")
    assert client.get("/hotspot/HS-LPR-9").status_code == 404
    assert client.get("/hotspot?agency=DINKES").status_code == 200  # own agency only
    assert "HS-LPR-9" not in client.get("/hotspot?agency=DINKES").text
    missing = client.post("/hotspot/HS-LPR-1/konfirmasi", data={})
    assert missing.status_code == 403
    forged = client.post("/hotspot/HS-LPR-1/jawab", data={"csrf": "x" * 40, "text": "t"})
    assert forged.status_code == 403
    assert with_hotspots.hotspot_records["HS-LPR-1"]["state"] == "suggested"
    assert with_hotspots.hotspot_answers == []


def test_split_moves_every_ticked_member(
    client: TestClient,  # noqa: F811
    with_hotspots: InMemoryServices,
) -> None:
    log_in(client, "budi", "sandi-budi-123")
    csrf = csrf_of(client.get("/hotspot/HS-LPR-1").text)
    split = client.post(
        "/hotspot/HS-LPR-1/pisahkan", data={"csrf": csrf, "members": ["LPR-2", "LPR-3"]}
    )
    assert split.status_code == 303
    assert with_hotspots.hotspot_records["HS-LPR-1"]["members"] == ["LPR-1"]
