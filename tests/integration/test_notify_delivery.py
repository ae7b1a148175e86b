"""Notify's delivery guarantees against real servers, notify's handlers in-process.

Real nats-server and FerretDB (module servers), a real SMTP server (aiosmtpd)
and a real HTTP server (uvicorn) standing in for the SMS gateway and for
agency webhooks. The HTTP stub answers each recipient from a script: ok,
500, slow (beyond the client's timeout) or 400; the SMTP server refuses
chosen mailboxes with 550.
"""

from __future__ import annotations

import asyncio
import email
import email.policy
import json
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

import httpx
import pytest
import pytest_asyncio
import uvicorn
from aiosmtpd.controller import Controller
from fastapi import FastAPI
from pydantic import BaseModel
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

from lapor.contracts import (
    Channel,
    ComplaintReceived,
    ComplaintRouted,
    DeadlineAlert,
    Deadlines,
    DeadlinesSet,
    EscalationLevel,
    EscalationRaised,
    InboundRejected,
    Priority,
    RejectionReason,
    SlaClock,
    SmsDeliveryReceipt,
    State,
    subjects,
)
from lapor.directory import AgencyDirectory, Contact, Contacts, load_directory
from lapor.regions import load_regions
from lapor.runtime.service import Late, Runtime, build_runtime
from lapor.runtime.settings import InfraSettings
from lapor.tokens import in_memory_tokens
from services.notify import signing
from services.notify.api import delivery_router
from services.notify.catalog import AgencyCatalog, SmsRenderer
from services.notify.channels import OutgoingMessage
from services.notify.delivery import Deliverer, Notification, NotifyMetrics
from services.notify.repository import NotificationRepository
from services.notify.settings import NotifySettings
from services.notify.templates import TemplateSet
from services.notify.usecases import NotifyDeps
from services.notify.wiring import make_deps, register
from tests.contacts import sealed
from tests.e2e.helpers import consumers_idle, eventually
from tests.factories import complaint_routed
from tools.devstack import ROOT, Stack, free_port

pytestmark = [pytest.mark.integration]

DB_NAME = "lapor_notify_delivery"
PUPR_SECRET = "pupr-webhook-secret-0123456789"
DINKES_SECRET = "dinkes-webhook-secret-012345678"
NOW = datetime.now(UTC)


# --- a real HTTP server: SMS gateway API and agency webhooks --------------------------


@dataclass
class Call:
    path: str
    headers: dict[str, str]
    body: bytes
    verified: bool | None = None

    @property
    def json(self) -> Any:
        return json.loads(self.body)


@dataclass
class HttpStub:
    """Answers from a per-recipient script; `ok` once the script is used up."""

    scripts: dict[str, list[str]] = field(default_factory=dict)
    calls: list[Call] = field(default_factory=list)
    secrets: dict[str, str] = field(default_factory=dict)

    def to(self, key: str) -> list[Call]:
        return [c for c in self.calls if self._key(c) == key]

    @staticmethod
    def _key(call: Call) -> str:
        return call.json["to"] if call.path == "/sms" else call.path

    async def handle(self, request: Request) -> JSONResponse:
        call = Call(request.url.path, dict(request.headers), await request.body())
        if call.path.startswith("/hooks/"):
            secret = self.secrets[call.path.removeprefix("/hooks/")]
            # The receiver's side: recompute the signature over the raw body.
            call.verified = signing.verify(secret, call.headers, call.body, time.time())
        self.calls.append(call)
        script = self.scripts.get(self._key(call), [])
        answer = script.pop(0) if script else "ok"
        if answer == "slow":  # beyond the client's timeout: the answer never arrives in time
            await asyncio.sleep(1.5)
        if answer == "pause":  # slow, but within the client's timeout
            await asyncio.sleep(0.3)
        if answer == "500":
            return JSONResponse({"error": "gateway overloaded"}, status_code=500)
        if answer == "400":
            return JSONResponse({"error": "invalid number"}, status_code=400)
        return JSONResponse({"accepted": True}, status_code=202)


async def start_http(stub: HttpStub, port: int) -> tuple[uvicorn.Server, asyncio.Task[None]]:
    app = Starlette(routes=[Route("/{path:path}", stub.handle, methods=["POST"])])
    config = uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning", lifespan="off")
    server = uvicorn.Server(config)
    task = asyncio.create_task(server.serve())
    await eventually(lambda: _true(server.started), timeout=10, interval=0.02)
    return server, task


