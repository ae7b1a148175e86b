"""What the citizen is told when deadlines are announced: the acknowledgement once,
and the new answer date whenever it moves after that."""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

import pytest
from faststream.exceptions import NackMessage

from lapor.contracts import (
    Channel,
    ComplaintReceived,
    ComplaintRouted,
    Deadlines,
    DeadlinesSet,
    Priority,
    State,
)
from services.notify import domain, handlers
from services.notify.usecases import NotifyDeps
from tests.contacts import sealed
from tests.unit.notify.fakes import MemoryRecords, RecordingDelivery, notify_deps

WITA = ZoneInfo("Asia/Makassar")
RECEIVED = datetime(2026, 11, 2, 9, 0, tzinfo=WITA)
ANSWER = datetime(2026, 11, 16, 23, 59, 59, tzinfo=WITA)
PHONE = "+6281234509901"
CID = "LPR-2611-EXT0001"


def announced(
    event_id: str,
    state: State,
    answer: datetime,
    *,
    agency: str | None = "PUPR",
    cause: str | None = None,
) -> DeadlinesSet:
    return DeadlinesSet(
        event_id=event_id,
        occurred_at=RECEIVED,
        complaint_id=CID,
        region="banjar",
        agency=agency,
        priority=Priority.NORMAL,
        state=state,
        received_at=RECEIVED,
        deadlines=Deadlines(
            routing=RECEIVED + timedelta(days=3), first_response=None, answer=answer
        ),
        cause_event_id=cause or event_id.removeprefix("deadlines:"),
        # A routing's deadlines carry its category and confidence, as SLA passes them on.
        **({"category": "jalan", "routing_confidence": 0.9} if ":routed:" in event_id else {}),
    )


FIRST = announced("deadlines:routed:LPR-2611-EXT0001:0", State.ASSIGNED, ANSWER)
# The citizen answered the agency's question after 6 days.
REPLIED = announced(
    "deadlines:state:command:LPR-2611-EXT0001:reply",
    State.IN_PROGRESS,
    ANSWER + timedelta(days=6),
)
# Nobody answered the question: its reply window lapsed.
LAPSED = announced(
    "deadlines:LPR-2611-EXT0001:answer:reply_lapsed:1",
    State.NEEDS_INFO,
    datetime(2026, 12, 1, 13, 59, 58, tzinfo=WITA),
    cause="state:command:LPR-2611-EXT0001:ask",
)


def test_the_first_announcement_acknowledges() -> None:
    message = domain.acknowledgement(FIRST, "Dinas PUPR")
    assert message.template == "ack"
    triage = announced("deadlines:routed:X:0", State.TRIAGE, ANSWER, agency=None)
    assert domain.acknowledgement(triage, "").template == "ack_triage"


@pytest.mark.parametrize("event", [REPLIED, LAPSED], ids=["replied", "lapsed"])
def test_the_end_of_a_wait_tells_the_new_date(event: DeadlinesSet) -> None:
    message = domain.acknowledgement(event, "Dinas PUPR", acknowledged_answer=ANSWER)
    assert message.template == "deadline_extended"
    assert message.values["answer_date"] == event.deadlines.answer
    # Also when notify never saw the acknowledgement's date (it came later, or was lost).
    assert domain.acknowledgement(event, "Dinas PUPR").template == "deadline_extended"


def test_a_routing_announcement_with_another_date_than_the_first_is_an_extension() -> None:
    rerouted = announced(
        "deadlines:routed:LPR-2611-EXT0001:1", State.ASSIGNED, ANSWER + timedelta(days=6)
    )
    assert domain.answer_moved(rerouted, ANSWER)
    assert domain.acknowledgement(rerouted, "DLH", acknowledged_answer=ANSWER).template == (
        "deadline_extended"
    )
    # The same date, read back from the database in UTC and to the millisecond: unchanged.
    stored = ANSWER.astimezone(UTC).replace(tzinfo=None)
    same = announced("deadlines:routed:LPR-2611-EXT0001:1", State.ASSIGNED, ANSWER)
    assert not domain.answer_moved(same, stored)
    assert domain.acknowledgement(same, "DLH", acknowledged_answer=stored).template == "ack"


# --- through the handler: the SMS texts the citizen receives ----------------------------


@pytest.fixture
def notify() -> tuple[NotifyDeps, RecordingDelivery]:
    delivery = RecordingDelivery()
    return notify_deps(delivery=delivery), delivery


