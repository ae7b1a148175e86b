"""Notify's use cases, each against the in-memory records and delivery: who hears what,
what is remembered, what waits for an event still on its way, and how often the
complaint's contact is read."""

from __future__ import annotations

from datetime import datetime, timedelta
from zoneinfo import ZoneInfo

import pytest
from faststream.exceptions import NackMessage

from lapor.contracts import (
    Channel,
    CitizenCommandAnswered,
    ComplaintReceived,
    ComplaintStateChanged,
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
)
from lapor.runtime.broker import MAX_DELIVER
from services.notify import handlers, usecases
from services.notify.usecases import NotifyDeps, NotYetKnown, RetryLater
from tests.contacts import sealed
from tests.factories import complaint_routed
from tests.unit.notify.fakes import MemoryRecords, RecordingDelivery, notify_deps

WITA = ZoneInfo("Asia/Makassar")
AT = datetime(2026, 11, 2, 9, 0, tzinfo=WITA)
ANSWER = datetime(2026, 11, 16, 23, 59, 59, tzinfo=WITA)
CID = "LPR-2611-USE0001"
PHONE = "+6281234509931"
EMAIL = "warga@example.org"


def received(*, email: str | None = None, **flags: bool) -> ComplaintReceived:
    return ComplaintReceived(
        event_id=f"received:{CID}",
        occurred_at=AT,
        complaint_id=CID,
        region="banjar",
        channel=Channel.WEB,
        text="jalan berlubang di depan pasar, hub 0812 3456 7890",
        received_at=AT,
        reply_to_sealed=sealed(f"received:{CID}", "reply_to_sealed", PHONE),
        reply_email_sealed=sealed(f"received:{CID}", "reply_email_sealed", email),
        **flags,
    )


def deadlines(
    state: State = State.ASSIGNED, agency: str | None = "PUPR", *, routing: bool = True
) -> DeadlinesSet:
    """SLA's first deadlines, with the routing's category and confidence unless
    `routing` is False (as an SLA that did not pass them on)."""
    return DeadlinesSet(
        event_id=f"deadlines:routed:{CID}:0",
        occurred_at=AT,
        complaint_id=CID,
        region="banjar",
        agency=agency,
        priority=Priority.NORMAL,
        state=state,
        received_at=AT,
        deadlines=Deadlines(routing=AT + timedelta(days=3), answer=ANSWER),
        cause_event_id=f"routed:{CID}:0",
        category="jalan" if routing else None,
        routing_confidence=0.9 if routing else None,
    )


def state_changed(
    state: State, *, action: str | None = None, message: str | None = None
) -> ComplaintStateChanged:
    return ComplaintStateChanged(
        event_id=f"state:{CID}:{state.value}:{action}",
        occurred_at=AT,
        complaint_id=CID,
        region="banjar",
        state=state,
        previous_state=State.NEEDS_INFO,
        actor="citizen",
        reason="citizen acted",
        agency="PUPR",
        action=action,
        message=message,
        cause_event_id=f"command:{CID}",
    )


# What sla says of the answer clock of CID, held against PUPR.
ANSWER_CLOCK = {
    "occurred_at": AT,
    "complaint_id": CID,
    "region": "banjar",
    "agency": "PUPR",
    "priority": Priority.NORMAL,
    "clock": SlaClock.ANSWER,
    "due_at": ANSWER,
}


def alert() -> DeadlineAlert:
    event_id = f"{CID}:answer:warn50:0"
    return DeadlineAlert(event_id=event_id, kind="warning", percent=50, **ANSWER_CLOCK)


def escalation(level: EscalationLevel) -> EscalationRaised:
    event_id = f"{CID}:answer:{level.value}:0"
    return EscalationRaised(event_id=event_id, level=level, late_by_s=3600, **ANSWER_CLOCK)


@pytest.fixture
def repo() -> MemoryRecords:
    return MemoryRecords()


@pytest.fixture
def delivery() -> RecordingDelivery:
    return RecordingDelivery()