# --- a real SMTP server ----------------------------------------------------------------


@dataclass
class Mailbox:
    refuse: set[str] = field(default_factory=set)
    received: list[tuple[list[str], bytes]] = field(default_factory=list)

    async def handle_RCPT(
        self, server: Any, session: Any, envelope: Any, address: str, rcpt_options: Any
    ) -> str:
        if address in self.refuse:
            return "550 5.1.1 mailbox unavailable"
        envelope.rcpt_tos.append(address)
        return "250 OK"

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        self.received.append((list(envelope.rcpt_tos), envelope.content))
        return "250 OK"

    def to(self, address: str) -> list[bytes]:
        return [content for rcpts, content in self.received if address in rcpts]


# --- notify in-process ------------------------------------------------------------------


@dataclass
class Notify:
    runtime: Runtime
    deps: NotifyDeps
    db: Any
    js: Any
    http: HttpStub
    mail: Mailbox
    base_url: str

    async def publish(self, subject: str, model: BaseModel, msg_id: str) -> int:
        ack = await self.js.publish(
            subject, model.model_dump_json(by_alias=True).encode(), headers={"Nats-Msg-Id": msg_id}
        )
        return int(ack.seq)

    async def record(self, notification_id: str) -> dict[str, Any] | None:
        return await self.db.notifications.find_one({"_id": notification_id})

    async def records(self, complaint_id: str, **query: Any) -> list[dict[str, Any]]:
        return await self.db.notifications.find({"complaint_id": complaint_id, **query}).to_list(
            None
        )

    async def settled(self, *consumers: str, stream: str = subjects.EVENTS_STREAM.name) -> None:
        """Until notify's `consumers` have handled and acknowledged all published so far."""
        await consumers_idle(self.js, [(stream, name) for name in consumers])


def directory_for_tests() -> AgencyDirectory:
    """Banjar's directory with contacts that point at the test servers."""
    base = load_directory(ROOT / "data" / "regions" / "banjar")
    overrides = {
        "PUPR": Contacts(
            liaison=(
                Contact(
                    name="Petugas Pengaduan PUPR",
                    email="liaison@pupr.test.id",
                    webhook=f"{BASE_URL}/hooks/PUPR",
                ),
            ),
            head=(Contact(name="Kepala Dinas PUPR", email="head@pupr.test.id"),),
            sekda=(Contact(email="sekda@banjar.test.id"),),
            ombudsman=(Contact(email="ombudsman@kalsel.test.id"),),
        ),
        "DINKES": Contacts(
            liaison=(Contact(email="refused@dinkes.test.id", webhook=f"{BASE_URL}/hooks/DINKES"),),
        ),
    }
    agencies = tuple(
        a.model_copy(update={"contacts": overrides[a.code]}) if a.code in overrides else a
        for a in base.agencies
    )
    return AgencyDirectory(region=base.region, agencies=agencies)


HTTP_PORT = free_port()
BASE_URL = f"http://127.0.0.1:{HTTP_PORT}"


