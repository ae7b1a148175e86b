"""A citizen's SMS through the real Kannel: injected at the SMSC (fakesmsc), handed
by smsbox to the connector, stored as a complaint; the acknowledgement goes back
through Kannel's sendsms to the SMSC and the SMSC's delivery report reaches
notify's delivery log. A restart of Kannel loses and duplicates nothing."""

from __future__ import annotations

import asyncio
import json
import re
import uuid
from typing import Any
from urllib.parse import quote

import httpx
import pytest

from lapor.contracts import subjects
from tests.e2e.helpers import Collector, Outbox, eventually
from tools.devstack import GATEWAY, KANNEL_CHILDREN, Stack

pytestmark = [pytest.mark.kannel, pytest.mark.e2e]

TRACKING = re.compile(r"\bLPR-[0-9A-Z]{4}-[0-9A-Z]{5}\b")


def _sender() -> str:
    return "+62812" + str(uuid.uuid4().int)[:7]


async def _found(value: Any) -> Any:
    return value


def _at_smsc(stack: Stack, number: str) -> list[tuple[str, str, str]]:
    """SMS the fake SMSC received for `number`, long ones joined: (from, to, text)."""
    digits = number.lstrip("+")
    return [sms for sms in stack.smsc_messages() if sms[1].lstrip("+") == digits]


async def test_sms_from_the_smsc_becomes_a_complaint_and_is_answered_and_delivered(
    kannel: Stack, nc: Any, kannel_db: Any
) -> None:
    outbox = await Outbox().attach(nc)
    sender = _sender()
    try:
        await asyncio.to_thread(
            kannel.inject_sms, sender, "BANJAR jalan rusak berlubang di depan pasar Martapura"
        )
        reply = (await eventually(lambda: _found(outbox.to(sender)), timeout=60))[0]
    finally:
        await outbox.detach()
    complaint = await kannel_db.complaints.find_one({"_id": reply["complaint_id"]})
    assert complaint is not None
    assert complaint["source_key"].startswith("sms:kannel:")

    # The acknowledgement reached the SMSC through Kannel, with the tracking id.
    lines = await eventually(lambda: _found(_at_smsc(kannel, sender)), timeout=60)
    assert len(lines) == 1
    sender_at_smsc, _to, text = lines[0]
    assert sender_at_smsc == "1708"
    assert text == reply["text"]
    assert TRACKING.search(text)

    # fakesmsc reports every SMS delivered; notify's delivery log shows it.
    async def delivered() -> dict[str, Any] | None:
        return await kannel_db.notifications.find_one(
            {"_id": reply["notification_id"], "status": "delivered"}
        )

    assert await eventually(delivered, timeout=60)
    submission = await kannel_db.gateway_submissions.find_one({"_id": reply["notification_id"]})
    assert submission is not None
    assert submission["status"] == "submitted"
    assert submission["outcome"] == "delivered"


async def test_unicode_sms_arrives_whole(kannel: Stack, nc: Any) -> None:
    text = "BANJAR air PDAM keruh “coklat” sejak 3 hari — tolong 🙏 ditindak"
    sender = _sender()
    got: list[dict[str, Any]] = []

    async def on_msg(msg: Any) -> None:
        got.append(json.loads(msg.data))

    sub = await nc.subscribe(subjects.INBOUND_SMS, cb=on_msg)
    try:
        await asyncio.to_thread(kannel.inject_sms, sender, text)
        mine = await eventually(lambda: _found([m for m in got if m["from"] == sender]), 60)
    finally:
        await sub.unsubscribe()
    assert mine[0]["text"] == text
    assert mine[0]["gateway_id"].startswith("kannel:")


def _written_forms(number: str) -> list[bytes]:
    """A number as a log line could write it: +62…, 62…, 08…, and %2B62… in a URL."""
    digits = number.lstrip("+")
    local = "0" + digits.removeprefix("62")
    return [form.encode() for form in (number, digits, local, quote(number, safe=""))]


def _kannel_logs(stack: Stack) -> dict[str, bytes]:
    """Kannel's own log files (bearerbox, smsbox, and any access log) as they are, and
    what the boxes wrote to their consoles (the stack's capture of each process)."""
    folder = stack.workdir / "kannel" / "logs"
    found = {path.name: path.read_bytes() for path in sorted(folder.iterdir())}
    for box in ("bearerbox", "smsbox"):
        console = stack.workdir / "logs" / f"{box}.log"
        if console.exists():
            found[f"console/{box}.log"] = console.read_bytes()
    return found