@pytest.fixture
def deps(repo: MemoryRecords, delivery: RecordingDelivery) -> NotifyDeps:
    return notify_deps(repo, delivery)


async def known(deps: NotifyDeps, *, anonymous: bool = False, confidential: bool = False) -> None:
    """Notify has heard of CID: received (with these flags) and routed to PUPR."""
    flagged = received(anonymous=anonymous, confidential=confidential)
    await usecases.remember_contact(flagged, deps)
    await usecases.remember_routing(complaint_routed(CID, at=AT), deps)


# --- what notify remembers ------------------------------------------------------------


async def test_the_contact_is_kept_opened_with_what_notices_need(
    deps: NotifyDeps, repo: MemoryRecords
) -> None:
    await usecases.remember_contact(received(email=EMAIL, anonymous=True), deps)
    contact = repo.contacts[CID]
    assert (contact["sms"], contact["email"]) == (PHONE, EMAIL)
    assert contact["anonymous"] is True and contact["region"] == "banjar"
    assert contact["text"].startswith("jalan berlubang")


async def test_a_routing_in_scope_is_neither_kept_nor_told(
    deps: NotifyDeps, repo: MemoryRecords, delivery: RecordingDelivery
) -> None:
    """What the agency's notice says of it comes with the deadlines it sets."""
    await usecases.remember_routing(complaint_routed(CID, at=AT), deps)
    assert CID not in repo.contacts and not repo.routings
    assert delivery.sent == {} and repo.reads["contact"] == 0


async def test_out_of_scope_guides_the_citizen_once_the_contact_is_known(
    deps: NotifyDeps, delivery: RecordingDelivery
) -> None:
    routed = complaint_routed(CID, at=AT, agency="OUT_OF_SCOPE", category="pidana")
    with pytest.raises(NotYetKnown):
        await usecases.remember_routing(routed, deps)
    await usecases.remember_contact(received(), deps)
    await usecases.remember_routing(routed, deps)
    [note] = delivery.sent.values()
    assert note.message.template == "out_of_scope" and note.message.to == PHONE


# --- citizens -------------------------------------------------------------------------


async def test_deadlines_acknowledge_the_citizen_and_assign_the_agency(
    deps: NotifyDeps, repo: MemoryRecords, delivery: RecordingDelivery
) -> None:
    await known(deps)
    await usecases.acknowledge_and_assign(deadlines(), deps)
    assert [m.template for m in delivery.citizen("sms")] == ["ack"]
    assert {n.message.template for n in delivery.officials()} == {"official_assignment"}
    # The date told is kept with the acknowledgement's records; nothing else was read.
    assert {n.acknowledges for n in delivery.sent.values() if n.audience == "citizen"} == {ANSWER}
    assert repo.acknowledged[CID] == ANSWER and repo.reads["acknowledged"] == 0


async def test_deadlines_read_the_contact_once(
    deps: NotifyDeps, repo: MemoryRecords, delivery: RecordingDelivery
) -> None:
    """Acknowledgement, its address and the agency's notice come from one read, which
    brings the routing along."""
    await known(deps)
    await usecases.acknowledge_and_assign(deadlines(), deps)
    assert delivery.officials() and delivery.citizen("sms")
    assert repo.reads["contact"] == 1
    assert repo.reads["routing"] == 0


async def test_a_routing_stored_apart_before_it_went_into_the_contact_is_still_found(
    deps: NotifyDeps, repo: MemoryRecords, delivery: RecordingDelivery
) -> None:
    await usecases.remember_contact(received(), deps)
    repo.routings[f"routed:{CID}:0"] = {"agency": "PUPR", "category": "jalan", "confidence": 0.9}
    await usecases.acknowledge_and_assign(deadlines(routing=False), deps)
    assert {n.message.template for n in delivery.officials()} == {"official_assignment"}
    assert repo.reads["routing"] == 1


