"""SMS `CEK`, Open311 and the HTTP API tell one truth at every step of a complaint.

One complaint goes assigned → in_progress → needs_info → (citizen replies) →
in_progress → responded → closed; after each step the citizen's CEK reply on
lapor.outbound.sms, `GET /open311/v2/requests/{id}.json` and
`GET /api/v1/complaints/{id}` must agree on state, agency and answer date. After
the answer and after the closing, the API shows the reopen window that SLA
counted on the Banjar working-day calendar.
"""

from __future__ import annotations

import json
import uuid
from datetime import datetime
from typing import Any

import httpx
import pytest

from lapor.calendar import load_calendar
from lapor.contracts import STATE_LABELS, State, subjects
from lapor.contracts.commands import Role
from lapor.directory import load_directory
from services.intake.auth import new_token, token_record
from services.notify.labels import format_date_id
from services.sla.domain import reopen_until
from services.sla.policy import load_policy
from tests.e2e.helpers import Outbox, eventually, sms_payload
from tools.devstack import ROOT, Stack

pytestmark = [pytest.mark.e2e]

BANJAR = ROOT / "data" / "regions" / "banjar"
NAMES = {agency.code: agency.name for agency in load_directory(BANJAR).agencies}
CALENDAR, POLICY = load_calendar(BANJAR), load_policy(BANJAR)


class Citizen:
    def __init__(self, nc: Any, outbox: Outbox, sender: str) -> None:
        self.nc, self.outbox, self.sender = nc, outbox, sender

    async def send(self, text: str, gateway_id: str | None = None) -> None:
        payload = sms_payload(self.sender, text, gateway_id)
        await self.nc.publish(subjects.INBOUND_SMS, json.dumps(payload).encode())

    def statuses(self, tracking_id: str) -> list[str]:
        prefix = f"Status laporan {tracking_id}:"
        return [m["text"] for m in self.outbox.to(self.sender) if m["text"].startswith(prefix)]

    async def cek(self, tracking_id: str) -> str:
        before = len(self.statuses(tracking_id))
        await self.send(f"CEK {tracking_id}")

        async def answered() -> str | None:
            replies = self.statuses(tracking_id)
            return replies[-1] if len(replies) > before else None

        return await eventually(answered)


def _seconds(iso: str) -> datetime:
    return datetime.fromisoformat(iso).replace(microsecond=0)


async def _same_truth(
    http: httpx.AsyncClient, citizen: Citizen, tracking_id: str, state: State
) -> dict[str, Any]:
    """Compare the three views; returns the API view."""
    sms = " ".join((await citizen.cek(tracking_id)).split())
    api = (await http.get(f"/api/v1/complaints/{tracking_id}")).json()
    (request,) = (await http.get(f"/open311/v2/requests/{tracking_id}.json")).json()

    assert api["state"] == state.value, api["state"]
    label = STATE_LABELS[state]
    assert f"Status laporan {tracking_id}: {label}." in sms, sms
    assert request["status"] == ("closed" if state is State.CLOSED else "open")
    assert request["status_notes"].startswith(label), request["status_notes"]

    name = NAMES[api["agency"]]
    assert request["agency_responsible"] == name
    assert f"Ditangani oleh {name}." in sms, sms

    answer = api["deadlines"]["answer"]
    assert answer and answer.endswith("+08:00")
    assert _seconds(request["expected_datetime"]) == _seconds(answer)
    assert f"Jawaban paling lambat {format_date_id(datetime.fromisoformat(answer))}." in sms, sms
    return dict(api)


async def _token(db: Any, agency: str) -> dict[str, str]:
    token = new_token()
    await db.api_tokens.insert_one(token_record(token, Role.AGENCY, "truth", agency))
    return {"Authorization": f"Bearer {token}"}


async def _until_doc(db: Any, tracking_id: str, check: Any) -> dict[str, Any]:
    async def probe() -> dict[str, Any] | None:
        doc = await db.complaints.find_one({"_id": tracking_id})
        return doc if doc is not None and check(doc) else None

    return await eventually(probe)


