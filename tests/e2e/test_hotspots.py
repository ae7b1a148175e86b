"""Hotspots on the whole pipeline: citizens' SMS through intake and the router into
the hotspots service, the agency answers the hotspot over HTTP, intake records one
answer per complaint and notify texts each reporter."""

from __future__ import annotations

import asyncio
import json
import sys
from typing import Any

import httpx
import pytest

from lapor.contracts import subjects
from lapor.contracts.commands import Role
from services.intake.auth import new_token, token_record
from tests.e2e.helpers import Collector, Outbox, eventually, sms_payload
from tools.devstack import Stack

pytestmark = [pytest.mark.e2e]

FLOODED = (
    "BANJAR jalan desa paramasan bawah kec paramasan terendam banjir tdk bisa dilewati motor",
    "BANJAR banjir merendam jalan di paramasan bawah air setinggi lutut motor tdk bisa lewat",
    "BANJAR jalan ds paramasan bawah kebanjiran air merendam jalan tdk bisa dilewati",
)
OTHER = "BANJAR sampah menumpuk di pasar desa paramasan bawah tdk diangkut seminggu"
SENDERS = ("+6281234500711", "+6281234500712", "+6281234500713", "+6281234500714")
ANSWER = "Tim BPBD sudah memasang pompa air di Paramasan Bawah, jalan bisa dilewati sore ini."


async def _token(db: Any, role: Role, name: str, agency: str | None = None) -> dict[str, str]:
    token = new_token()
    await db.api_tokens.insert_one(token_record(token, role, name, agency))
    return {"Authorization": f"Bearer {token}"}


async def _file(nc: Any, db: Any, sender: str, text: str) -> dict[str, Any]:
    payload = sms_payload(sender, text)
    await nc.publish(subjects.INBOUND_SMS, json.dumps(payload).encode())

    async def routed() -> dict[str, Any] | None:
        doc = await db.complaints.find_one({"source_key": f"sms:{payload['gateway_id']}"})
        return doc if doc and doc["state"] in {"assigned", "triage"} else None

    return await eventually(routed)


async def test_one_flooded_road_one_hotspot_one_answer_each(stack: Stack, nc: Any, db: Any) -> None:
    outbox = await Outbox().attach(nc)
    changes = await Collector().attach(nc, subjects.HOTSPOT_CHANGED)
    flooded = [await _file(nc, db, s, t) for s, t in zip(SENDERS, FLOODED, strict=False)]
    other = await _file(nc, db, SENDERS[3], OTHER)
    ids = [doc["_id"] for doc in flooded]
    assert {doc["agency"] for doc in flooded} == {"BPBD"} and other["agency"] != "BPBD"

    officer = await _token(db, Role.AGENCY, "rahmat", "BPBD")
    admin = await _token(db, Role.ADMIN, "admin-kominfo")
    async with httpx.AsyncClient(base_url=stack.url("hotspots")) as http:

        async def grouped() -> dict[str, Any] | None:
            listed = (await http.get("/api/v1/hotspots", headers=officer)).json()
            mine = [h for h in listed["hotspots"] if set(ids) & set(h["members"])]
            return mine[0] if mine and len(mine[0]["members"]) == 3 else None

        hotspot = await eventually(grouped)
        assert sorted(hotspot["members"]) == sorted(ids) and other["_id"] not in hotspot["members"]
        assert hotspot["place"]["desa"]["name"] == "Paramasan Bawah"
        assert hotspot["state"] == "suggested"
        url = f"/api/v1/hotspots/{hotspot['id']}"

        # The operator's view: `lapor hotspots --json` lists it with members and place.
        cli = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "tools.cli", "hotspots", "--json",
            "--mongo", stack.mongo, "--db", stack.mongo_db,
            stdout=asyncio.subprocess.PIPE,
        )  # fmt: skip
        out, _ = await asyncio.wait_for(cli.communicate(), timeout=120)
        assert cli.returncode == 0
        [listed] = [h for h in json.loads(out) if h["id"] == hotspot["id"]]
        assert sorted(listed["members"]) == sorted(ids) and listed["agency"] == "BPBD"
        assert listed["place"]["desa"]["code"] == hotspot["place"]["desa"]["code"]
        assert listed["state"] == "suggested"

        r = await http.post(f"{url}/confirm", headers=admin)
        assert r.status_code == 200 and r.json()["state"] == "confirmed"
        r = await http.post(f"{url}/answer", json={"text": ANSWER}, headers=officer)
        assert r.status_code == 200, r.text
        assert len(r.json()["command_ids"]) == 3
        # Sent again (a retry): the same commands, which intake takes once.
        again = await http.post(f"{url}/answer", json={"text": ANSWER}, headers=officer)
        assert again.json()["command_ids"] == r.json()["command_ids"]

    async def all_answered() -> list[dict[str, Any]] | None:
        docs = [await db.complaints.find_one({"_id": i}) for i in ids]
        return docs if all(d["state"] == "responded" for d in docs) else None

    for doc in await eventually(all_answered):
        answers = [h for h in doc["history"] if h.get("state") == "responded"]
        assert len(answers) == 1 and answers[0]["actor"] == "agency:rahmat"
        assert doc["answer"]["text"] == ANSWER
        # Each keeps its own deadlines.
        assert doc["deadlines"]["answer"] is not None
    assert (await db.complaints.find_one({"_id": other["_id"]}))["state"] != "responded"

    async def texted() -> bool:
        return all(any("pompa" in m["text"] for m in outbox.to(sender)) for sender in SENDERS[:3])

    assert await eventually(texted)
    assert not any("pompa" in m["text"] for m in outbox.to(SENDERS[3]))

    async def announced() -> list[str] | None:
        kinds = [c["change"] for c in changes.got if c["hotspot_id"] == hotspot["id"]]
        return kinds if "answered" in kinds else None

    assert await eventually(announced) == ["formed", "joined", "confirmed", "answered"]
    await changes.detach()
    await outbox.detach()