@pytest.mark.security
async def test_sms_received_while_the_connector_is_down_arrives_once(
    kannel: Stack, nc: Any, kannel_db: Any
) -> None:
    inbound = await Collector().attach(nc, subjects.INBOUND_SMS)
    sender = _sender()
    smsbox_log = kannel.workdir / "kannel" / "logs" / "smsbox.log"
    try:
        kannel.children[GATEWAY].stop()
        offset = smsbox_log.stat().st_size
        await asyncio.to_thread(
            kannel.inject_sms, sender, "BANJAR lampu jalan mati di Sungai Tabuk"
        )

        def retried() -> bool:
            with smsbox_log.open("rb") as fh:
                fh.seek(offset)
                return b"Couldn't fetch" in fh.read()

        # smsbox got no answer and keeps the SMS for another attempt.
        await eventually(lambda: asyncio.to_thread(retried), timeout=30)
        await asyncio.to_thread(kannel.start_gateway)
        mine = await eventually(
            lambda: _found([m for m in inbound.got if m["from"] == sender]), timeout=60
        )
        await eventually(inbound.drained, timeout=30)
    finally:
        await inbound.detach()
    assert len(mine) == 1
    source_key = f"sms:{mine[0]['gateway_id']}"
    assert await eventually(lambda: kannel_db.complaints.find_one({"source_key": source_key}), 60)
    assert await kannel_db.complaints.count_documents({"source_key": source_key}) == 1

    # The failed callbacks (and the acknowledgement sent back to the citizen
    # through sendsms) are in Kannel's logs without the citizen's number.
    await eventually(lambda: _found(_at_smsc(kannel, sender)), timeout=60)
    logs = await asyncio.to_thread(_kannel_logs, kannel)
    assert b"Couldn't fetch" in logs["smsbox.log"]
    leaks = {
        (name, form.decode())
        for name, text in logs.items()
        for form in _written_forms(sender)
        if form in text
    }
    assert leaks == set()


@pytest.mark.security
async def test_a_callback_without_the_token_is_refused(kannel: Stack) -> None:
    async with httpx.AsyncClient() as client:
        answer = await client.post(
            f"{kannel.url(GATEWAY)}/kannel/mo",
            params={"id": "x1"},
            headers={"X-Kannel-From": "+6281200000000", "X-Kannel-To": "1708"},
            content=b"BANJAR palsu",
        )
    assert answer.status_code == 403
    async with httpx.AsyncClient() as client:
        forged = await client.get(
            f"{kannel.url(GATEWAY)}/kannel/dlr",
            params={"token": "guessed", "id": "bi0x", "type": "1"},
        )
    assert forged.status_code == 403


def _outbound(number: str, text: str) -> dict[str, Any]:
    return {
        "to": number,
        "text": text,
        "complaint_id": None,
        "notification_id": f"kannel-test-{uuid.uuid4().hex[:16]}",
    }


async def test_kannel_restart_loses_and_duplicates_nothing(kannel: Stack, nc: Any) -> None:
    js = nc.jetstream()
    receipts = await Collector().attach(nc, subjects.OUTBOUND_SMS_STATUS)
    number = _sender()
    sent = [_outbound(number, f"Pesan uji {i} sebelum restart") for i in range(20)]
    sent += [_outbound(number, f"Pesan uji {i} saat Kannel mati ✓") for i in range(20)]
    try:
        for message in sent[:20]:
            await js.publish(
                subjects.OUTBOUND_SMS,
                json.dumps(message).encode(),
                headers={"Nats-Msg-Id": message["notification_id"]},
            )
        # Kannel goes away while the first ones are on their way.
        await eventually(lambda: _found(_at_smsc(kannel, number)), timeout=30)
        for name in reversed(KANNEL_CHILDREN):
            kannel.children[name].stop()
        for message in sent[20:]:
            await js.publish(
                subjects.OUTBOUND_SMS,
                json.dumps(message).encode(),
                headers={"Nats-Msg-Id": message["notification_id"]},
            )

        async def refused_while_down() -> bool:
            text = await asyncio.to_thread(_metrics, kannel)
            return "lapor_gateway_kannel_errors_total{kind=" in text

        await eventually(refused_while_down, timeout=30)
        await asyncio.to_thread(kannel.start_kannel)

        def all_arrived() -> list[str] | None:
            lines = _at_smsc(kannel, number)
            return lines if len(lines) >= len(sent) else None

        await eventually(lambda: asyncio.to_thread(all_arrived), timeout=120)

        def delivered_receipts() -> set[str]:
            return {r["notification_id"] for r in receipts.got if r["status"] == "delivered"}

        wanted = {m["notification_id"] for m in sent}
        await eventually(lambda: _found(wanted <= delivered_receipts()), timeout=60)
        await eventually(receipts.drained, timeout=30)
    finally:
        await receipts.detach()

    texts = sorted(text for _from, _to, text in _at_smsc(kannel, number))
    assert texts == sorted(m["text"] for m in sent)
    mine = [r for r in receipts.got if r["notification_id"] in wanted]
    assert sorted(r["notification_id"] for r in mine) == sorted(wanted)


def _metrics(stack: Stack) -> str:
    return httpx.get(f"{stack.url(GATEWAY)}/metrics", timeout=5).text


async def test_smsc_link_is_reported_by_the_metrics(kannel: Stack) -> None:
    def link_up() -> str | None:
        text = _metrics(kannel)
        return text if 'lapor_gateway_smsc_up{smsc="fake"} 1.0' in text else None

    text = await eventually(lambda: asyncio.to_thread(link_up), timeout=30)
    assert "lapor_gateway_kannel_up 1.0" in text
    assert "+62" not in text
