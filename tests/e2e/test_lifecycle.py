"""Agencies, citizens and admins move complaints through the lifecycle, over HTTP and the bus."""

from __future__ import annotations

import json
import uuid
from typing import Any

import httpx
import pytest

from lapor.contracts import subjects
from lapor.contracts.commands import Role
from services.intake.auth import new_token, token_record
from tests.e2e.helpers import Outbox, eventually, sms_payload
from tools.devstack import Stack

pytestmark = [pytest.mark.e2e]


async def _token(db: Any, role: Role, name: str, agency: str | None = None) -> dict[str, str]:
    token = new_token()
    await db.api_tokens.insert_one(token_record(token, role, name, agency))
    return {"Authorization": f"Bearer {token}"}


async def _file(nc: Any, db: Any, sender: str, text: str) -> dict[str, Any]:
    payload = sms_payload(sender, text)
    await nc.publish(subjects.INBOUND_SMS, json.dumps(payload).encode())

    async def routed() -> dict[str, Any] | None:
        doc = await db.complaints.find_one({"source_key": f"sms:{payload['gateway_id']}"})
        if doc and doc["state"] in {"assigned", "triage"} and doc["deadlines"]["answer"]:
            return doc
        return None

    return await eventually(routed)


async def _state(db: Any, tracking_id: str, state: str) -> dict[str, Any]:
    async def probe() -> dict[str, Any] | None:
        doc = await db.complaints.find_one({"_id": tracking_id})
        return doc if doc and doc["state"] == state else None

    return await eventually(probe)


async def test_acknowledge_answer_rate(stack: Stack, nc: Any, db: Any) -> None:
    outbox = await Outbox().attach(nc)
    sender = "+6281234500201"
    doc = await _file(nc, db, sender, "BANJAR jalan rusak berlubang di depan SDN 2 Martapura")
    officer = await _token(db, Role.AGENCY, "budi", doc["agency"])
    async with httpx.AsyncClient(base_url=stack.url("intake")) as http:
        url = f"/api/v1/complaints/{doc['_id']}/actions"
        r = await http.post(f"{url}/acknowledge", json={}, headers=officer)
        assert r.status_code == 200 and r.json()["state"] == "in_progress"
        r = await http.post(
            f"{url}/answer", json={"text": "Sudah ditambal tanggal 30."}, headers=officer
        )
        assert r.status_code == 200 and r.json()["state"] == "responded"
    await nc.publish(
        subjects.INBOUND_SMS,
        json.dumps(sms_payload(sender, f"NILAI {doc['_id']} 5 mantap")).encode(),
    )

    async def rated() -> dict[str, Any] | None:
        current = await db.complaints.find_one({"_id": doc["_id"]})
        return current if current.get("rating") else None

    final = await eventually(rated)
    assert final["rating"]["score"] == 5 and final["state"] == "responded"
    actors = [h["actor"] for h in sorted(final["history"], key=lambda h: h["at"])]
    assert "agency:budi" in actors and any(a.startswith("citizen:sms:") for a in actors)
    await outbox.detach()


async def test_question_reply_resumes_then_answer(stack: Stack, nc: Any, db: Any) -> None:
    outbox = await Outbox().attach(nc)
    sender = "+6281234500202"
    doc = await _file(nc, db, sender, "BANJAR sampah menumpuk di pinggir jalan tidak diangkut")
    officer = await _token(db, Role.AGENCY, "sari", doc["agency"])
    async with httpx.AsyncClient(base_url=stack.url("intake")) as http:
        url = f"/api/v1/complaints/{doc['_id']}/actions"
        r = await http.post(f"{url}/ask", json={"text": "Di RT berapa?"}, headers=officer)
        assert r.json()["state"] == "needs_info"
        await nc.publish(
            subjects.INBOUND_SMS,
            json.dumps(sms_payload(sender, f"BALAS {doc['_id']} RT 05 dekat masjid")).encode(),
        )
        await _state(db, doc["_id"], "in_progress")
        r = await http.post(f"{url}/answer", json={"text": "Sudah diangkut."}, headers=officer)
        assert r.json()["state"] == "responded"
    # The reply ended the wait: the citizen is told the answer date it moved.
    texts = await eventually(
        lambda: _texts_with(outbox, sender, ["Di RT berapa", "Sudah diangkut", "diperpanjang"])
    )
    assert any(f"BALAS {doc['_id']}" in t for t in texts)
    await outbox.detach()


async def _texts_with(outbox: Outbox, sender: str, needles: list[str]) -> list[str] | None:
    texts = [m["text"] for m in outbox.to(sender)]
    return texts if all(any(n in t for t in texts) for n in needles) else None