@pytest.mark.security
async def test_another_agency_cannot_see_or_answer_a_hotspot(
    stack: Stack, nc: Any, db: Any
) -> None:
    texts = (
        "BANJAR lampu jalan di desa remo kec paramasan mati semua gelap gulita",
        "BANJAR pju di desa remo paramasan padam sudah seminggu jalan gelap",
    )
    docs = [
        await _file(nc, db, s, t)
        for s, t in zip(("+6281234500721", "+6281234500722"), texts, strict=True)
    ]
    agency = docs[0]["agency"]
    holder = await _token(db, Role.AGENCY, "andi", agency)
    stranger = await _token(db, Role.AGENCY, "sari", "DINKES" if agency != "DINKES" else "PUPR")
    async with httpx.AsyncClient(base_url=stack.url("hotspots")) as http:

        async def grouped() -> dict[str, Any] | None:
            listed = (await http.get("/api/v1/hotspots", headers=holder)).json()
            mine = [h for h in listed["hotspots"] if docs[0]["_id"] in h["members"]]
            return mine[0] if mine else None

        hotspot = await eventually(grouped)
        url = f"/api/v1/hotspots/{hotspot['id']}"
        listed = (await http.get("/api/v1/hotspots", headers=stranger)).json()
        assert hotspot["id"] not in [h["id"] for h in listed["hotspots"]]
        assert (await http.get(url, headers=stranger)).status_code == 404
        r = await http.post(f"{url}/answer", json={"text": "bukan kami"}, headers=stranger)
        assert r.status_code == 404
        r = await http.get("/api/v1/hotspots", params={"agency": agency}, headers=stranger)
        assert r.status_code == 403
        assert (await http.get(url)).status_code == 401
    for doc in docs:
        assert (await db.complaints.find_one({"_id": doc["_id"]}))["state"] == "assigned"


async def test_members_lives_withdrawals_refusals_and_the_closed_hotspot(
    stack: Stack, nc: Any, db: Any
) -> None:
    texts = (
        "BANJAR jalan desa angkipih kec paramasan terendam banjir tdk bisa dilewati motor",
        "BANJAR banjir merendam jalan di angkipih paramasan air setinggi lutut tdk bisa lewat",
    )
    senders = ("+6281234500731", "+6281234500732")
    docs = [await _file(nc, db, s, t) for s, t in zip(senders, texts, strict=True)]
    ids = [doc["_id"] for doc in docs]
    officer = await _token(db, Role.AGENCY, "wahyu", docs[0]["agency"])
    async with httpx.AsyncClient(base_url=stack.url("hotspots")) as http:

        async def grouped() -> dict[str, Any] | None:
            listed = (await http.get("/api/v1/hotspots", headers=officer)).json()
            mine = [h for h in listed["hotspots"] if set(ids) <= set(h["members"])]
            return mine[0] if mine else None

        hotspot = await eventually(grouped)
        url = f"/api/v1/hotspots/{hotspot['id']}"

        def member(tracking_id: str, field: str, wanted: Any = None) -> Any:
            """A probe: the member once `field` is `wanted` (or, without it, not empty)."""

            async def probe() -> dict[str, Any] | None:
                detail = (await http.get(url, headers=officer)).json()
                [found] = [m for m in detail["member_details"] if m["tracking_id"] == tracking_id]
                value = found.get(field)
                return found if (value == wanted if wanted is not None else value) else None

            return probe

        # The first citizen withdraws: the hotspot shows it, and stays open for the other.
        await _sms(nc, senders[0], f"BATAL {ids[0]}")
        withdrawn = await eventually(member(ids[0], "outcome", "withdrawn"))
        assert withdrawn["state"] == "closed" and withdrawn["closed"]
        # Answering all: intake refuses the withdrawn one, the hotspot shows why.
        r = await http.post(f"{url}/answer", json={"text": ANSWER}, headers=officer)
        assert r.status_code == 200, r.text
        refused = await eventually(member(ids[0], "refusals"))
        assert refused["refusals"][0]["round"] == 1
        await eventually(member(ids[1], "state", "responded"))
        # The last open member withdraws too: the hotspot is closed and leaves the list.
        await _sms(nc, senders[1], f"BATAL {ids[1]}")

        async def closed() -> dict[str, Any] | None:
            detail = (await http.get(url, headers=officer)).json()
            return detail if detail["state"] == "closed" else None

        await eventually(closed)
        listed = (await http.get("/api/v1/hotspots", headers=officer)).json()
        assert hotspot["id"] not in [h["id"] for h in listed["hotspots"]]


async def _sms(nc: Any, sender: str, text: str) -> None:
    await nc.jetstream().publish(
        subjects.INBOUND_SMS, json.dumps(sms_payload(sender, text)).encode()
    )
