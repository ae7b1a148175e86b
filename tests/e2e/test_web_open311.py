"""Web form and Open311 GeoReport v2 clients submit and read complaints, in JSON and XML."""

from __future__ import annotations

import json
import uuid
from datetime import UTC, datetime, timedelta
from typing import Any
from xml.etree import ElementTree as ET

import httpx
import nats
import pytest

from lapor.contracts import subjects
from lapor.contracts.commands import Role
from services.intake.auth import new_token, token_record
from tests.e2e.helpers import eventually
from tools.devstack import Stack

pytestmark = [pytest.mark.e2e]

# Field lists of GeoReport v2 (wiki.open311.org/GeoReport_v2).
SERVICE_FIELDS = {
    "service_code",
    "service_name",
    "description",
    "metadata",
    "type",
    "keywords",
    "group",
}
REQUEST_FIELDS = {
    "service_request_id", "status", "status_notes", "service_name", "service_code",
    "description", "agency_responsible", "service_notice", "requested_datetime",
    "updated_datetime", "expected_datetime", "address", "address_id", "zipcode", "lat",
    "long", "media_url",
}  # fmt: skip


def _actors(view: dict[str, Any]) -> set[str]:
    return {entry["actor"] for entry in view["history"]}


async def _assigned(db: Any, tracking_id: str) -> dict[str, Any] | None:
    doc = await db.complaints.find_one({"_id": tracking_id})
    return doc if doc and doc["state"] == "assigned" and doc["deadlines"]["answer"] else None


async def test_web_form_submission_is_routed_and_resend_is_the_same(stack: Stack, db: Any) -> None:
    body = {
        "region": "banjar",
        "text": "Jembatan gantung di Desa Sungai Batang putus talinya, warga tidak bisa lewat",
        "name": "Rahmat",
        "email": "rahmat@example.org",
        "location": {"lat": -3.41, "lon": 114.85, "address": "Sungai Batang"},
        "client_id": "form-42",
    }
    async with httpx.AsyncClient(base_url=stack.url("intake")) as http:
        first = await http.post("/api/v1/complaints", json=body)
        again = await http.post("/api/v1/complaints", json=body)
        short = await http.post("/api/v1/complaints", json={"text": "tolong"})
        nowhere = await http.post(
            "/api/v1/complaints", json={**body, "region": "atlantis", "client_id": "x"}
        )
    assert first.status_code == 202 and again.status_code == 202
    assert first.json()["tracking_id"] == again.json()["tracking_id"]
    assert short.status_code == 422 and short.json()["detail"]["reason"] == "too_short"
    assert nowhere.status_code == 422 and nowhere.json()["detail"]["reason"] == "unknown_region"
    doc = await eventually(lambda: _assigned(db, first.json()["tracking_id"]))
    assert doc["channel"] == "web" and doc["submission"]["name"] == "Rahmat"
    assert await db.rejections.count_documents({"reason": "too_short", "channel": "web"}) >= 1


async def test_partner_channel_on_the_bus(stack: Stack, db: Any) -> None:
    message = {
        "source": "whatsapp",
        "message_id": "wa-0001",
        "text": "Sudah 4 hari sampah di TPS pasar Martapura tidak diangkut, bau sekali",
        "received_at": "2026-11-28T09:15:00+08:00",
    }
    partner = await nats.connect(stack.nats_url_for("partner-whatsapp"))
    try:
        await partner.publish(subjects.inbound_partner("whatsapp"), json.dumps(message).encode())
        await partner.flush()
    finally:
        await partner.close()

    async def stored() -> dict[str, Any] | None:
        return await db.complaints.find_one({"source_key": "web:partner:whatsapp:wa-0001"})

    doc = await eventually(stored)
    assert doc["submission"]["source"] == "partner:whatsapp"
    await eventually(lambda: _assigned(db, doc["_id"]))