@pytest_asyncio.fixture(scope="module", loop_scope="session")
async def notify(own_servers: Stack, own_nc: Any, own_mongo: Any) -> AsyncIterator[Notify]:
    stub = HttpStub(secrets={"PUPR": PUPR_SECRET, "DINKES": DINKES_SECRET})
    server, server_task = await start_http(stub, HTTP_PORT)
    mail = Mailbox(refuse={"refused@dinkes.test.id"})
    smtp = Controller(mail, hostname="127.0.0.1", port=free_port())
    smtp.start()

    infra = InfraSettings(  # type: ignore[call-arg]
        NATS_URL=own_servers.nats,
        MONGO_URL=own_servers.mongo,
        MONGO_DB=DB_NAME,
        LAPOR_DATA_DIR=str(ROOT / "data"),
    )
    settings = NotifySettings(
        infra=infra,
        channel="http",
        sms_gateway_url=f"{BASE_URL}/sms",  # type: ignore[arg-type]
        sms_gateway_auth_header="X-Api-Key",
        sms_gateway_auth_value="gateway-key",  # type: ignore[arg-type]
        sms_gateway_timeout_s=0.5,
        smtp_host="127.0.0.1",
        smtp_port=smtp.port,
        smtp_starttls=False,
        smtp_timeout_s=2.0,
        webhook_secrets={"PUPR": PUPR_SECRET, "DINKES": DINKES_SECRET},  # type: ignore[dict-item]
        webhook_timeout_s=1.0,
        retry_base_s=0.2,
        retry_factor=4.0,
        retry_max_delay_s=5.0,
        retry_max_attempts=3,
        retry_inline_max_s=0.5,
    )
    runtime = build_runtime("notify", settings)
    late: Late[NotifyDeps] = Late("deps")
    publishers = register(runtime, late)
    db = own_mongo[DB_NAME]
    repo = NotificationRepository(db, settings.pii.cipher())
    await repo.ensure_indexes()
    runtime.db.set(db)
    client = httpx.AsyncClient()
    deps = make_deps(
        settings,
        publishers,
        repo,
        client,
        renderer=SmsRenderer(TemplateSet.load(), load_regions(ROOT / "data")),
        catalog=AgencyCatalog({"banjar": directory_for_tests()}),
        metrics=NotifyMetrics(runtime.registry),
    )
    late.set(deps)
    await runtime.broker.start()
    try:
        yield Notify(runtime, deps, db, own_nc.jetstream(), stub, mail, BASE_URL)
    finally:
        await runtime.broker.stop()
        await client.aclose()
        smtp.stop()
        server.should_exit = True
        await server_task


# --- events ---------------------------------------------------------------------------


def rejected(event_id: str, phone: str) -> InboundRejected:
    return InboundRejected(
        event_id=event_id,
        occurred_at=NOW,
        rejection_id=event_id,
        channel=Channel.SMS,
        reason=RejectionReason.UNKNOWN_REGION,
        reply_to_sealed=sealed(event_id, "reply_to_sealed", phone),
        region="banjar",
    )


def received(complaint: str, phone: str, text: str, **flags: bool) -> ComplaintReceived:
    return ComplaintReceived(
        event_id=f"received:{complaint}",
        occurred_at=NOW,
        complaint_id=complaint,
        region="banjar",
        channel=Channel.SMS,
        text=text,
        received_at=NOW,
        reply_to_sealed=sealed(f"received:{complaint}", "reply_to_sealed", phone),
        **flags,
    )


def routed(complaint: str, agency: str, category: str) -> ComplaintRouted:
    return complaint_routed(complaint, at=NOW, agency=agency, category=category)


def deadlines_set(complaint: str, agency: str, category: str = "jalan") -> DeadlinesSet:
    """SLA's first deadlines, with the routing's category and confidence passed on."""
    return DeadlinesSet(
        event_id=f"deadlines:routed:{complaint}:0",
        occurred_at=NOW,
        complaint_id=complaint,
        region="banjar",
        agency=agency,
        priority=Priority.NORMAL,
        state=State.ASSIGNED,
        received_at=NOW,
        deadlines=Deadlines(
            first_response=NOW + timedelta(days=7), answer=NOW + timedelta(days=14)
        ),
        cause_event_id=f"routed:{complaint}:0",
        category=category,
        routing_confidence=0.9,
    )


def warning(complaint: str, agency: str) -> DeadlineAlert:
    return DeadlineAlert(
        event_id=f"alert:{complaint}:answer:80",
        occurred_at=NOW,
        complaint_id=complaint,
        region="banjar",
        agency=agency,
        priority=Priority.NORMAL,
        clock=SlaClock.ANSWER,
        kind="warning",
        percent=80,
        due_at=NOW + timedelta(days=2),
    )


async def _true(value: bool) -> bool:
    return value


# --- the guarantees -----------------------------------------------------------------------


async def test_temporary_failures_are_retried_in_the_handler_and_by_redelivery(
    notify: Notify,
) -> None:
    phone = "+6281234500201"
    # 500: retried at once in the handler; slow: the 0.5 s timeout hits, and the
    # longer backoff is left to a delayed redelivery; then the gateway accepts.
    notify.http.scripts[phone] = ["500", "slow", "ok"]
    await notify.publish(subjects.INBOUND_REJECTED, rejected("rejected:T1", phone), "rejected:T1")

    record = await eventually(lambda: notify.db.notifications.find_one({"status": "sent"}))
    calls = notify.http.to(phone)
    assert record["attempts"] == 3 and len(calls) == 3
    assert record["transport"] == "http" and record["channel"] == "sms"
    assert phone not in json.dumps(record, default=str)  # the log keeps a masked number
    # Every call names the same notification, the gateway's key to drop repeats.
    assert {c.json["reference"] for c in calls} == {record["_id"]}
    assert {c.headers["idempotency-key"] for c in calls} == {record["_id"]}
    assert calls[0].headers["x-api-key"] == "gateway-key"
    assert "BANJAR" in calls[0].json["text"]

    attempts = await notify.deps.repo.attempt_log(record["_id"])
    assert [a["outcome"] for a in attempts] == ["temporary", "temporary", "sent"]
    assert "HTTP 500" in attempts[0]["error"]
    assert "timeout" in attempts[1]["error"]