def _at(doc: dict[str, Any], event_id: str) -> datetime:
    return next(h["at"] for h in doc["history"] if h["event_id"] == event_id)


@pytest.mark.timeout(240)
async def test_cek_open311_and_api_agree_at_every_step(stack: Stack, nc: Any, db: Any) -> None:
    outbox = await Outbox().attach(nc)
    citizen = Citizen(nc, outbox, "+6281234500301")
    filed = sms_payload(citizen.sender, "BANJAR jalan rusak berlubang di depan SDN 3 Martapura")
    await nc.publish(subjects.INBOUND_SMS, json.dumps(filed).encode())
    # Intake takes the routing and the deadlines from two consumers, in either order.
    doc = await eventually(
        lambda: db.complaints.find_one(
            {
                "source_key": f"sms:{filed['gateway_id']}",
                "state": State.ASSIGNED.value,
                "deadlines.answer": {"$ne": None},
            }
        )
    )
    tracking_id = doc["_id"]
    officer = await _token(db, doc["agency"])
    url = f"/api/v1/complaints/{tracking_id}/actions"

    async with httpx.AsyncClient(base_url=stack.url("intake")) as http:
        assigned = await _same_truth(http, citizen, tracking_id, State.ASSIGNED)
        assert assigned["reopen_until"] is None

        r = await http.post(f"{url}/acknowledge", json={}, headers=officer)
        assert r.status_code == 200, r.text
        await _same_truth(http, citizen, tracking_id, State.IN_PROGRESS)

        r = await http.post(f"{url}/ask", json={"text": "Di RT berapa?"}, headers=officer)
        assert r.status_code == 200, r.text
        asked = await _same_truth(http, citizen, tracking_id, State.NEEDS_INFO)

        # The reply resumes the clock; SLA moves the answer date by the time waited.
        reply_id = f"gw-{uuid.uuid4().hex}"
        await citizen.send(f"BALAS {tracking_id} RT 05 dekat masjid", reply_id)
        extension = f"deadlines:state:command:sms:{reply_id}"
        await _until_doc(db, tracking_id, lambda d: extension in d["event_ids"])
        replied = await _same_truth(http, citizen, tracking_id, State.IN_PROGRESS)
        moved = datetime.fromisoformat(replied["deadlines"]["answer"])
        assert moved > datetime.fromisoformat(asked["deadlines"]["answer"])

        # Answer: the window SLA counts from it (10 working days) shows in the API.
        # The e2e stack auto-closes a minute after an answer: this step stays short.
        answer_id = uuid.uuid4().hex
        r = await http.post(
            f"{url}/answer",
            json={"text": "Sudah ditambal.", "command_id": answer_id},
            headers=officer,
        )
        assert r.status_code == 200, r.text
        answered = await _until_doc(db, tracking_id, lambda d: d.get("reopen_until"))
        view = await _same_truth(http, citizen, tracking_id, State.RESPONDED)
        expected = reopen_until(_at(answered, f"command:{answer_id}"), POLICY, CALENDAR)
        assert datetime.fromisoformat(view["reopen_until"]) == expected
        assert view["reopen_until"].endswith("+08:00")

        close_id = uuid.uuid4().hex
        r = await http.post(
            f"{url}/close",
            json={"outcome": "resolved", "command_id": close_id},
            headers=officer,
        )
        assert r.status_code == 200, r.text
        window = f"reopen-window:state:command:{close_id}"
        closed = await _until_doc(db, tracking_id, lambda d: window in d["event_ids"])
        view = await _same_truth(http, citizen, tracking_id, State.CLOSED)
        expected = reopen_until(_at(closed, f"command:{close_id}"), POLICY, CALENDAR)
        assert datetime.fromisoformat(view["reopen_until"]) == expected
    await outbox.detach()
