"""Intake's use cases, each against the in-memory complaint store and publishers: what an
SMS becomes (a complaint, a repeat, a command, a rejection), what a submission and a
broken message leave behind, and how a stored complaint follows commands, routing,
deadlines and SLA's reply window."""

from __future__ import annotations

import itertools
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from lapor.contracts import (
    AutoCloseDue,
    Channel,
    CitizenCommandAnswered,
    ComplaintReceived,
    ComplaintStateChanged,
    Deadlines,
    DeadlinesSet,
    InboundRejected,
    InboundSms,
    InboundWeb,
    Priority,
    RejectionReason,
    State,
    subjects,
)
from lapor.contracts.commands import Action, Actor, CommandRejected, ComplaintCommand, Role
from lapor.runtime.service import ContractViolation
from services.intake import changes, handlers, usecases
from services.intake.changes import ComplaintNotYetKnown
from services.intake.guard import RateLimit
from services.intake.phones import phone_hash
from services.intake.ports import IntakeDeps
from services.intake.tracking import new_tracking_id
from services.intake.usecases import SubmissionConflict, SubmissionRejected
from tests.contacts import opened
from tests.factories import complaint_routed
from tests.unit.intake.fakes import PHONE_KEY, MemoryComplaints, RecordingPublisher, intake_deps

AT = datetime(2026, 11, 2, 1, 0, tzinfo=UTC)
PHONE = "+6281234509931"
OTHER = "+6281234509932"
TEXT = "BANJAR jalan berlubang besar di depan pasar Martapura"
OFFICER = Actor(role=Role.AGENCY, id="officer-1", agency="PUPR")
_ids = itertools.count(1)


def sms(text: str, sender: str = PHONE, gateway_id: str | None = None) -> InboundSms:
    return InboundSms.model_validate(
        {
            "from": sender,
            "text": text,
            "gateway_id": gateway_id or f"g-{next(_ids)}",
            "received_at": AT,
        }
    )


def web(**fields: Any) -> InboundWeb:
    given: dict[str, Any] = {
        "source": "web",
        "message_id": "m-1",
        "region": "banjar",
        "text": "lampu jalan mati di depan sekolah dasar",
        "received_at": AT,
    }
    return InboundWeb(**(given | fields))


def command(
    tracking_id: str, action: Action, actor: Actor = OFFICER, **fields: Any
) -> ComplaintCommand:
    return ComplaintCommand(
        command_id=f"c-{next(_ids)}",
        complaint_id=tracking_id,
        action=action,
        actor=actor,
        **fields,
    )


def answered(deps: IntakeDeps) -> list[CitizenCommandAnswered]:
    assert isinstance(deps.answered, RecordingPublisher)
    return deps.answered.sent()


def store(deps: IntakeDeps) -> MemoryComplaints:
    assert isinstance(deps.repo, MemoryComplaints)
    return deps.repo


async def filed(deps: IntakeDeps, text: str = TEXT, sender: str = PHONE) -> dict[str, Any]:
    await usecases.receive_sms(sms(text, sender), deps, AT)
    return next(reversed(store(deps).complaints.values()))


async def assigned(deps: IntakeDeps) -> dict[str, Any]:
    complaint = await filed(deps)
    await changes.record_routing(complaint_routed(complaint["_id"], at=AT), deps)
    return store(deps).complaints[complaint["_id"]]


# --- SMS ----------------------------------------------------------------------------


async def test_an_sms_complaint_is_stored_and_announced_with_the_sealed_number() -> None:
    deps = intake_deps()
    complaint = await filed(deps)

    assert (complaint["region"], complaint["channel"], complaint["state"]) == (
        "banjar",
        "sms",
        "received",
    )
    assert complaint["received_at"] == AT
    [received] = store(deps).announced(ComplaintReceived)
    assert received.complaint_id == complaint["_id"]
    assert opened(received, "reply_to_sealed") == PHONE
    assert PHONE not in received.model_dump_json()


async def test_a_gateway_retry_stores_nothing_new_and_announces_what_is_pending() -> None:
    deps = intake_deps()
    repo = store(deps)
    message = sms(TEXT, gateway_id="g-retry")
    await usecases.receive_sms(message, deps, AT)
    repo.pending[next(iter(repo.complaints))] = [repo.published.pop()]  # its publish failed

    await usecases.receive_sms(message, deps, AT + timedelta(minutes=1))

    assert len(repo.complaints) == 1 and not repo.rejections
    assert len(repo.announced(ComplaintReceived)) == 1 and not repo.pending


