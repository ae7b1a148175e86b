"""The received event names its reporter by a pseudonym: equal for one number,
different for another, never the number nor the hash intake keys its records by."""

from datetime import UTC, datetime

from lapor.contracts import Channel
from services.intake import domain
from services.intake.phones import phone_hash

NOW = datetime(2026, 11, 28, 1, 0, tzinfo=UTC)
KEY = b"k" * 32


def received(tracking_id: str, number: str | None) -> str | None:
    doc = domain.new_complaint(
        tracking_id=tracking_id, region="banjar", channel=Channel.SMS, text="jalan rusak parah",
        received_at=NOW, source_key=f"sms:{tracking_id}",
        phone_hash=phone_hash(number, KEY) if number else None, anonymous=True,
        confidential=False, truncated=False, stored_at=NOW,
    )  # fmt: skip
    return domain.received_event(doc).reporter


def test_one_number_one_pseudonym_and_nothing_of_the_number() -> None:
    first = received("LPR-0001", "+6281234500001")
    assert first is not None and len(first) == 16
    assert received("LPR-0002", "+6281234500001") == first
    assert received("LPR-0003", "+6281234500002") != first
    assert first not in phone_hash("+6281234500001", KEY)
    assert "81234500001" not in first


def test_without_a_number_there_is_no_reporter() -> None:
    assert received("LPR-0004", None) is None
