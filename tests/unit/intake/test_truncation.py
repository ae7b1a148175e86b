"""An over-long SMS is cut, and the cut is remembered: in the history and on the event."""

from datetime import UTC, datetime

from lapor.contracts import Channel, ComplaintReceived
from services.intake import domain
from services.intake.sms import DEFAULT_REGIONS, NewComplaint, parse_sms
from services.intake.text import MAX_SMS_TEXT

NOW = datetime(2026, 11, 28, 1, 0, tzinfo=UTC)


def stored(text: str, truncated: bool) -> dict:
    return domain.new_complaint(
        tracking_id="LPR-TEST", region="banjar", channel=Channel.SMS, text=text,
        received_at=NOW, source_key="sms:gw-1", phone_hash="h", anonymous=False,
        confidential=False, truncated=truncated, stored_at=NOW,
    )  # fmt: skip


def test_a_long_sms_is_cut_and_the_cut_is_in_the_history_and_the_event() -> None:
    parsed = parse_sms("BANJAR " + "jalan rusak berlubang parah " * 100, DEFAULT_REGIONS)
    assert isinstance(parsed, NewComplaint) and parsed.truncated
    doc = stored(parsed.text, parsed.truncated)
    entry = doc["history"][0]
    assert entry["detail"] == {"text_truncated": True, "kept_chars": len(parsed.text)}
    assert len(parsed.text) <= MAX_SMS_TEXT and "cut" in entry["reason"]
    assert domain.received_event(doc).text_truncated is True


def test_a_normal_sms_carries_no_note() -> None:
    doc = stored("jalan rusak berlubang parah", truncated=False)
    assert "detail" not in doc["history"][0]
    assert domain.received_event(doc).text_truncated is False


def test_an_event_from_before_the_field_existed_still_reads() -> None:
    event = domain.received_event(stored("jalan rusak", truncated=False))
    old = event.model_dump(mode="json", exclude={"text_truncated"})
    assert ComplaintReceived.model_validate(old).text_truncated is False