async def test_forwarded_twice_goes_to_triage_and_admin_decides(
    stack: Stack, nc: Any, db: Any
) -> None:
    # Street lights (DISHUB) first, the road (PUPR) second: both clear choices of the
    # router, so it is the second refusal, not the router's doubt, that reaches a person.
    text = "BANJAR jalan rusak berlubang dan lampu PJU mati sepanjang jalan"
    doc = await _file(nc, db, "+6281234500203", text)
    assert doc["state"] == "assigned", doc["routing"]
    admin = await _token(db, Role.ADMIN, "admin-kominfo")
    async with httpx.AsyncClient(base_url=stack.url("intake")) as http:
        url = f"/api/v1/complaints/{doc['_id']}/actions"
        officer = await _token(db, Role.AGENCY, "petugas", doc["agency"])
        r = await http.post(
            f"{url}/forward",
            json={"text": "bukan kewenangan kami", "agency": "DINAS_X"},
            headers=officer,
        )
        assert r.status_code == 422 and "unknown agency code 'DINAS_X'" in r.json()["detail"]
        for bounce, suggestion in ((1, None), (2, "PLN")):
            current = await db.complaints.find_one({"_id": doc["_id"]})
            assert current["state"] == "assigned" and current.get("bounces", 0) == bounce - 1
            officer = await _token(db, Role.AGENCY, f"petugas{bounce}", current["agency"])
            body = {"text": "bukan kewenangan kami", "agency": suggestion}
            r = await http.post(f"{url}/forward", json=body, headers=officer)
            assert r.status_code == 200, r.text
            assert r.json()["state"] == "received"

            async def rerouted(n: int = bounce) -> dict[str, Any] | None:
                now = await db.complaints.find_one({"_id": doc["_id"]})
                routed = any(h["event_id"] == f"routed:{doc['_id']}:{n}" for h in now["history"])
                return now if routed else None

            await eventually(rerouted)
        triaged = await _state(db, doc["_id"], "triage")
        assert triaged["bounces"] == 2 and len(triaged["refused_by"]) == 2
        assert triaged["agency"] is None
        r = await http.post(
            f"{url}/decide_triage", json={"agency": "PLNX", "priority": "normal"}, headers=admin
        )
        assert r.status_code == 422 and "unknown agency code 'PLNX'" in r.json()["detail"]
        r = await http.post(
            f"{url}/decide_triage", json={"agency": "PLN", "priority": "normal"}, headers=admin
        )
        assert r.status_code == 200, r.text
    decided = await _state(db, doc["_id"], "assigned")
    assert decided["agency"] == "PLN"
    assert any(h["actor"] == "admin:admin-kominfo" for h in decided["history"])


async def test_other_agency_and_invalid_transition_change_nothing(
    stack: Stack, nc: Any, db: Any
) -> None:
    doc = await _file(nc, db, "+6281234500204", "BANJAR air PDAM keruh dan bau sejak seminggu")
    stranger = await _token(db, Role.AGENCY, "other", "DISDIK")
    officer = await _token(db, Role.AGENCY, "pdam1", doc["agency"])
    admin = await _token(db, Role.ADMIN, "admin-invalid")
    async with httpx.AsyncClient(base_url=stack.url("intake")) as http:
        url = f"/api/v1/complaints/{doc['_id']}/actions"
        r = await http.post(f"{url}/acknowledge", json={}, headers=stranger)
        assert r.status_code == 403 and "not assigned" in r.json()["detail"]
        r = await http.post(f"{url}/acknowledge", json={}, headers=officer)
        assert r.status_code == 200 and r.json()["state"] == "in_progress"
        before = await db.complaints.find_one({"_id": doc["_id"]})

        # Each of these is refused by the rules for an acknowledged complaint.
        r = await http.post(f"{url}/acknowledge", json={}, headers=officer)
        assert r.status_code == 409
        assert "cannot acknowledge a complaint that is in_progress" in r.json()["detail"]
        r = await http.post(
            f"{url}/decide_triage", json={"agency": "PDAM", "priority": "high"}, headers=admin
        )
        assert r.status_code == 409
        assert "cannot decide_triage a complaint that is in_progress" in r.json()["detail"]
        r = await http.post(f"{url}/merge", json={"duplicate_of": "LPR-0000-00000"}, headers=admin)
        assert r.status_code == 422 and "no existing complaint" in r.json()["detail"]
        r = await http.post(f"{url}/reopen", json={"text": "x"}, headers=officer)
        assert r.status_code == 403
        r = await http.post(f"{url}/acknowledge", json={})
        assert r.status_code == 401
        worklist = await http.get(f"/api/v1/agencies/{doc['agency']}/complaints", headers=officer)
        assert worklist.status_code == 200
        foreign = await http.get(f"/api/v1/agencies/{doc['agency']}/complaints", headers=stranger)
        assert foreign.status_code == 403
    after = await db.complaints.find_one({"_id": doc["_id"]})
    assert after["state"] == before["state"] == "in_progress"
    assert len(after["history"]) == len(before["history"])
    assert after["event_ids"] == before["event_ids"]
    assert after.get("outcome") == before.get("outcome") and "duplicate_of" not in after