async def test_a_redelivered_event_sends_nothing_new(notify: Notify) -> None:
    phone = "+6281234500201"
    before = len(notify.http.to(phone))
    record = await notify.db.notifications.find_one({"cause_event_id": "rejected:T1"})
    # The same event again under a new message id, as after a lost ack.
    await notify.publish(
        subjects.INBOUND_REJECTED, rejected("rejected:T1", phone), "replay:rejected:T1"
    )
    await notify.settled("notify-rejected")

    assert len(notify.http.to(phone)) == before
    after = await notify.record(record["_id"])
    assert after is not None
    assert (after["status"], after["attempts"]) == ("sent", record["attempts"])


async def test_assignment_reaches_the_agency_by_email_and_signed_webhook_once(
    notify: Notify,
) -> None:
    complaint, phone = "BJR-T2", "+6281234500302"
    text = "jalan rusak parah di desa Sungai Sipai, hubungi saya 0812 3450 0302"
    await notify.publish(
        subjects.COMPLAINT_RECEIVED,
        received(complaint, phone, text, anonymous=True),
        f"received:{complaint}",
    )
    await notify.publish(
        subjects.COMPLAINT_ROUTED, routed(complaint, "PUPR", "jalan"), f"routed:{complaint}:0"
    )
    event = deadlines_set(complaint, "PUPR")
    await notify.publish(subjects.COMPLAINT_DEADLINES, event, event.event_id)

    async def all_sent() -> list[dict[str, Any]] | None:
        records = await notify.records(complaint)
        done = len(records) == 3 and all(r["status"] == "sent" for r in records)
        return records if done else None

    records = await eventually(all_sent, timeout=20)
    records_by_channel = {r["channel"]: r for r in records}
    assert sorted((r["audience"], r["channel"]) for r in records) == [
        ("citizen", "sms"),
        ("official", "email"),
        ("official", "webhook"),
    ]

    [raw] = notify.mail.to("liaison@pupr.test.id")
    mail = email.message_from_bytes(raw, policy=email.policy.default)
    assert mail["Subject"].startswith(f"[LAPOR {complaint}] Disposisi laporan")
    assert mail["X-Lapor-Notification-Id"] == records_by_channel["email"]["_id"]
    body_part = mail.get_body()
    assert body_part is not None
    mail_text = body_part.get_content()
    assert "[nomor disembunyikan]" in mail_text
    assert "0812 3450 0302" not in mail_text and phone not in mail_text
    assert "Jalan rusak" in mail_text  # the category's label, not its id

    [hook] = notify.http.to("/hooks/PUPR")
    assert hook.verified is True
    body = hook.json
    assert body["type"] == "official_assignment"
    assert body["complaint_id"] == complaint
    assert body["data"]["level"] == "liaison"
    assert "[nomor disembunyikan]" in body["data"]["complaint_text"]
    assert phone not in hook.body.decode()

    # Redelivery of the deadlines event: nobody hears it twice.
    await notify.publish(subjects.COMPLAINT_DEADLINES, event, f"replay:{event.event_id}")
    await notify.settled("notify-deadlines")
    assert len(notify.mail.to("liaison@pupr.test.id")) == 1
    assert len(notify.http.to("/hooks/PUPR")) == 1
    assert len(notify.http.to(phone)) == 1


