"""An SMS travels through all four services and comes back as a reply, stored with its history.

Runs the four services as separate processes against the real nats-server and FerretDB.
"""

from __future__ import annotations

import json
import re
from typing import Any

import httpx
import pytest

from lapor.contracts import subjects
from tests.e2e.helpers import SMS_PATH, Outbox, consumers_idle, eventually, sms_payload
from tools.devstack import Stack

pytestmark = [pytest.mark.e2e]

TRACKING = re.compile(r"\b[A-Z0-9]{3}-[A-Z0-9-]{4,}\b")


async def _complaint(db: Any, **query: Any) -> dict[str, Any] | None:
    return await db.complaints.find_one(query)


async def _assigned(db: Any, source_key: str) -> dict[str, Any] | None:
    doc = await _complaint(db, source_key=source_key)
    if doc and doc["state"] == "assigned" and doc["deadlines"]["answer"] is not None:
        return doc
    return None


async def test_core_nats_sms_is_stored_routed_timed_and_answered(
    stack: Stack, nc: Any, db: Any
) -> None:
    outbox = await Outbox().attach(nc)
    sender = "+6281234500001"
    payload = sms_payload(sender, "BANJAR jalan rusak berlubang besar di depan pasar Martapura")

    # Plain core NATS publish, exactly what `nats pub lapor.inbound.sms '{...}'` does.
    await nc.publish(subjects.INBOUND_SMS, json.dumps(payload).encode())

    doc = await eventually(lambda: _assigned(db, f"sms:{payload['gateway_id']}"))
    replies = await eventually(lambda: _async(outbox.to(sender)))
    reply = replies[0]

    assert doc["agency"] == "PUPR"
    assert doc["priority"] in {"normal", "high"}
    assert reply["complaint_id"] == doc["_id"]
    assert doc["_id"] in reply["text"]
    assert reply["notification_id"]
    # The answer date the citizen is told is the stored answer deadline.
    answer = doc["deadlines"]["answer"].astimezone()
    assert str(answer.year) in reply["text"]

    states = [h["state"] for h in sorted(doc["history"], key=lambda h: h["at"]) if h["state"]]
    assert states == ["received", "assigned"]
    for entry in doc["history"]:
        assert entry["actor"] and entry["reason"] and entry["event_id"]

    async with httpx.AsyncClient(base_url=stack.url("intake")) as http:
        view = (await http.get(f"/api/v1/complaints/{doc['_id']}")).json()
    assert view["state"] == "assigned"
    assert view["agency"] == "PUPR"
    assert view["deadlines"]["answer"].endswith("+08:00")  # Banjar: WITA
    assert view["received_at"].endswith("+08:00")
    # "pasar Martapura": the router placed it, intake kept it, the view shows it.
    assert doc["place"]["kecamatan"] == {"code": "63.03.05", "name": "Martapura"}
    assert view["place"]["kecamatan"]["code"] == "63.03.05"
    assert len(view["history"]) == len(doc["history"])
    assert sender not in json.dumps(view)
    await outbox.detach()


async def test_jetstream_sms_and_gateway_retries_make_one_complaint_and_one_reply(
    stack: Stack, nc: Any, db: Any
) -> None:
    outbox = await Outbox().attach(nc)
    sender = "+6281234500002"
    payload = sms_payload(sender, "BANJAR air PDAM mati sudah tiga hari di Kelurahan Jawa")
    body = json.dumps(payload).encode()
    js = nc.jetstream()

    first = await js.publish(
        subjects.INBOUND_SMS, body, headers={"Nats-Msg-Id": payload["gateway_id"]}
    )
    again = await js.publish(
        subjects.INBOUND_SMS, body, headers={"Nats-Msg-Id": payload["gateway_id"]}
    )
    assert not first.duplicate and again.duplicate  # JetStream dropped the re-publish
    # A gateway retry without a message id gets past JetStream; intake must absorb it.
    await nc.publish(subjects.INBOUND_SMS, body)
    await js.publish(subjects.INBOUND_SMS, body)

    await eventually(lambda: _assigned(db, f"sms:{payload['gateway_id']}"))
    await eventually(lambda: _async(outbox.to(sender)))
    # Every copy has been through the whole path once this holds: a stray
    # duplicate would be stored or sent by now.
    await consumers_idle(js, SMS_PATH)

    assert await db.complaints.count_documents({"source_key": f"sms:{payload['gateway_id']}"}) == 1
    assert len(outbox.to(sender)) == 1
    await outbox.detach()


