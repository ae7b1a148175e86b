"""A routing decision that arrives after the complaint moved on changes nothing.

Intake's real handlers on the real servers; the router's decisions are published
by the test, late, exactly as a slow router would publish them.
"""

from __future__ import annotations

import json
from typing import Any

import pytest

from lapor.contracts import ComplaintRouted, Priority, subjects
from lapor.contracts.commands import Action, Actor, ComplaintCommand, Role
from services.intake import changes
from tests.e2e.helpers import consumers_idle, eventually, sms_payload
from tests.factories import complaint_routed
from tests.integration.intake_harness import running_intake
from tools.devstack import Stack

pytestmark = [pytest.mark.integration]

ADMIN = Actor(role=Role.ADMIN, id="admin-kominfo")
AGENCIES = {"banjar": frozenset({"PUPR", "DLH", "DISHUB", "OUT_OF_SCOPE"})}


def routed(doc: dict[str, Any], round_: int, agency: str, **fields: Any) -> ComplaintRouted:
    return complaint_routed(
        doc["_id"], round_=round_, received_at=doc["received_at"], agency=agency, **fields
    )


async def _publish(nc: Any, event: ComplaintRouted) -> None:
    await nc.jetstream().publish(
        subjects.COMPLAINT_ROUTED,
        event.model_dump_json().encode(),
        headers={"Nats-Msg-Id": event.event_id},
    )


async def _settled(nc: Any) -> None:
    """Until intake has acknowledged every routing decision published so far."""
    await consumers_idle(nc.jetstream(), [(subjects.EVENTS_STREAM.name, "intake-routed")])


async def _file(nc: Any, db: Any, sender: str, text: str) -> dict[str, Any]:
    payload = sms_payload(sender, text)
    await nc.publish(subjects.INBOUND_SMS, json.dumps(payload).encode())
    source = f"sms:{payload['gateway_id']}"
    return await eventually(lambda: db.complaints.find_one({"source_key": source}))


def _command(doc: dict[str, Any], action: Action, **fields: Any) -> ComplaintCommand:
    return ComplaintCommand(
        command_id=f"{action.value}-{doc['_id']}",
        complaint_id=doc["_id"],
        action=action,
        actor=ADMIN,
        **fields,
    )


async def test_late_routing_leaves_archived_and_admin_decided_complaints_alone(
    own_servers: Stack, own_nc: Any, own_mongo: Any
) -> None:
    db = own_mongo["lapor_late_routing"]
    async with running_intake(
        own_servers, own_mongo, "lapor_late_routing", agencies=AGENCIES
    ) as deps:
        # Archived by an admin before the router answered.
        archived = await _file(own_nc, db, "+6281234500401", "BANJAR jalan rusak di desa kami")
        await changes.execute(_command(archived, Action.REJECT, text="laporan uji"), deps)
        before = await db.complaints.find_one({"_id": archived["_id"]})

        # Decided by an admin while still received: the router's first round is over.
        decided = await _file(
            own_nc, db, "+6281234500402", "BANJAR sampah menumpuk di pinggir jalan raya"
        )
        await changes.execute(
            _command(decided, Action.DECIDE_TRIAGE, agency="DLH", priority=Priority.HIGH), deps
        )

        await _publish(own_nc, routed(archived, 0, "PUPR"))
        await _publish(own_nc, routed(decided, 0, "PUPR"))
        await _settled(own_nc)

        after = await db.complaints.find_one({"_id": archived["_id"]})
        assert after["state"] == "rejected" and after["agency"] is None
        assert after["history"] == before["history"]
        waiting = await db.complaints.find_one({"_id": decided["_id"]})
        assert waiting["state"] == "received" and waiting["agency"] is None

        # The admin's own round is recorded; a redelivery of it is absorbed.
        admin_round = routed(decided, 1, "DLH", decided_by="admin:admin-kominfo")
        await _publish(own_nc, admin_round)
        assigned = await eventually(lambda: _in_state(db, decided["_id"], "assigned"))
        assert assigned["agency"] == "DLH"
        await own_nc.jetstream().publish(
            subjects.COMPLAINT_ROUTED,
            admin_round.model_dump_json().encode(),
            headers={"Nats-Msg-Id": "redelivered"},
        )
        await _settled(own_nc)
        again = await db.complaints.find_one({"_id": decided["_id"]})
        assert len(again["history"]) == len(assigned["history"])


async def test_refused_merge_and_triage_change_nothing_and_say_why_on_the_bus(
    own_servers: Stack, own_nc: Any, own_mongo: Any
) -> None:
    db = own_mongo["lapor_refused_refs"]
    rejected: list[dict[str, Any]] = []

    async def on_rejected(msg: Any) -> None:
        rejected.append(json.loads(msg.data))

    sub = await own_nc.subscribe(subjects.COMMAND_REJECTED, cb=on_rejected)
    async with running_intake(own_servers, own_mongo, "lapor_refused_refs", agencies=AGENCIES):
        doc = await _file(own_nc, db, "+6281234500403", "BANJAR lampu jalan mati di gang kami")
        before = await db.complaints.find_one({"_id": doc["_id"]})
        js = own_nc.jetstream()
        for command in (
            _command(doc, Action.MERGE, duplicate_of="LPR-0000-00000"),
            _command(doc, Action.DECIDE_TRIAGE, agency="DINAS_X", priority=Priority.NORMAL),
        ):
            await js.publish(
                f"{subjects.COMMAND_PREFIX}.{command.action.value}",
                command.model_dump_json().encode(),
                headers={"Nats-Msg-Id": command.command_id},
            )
        await eventually(lambda: _count(rejected, 2))
    await sub.unsubscribe()

    reasons = {r["action"]: r["reason"] for r in rejected}
    assert "no existing complaint: LPR-0000-00000" in reasons["merge"]
    assert "unknown agency code 'DINAS_X'" in reasons["decide_triage"]
    after = await db.complaints.find_one({"_id": doc["_id"]})
    assert after["history"] == before["history"] and after["state"] == "received"


async def _in_state(db: Any, tracking_id: str, state: str) -> dict[str, Any] | None:
    doc = await db.complaints.find_one({"_id": tracking_id})
    return doc if doc and doc["state"] == state else None


async def _count(items: list[Any], n: int) -> bool:
    return len(items) >= n