async def test_permanent_and_exhausted_failures_are_logged_announced_and_counted(
    notify: Notify,
) -> None:
    complaint = "BJR-T3"
    failed_events = await notify.js.subscribe(subjects.NOTIFICATION_FAILED, durable="t-failed")
    notify.http.scripts["/hooks/DINKES"] = ["500"] * 10
    await notify.publish(
        subjects.COMPLAINT_RECEIVED,
        received(complaint, "+6281234500303", "puskesmas tutup siang hari"),
        f"received:{complaint}",
    )
    await eventually(lambda: notify.deps.repo.contact(complaint))
    event = warning(complaint, "DINKES")
    await notify.publish(subjects.SLA_ALERT, event, event.event_id)

    async def both_failed_and_announced() -> list[dict[str, Any]] | None:
        # The failure is stored first, then announced, then marked announced.
        records = await notify.records(complaint, status="failed")
        announced = len(records) == 2 and all(r["failure_announced"] for r in records)
        return records if announced else None

    records = {r["channel"]: r for r in await eventually(both_failed_and_announced, timeout=30)}
    email, hook = records["email"], records["webhook"]
    # 550 from the mail server: rejected for good after one attempt.
    assert (email["failure_reason"], email["attempts"]) == ("rejected", 1)
    assert "550" in email["last_error"]
    # 500 every time: retried (in the handler, then by redelivery) up to the cap of 3.
    assert (hook["failure_reason"], hook["attempts"]) == ("exhausted", 3)
    assert "HTTP 500" in hook["last_error"]
    assert len(notify.http.to("/hooks/DINKES")) == 3

    announced = {}
    for _ in range(2):
        msg = await failed_events.next_msg(timeout=5)
        body = json.loads(msg.data)
        announced[body["channel"]] = body
        await msg.ack()
    assert announced["email"]["notification_id"] == email["_id"]
    assert announced["email"]["reason"] == "rejected"
    assert announced["webhook"]["reason"] == "exhausted"
    assert announced["webhook"]["agency"] == "DINKES"
    assert announced["email"]["cause_event_id"] == event.event_id
    await failed_events.unsubscribe()

    registry = notify.runtime.registry
    for channel, reason in (("email", "rejected"), ("webhook", "exhausted")):
        labels = {
            "channel": channel,
            "audience": "official",
            "reason": reason,
            "template": "official_warning",
        }
        assert registry.get_sample_value("lapor_notifications_failed_total", labels) == 1.0
        outcome = {"channel": channel, "status": "failed"}
        assert registry.get_sample_value("lapor_notifications_total", outcome) == 1.0


async def test_delivery_receipts_update_the_log(notify: Notify) -> None:
    delivered = await notify.db.notifications.find_one({"cause_event_id": "rejected:T1"})
    [citizen] = await notify.records("BJR-T2", audience="citizen")
    for ntf_id, status, error in (
        (delivered["_id"], "delivered", None),
        (citizen["_id"], "failed", "handset unreachable for 48 h"),
        ("ntf-never-sent", "delivered", None),
    ):
        receipt = SmsDeliveryReceipt(notification_id=ntf_id, status=status, error=error, at=NOW)
        await notify.publish(subjects.OUTBOUND_SMS_STATUS, receipt, f"receipt:{ntf_id}")

    async def updated() -> bool:
        a = await notify.record(delivered["_id"])
        b = await notify.record(citizen["_id"])
        return bool(a and b and a["status"] == "delivered" and b["status"] == "failed")

    await eventually(updated)
    failed = await notify.record(citizen["_id"])
    assert failed is not None
    assert (failed["failure_reason"], failed["last_error"]) == (
        "receipt",
        "handset unreachable for 48 h",
    )
    # A late "delivered" never turns a failure back, nor a delivered one into sent.
    receipt = SmsDeliveryReceipt(notification_id=citizen["_id"], status="delivered", at=NOW)
    await notify.publish(subjects.OUTBOUND_SMS_STATUS, receipt, "receipt:late")
    await notify.settled("notify-receipts", stream=subjects.OUTBOUND_STREAM.name)
    again = await notify.record(citizen["_id"])
    assert again is not None and again["status"] == "failed"


async def test_two_workers_racing_for_one_notification_send_it_once(notify: Notify) -> None:
    phone = "+6281234500404"
    notify.http.scripts[phone] = ["pause"]
    # Two deliverers with their own repositories: two replicas, no shared lock.
    other = Deliverer(
        NotificationRepository(notify.db, notify.deps.repo.cipher),
        notify.deps.deliverer.channels,
        notify.deps.deliverer.failures,
        notify.deps.deliverer.metrics,
        notify.deps.deliverer.policy,
        send_timeout_s=2.0,
    )
    note = Notification(
        OutgoingMessage("ntf-race-1", "sms", phone, "Tes", template="reply_received"),
        "citizen",
        "race:1",
    )
    results = await asyncio.gather(
        notify.deps.deliverer.deliver(note),
        other.deliver(note),
        notify.deps.deliverer.deliver(note),
    )
    record = await notify.record("ntf-race-1")
    assert record is not None and record["status"] == "sent"
    assert len(notify.http.to(phone)) == 1
    # The two that lost the claim were told to look again later, not to send.
    assert sum(r is not None for r in results) == 2