async def test_open311_services_and_requests_in_json_and_xml(stack: Stack, db: Any) -> None:
    key = new_token()
    await db.api_tokens.insert_one(token_record(key, Role.PARTNER, "kota-app", None))
    async with httpx.AsyncClient(base_url=f"{stack.url('intake')}/open311/v2") as http:
        services = (await http.get("/services.json")).json()
        assert services and all(set(s) == SERVICE_FIELDS for s in services)
        code = next(s["service_code"] for s in services if s["service_code"].startswith("PUPR-"))
        xml_services = ET.fromstring((await http.get("/services.xml")).content)
        assert xml_services.tag == "services" and len(xml_services) == len(services)
        definition = (await http.get(f"/services/{code}.json")).json()
        assert definition == {"service_code": code, "attributes": []}
        xml_definition = ET.fromstring((await http.get(f"/services/{code}.xml")).content)
        # The spec's shape: no <service> wrapper, attributes as elements, not "[]".
        assert xml_definition.tag == "service_definition"
        assert [child.tag for child in xml_definition] == ["service_code", "attributes"]
        assert xml_definition.findtext("service_code") == code
        assert not xml_definition.findtext("attributes")

        refused = await http.post("/requests.json", data={"api_key": "wrong", "service_code": code})
        assert refused.status_code == 403
        created = await http.post(
            "/requests.json",
            data={
                "api_key": key,
                "service_code": code,
                "description": "Jalan berlubang besar di depan SMPN 1 Martapura membahayakan",
                "lat": "-3.41",
                "long": "114.85",
                "address_string": "Jl. A. Yani km 40",
            },
        )
        assert created.status_code == 201, created.text
        request_id = created.json()[0]["service_request_id"]
        await eventually(lambda: _assigned(db, request_id))

        one = (await http.get(f"/requests/{request_id}.json")).json()[0]
        assert set(one) == REQUEST_FIELDS
        assert one["status"] == "open" and one["expected_datetime"].endswith("+08:00")
        assert one["agency_responsible"] and one["lat"] == -3.41
        # Named as the service list names the service, not by the category id.
        names = {s["service_code"]: s["service_name"] for s in services}
        assert one["service_name"] == names[one["service_code"]]
        xml_one = ET.fromstring((await http.get(f"/requests/{request_id}.xml")).content)
        assert xml_one.tag == "service_requests"
        assert {child.tag for child in xml_one.find("request")} == REQUEST_FIELDS
        assert xml_one.find("request/service_request_id").text == request_id
        assert xml_one.findtext("request/service_name") == one["service_name"]
        listed = (await http.get("/requests.json", params={"status": "open"})).json()
        assert request_id in {r["service_request_id"] for r in listed}
        missing = await http.get("/requests/LPR-0000-00000.json")
        assert missing.status_code == 404


async def test_confidential_complaints_never_appear_in_public_views(stack: Stack, db: Any) -> None:
    async with httpx.AsyncClient(base_url=stack.url("intake")) as http:
        accepted = await http.post(
            "/api/v1/complaints",
            json={
                "text": "Kepala sekolah memungut biaya seragam yang sangat mahal",
                "confidential": True,
            },
        )
        tracking_id = accepted.json()["tracking_id"]
        await eventually(lambda: _assigned(db, tracking_id))
        assert (await http.get(f"/api/v1/complaints/{tracking_id}")).status_code == 404
        assert (await http.get(f"/open311/v2/requests/{tracking_id}.json")).status_code == 404
        listed = (await http.get("/open311/v2/requests.json")).json()
        assert tracking_id not in {r["service_request_id"] for r in listed}