async def test_the_citizen_hears_the_ack_once_then_each_new_date(
    notify: tuple[NotifyDeps, RecordingDelivery],
) -> None:
    deps, outbox = notify
    await handlers.handle_received(
        ComplaintReceived(
            event_id=f"received:{CID}",
            occurred_at=RECEIVED,
            complaint_id=CID,
            region="banjar",
            channel=Channel.SMS,
            text="jalan rusak parah di depan pasar Martapura",
            received_at=RECEIVED,
            reply_to_sealed=sealed(f"received:{CID}", "reply_to_sealed", PHONE),
        ),
        deps,
    )
    await handlers.handle_routed(
        ComplaintRouted(
            event_id=f"routed:{CID}:0",
            occurred_at=RECEIVED,
            complaint_id=CID,
            region="banjar",
            received_at=RECEIVED,
            agency="PUPR",
            priority=Priority.NORMAL,
            category="jalan",
            confidence=0.9,
            triage=False,
        ),
        deps,
    )
    await handlers.handle_deadlines(FIRST, deps)
    await handlers.handle_deadlines(FIRST, deps)  # redelivered: the same notification
    [ack] = outbox.sms()
    assert CID in ack and "paling lambat 16 November 2026" in ack

    await handlers.handle_deadlines(REPLIED, deps)
    await handlers.handle_deadlines(REPLIED, deps)
    extended = outbox.sms()[1:]
    assert len(extended) == 1
    assert "diperpanjang menjadi 22 November 2026" in extended[0] and CID in extended[0]

    await handlers.handle_deadlines(LAPSED, deps)
    assert "diperpanjang menjadi 1 Desember 2026" in outbox.sms()[-1]

    # A redelivered first announcement, after the date moved, still acknowledges: nothing new.
    await handlers.handle_deadlines(FIRST, deps)
    assert len(outbox.sms()) == 3
    templates = [n.message.template for n in outbox.sent.values() if n.audience == "citizen"]
    assert templates == ["ack", "deadline_extended", "deadline_extended"]


async def test_deadlines_ahead_of_the_routing_are_retried_soon_then_less_often(
    notify: tuple[NotifyDeps, RecordingDelivery],
) -> None:
    """An SLA that passes no routing on may announce the deadlines while notify is
    still storing the routing: that race is lost by milliseconds, so the first wait
    must not hold the SMS for seconds."""
    from faststream.exceptions import NackMessage

    from lapor.runtime.broker import MAX_DELIVER

    deps, outbox = notify
    await deps.repo.save_contact(CID, {"sms": PHONE, "region": "banjar", "text": "x"})
    first = FIRST.model_copy(update={"category": None, "routing_confidence": None})
    waits = []
    for delivery in range(1, MAX_DELIVER):
        with pytest.raises(NackMessage) as nacked:
            await handlers.handle_deadlines(first, deps, delivery)
        waits.append(nacked.value.extra_options["delay"])
    assert waits[0] <= 0.25 and waits == sorted(waits)
    # Still as long in all as before the waits were graded (7 × 2 s).
    assert sum(waits) >= 14.0
    assert outbox.sent == {}
    # The last delivery sends what it can rather than waiting again.
    await handlers.handle_deadlines(first, deps, MAX_DELIVER)
    assert len(outbox.sms()) == 1


class LateContact(MemoryRecords):
    """The received event is stored right after the deadline handler's first look."""

    def __init__(self, contact: dict[str, Any]) -> None:
        super().__init__()
        self.late = contact

    async def contact(self, complaint_id: str) -> dict[str, Any] | None:
        found = await super().contact(complaint_id)
        if found is None:
            # Merged, as the received event's write is: the routing kept there stays.
            self.contacts.setdefault(complaint_id, {}).update(self.late)
        return found


async def test_the_acknowledgement_is_worded_from_the_contact_it_is_sent_to(
    notify: tuple[NotifyDeps, RecordingDelivery],
) -> None:
    deps, outbox = notify
    repo = LateContact({"sms": PHONE, "region": "banjar", "text": "x", "text_truncated": True})
    deps = replace(deps, repo=repo)
    routed = ComplaintRouted(
        event_id=f"routed:{CID}:0",
        occurred_at=RECEIVED,
        complaint_id=CID,
        region="banjar",
        received_at=RECEIVED,
        agency="PUPR",
        priority=Priority.NORMAL,
        category="jalan",
        confidence=0.9,
        triage=False,
    )
    await handlers.handle_routed(routed, deps)
    with pytest.raises(NackMessage):
        await handlers.handle_deadlines(FIRST, deps, 1)
    await handlers.handle_deadlines(FIRST, deps, 2)

    [ack] = [n for n in outbox.sent.values() if n.audience == "citizen"]
    assert ack.message.template == "ack_truncated"
    assert "1600 huruf pertama" in ack.message.text