async def test_confidential_complaints_are_not_escalated_outside_the_circle(
    notify: Notify,
) -> None:
    complaint = "BJR-T6"
    await notify.publish(
        subjects.COMPLAINT_RECEIVED,
        received(complaint, "+6281234500606", "pungli di kantor", confidential=True),
        f"received:{complaint}",
    )
    for level in (EscalationLevel.SEKDA, EscalationLevel.OMBUDSMAN):
        event = EscalationRaised(
            event_id=f"escalation:{complaint}:answer:{level.value}",
            occurred_at=NOW,
            complaint_id=complaint,
            region="banjar",
            agency="PUPR",
            priority=Priority.NORMAL,
            clock=SlaClock.ANSWER,
            level=level,
            due_at=NOW,
            late_by_s=86_400,
        )
        await notify.publish(subjects.SLA_ESCALATION, event, event.event_id)

    async def settled() -> list[dict[str, Any]] | None:
        records = await notify.records(complaint)
        return (
            records
            if len(records) == 2 and all(r["status"] != "pending" for r in records)
            else None
        )

    records = {r["level"]: r for r in await eventually(settled, timeout=20)}
    assert records["sekda"]["status"] == "sent"
    assert records["ombudsman"]["status"] == "withheld"
    assert "confidential" in records["ombudsman"]["withheld_reason"]
    [raw] = notify.mail.to("sekda@banjar.test.id")
    assert "Eskalasi ke Sekretaris Daerah" in email.message_from_bytes(raw)["Subject"]
    assert notify.mail.to("ombudsman@kalsel.test.id") == []


async def test_the_citizen_is_told_the_answer_date_a_wait_moved(notify: Notify) -> None:
    complaint, phone = "BJR-T8", "+6281234500808"
    await notify.publish(
        subjects.COMPLAINT_RECEIVED,
        received(complaint, phone, "drainase tersumbat di Jalan Sekumpul"),
        f"received:{complaint}",
    )
    await notify.publish(
        subjects.COMPLAINT_ROUTED, routed(complaint, "PUPR", "drainase"), f"routed:{complaint}:0"
    )
    first = deadlines_set(complaint, "PUPR", "drainase")
    await notify.publish(subjects.COMPLAINT_DEADLINES, first, first.event_id)
    [ack] = [c.json["text"] for c in await eventually(lambda: _sms_to(notify, phone, 1))]
    assert "Jawaban paling lambat" in ack

    # The citizen answered the agency's question after 3 days; SLA moved the date.
    moved = first.model_copy(
        update={
            "event_id": f"deadlines:state:command:{complaint}:reply",
            "state": State.IN_PROGRESS,
            "deadlines": first.deadlines.model_copy(update={"answer": NOW + timedelta(days=17)}),
            "cause_event_id": f"state:command:{complaint}:reply",
        }
    )
    await notify.publish(subjects.COMPLAINT_DEADLINES, moved, moved.event_id)
    calls = await eventually(lambda: _sms_to(notify, phone, 2))
    extended = calls[1].json["text"]
    assert "diperpanjang menjadi" in extended and complaint in extended
    assert calls[1].json["reference"] != calls[0].json["reference"]
    [told] = [
        r for r in await notify.records(complaint, audience="citizen") if r["template"] == "ack"
    ]
    assert abs(told["acknowledged_answer"] - first.deadlines.answer) < timedelta(seconds=1)

    # The first announcement redelivered after the move: still the one acknowledgement.
    await notify.publish(subjects.COMPLAINT_DEADLINES, first, f"replay:{first.event_id}")
    await notify.settled("notify-deadlines")
    assert len(notify.http.to(phone)) == 2
    templates = [r["template"] for r in await notify.records(complaint, audience="citizen")]
    assert sorted(templates) == ["ack", "deadline_extended"]


