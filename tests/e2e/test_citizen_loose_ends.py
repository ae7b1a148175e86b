"""Withdrawal, the triage queue, the agency hearing the citizen and the reopened
complaint's clock, through the four services as processes."""

from __future__ import annotations

import json
from datetime import datetime, timedelta
from typing import Any
from urllib.parse import parse_qs, urlsplit

import httpx
import pytest

from lapor.contracts import subjects
from lapor.contracts.commands import Role
from tests.e2e.conftest import REOPEN_ANSWER_MINUTES
from tests.e2e.helpers import Collector, Outbox, eventually, sms_payload
from tests.e2e.test_lifecycle import _file, _state, _texts_with, _token
from tools.devstack import Stack

pytestmark = [pytest.mark.e2e]


async def _sms(nc: Any, sender: str, text: str) -> None:
    await nc.jetstream().publish(
        subjects.INBOUND_SMS, json.dumps(sms_payload(sender, text)).encode()
    )


async def _official_notices(db: Any, tracking_id: str, template: str) -> list[dict[str, Any]]:
    return await db.notifications.find(
        {"complaint_id": tracking_id, "audience": "official", "template": template}
    ).to_list(None)


@pytest.mark.security
async def test_batal_withdraws_from_the_reporting_number_only(
    stack: Stack, nc: Any, db: Any
) -> None:
    outbox = await Outbox().attach(nc)
    reporter, stranger = "+6281234500601", "+6281234500602"
    doc = await _file(nc, db, reporter, "BANJAR jalan rusak berlubang di depan pasar Martapura")

    # Someone who learnt the tracking id cannot withdraw it: the usual "not found".
    await _sms(nc, stranger, f"BATAL {doc['_id']}")
    await eventually(lambda: _texts_with(outbox, stranger, ["tidak ditemukan"]))
    untouched = await db.complaints.find_one({"_id": doc["_id"]})
    assert untouched["state"] == doc["state"] and untouched.get("outcome") is None

    await _sms(nc, reporter, f"BATAL {doc['_id']} sudah diperbaiki warga sendiri")
    closed = await _state(db, doc["_id"], "closed")
    assert closed["outcome"] == "withdrawn"
    [entry] = [h for h in closed["history"] if (h.get("detail") or {}).get("action") == "withdraw"]
    assert entry["actor"].startswith("citizen:sms:") and entry["state"] == "closed"
    await eventually(lambda: _texts_with(outbox, reporter, ["telah dicabut"]))

    # A second BATAL changes nothing and says why; neither can it be reopened.
    await _sms(nc, reporter, f"BATAL {doc['_id']}")
    await _sms(nc, reporter, f"BUKA {doc['_id']} ternyata belum beres")
    await eventually(
        lambda: _texts_with(outbox, reporter, ["tidak dapat dicabut", "tidak dapat dibuka"])
    )
    assert (await db.complaints.find_one({"_id": doc["_id"]}))["state"] == "closed"
    # The agency that held it hears of the withdrawal.
    [notice] = await eventually(
        lambda: _official_notices(db, doc["_id"], "official_citizen_action")
    )
    assert notice["agency"] == doc["agency"] and notice["level"] == "liaison"
    await outbox.detach()


@pytest.mark.security
async def test_the_citizen_link_withdraws_and_nothing_else_does(stack: Stack, db: Any) -> None:
    body = {"text": "Lampu penerangan jalan di gang mawar Martapura mati sudah sebulan"}
    async with httpx.AsyncClient(base_url=stack.url("intake")) as http:
        accepted = await http.post("/api/v1/complaints", json=body)
        assert accepted.status_code == 202, accepted.text
        link = urlsplit(accepted.json()["citizen_url"])
        tracking_id = accepted.json()["tracking_id"]
        action = f"{link.path}/actions/withdraw"
        key = parse_qs(link.query)["key"][0]
        await eventually(lambda: _routed(db, tracking_id))

        refused = [
            await http.post(action, json={}),
            await http.post(action, params={"key": key[:-2] + "xx"}, json={}),
        ]
        assert [r.status_code for r in refused] == [401, 401]
        officer = await _token(db, Role.AGENCY, "bukan-pelapor", "DISHUB")
        r = await http.post(action, json={}, headers=officer)
        assert r.status_code == 403, r.text

        r = await http.post(action, params={"key": key}, json={"text": "sudah menyala"})
        assert r.status_code == 200, r.text
        assert r.json()["state"] == "closed"
    closed = await db.complaints.find_one({"_id": tracking_id})
    assert closed["outcome"] == "withdrawn"


async def _routed(db: Any, tracking_id: str) -> dict[str, Any] | None:
    doc = await db.complaints.find_one({"_id": tracking_id})
    return doc if doc and doc["state"] not in ("received",) else None