async def test_deadlines_wait_for_the_contact_then_go_ahead_on_the_last_chance(
    deps: NotifyDeps, delivery: RecordingDelivery
) -> None:
    with pytest.raises(NotYetKnown):
        await usecases.acknowledge_and_assign(deadlines(State.TRIAGE, None), deps)
    await usecases.acknowledge_and_assign(deadlines(State.TRIAGE, None), deps, last_chance=True)
    [note] = delivery.sent.values()
    assert note.undeliverable and note.message.template == "ack_triage"


async def test_an_assignment_waits_for_its_routing_unless_the_deadlines_carry_it(
    deps: NotifyDeps, repo: MemoryRecords, delivery: RecordingDelivery
) -> None:
    await usecases.remember_contact(received(), deps)
    with pytest.raises(NotYetKnown):
        await usecases.acknowledge_and_assign(deadlines(routing=False), deps)
    repo.reads.clear()
    await usecases.acknowledge_and_assign(deadlines(), deps)
    [notice] = {n.message.template: n for n in delivery.officials()}.values()
    assert notice.message.template == "official_assignment"
    assert deps.agencies.category_label("banjar", "PUPR", "jalan") in notice.message.text
    assert repo.reads["routing"] == 0


async def test_a_question_reaches_the_citizen_by_sms_and_email(
    deps: NotifyDeps, repo: MemoryRecords, delivery: RecordingDelivery
) -> None:
    await usecases.remember_contact(received(email=EMAIL), deps)
    asked = state_changed(State.NEEDS_INFO, message="Mohon kirim foto lokasi.")
    await usecases.tell_state_change(asked, deps)
    assert [m.template for m in delivery.citizen("sms")] == ["question"]
    assert [m.to for m in delivery.citizen("email")] == [EMAIL]
    assert delivery.officials() == [] and repo.reads["contact"] == 1


async def test_a_citizen_reply_reaches_the_agency_with_one_read_of_the_contact(
    deps: NotifyDeps, repo: MemoryRecords, delivery: RecordingDelivery
) -> None:
    await known(deps, anonymous=True)
    replied = state_changed(State.IN_PROGRESS, action="reply", message="Fotonya 0812 3456 7890")
    await usecases.tell_state_change(replied, deps)
    [notice, *_] = delivery.officials()
    assert notice.message.template == "official_citizen_action"
    assert "0812 3456 7890" not in notice.message.text
    assert repo.reads["contact"] == 1


async def test_a_state_change_without_message_or_action_reads_nothing(
    deps: NotifyDeps, repo: MemoryRecords, delivery: RecordingDelivery
) -> None:
    await usecases.tell_state_change(state_changed(State.IN_PROGRESS), deps)
    assert delivery.deliveries == 0 and repo.reads["contact"] == 0


async def test_a_rejection_is_explained_to_its_sender(
    deps: NotifyDeps, delivery: RecordingDelivery
) -> None:
    event = InboundRejected(
        event_id="rejected:1",
        occurred_at=AT,
        rejection_id="rejected:1",
        channel=Channel.SMS,
        reason=RejectionReason.UNKNOWN_REGION,
        reply_to_sealed=sealed("rejected:1", "reply_to_sealed", PHONE),
    )
    await usecases.explain_rejection(event, deps)
    [note] = delivery.sent.values()
    assert note.message.to == PHONE and note.audience == "citizen"


async def test_a_command_is_answered_and_one_without_address_is_not(
    deps: NotifyDeps, delivery: RecordingDelivery
) -> None:
    fields = {"occurred_at": AT, "command": "status", "found": True, "tracking_id": CID}
    fields |= {"region": "banjar", "state": State.ASSIGNED, "agency": "PUPR"}
    silent = CitizenCommandAnswered(event_id="answered:0", **fields)  # type: ignore[arg-type]
    await usecases.answer_command(silent, deps)
    assert delivery.sent == {}
    asked = CitizenCommandAnswered(
        event_id="answered:1",
        reply_to_sealed=sealed("answered:1", "reply_to_sealed", PHONE),
        **fields,  # type: ignore[arg-type]
    )
    await usecases.answer_command(asked, deps)
    [note] = delivery.sent.values()
    assert note.message.template == "status" and "Didisposisikan" in note.message.text


