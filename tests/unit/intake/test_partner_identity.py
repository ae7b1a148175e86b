"""A partner's submission is stored under the partner its subject names, at the
time the server received it; the payload's `source` and `received_at` decide nothing."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from lapor.contracts import subjects
from services.intake import handlers
from tests.unit.intake.fakes import MemoryComplaints
from tests.unit.intake.test_sms_pumping import NOW, deps, submission


def test_the_partner_is_the_last_word_of_its_subject_only() -> None:
    assert subjects.partner_of(subjects.inbound_partner("sp4n")) == "sp4n"
    assert subjects.partner_of(subjects.INBOUND_SMS) is None
    assert subjects.partner_of("lapor.inbound.partner.sp4n.x") is None


async def test_the_subjects_partner_replaces_the_claimed_source() -> None:
    repo = MemoryComplaints()
    claimed = submission(source="partner:sp4n", received_at=NOW - timedelta(days=400))
    stored_at = datetime(2026, 11, 2, 1, 0, 7, tzinfo=UTC)
    await handlers.handle_partner(claimed, "whatsapp", deps(repo), stored_at)
    (doc,) = repo.complaints.values()
    assert doc["source_key"] == "web:partner:whatsapp:m-1"
    assert doc["submission"]["source"] == "partner:whatsapp"
    assert doc["received_at"] == stored_at


async def test_two_partners_may_use_the_same_message_id() -> None:
    repo = MemoryComplaints()
    await handlers.handle_partner(
        submission(text="jalan rusak parah sekali"), "whatsapp", deps(repo)
    )
    await handlers.handle_partner(submission(text="lampu jalan mati semua"), "sp4n", deps(repo))
    assert sorted(doc["source_key"] for doc in repo.complaints.values()) == [
        "web:partner:sp4n:m-1",
        "web:partner:whatsapp:m-1",
    ]
