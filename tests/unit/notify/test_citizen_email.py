"""Citizens who gave an e-mail address hear every message by e-mail too (or only by
e-mail, without a phone): the same Indonesian text, without an SMS budget, under a
stable notification id, with the address sealed at rest and never logged."""

from __future__ import annotations

import logging
from collections import defaultdict
from datetime import datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

import aiosmtplib
import pytest

from lapor.contracts import (
    Channel,
    ComplaintReceived,
    ComplaintStateChanged,
    Deadlines,
    DeadlinesSet,
    Priority,
    State,
)
from lapor.runtime.pii import PiiCipher, PiiKeyError, is_sealed, new_key
from services.notify import channels, domain, handlers
from services.notify.channels import LogSink, OutgoingMessage, SmtpConfig, SmtpEmail
from services.notify.delivery import recipient_label
from services.notify.labels import EMAIL_TITLES
from services.notify.repository import NotificationRepository
from services.notify.template_contract import CONTRACT, Audience
from services.notify.templates import TemplateSet
from services.notify.usecases import NotifyDeps
from tests.contacts import sealed
from tests.unit.notify.fakes import RENDERER, MemoryRecords, RecordingDelivery, notify_deps

WITA = ZoneInfo("Asia/Makassar")
RECEIVED = datetime(2026, 11, 2, 9, 0, tzinfo=WITA)
ANSWER = datetime(2026, 11, 16, 23, 59, 59, tzinfo=WITA)
EMAIL = "siti.aminah@example.org"
PHONE = "+6281234509911"


# --- the message ---------------------------------------------------------------------


def test_the_email_is_the_sms_text_with_a_subject_naming_the_complaint() -> None:
    values = {"tracking_id": "LPR-2611-MAIL1", "agency_name": "Dinas PUPR", "answer_date": ANSWER}
    mail = RENDERER.render_email("ack", values, "banjar")
    assert mail.subject == "Laporan LPR-2611-MAIL1: Laporan diterima"
    assert mail.body == RENDERER.render_sms("ack", values, "banjar")
    assert "16 November 2026" in mail.body and "Dinas PUPR" in mail.body


def test_a_long_answer_is_cut_for_the_sms_and_whole_in_the_email() -> None:
    answer = " ".join(f"Langkah {n}: perbaikan jalan dikerjakan “bertahap” 🚧." for n in range(40))
    values = {
        "tracking_id": "LPR-2611-MAIL2",
        "agency_name": "Dinas PUPR",
        "answer": answer,
        "reopen_until": "10 hari kerja sejak pesan ini",
    }
    sms = RENDERER.render_sms("answer", values, "banjar")
    mail = RENDERER.render_email("answer", values, "banjar")
    assert answer not in sms and len(sms) < 3 * 160
    # No segment budget, no GSM-7 transliteration: the agency's words as written.
    assert answer in mail.body
    assert mail.subject == "Laporan LPR-2611-MAIL2: Tanggapan instansi"


def test_every_message_a_complaint_can_cause_has_an_indonesian_title() -> None:
    citizen = {name for name, spec in CONTRACT.items() if spec.audience is Audience.CITIZEN}
    assert set(EMAIL_TITLES) <= citizen
    caused = {
        "ack",
        "ack_triage",
        "ack_truncated",
        "ack_triage_truncated",
        "question",
        "answer",
        "closed",
        "out_of_scope",
        "deadline_extended",
    }
    assert caused <= set(EMAIL_TITLES)
    assert all(title and "\n" not in title for title in EMAIL_TITLES.values())


def test_an_official_template_is_not_a_citizen_letter() -> None:
    with pytest.raises(Exception, match="citizen"):
        TemplateSet.load().render_plain("official_breach", tracking_id="X")


# --- through the handlers -------------------------------------------------------------


class Routed(MemoryRecords):
    async def routing(self, routed_event_id: str) -> dict[str, Any] | None:
        return {"agency": "PUPR", "category": "jalan", "confidence": 0.9, "triage": False}