async def test_a_taken_tracking_id_is_drawn_again(monkeypatch: pytest.MonkeyPatch) -> None:
    deps = intake_deps()
    first = await filed(deps)
    fresh = new_tracking_id()
    draws = iter([first["_id"], fresh])
    monkeypatch.setattr(usecases, "new_tracking_id", lambda: next(draws))

    second = await filed(deps, "BANJAR lampu jalan mati di simpang tiga", OTHER)

    assert second["_id"] == fresh and len(store(deps).complaints) == 2


async def test_over_the_limit_an_sms_is_rejected_and_the_sender_told_once() -> None:
    deps = intake_deps(rate_limit=RateLimit(per_hour=2, per_day=30))
    texts = ["jalan rusak parah di desa", "lampu jalan mati semua", "sampah menumpuk di pasar"]
    for n, text in enumerate([*texts, "got mampet dekat sekolah"]):
        await usecases.receive_sms(sms(f"BANJAR {text}"), deps, AT + timedelta(minutes=n))

    repo = store(deps)
    assert len(repo.complaints) == 2
    rejected = repo.announced(InboundRejected)
    assert [r.reason for r in rejected] == [RejectionReason.RATE_LIMITED] * 2
    assert [opened(r, "reply_to_sealed") for r in rejected] == [PHONE, None]
    assert [r["answered"] for r in repo.rejections.values()] == [True, False]


async def test_the_same_text_again_is_linked_to_the_first_complaint() -> None:
    deps = intake_deps()
    first = await filed(deps)
    await usecases.receive_sms(sms(TEXT), deps, AT + timedelta(hours=1))

    repo = store(deps)
    assert len(repo.complaints) == 1
    [rejected] = repo.announced(InboundRejected)
    assert (rejected.reason, rejected.complaint_id, rejected.region) == (
        RejectionReason.DUPLICATE,
        first["_id"],
        "banjar",
    )
    assert opened(rejected, "reply_to_sealed") == PHONE
    note = repo.complaints[first["_id"]]["history"][-1]
    assert note["reason"] == "the same text was sent again" and note["state"] is None


async def test_a_senders_only_message_of_the_day_looks_for_no_earlier_complaint() -> None:
    deps = intake_deps()
    first = await filed(deps)
    repo = store(deps)
    assert repo.recent_reads == 0
    await usecases.receive_sms(sms(TEXT), deps, AT + timedelta(hours=23))
    assert repo.recent_reads == 1 and list(repo.complaints) == [first["_id"]]  # linked
    # More than a day after the last message: nothing within the repeat window.
    await usecases.receive_sms(sms(TEXT), deps, AT + timedelta(hours=49))
    assert repo.recent_reads == 1 and len(repo.complaints) == 2


async def test_an_unreadable_sms_is_kept_as_a_rejection_and_answered() -> None:
    deps = intake_deps()
    await usecases.receive_sms(sms("BANJAR rusak"), deps, AT)

    repo = store(deps)
    [record] = repo.rejections.values()
    assert record["reason"] == RejectionReason.TOO_SHORT.value
    assert record["reporter"]["phone_hash"] == phone_hash(PHONE, PHONE_KEY)
    assert record["payload"]["text"] == "BANJAR rusak" and not repo.complaints
    [rejected] = repo.announced(InboundRejected)
    assert opened(rejected, "reply_to_sealed") == PHONE


async def test_cek_answers_the_sender_and_tells_anyone_else_nothing() -> None:
    deps = intake_deps()
    complaint = await assigned(deps)
    await usecases.receive_sms(sms(f"CEK {complaint['_id']}"), deps, AT)
    await usecases.receive_sms(sms(f"CEK {complaint['_id']}", OTHER), deps, AT)

    mine, theirs = answered(deps)
    assert (mine.command, mine.found, mine.state, mine.agency) == (
        "status",
        True,
        State.ASSIGNED,
        "PUPR",
    )
    assert opened(mine, "reply_to_sealed") == PHONE
    assert (theirs.found, theirs.state, theirs.agency) == (False, None, None)
    assert opened(theirs, "reply_to_sealed") == OTHER