async def test_reporters_secret_link_shows_and_acts_on_their_own_complaint_only(
    stack: Stack, db: Any
) -> None:
    async with httpx.AsyncClient(base_url=stack.url("intake")) as http:
        accepted = (
            await http.post(
                "/api/v1/complaints",
                json={
                    "text": "Kepala sekolah SDN 3 Martapura memungut biaya seragam"
                    " yang sangat mahal dari murid",
                    "confidential": True,
                    "client_id": "form-secret-1",
                },
            )
        ).json()
        tracking_id, link = accepted["tracking_id"], accepted["citizen_url"]
        other = (
            await http.post(
                "/api/v1/complaints",
                json={"text": "Lampu jalan di depan pasar Martapura mati sudah seminggu"},
            )
        ).json()
        doc = await eventually(lambda: _assigned(db, tracking_id))
        key = link.split("key=", 1)[1]

        mine = await http.get(link)
        assert mine.status_code == 200 and mine.json()["tracking_id"] == tracking_id
        wrong = await http.get(f"/api/v1/complaints/{tracking_id}", params={"key": key[:-2] + "xx"})
        assert wrong.status_code == 404
        # A key opens one complaint: used on another one it is no key at all.
        borrowed = await http.post(
            f"/api/v1/complaints/{other['tracking_id']}/actions/reply",
            params={"key": key},
            json={"text": "ini bukan laporan saya"},
        )
        assert borrowed.status_code == 401

        officer_token = new_token()
        await db.api_tokens.insert_one(
            token_record(officer_token, Role.AGENCY, "petugas", doc["agency"])
        )
        officer = {"Authorization": f"Bearer {officer_token}"}
        url = f"/api/v1/complaints/{tracking_id}/actions"
        asked = await http.post(
            f"{url}/ask", json={"text": "Kapan dan berapa besar biayanya?"}, headers=officer
        )
        assert asked.status_code == 200 and asked.json()["state"] == "needs_info"
        replied = await http.post(
            f"{url}/reply", params={"key": key}, json={"text": "Senin kemarin, tiga ratus ribu"}
        )
        assert replied.status_code == 200 and replied.json()["state"] == "in_progress"
        # The reporter may not do what only the agency does.
        refused = await http.post(
            f"{url}/answer", params={"key": key}, json={"text": "sudah selesai"}
        )
        assert refused.status_code in (403, 409)

        # Who acted: a citizen is just `citizen` to the reporter, the agency and the
        # public; only an admin sees the detail.
        admin_token = new_token()
        await db.api_tokens.insert_one(token_record(admin_token, Role.ADMIN, "diskominfo", None))
        admin = {"Authorization": f"Bearer {admin_token}"}
        detail = f"citizen:web:{tracking_id}"
        for view in (replied.json(), (await http.get(link)).json()):
            assert "citizen" in _actors(view) and detail not in _actors(view)
        as_officer = await http.get(f"/api/v1/complaints/{tracking_id}", headers=officer)
        assert "citizen" in _actors(as_officer.json()) and detail not in _actors(as_officer.json())
        as_admin = await http.get(f"/api/v1/complaints/{tracking_id}", headers=admin)
        assert detail in _actors(as_admin.json())
    stored = await db.complaints.find_one({"_id": tracking_id})
    assert any(h["actor"] == f"citizen:web:{tracking_id}" for h in stored["history"])
    # Derived, never stored: the key is nowhere in the complaint.
    assert key not in repr(stored)


async def test_open311_listing_window_and_id_override(stack: Stack, db: Any) -> None:
    now = datetime.now(UTC)
    old_id = f"LPR-OLD{uuid.uuid4().hex[:8].upper()}"
    await db.complaints.insert_one(
        {
            "_id": old_id,
            "source_key": f"test:{old_id}",
            "region": "banjar",
            "channel": "web",
            "state": "closed",
            "outcome": "resolved",
            "agency": "PUPR",
            "category": "jalan",
            "text": "Jalan desa rusak parah sejak musim hujan tahun lalu",
            "received_at": now - timedelta(days=100),
            "updated_at": now - timedelta(days=80),
            "deadlines": {},
            "history": [],
            "event_ids": [],
        }
    )
    async with httpx.AsyncClient(base_url=f"{stack.url('intake')}/open311/v2") as http:
        recent = (await http.get("/requests.json")).json()
        assert old_id not in {r["service_request_id"] for r in recent}  # the last 90 days
        assert all(set(r) == REQUEST_FIELDS for r in recent)
        window = {
            "start_date": (now - timedelta(days=120)).isoformat(),
            "end_date": (now - timedelta(days=31)).isoformat(),
        }
        older = (await http.get("/requests.json", params=window)).json()
        assert old_id in {r["service_request_id"] for r in older}
        too_long = await http.get("/requests.xml", params={**window, "end_date": now.isoformat()})
        assert too_long.status_code == 400
        assert ET.fromstring(too_long.content).findtext("error/description")
        # Ids override every other argument, the default window and the status too.
        overridden = await http.get(
            "/requests.xml",
            params={"service_request_id": f"{old_id.lower()},LPR-0000-00000", "status": "open"},
        )
        rows = ET.fromstring(overridden.content).findall("request")
        assert [r.findtext("service_request_id") for r in rows] == [old_id]
        assert rows[0].findtext("status") == "closed"