@pytest.fixture
def notify() -> tuple[NotifyDeps, RecordingDelivery]:
    delivery = RecordingDelivery()
    return notify_deps(Routed(), delivery), delivery


def received(cid: str, *, phone: str | None, email: str | None, **flags: bool) -> ComplaintReceived:
    return ComplaintReceived(
        event_id=f"received:{cid}",
        occurred_at=RECEIVED,
        complaint_id=cid,
        region="banjar",
        channel=Channel.WEB,
        text="jalan berlubang besar di depan pasar Martapura",
        received_at=RECEIVED,
        reply_to_sealed=sealed(f"received:{cid}", "reply_to_sealed", phone),
        reply_email_sealed=sealed(f"received:{cid}", "reply_email_sealed", email),
        **flags,
    )


def deadlines(cid: str) -> DeadlinesSet:
    return DeadlinesSet(
        event_id=f"deadlines:routed:{cid}:0",
        occurred_at=RECEIVED,
        complaint_id=cid,
        region="banjar",
        agency=None,  # in triage: no official notice, only the citizen's
        priority=Priority.NORMAL,
        state=State.TRIAGE,
        received_at=RECEIVED,
        deadlines=Deadlines(routing=RECEIVED + timedelta(days=1), answer=ANSWER),
        cause_event_id=f"routed:{cid}:0",
    )


async def test_an_email_only_reporter_gets_the_acknowledgement_by_email_once(
    notify: tuple[NotifyDeps, RecordingDelivery],
) -> None:
    deps, outbox = notify
    cid = "LPR-2611-MAIL3"
    await handlers.handle_received(received(cid, phone=None, email=EMAIL), deps)
    event = deadlines(cid)
    await handlers.handle_deadlines(event, deps)
    await handlers.handle_deadlines(event, deps)  # redelivered

    assert outbox.citizen("sms") == []
    [mail] = outbox.citizen("email")
    assert outbox.deliveries == 2  # offered twice, under one id: the log sends it once
    assert mail.notification_id == domain.notification_id(event.event_id, EMAIL, "ack_triage")
    assert (mail.to, mail.template, mail.complaint_id) == (EMAIL, "ack_triage", cid)
    assert mail.subject == f"Laporan {cid}: Laporan diterima"
    assert mail.personal and mail.agency is None
    assert cid in mail.text and "16 November 2026" in mail.text


async def test_phone_and_email_both_hear_each_message(
    notify: tuple[NotifyDeps, RecordingDelivery],
) -> None:
    deps, outbox = notify
    cid = "LPR-2611-MAIL4"
    # Confidential and anonymous: hidden from others, never from the reporter.
    flags = {"anonymous": True, "confidential": True}
    await handlers.handle_received(received(cid, phone=PHONE, email=EMAIL, **flags), deps)
    asked = ComplaintStateChanged(
        event_id=f"state:command:{cid}:ask",
        occurred_at=RECEIVED,
        complaint_id=cid,
        region="banjar",
        state=State.NEEDS_INFO,
        previous_state=State.IN_PROGRESS,
        actor="agency:PUPR",
        reason="question",
        agency="PUPR",
        message="Di RT berapa lubang itu?",
        cause_event_id=f"command:{cid}:ask",
    )
    await handlers.handle_state_changed(asked, deps)

    [sms] = outbox.citizen("sms")
    [mail] = outbox.citizen("email")
    assert (sms.to, mail.to) == (PHONE, EMAIL)
    assert sms.notification_id != mail.notification_id
    assert mail.subject == f"Laporan {cid}: Pertanyaan dari instansi"
    assert "Di RT berapa lubang itu?" in mail.text and sms.text == mail.text
    assert all(n.withheld is None for n in outbox.sent.values())


async def test_without_phone_or_email_nothing_goes_out(
    notify: tuple[NotifyDeps, RecordingDelivery],
) -> None:
    deps, outbox = notify
    cid = "LPR-2611-MAIL5"
    await handlers.handle_received(received(cid, phone=None, email=None), deps)
    await handlers.handle_deadlines(deadlines(cid), deps)
    assert outbox.sent == {}