async def test_batal_withdraws_the_senders_complaint() -> None:
    deps = intake_deps()
    complaint = await assigned(deps)
    await usecases.receive_sms(sms(f"BATAL {complaint['_id']} sudah diperbaiki"), deps, AT)

    assert store(deps).complaints[complaint["_id"]]["state"] == State.CLOSED.value
    [answer] = answered(deps)
    assert (answer.command, answer.found, answer.state, answer.refused) == (
        "withdraw",
        True,
        State.CLOSED,
        None,
    )
    changed = store(deps).announced(ComplaintStateChanged)[-1]
    assert (changed.state, changed.actor.startswith("citizen")) == (State.CLOSED, True)


async def test_batal_of_someone_elses_complaint_changes_nothing() -> None:
    deps = intake_deps()
    complaint = await assigned(deps)
    await usecases.receive_sms(sms(f"BATAL {complaint['_id']}", OTHER), deps, AT)

    assert store(deps).complaints[complaint["_id"]]["state"] == State.ASSIGNED.value
    assert answered(deps)[0].found is False


async def test_nilai_before_the_answer_is_refused_with_the_reason() -> None:
    deps = intake_deps()
    complaint = await assigned(deps)
    await usecases.receive_sms(sms(f"NILAI {complaint['_id']} 5"), deps, AT)

    [answer] = answered(deps)
    assert (answer.command, answer.found, answer.score) == ("rating", True, 5)
    assert answer.refused is not None and "assigned" in answer.refused
    assert "rating" not in store(deps).complaints[complaint["_id"]]


async def test_balas_the_rules_refuse_is_kept_as_a_note() -> None:
    deps = intake_deps()
    complaint = await assigned(deps)
    close = command(complaint["_id"], Action.CLOSE, text="Sudah selesai.", outcome="resolved")
    await changes.execute(close, deps)
    await usecases.receive_sms(sms(f"BALAS {complaint['_id']} masih rusak pak"), deps, AT)

    doc = store(deps).complaints[complaint["_id"]]
    assert doc["state"] == State.CLOSED.value
    assert doc["history"][-1]["state"] is None
    [answer] = answered(deps)
    assert (answer.command, answer.found, answer.state) == ("reply", True, State.CLOSED)


# --- submissions ----------------------------------------------------------------------


async def test_a_submission_is_stored_once_and_a_changed_resend_refused() -> None:
    deps = intake_deps()
    first = await usecases.accept_submission(web(email="warga@example.org"), Channel.WEB, deps)
    again = await usecases.accept_submission(web(email="warga@example.org"), Channel.WEB, deps)
    with pytest.raises(SubmissionConflict):
        await usecases.accept_submission(web(text="lain sekali isinya"), Channel.WEB, deps)

    assert first["_id"] == again["_id"] and len(store(deps).complaints) == 1
    [received] = store(deps).announced(ComplaintReceived)
    assert opened(received, "reply_email_sealed") == "warga@example.org"
    assert first["submission"]["replies_by_email"] is True


async def test_a_submission_the_rules_refuse_is_kept_without_its_contact() -> None:
    deps = intake_deps()
    with pytest.raises(SubmissionRejected) as refused:
        given = web(region="atlantis", phone="0812-3456-7001", email="a@example.org")
        await usecases.accept_submission(given, Channel.OPEN311, deps)

    assert refused.value.reason is RejectionReason.UNKNOWN_REGION
    [record] = store(deps).rejections.values()
    assert (record["channel"], record["answered"]) == ("open311", False)
    assert "phone" not in record["payload"] and "email" not in record["payload"]
    [rejected] = store(deps).announced(InboundRejected)
    assert rejected.reply_to_sealed is None


async def test_a_partner_submission_is_filed_as_the_partner_and_a_refusal_acknowledged() -> None:
    deps = intake_deps()
    await handlers.handle_partner(web(source="someone-else"), "whatsapp", deps, AT)
    await handlers.handle_partner(web(message_id="m-2", text="rusak"), "whatsapp", deps, AT)
    await handlers.handle_partner(web(text="isi lain sekali"), "whatsapp", deps, AT)

    repo = store(deps)
    [complaint] = repo.complaints.values()
    assert complaint["source_key"] == "web:partner:whatsapp:m-1"
    assert [r["reason"] for r in repo.rejections.values()] == ["too_short"]


# --- broken messages ------------------------------------------------------------------


def violation(payload: bytes, dead_letter_id: str = "dl-1") -> ContractViolation:
    return ContractViolation(
        subject=subjects.INBOUND_SMS,
        payload=payload,
        error=ValueError("not JSON"),
        dead_letter_id=dead_letter_id,
    )