async def test_a_forward_with_a_later_date_is_told_as_a_move_from_the_first(
    notify: Notify,
) -> None:
    """The first acknowledgement's date is kept with its record: the deadlines of the
    next routing round are compared with it."""
    complaint, phone = "BJR-T12", "+6281234500812"
    await notify.publish(
        subjects.COMPLAINT_RECEIVED,
        received(complaint, phone, "lampu jalan mati di Jalan Sekumpul"),
        f"received:{complaint}",
    )
    first = deadlines_set(complaint, "PUPR", "lampu")
    await notify.publish(subjects.COMPLAINT_DEADLINES, first, first.event_id)
    await eventually(lambda: _sms_to(notify, phone, 1))
    forwarded = first.model_copy(
        update={
            "event_id": f"deadlines:routed:{complaint}:1",
            "agency": "DISHUB",
            "deadlines": first.deadlines.model_copy(update={"answer": NOW + timedelta(days=16)}),
            "cause_event_id": f"routed:{complaint}:1",
        }
    )
    await notify.publish(subjects.COMPLAINT_DEADLINES, forwarded, forwarded.event_id)
    calls = await eventually(lambda: _sms_to(notify, phone, 2))
    assert "diperpanjang menjadi" in calls[1].json["text"]


async def _sms_to(notify: Notify, phone: str, n: int) -> list[Call] | None:
    calls = notify.http.to(phone)
    return calls if len(calls) >= n else None


async def test_a_complaints_delivery_log_over_http_shows_what_failed(notify: Notify) -> None:
    zones = {"banjar": ZoneInfo("Asia/Makassar")}
    app = FastAPI()
    admin = in_memory_tokens({"t-admin": {"role": "admin"}})
    app.include_router(delivery_router(lambda: notify.deps.repo, zones, "banjar", admin))
    transport = httpx.ASGITransport(app=app)
    bearer = {"Authorization": "Bearer t-admin"}
    async with httpx.AsyncClient(
        transport=transport, base_url="http://notify", headers=bearer
    ) as http:
        # BJR-T3: the agency's e-mail refused (550), its webhook answered 500 to the cap.
        response = await http.get("/api/v1/complaints/BJR-T3/notifications")
        assert response.status_code == 200
        body = response.json()
        assert body["complaint_id"] == "BJR-T3"
        assert (body["total"], body["failed"], body["counts"]) == (2, 2, {"failed": 2})
        by_channel = {n["channel"]: n for n in body["notifications"]}
        mail, hook = by_channel["email"], by_channel["webhook"]
        assert (mail["failure_reason"], mail["attempts"]) == ("rejected", 1)
        assert "550" in mail["last_error"] and mail["recipient"] == "refused@dinkes.test.id"
        assert [a["outcome"] for a in mail["attempt_log"]] == ["permanent"]
        assert (hook["failure_reason"], hook["attempts"]) == ("exhausted", 3)
        assert [a["outcome"] for a in hook["attempt_log"]] == ["temporary"] * 3
        assert all("HTTP 500" in a["error"] for a in hook["attempt_log"])
        assert hook["template"] == "official_warning" and hook["agency"] == "DINKES"
        assert hook["failed_at"].endswith("+08:00") and hook["created_at"].endswith("+08:00")

        # BJR-T2: the agency heard; the citizen's SMS failed by the gateway's receipt.
        body = (await http.get("/api/v1/complaints/BJR-T2/notifications")).json()
        assert body["counts"] == {"failed": 1, "sent": 2}
        [citizen] = [n for n in body["notifications"] if n["audience"] == "citizen"]
        assert citizen["failure_reason"] == "receipt" and citizen["status"] == "failed"
        assert citizen["attempt_log"][0]["outcome"] == "sent"
        # The number stays masked, as in the log itself.
        assert "+6281234500302" not in response.text + json.dumps(body)
        assert citizen["recipient"] != "+6281234500302" and "****" in citizen["recipient"]

        # A complaint notify knows (its reply address) but that caused nothing yet.
        await notify.deps.repo.save_contact("BJR-T9", {"region": "banjar", "sms": None})
        quiet = (await http.get("/api/v1/complaints/BJR-T9/notifications")).json()
        assert (quiet["total"], quiet["notifications"]) == (0, [])
        assert (await http.get("/api/v1/complaints/BJR-NOPE/notifications")).status_code == 404
        assert (await http.get("/api/v1/complaints/a%20b/notifications")).status_code == 422