@pytest.mark.security
async def test_admins_list_the_triage_queue_oldest_first_with_the_routers_reasons(
    stack: Stack, nc: Any, db: Any
) -> None:
    first = await _file(
        nc, db, "+6281234500611", "BANJAR jalan rusak dan sekolah tutup dan air mati"
    )
    second = await _file(
        nc, db, "+6281234500612", "BANJAR tolong perhatikan nasib warga kami di desa ini pak"
    )
    assert first["state"] == second["state"] == "triage"
    admin = await _token(db, Role.ADMIN, "admin-triase")
    officer = await _token(db, Role.AGENCY, "petugas-pupr", "PUPR")
    async with httpx.AsyncClient(base_url=stack.url("intake")) as http:
        assert (await http.get("/api/v1/triage")).status_code == 401
        assert (await http.get("/api/v1/triage", headers=officer)).status_code == 403
        r = await http.get("/api/v1/triage", headers=admin)
    assert r.status_code == 200, r.text
    queue = r.json()
    ids = [item["tracking_id"] for item in queue]
    assert ids.index(first["_id"]) < ids.index(second["_id"])
    received = [datetime.fromisoformat(item["received_at"]) for item in queue]
    assert received == sorted(received)
    listed = queue[ids.index(first["_id"])]
    assert {"PUPR", "PDAM"} <= set(listed["candidates"])
    assert any("jalan rusak" in reason for reason in listed["reasons"])
    assert listed["text"] == first["text"]


async def test_the_holding_agency_hears_the_citizens_reply(stack: Stack, nc: Any, db: Any) -> None:
    sender = "+6281234500621"
    doc = await _file(
        nc, db, sender, "BANJAR sampah menumpuk di pinggir jalan pasar tidak diangkut"
    )
    officer = await _token(db, Role.AGENCY, "rina", doc["agency"])
    async with httpx.AsyncClient(base_url=stack.url("intake")) as http:
        url = f"/api/v1/complaints/{doc['_id']}/actions"
        r = await http.post(f"{url}/acknowledge", json={}, headers=officer)
        assert r.status_code == 200, r.text
        r = await http.post(f"{url}/ask", json={"text": "Di RT berapa?"}, headers=officer)
        assert r.json()["state"] == "needs_info"
    await _sms(nc, sender, f"BALAS {doc['_id']} RT 05 dekat masjid")
    await _state(db, doc["_id"], "in_progress")

    [notice] = await eventually(
        lambda: _official_notices(db, doc["_id"], "official_citizen_action")
    )
    # The agency's liaison address; the officer who holds it is named in the notice.
    assert notice["agency"] == doc["agency"] and notice["level"] == "liaison"
    assert notice["recipient"].startswith("pengaduan.")


@pytest.mark.timeout(240)
async def test_a_reopened_complaint_gets_a_new_answer_deadline_that_breaches_in_its_round(
    stack: Stack, nc: Any, db: Any
) -> None:
    outbox = await Outbox().attach(nc)
    alerts = await Collector().attach(nc, subjects.SLA_ALERT)
    sender = "+6281234500631"
    doc = await _file(nc, db, sender, "BANJAR lampu jalan di gang melati mati sudah dua minggu")
    officer = await _token(db, Role.AGENCY, "lampu2", doc["agency"])
    async with httpx.AsyncClient(base_url=stack.url("intake")) as http:
        r = await http.post(
            f"/api/v1/complaints/{doc['_id']}/actions/answer",
            json={"text": "Lampu sudah diganti."},
            headers=officer,
        )
        assert r.status_code == 200
    await _sms(nc, sender, f"BUKA {doc['_id']} lampu masih mati")
    reopened = await _state(db, doc["_id"], "in_progress")
    reopened_at = next(h["at"] for h in reopened["history"] if h["state"] == "in_progress")

    async def new_deadline() -> dict[str, Any] | None:
        current = await db.complaints.find_one({"_id": doc["_id"]})
        rounds = [(h.get("detail") or {}).get("answer_round") for h in current["history"]]
        return current if 1 in rounds else None

    current = await eventually(new_deadline)
    due = current["deadlines"]["answer"]
    # The first answer's deadline is kept: the report judges the first answer by it.
    assert current["deadlines"]["first_answer"] == doc["deadlines"]["answer"]
    assert timedelta(0) < due - reopened_at <= timedelta(minutes=REOPEN_ANSWER_MINUTES, seconds=1)
    await eventually(lambda: _texts_with(outbox, sender, ["wajib menjawab lagi"]))

    async def breach() -> dict[str, Any] | None:
        return await db.sla_breaches.find_one(
            {"complaint_id": doc["_id"], "clock": "answer", "round": 1}
        )

    recorded = await eventually(breach, timeout=150)
    assert recorded["agency"] == doc["agency"]

    async def second_round_alerts() -> list[dict[str, Any]] | None:
        mine = [
            a
            for a in alerts.got
            if a["complaint_id"] == doc["_id"] and a["clock"] == "answer" and a["round"] == 1
        ]
        return mine if any(a["kind"] == "breach" for a in mine) else None

    got = await eventually(second_round_alerts, timeout=60)
    assert {a["kind"] for a in got} == {"warning", "breach"}
    await alerts.detach()
    await outbox.detach()