async def test_close_and_reopen_through_the_bus_and_a_refused_command(
    stack: Stack, nc: Any, db: Any
) -> None:
    doc = await _file(nc, db, "+6281234500205", "BANJAR jalan desa rusak parah mohon diperbaiki")
    officer = {"role": "agency", "id": "bus-officer", "agency": doc["agency"]}
    rejected: list[dict[str, Any]] = []

    async def on_rejected(msg: Any) -> None:
        rejected.append(json.loads(msg.data))

    sub = await nc.subscribe(subjects.COMMAND_REJECTED, cb=on_rejected)
    js = nc.jetstream()

    async def send(action: str, actor: dict[str, Any], **fields: Any) -> str:
        command_id = uuid.uuid4().hex
        body = {"command_id": command_id, "complaint_id": doc["_id"], "action": action}
        await js.publish(
            f"{subjects.COMMAND_PREFIX}.{action}",
            json.dumps({**body, "actor": actor, **fields}).encode(),
            headers={"Nats-Msg-Id": command_id},
        )
        return command_id

    await send("answer", officer, text="Masuk jadwal perbaikan 2027.")
    await _state(db, doc["_id"], "responded")
    await send("close", officer, outcome="not_resolved", text="Anggaran 2027.")
    closed = await _state(db, doc["_id"], "closed")
    assert closed["outcome"] == "not_resolved"
    refused_id = await send("acknowledge", officer)
    await send("reopen", {"role": "citizen", "id": "web"}, text="Belum diperbaiki juga")
    reopened = await _state(db, doc["_id"], "in_progress")
    assert reopened["reopen_count"] == 1
    await eventually(lambda: _found(rejected, refused_id))
    await sub.unsubscribe()


async def test_citizen_reopens_by_sms_and_a_second_buka_is_refused(
    stack: Stack, nc: Any, db: Any
) -> None:
    outbox = await Outbox().attach(nc)
    sender = "+6281234500208"
    doc = await _file(nc, db, sender, "BANJAR lampu jalan di gang mawar mati sudah sebulan")
    officer = await _token(db, Role.AGENCY, "lampu", doc["agency"])
    async with httpx.AsyncClient(base_url=stack.url("intake")) as http:
        r = await http.post(
            f"/api/v1/complaints/{doc['_id']}/actions/answer",
            json={"text": "Lampu sudah diganti."},
            headers=officer,
        )
        assert r.status_code == 200
    for text in (f"BUKA {doc['_id']} lampu masih mati", f"BUKA {doc['_id']} tetap mati"):
        await nc.publish(subjects.INBOUND_SMS, json.dumps(sms_payload(sender, text)).encode())
        reopened = await _state(db, doc["_id"], "in_progress")
    await eventually(
        lambda: _texts_with(outbox, sender, ["buka kembali", "tidak dapat dibuka kembali"])
    )
    reopened = await db.complaints.find_one({"_id": doc["_id"]})
    assert reopened["reopen_count"] == 1
    details = [h.get("detail") or {} for h in reopened["history"]]
    assert any(d.get("action") == "reopen" and "lampu masih mati" in str(d) for d in details)
    await outbox.detach()


@pytest.mark.timeout(240)
async def test_answer_then_silence_closes_as_no_reply(stack: Stack, nc: Any, db: Any) -> None:
    # The e2e stack closes a responded complaint after AUTO_CLOSE_MINUTES (conftest).
    outbox = await Outbox().attach(nc)
    sender = "+6281234500207"
    doc = await _file(nc, db, sender, "BANJAR saluran air di depan pasar tersumbat sampah")
    officer = await _token(db, Role.AGENCY, "diam", doc["agency"])
    async with httpx.AsyncClient(base_url=stack.url("intake")) as http:
        r = await http.post(
            f"/api/v1/complaints/{doc['_id']}/actions/answer",
            json={"text": "Sudah dibersihkan petugas kebersihan."},
            headers=officer,
        )
        assert r.status_code == 200 and r.json()["state"] == "responded"

    async def closed() -> dict[str, Any] | None:
        current = await db.complaints.find_one({"_id": doc["_id"]})
        return current if current["state"] == "closed" else None

    final = await eventually(closed, timeout=150)
    assert final["outcome"] == "no_reply"
    closing = [h for h in final["history"] if h.get("state") == "closed"]
    assert len(closing) == 1 and closing[0]["actor"] == "system:sla"
    # The citizen hears that it was closed, and how to reopen it.
    await eventually(lambda: _texts_with(outbox, sender, ["telah ditutup", f"BUKA {doc['_id']}"]))
    await outbox.detach()


async def _found(items: list[dict[str, Any]], command_id: str) -> bool:
    return any(i["command_id"] == command_id for i in items)