async def test_a_web_reporter_with_only_an_email_is_acknowledged_by_email_once(
    notify: Notify,
) -> None:
    complaint, address = "BJR-T10", "warga.web@example.test"
    event = ComplaintReceived(
        event_id=f"received:{complaint}",
        occurred_at=NOW,
        complaint_id=complaint,
        region="banjar",
        channel=Channel.WEB,
        text="lampu penerangan jalan mati di Jalan Sekumpul sejak seminggu",
        received_at=NOW,
        reply_email_sealed=sealed(f"received:{complaint}", "reply_email_sealed", address),
        confidential=True,  # hidden from the public, not from its own reporter
    )
    await notify.publish(subjects.COMPLAINT_RECEIVED, event, event.event_id)
    # Routing unsure: only the citizen hears of it, in triage.
    triage = deadlines_set(complaint, "PUPR").model_copy(
        update={"agency": None, "state": State.TRIAGE}
    )
    await notify.publish(subjects.COMPLAINT_DEADLINES, triage, triage.event_id)

    [raw] = await eventually(lambda: _mail_to(notify, address, 1), timeout=20)
    mail = email.message_from_bytes(raw, policy=email.policy.default)
    assert mail["Subject"] == f"Laporan {complaint}: Laporan diterima"
    body_part = mail.get_body()
    assert body_part is not None
    text = body_part.get_content()
    assert complaint in text and "Jawaban paling lambat" in text

    async def sent() -> dict[str, Any] | None:
        [record] = await notify.records(complaint)
        return record if record["status"] == "sent" else None

    record = await eventually(sent)
    assert (record["audience"], record["channel"], record["transport"]) == (
        "citizen",
        "email",
        "smtp",
    )
    assert record["template"] == "ack_triage" and mail["X-Lapor-Notification-Id"] == record["_id"]
    assert record["recipient"] == "w****@example.test"
    assert notify.http.to(address) == []  # no SMS without a phone

    # Both events again under new message ids, as after lost acks: no second e-mail.
    await notify.publish(subjects.COMPLAINT_RECEIVED, event, f"replay:{event.event_id}")
    await notify.publish(subjects.COMPLAINT_DEADLINES, triage, f"replay:{triage.event_id}")
    await notify.settled("notify-received", "notify-deadlines")
    assert len(notify.mail.to(address)) == 1
    again = await notify.record(record["_id"])
    assert again is not None and (again["status"], again["attempts"]) == ("sent", 1)

    # The address rests sealed in the contact, and in clear nowhere in notify's database.
    contact = await notify.db.notify_contacts.find_one({"_id": complaint})
    assert contact is not None and contact["email"].startswith("pii1.")
    opened = await notify.deps.repo.contact(complaint)
    assert opened is not None and opened["email"] == address
    for name in await notify.db.list_collection_names():
        async for doc in notify.db[name].find({}):
            assert "warga.web" not in json.dumps(doc, default=str), name


async def _mail_to(notify: Notify, address: str, n: int) -> list[bytes] | None:
    mails = notify.mail.to(address)
    return mails if len(mails) >= n else None


async def test_a_failure_whose_announcement_a_crash_cut_off_is_announced_by_the_sweep(
    notify: Notify,
) -> None:
    failed_events = await notify.js.subscribe(subjects.NOTIFICATION_FAILED, durable="t-swept")
    record = {
        "_id": "swept:BJR-T9:citizen:sms",
        "complaint_id": "BJR-T9",
        "cause_event_id": "received:BJR-T9",
        "audience": "citizen",
        "channel": "sms",
        "transport": "http",
        "template": "citizen_received",
        "status": "failed",
        "failure_reason": "rejected",
        "last_error": "HTTP 400",
        "attempts": 1,
        "failed_at": datetime.now(UTC),
        # Stored with the failure; the process died before publishing.
        "failure_announced": False,
    }
    await notify.db.notifications.insert_one(record)

    assert await notify.deps.deliverer.announce_failures() >= 1

    msg = await failed_events.next_msg(timeout=5)
    while json.loads(msg.data)["notification_id"] != record["_id"]:
        await msg.ack()
        msg = await failed_events.next_msg(timeout=5)
    await msg.ack()
    await failed_events.unsubscribe()
    stored = await notify.db.notifications.find_one({"_id": record["_id"]})
    assert stored["failure_announced"] is True
    assert await notify.deps.deliverer.announce_failures() == 0