async def test_a_broken_sms_is_kept_sealed_and_its_readable_sender_told() -> None:
    deps = intake_deps()
    raw = f'{{"from": "{PHONE}", "text": "BANJAR jalan'.encode()
    await usecases.reject_malformed(violation(raw), Channel.SMS, deps)
    await usecases.reject_malformed(violation(b"{}", "dl-2"), Channel.WEB, deps)

    sms_record, web_record = store(deps).rejections.values()
    assert sms_record["reason"] == web_record["reason"] == "malformed"
    assert PHONE.encode() not in repr(sms_record).encode()
    assert sms_record["payload"]["dead_letter_id"] == "dl-1"
    told, untold = store(deps).announced(InboundRejected)
    assert (opened(told, "reply_to_sealed"), untold.reply_to_sealed) == (PHONE, None)


# --- stored complaints ----------------------------------------------------------------


async def test_routing_is_recorded_once_and_announced() -> None:
    deps = intake_deps()
    complaint = await filed(deps)
    routed = complaint_routed(complaint["_id"], at=AT)
    await changes.record_routing(routed, deps)
    await changes.record_routing(routed, deps)  # redelivered

    doc = store(deps).complaints[complaint["_id"]]
    assert (doc["state"], doc["agency"], doc["event_ids"].count(routed.event_id)) == (
        "assigned",
        "PUPR",
        1,
    )
    [changed] = store(deps).announced(ComplaintStateChanged)
    assert (changed.complaint_id, changed.state) == (complaint["_id"], State.ASSIGNED)


async def test_an_event_about_a_complaint_not_yet_seen_comes_back_later() -> None:
    deps = intake_deps()
    with pytest.raises(ComplaintNotYetKnown):
        await changes.record_routing(complaint_routed("LPR-UNKNOWN"), deps)


async def test_deadlines_are_recorded_on_the_complaint() -> None:
    deps = intake_deps()
    complaint = await assigned(deps)
    due = AT + timedelta(days=14)
    event = DeadlinesSet(
        event_id=f"deadlines:{complaint['_id']}:0",
        occurred_at=AT,
        complaint_id=complaint["_id"],
        region="banjar",
        agency="PUPR",
        priority=Priority.NORMAL,
        state=State.ASSIGNED,
        received_at=AT,
        deadlines=Deadlines(first_response=AT + timedelta(days=3), answer=due),
        cause_event_id=f"routed:{complaint['_id']}:0",
    )
    await changes.record_deadlines(event, deps)

    doc = store(deps).complaints[complaint["_id"]]
    assert doc["deadlines"]["answer"] == due
    assert doc["next_deadline"] == AT + timedelta(days=3)


async def test_a_command_is_executed_or_its_refusal_answered_on_the_bus() -> None:
    deps = intake_deps()
    complaint = await assigned(deps)
    acknowledge = command(complaint["_id"], Action.ACKNOWLEDGE)
    await changes.run_command(acknowledge, deps)
    other_agency = Actor(role=Role.AGENCY, id="officer-2", agency="DINKES")
    await changes.run_command(command(complaint["_id"], Action.ANSWER, other_agency), deps)

    assert store(deps).complaints[complaint["_id"]]["state"] == State.IN_PROGRESS.value
    assert isinstance(deps.command_rejected, RecordingPublisher)
    [refused] = deps.command_rejected.sent()
    assert isinstance(refused, CommandRejected)
    assert (refused.action, "agency" in refused.reason) == (Action.ANSWER, True)


async def test_a_silent_answer_closes_and_a_reopen_window_is_kept() -> None:
    deps = intake_deps()
    complaint = await assigned(deps)
    answer = command(complaint["_id"], Action.ANSWER, text="Sudah ditambal.")
    doc = await changes.execute(answer, deps)
    until = AT + timedelta(days=10)
    window = AutoCloseDue(
        event_id=f"reopen-window:{doc['reopen_from']}",
        occurred_at=AT,
        complaint_id=doc["_id"],
        region="banjar",
        responded_at=AT,
        kind="reopen_window",
        reopen_until=until,
        cause_event_id=doc["reopen_from"],
    )
    await changes.close_or_open_reply_window(window, deps)
    assert store(deps).complaints[doc["_id"]]["reopen_until"] == until

    due = AutoCloseDue(
        event_id=f"auto-close:{doc['_id']}",
        occurred_at=AT,
        complaint_id=doc["_id"],
        region="banjar",
        responded_at=AT,
    )
    await changes.close_or_open_reply_window(due, deps)
    closed = store(deps).complaints[doc["_id"]]
    assert (closed["state"], closed["outcome"]) == ("closed", "no_reply")
