from datetime import UTC, datetime, timedelta

import pytest
from pydantic import ValidationError

from lapor.contracts import ComplaintRouted, InboundSms, OutboundSms, Priority, subjects
from lapor.runtime.broker import stream_for


def test_inbound_sms_accepts_the_gateway_contract() -> None:
    sms = InboundSms.model_validate_json(
        '{"from": "+6281234567890", "to": "1708", "text": "BANJAR jalan rusak",'
        ' "gateway_id": "gw-1", "received_at": "2026-11-28T09:15:00+08:00"}'
    )
    assert sms.sender == "+6281234567890"
    assert sms.received_at.utcoffset() == timedelta(hours=8)
    assert sms.model_dump(by_alias=True)["from"] == "+6281234567890"


@pytest.mark.parametrize(
    "payload",
    [
        '{"from": "+6281234567890", "text": "x", "gateway_id": "g"}',  # no received_at
        '{"from": "+6281234567890", "text": "x", "gateway_id": "",'
        ' "received_at": "2026-11-28T09:15:00+08:00"}',  # empty gateway id
        '{"from": "+6281234567890", "text": "x", "gateway_id": "g",'
        ' "received_at": "2026-11-28T09:15:00"}',  # no offset
    ],
)
def test_inbound_sms_rejects_incomplete_payloads(payload: str) -> None:
    with pytest.raises(ValidationError):
        InboundSms.model_validate_json(payload)


def test_outbound_sms_has_the_connector_fields() -> None:
    sms = OutboundSms(to="+6281", text="t", complaint_id="c", notification_id="n")
    assert set(sms.model_dump()) == {"to", "text", "complaint_id", "notification_id"}


def test_every_subject_is_covered_by_exactly_one_stream() -> None:
    names = {
        stream_for(s).name
        for s in (
            subjects.INBOUND_SMS,
            subjects.INBOUND_PARTNERS,
            subjects.inbound_partner("whatsapp"),
            subjects.COMPLAINT_RECEIVED,
            subjects.COMPLAINT_ROUTED,
            subjects.COMPLAINT_DEADLINES,
            subjects.INBOUND_REJECTED,
            subjects.OUTBOUND_SMS,
        )
    }
    assert names == {"LAPOR_INBOUND", "LAPOR_EVENTS", "LAPOR_OUTBOUND"}
    with pytest.raises(ValueError):
        stream_for("other.subject")


def test_routed_confidence_is_bounded() -> None:
    now = datetime.now(UTC)
    with pytest.raises(ValidationError):
        ComplaintRouted(
            event_id="e", occurred_at=now, complaint_id="c", region="banjar", received_at=now,
            agency="PUPR", priority=Priority.NORMAL, category="jalan", confidence=1.5,
            triage=False,
        )  # fmt: skip