# --- the address at rest and in logs ---------------------------------------------------


class Collection:
    def __init__(self) -> None:
        self.docs: dict[str, dict[str, Any]] = {}

    async def update_one(self, query: dict[str, Any], update: dict[str, Any], **_: Any) -> None:
        self.docs.setdefault(query["_id"], {"_id": query["_id"]}).update(update["$set"])

    async def find_one(self, query: dict[str, Any], *_: Any) -> dict[str, Any] | None:
        found = self.docs.get(query["_id"])
        return dict(found) if found is not None else None


async def test_the_contact_keeps_the_address_sealed_bound_to_the_complaint() -> None:
    collections = {"notify_contacts": Collection()}
    db: Any = defaultdict(Collection, collections)
    cipher = PiiCipher(new_key())
    repo = NotificationRepository(db, cipher)
    await repo.save_contact("LPR-A", {"region": "banjar", "sms": PHONE, "email": EMAIL})
    await repo.save_contact("LPR-B", {"region": "banjar", "sms": None, "email": None})

    raw = collections["notify_contacts"].docs["LPR-A"]
    assert is_sealed(raw["email"]) and is_sealed(raw["sms"])
    assert EMAIL not in repr(raw) and "siti" not in repr(raw).lower()
    # Read by another process (the saving one has them as it saved them).
    reader = NotificationRepository(db, cipher)
    for store in (repo, reader):
        opened = await store.contact("LPR-A")
        assert opened is not None and (opened["email"], opened["sms"]) == (EMAIL, PHONE)
        assert (await store.contact("LPR-B") or {}).get("email") is None

    async def read(*args: Any, **kwargs: Any) -> None:
        raise AssertionError("the saving process reads its own contacts")

    find_one, repo.contacts.find_one = repo.contacts.find_one, read  # type: ignore[method-assign]
    assert (await repo.contact("LPR-A") or {}).get("sms") == PHONE
    repo.contacts.find_one = find_one  # type: ignore[method-assign]
    # Bound to its complaint: a sealed address copied to another record does not open.
    collections["notify_contacts"].docs["LPR-B"]["email"] = raw["email"]
    with pytest.raises(PiiKeyError, match="does not belong to this record"):
        await NotificationRepository(db, cipher).contact("LPR-B")


MAIL = OutgoingMessage(
    notification_id="ntf-mail",
    kind="email",
    to=EMAIL,
    text="Laporan Anda diterima dengan nomor LPR-1.",
    subject="Laporan LPR-1: Laporan diterima",
    complaint_id="LPR-1",
    template="ack",
    personal=True,
)


def test_the_delivery_log_names_a_citizen_mailbox_masked_and_an_agency_in_full() -> None:
    assert recipient_label(MAIL) == "s****@example.org"
    official = OutgoingMessage("ntf-o", "email", "pengaduan@pupr.go.id", "x", agency="PUPR")
    assert recipient_label(official) == "pengaduan@pupr.go.id"


async def test_the_development_sink_never_prints_the_address(
    caplog: pytest.LogCaptureFixture,
) -> None:
    with caplog.at_level(logging.INFO):
        assert (await LogSink().send(MAIL)).ok
    assert "Laporan LPR-1: Laporan diterima" in caplog.text
    assert EMAIL not in caplog.text and "siti.aminah" not in caplog.text


async def test_a_refusal_quoting_the_mailbox_is_kept_without_it(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    async def refuse(*_: Any, **__: Any) -> None:
        refused = aiosmtplib.SMTPRecipientRefused(550, f"<{EMAIL.upper()}>: unavailable", EMAIL)
        raise aiosmtplib.SMTPRecipientsRefused([refused])

    monkeypatch.setattr(channels.aiosmtplib, "send", refuse)
    result = await SmtpEmail(SmtpConfig(host="127.0.0.1", starttls=False)).send(MAIL)
    assert (result.ok, result.permanent) == (False, True)
    assert "550" in (result.error or "") and "siti" not in (result.error or "").lower()
    assert "s****@example.org" in (result.error or "")