async def test_redelivered_event_changes_nothing(stack: Stack, nc: Any, db: Any) -> None:
    outbox = await Outbox().attach(nc)
    sender = "+6281234500003"
    payload = sms_payload(sender, "BANJAR sampah menumpuk di pinggir jalan tidak diangkut seminggu")
    await nc.publish(subjects.INBOUND_SMS, json.dumps(payload).encode())
    doc = await eventually(lambda: _assigned(db, f"sms:{payload['gateway_id']}"))
    await eventually(lambda: _async(outbox.to(sender)))

    # Deliver the same domain event again under a new message id, as a consumer
    # redelivery after a lost ack would: every handler downstream must ignore it.
    received = await _stream_message(nc, subjects.COMPLAINT_RECEIVED, doc["_id"])
    routed = await _stream_message(nc, subjects.COMPLAINT_ROUTED, doc["_id"])
    js = nc.jetstream()
    await js.publish(subjects.COMPLAINT_RECEIVED, received, headers={"Nats-Msg-Id": "replay-1"})
    await js.publish(subjects.COMPLAINT_ROUTED, routed, headers={"Nats-Msg-Id": "replay-2"})
    await consumers_idle(js, SMS_PATH)

    after = await db.complaints.find_one({"_id": doc["_id"]})
    assert len(after["history"]) == len(doc["history"])
    assert len(outbox.to(sender)) == 1
    await outbox.detach()


async def test_invalid_payload_is_kept_rejected_answered_once_and_not_redelivered(
    stack: Stack, nc: Any, db: Any
) -> None:
    outbox = await Outbox().attach(nc)
    sender = "+6281234500009"
    js = nc.jetstream()
    not_json = await js.publish(subjects.INBOUND_SMS, b"{this is not json")
    unreadable = await js.publish(subjects.INBOUND_SMS, json.dumps({"from": "+628123"}).encode())
    # A gateway bug drops the text; the sender, written nationally, is still readable.
    no_text = await js.publish(
        subjects.INBOUND_SMS, json.dumps({"from": "081234500009", "to": "1708"}).encode()
    )
    acks = (not_json, unreadable, no_text)
    letter_ids = [f"{ack.stream}:{ack.seq}" for ack in acks]

    letters = await eventually(lambda: _all_found(db.dead_letters, "_id", letter_ids))
    assert {d["reason"] for d in letters} == {"contract_violation"}
    assert all(d["service"] == "intake" for d in letters)
    keys = [f"bus:{letter_id}" for letter_id in letter_ids]
    records = await eventually(lambda: _all_found(db.rejections, "source_key", keys))
    by_key = {r["source_key"]: r for r in records}
    assert {r["reason"] for r in records} == {"malformed"}
    assert all(r["channel"] == "sms" for r in records)
    assert all(r["payload"]["payload_sealed"].startswith("pii2.") for r in records)
    assert by_key[keys[0]]["reporter"]["phone_hash"] is None
    assert by_key[keys[1]]["reporter"]["phone_hash"] is None
    assert len(by_key[keys[2]]["reporter"]["phone_hash"]) == 32
    assert [r["answered"] for r in (by_key[k] for k in keys)] == [False, False, True]
    assert "81234500009" not in json.dumps(records, default=str)

    replies = await eventually(lambda: _async(outbox.to(sender)))
    assert "BANJAR" in replies[0]["text"]  # the format, with an example

    # Acknowledged at the first delivery: a redelivery would come only after the
    # consumer's first backoff (10 s), and would show in the delivery count.
    async def acked() -> Any:
        info = await js.consumer_info(no_text.stream, "intake-sms")
        return info if info.ack_floor.stream_seq >= max(a.seq for a in acks) else None

    info = await eventually(acked, timeout=8)
    assert info.num_redelivered == 0 and info.num_ack_pending == 0
    await consumers_idle(js, SMS_PATH)  # a second reply, if any, would be sent by now
    assert len(outbox.to(sender)) == 1
    handled = [
        line
        for line in _log_lines(stack, "intake")
        if line.get("logger") == "lapor.messages" and line.get("outcome") == "dead_letter"
    ]
    assert len(handled) >= len(acks)
    assert {line["delivery"] for line in handled} == {1}
    await outbox.detach()