# --- officials ------------------------------------------------------------------------


async def test_a_warning_goes_to_the_liaison(
    deps: NotifyDeps, repo: MemoryRecords, delivery: RecordingDelivery
) -> None:
    await known(deps)
    await usecases.warn_officials(alert(), deps)
    assert {n.level for n in delivery.officials()} == {EscalationLevel.LIAISON}
    assert repo.reads["contact"] == 1


async def test_a_confidential_escalation_to_the_ombudsman_is_withheld(
    deps: NotifyDeps, delivery: RecordingDelivery
) -> None:
    await known(deps, confidential=True)
    await usecases.escalate(escalation(EscalationLevel.OMBUDSMAN), deps)
    notes = delivery.officials()
    assert notes and all(n.withheld for n in notes)


async def test_officials_wait_for_the_contact_then_read_it_the_strict_way(
    deps: NotifyDeps, delivery: RecordingDelivery
) -> None:
    with pytest.raises(NotYetKnown):
        await usecases.escalate(escalation(EscalationLevel.OMBUDSMAN), deps)
    await usecases.escalate(escalation(EscalationLevel.OMBUDSMAN), deps, last_chance=True)
    # Unknown flags count as confidential: nothing leaves the agency circle.
    assert all(n.withheld for n in delivery.officials())


# --- delivery receipts ---------------------------------------------------------------


async def test_receipts_settle_what_was_sent_and_ignore_the_unknown(
    deps: NotifyDeps, repo: MemoryRecords, delivery: RecordingDelivery
) -> None:
    repo.notifications["ntf-1"] = {"_id": "ntf-1", "status": "sent"}
    for status in ("delivered", "expired", "failed"):
        receipt = SmsDeliveryReceipt(notification_id="ntf-1", status=status, at=AT)  # type: ignore[arg-type]
        await usecases.record_receipt(receipt, deps)
    unknown = SmsDeliveryReceipt(notification_id="ntf-2", status="failed", at=AT)
    await usecases.record_receipt(unknown, deps)
    assert delivery.delivered == [("ntf-1", AT)]
    assert [reason for _, _, reason in delivery.failed] == ["expired", "receipt"]


async def test_a_delivered_receipt_is_one_conditional_write_without_a_read(
    deps: NotifyDeps, repo: MemoryRecords, delivery: RecordingDelivery
) -> None:
    repo.notifications["ntf-1"] = {"_id": "ntf-1", "status": "sent"}
    receipt = SmsDeliveryReceipt(notification_id="ntf-1", status="delivered", at=AT)
    await usecases.record_receipt(receipt, deps)
    assert delivery.delivered == [("ntf-1", AT)]
    assert repo.reads["notification"] == 0


# --- the entry points' acknowledgement policy ------------------------------------------


async def test_a_missing_dependency_is_redelivered_soon_then_less_often(deps: NotifyDeps) -> None:
    waits = []
    for delivery in (1, 2, 3):
        with pytest.raises(NackMessage) as nacked:
            await handlers.handle_alert(alert(), deps, delivery)
        waits.append(nacked.value.extra_options["delay"])
    assert waits == [handlers.DEPENDENCY_WAIT.delay_after(n) for n in (1, 2, 3)]
    assert waits == sorted(waits)


async def test_a_delivery_to_retry_is_redelivered_after_its_own_delay(repo: MemoryRecords) -> None:
    deps = notify_deps(repo, RecordingDelivery(retry_in=7.5))
    await known(deps)
    with pytest.raises(RetryLater):
        await usecases.warn_officials(alert(), deps)
    with pytest.raises(NackMessage) as nacked:
        await handlers.handle_alert(alert(), deps, 1)
    assert nacked.value.extra_options["delay"] == 7.5


async def test_the_last_delivery_is_the_use_cases_last_chance(
    deps: NotifyDeps, delivery: RecordingDelivery
) -> None:
    await handlers.handle_alert(alert(), deps, MAX_DELIVER)
    assert delivery.last_chances == [True]