async def test_unknown_region_gets_a_clear_reply_and_is_kept(
    stack: Stack, nc: Any, db: Any
) -> None:
    outbox = await Outbox().attach(nc)
    sender = "+6281234500004"
    payload = sms_payload(sender, "halo pak jalan di kampung kami rusak parah mohon diperbaiki")
    await nc.publish(subjects.INBOUND_SMS, json.dumps(payload).encode())
    record = await eventually(
        lambda: db.rejections.find_one({"source_key": f"sms:{payload['gateway_id']}"})
    )
    replies = await eventually(lambda: _async(outbox.to(sender)))
    assert record["reason"] == "unknown_region"
    assert "BANJAR" in replies[0]["text"]
    await outbox.detach()


async def _async(value: Any) -> Any:
    return value


async def _all_found(collection: Any, field: str, values: list[str]) -> list[dict[str, Any]]:
    found = await collection.find({field: {"$in": values}}).to_list(len(values))
    return found if len(found) == len(values) else []


def _log_lines(stack: Stack, service: str) -> list[dict[str, Any]]:
    path = stack.workdir / "logs" / f"{service}.log"
    text = path.read_text(encoding="utf-8") if path.exists() else ""
    return [json.loads(line) for line in text.splitlines() if line.startswith("{")]


async def _stream_message(nc: Any, subject: str, complaint_id: str) -> bytes:
    js = nc.jetstream()
    sub = await js.subscribe(subject, ordered_consumer=True)
    try:
        while True:
            msg = await sub.next_msg(timeout=5)
            if json.loads(msg.data).get("complaint_id") == complaint_id:
                return bytes(msg.data)
    finally:
        await sub.unsubscribe()


async def test_citizen_checks_status_by_sms_and_strangers_learn_nothing(
    stack: Stack, nc: Any, db: Any
) -> None:
    outbox = await Outbox().attach(nc)
    sender, stranger = "+6281234500005", "+6281234500006"
    payload = sms_payload(sender, "BANJAR lampu lalu lintas di simpang empat mati sejak kemarin")
    await nc.publish(subjects.INBOUND_SMS, json.dumps(payload).encode())
    doc = await eventually(lambda: _assigned(db, f"sms:{payload['gateway_id']}"))
    await eventually(lambda: _async(outbox.to(sender)))

    await nc.publish(
        subjects.INBOUND_SMS, json.dumps(sms_payload(sender, f"CEK {doc['_id']}")).encode()
    )
    await nc.publish(
        subjects.INBOUND_SMS, json.dumps(sms_payload(stranger, f"cek {doc['_id']}")).encode()
    )
    own = await eventually(lambda: _async(outbox.to(sender)[1:]))
    foreign = await eventually(lambda: _async(outbox.to(stranger)))

    assert doc["_id"] in own[0]["text"] and "Didisposisikan" in own[0]["text"]
    assert "tidak ditemukan" in foreign[0]["text"]
    assert "Didisposisikan" not in foreign[0]["text"]

    # Rating before the agency answered: refused as on the web, and nothing is stored.
    before = await db.complaints.find_one({"_id": doc["_id"]})
    await nc.publish(
        subjects.INBOUND_SMS,
        json.dumps(sms_payload(sender, f"NILAI {doc['_id']} 4 cepat ditanggapi")).encode(),
    )
    refusal = await eventually(lambda: _async(outbox.to(sender)[2:]))
    assert doc["_id"] in refusal[0]["text"] and "belum dapat dicatat" in refusal[0]["text"]
    assert "Terima kasih atas nilai" not in refusal[0]["text"]
    rated = await db.complaints.find_one({"_id": doc["_id"]})
    assert "rating" not in rated
    assert rated["state"] == "assigned"
    assert len(rated["history"]) == len(before["history"])
    await outbox.detach()


async def test_an_overlong_sms_is_cut_and_the_citizen_is_told(
    stack: Stack, nc: Any, db: Any
) -> None:
    outbox = await Outbox().attach(nc)
    sender = "+6281234500007"
    long_text = "BANJAR " + "jalan rusak berlubang besar di depan pasar Martapura, " * 40
    payload = sms_payload(sender, long_text)
    await nc.publish(subjects.INBOUND_SMS, json.dumps(payload).encode())
    doc = await eventually(lambda: _assigned(db, f"sms:{payload['gateway_id']}"))
    replies = await eventually(lambda: _async(outbox.to(sender)))

    assert doc["text_truncated"] and len(doc["text"]) <= 1600 < len(long_text)
    stored = doc["history"][0]
    assert stored["detail"] == {"text_truncated": True, "kept_chars": len(doc["text"])}
    assert len(replies) == 1 and doc["_id"] in replies[0]["text"]
    assert "hanya 1600 huruf pertama" in replies[0]["text"]
    await outbox.detach()
