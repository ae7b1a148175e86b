"""Citizens whose SMS changed nothing learn why, in their terms, and how to send it right."""

from datetime import UTC, datetime, timedelta

import pytest

from lapor.contracts import (
    CitizenCommandAnswered,
    Deadlines,
    DeadlinesSet,
    InboundRejected,
    Priority,
    RejectionReason,
    State,
)
from services.intake.sms import DEFAULT_REGIONS, Invalid, parse_sms
from services.notify import domain
from services.notify.templates import DEFAULT_TEMPLATE_PATH, TemplateSet
from tests.contacts import sealed

NOW = datetime(2026, 11, 30, 1, 0, tzinfo=UTC)
TEMPLATES = TemplateSet.load(DEFAULT_TEMPLATE_PATH)
ID = "LPR-7K3M-9QX2T"


def rejected(reason: RejectionReason) -> InboundRejected:
    return InboundRejected(
        event_id="rejected:R1",
        occurred_at=NOW,
        rejection_id="R1",
        channel="sms",  # type: ignore[arg-type]
        reason=reason,
        reply_to_sealed=sealed("rejected:R1", "reply_to_sealed", "+6281234567890"),
        region="banjar",
    )


def reply_to(sms: str) -> str:
    """The text the citizen gets back for an SMS the parser refuses."""
    parsed = parse_sms(sms, DEFAULT_REGIONS)
    assert isinstance(parsed, Invalid), parsed
    message = domain.rejection_reply(rejected(parsed.reason))
    return TEMPLATES.render(message.template, **message.values)


@pytest.mark.parametrize(
    ("sms", "template"),
    [
        (f"NILAI {ID} 7", "reject_bad_rating"),
        (f"NILAI {ID}", "reject_bad_rating"),
        ("CEK LPR-7K3M-9QX2A", "reject_bad_tracking_id"),
        ("BALAS 12345", "reject_bad_tracking_id"),
        ("   ", "reject_empty"),
        (f"BALAS {ID}", "reject_empty"),
        (f"BUKA {ID}", "reject_empty"),
    ],
)
def test_each_reason_intake_gives_has_its_own_text(sms: str, template: str) -> None:
    parsed = parse_sms(sms, DEFAULT_REGIONS)
    assert isinstance(parsed, Invalid)
    assert domain.rejection_reply(rejected(parsed.reason)).template == template


def test_a_score_out_of_range_is_told_the_range_with_an_example() -> None:
    text = reply_to(f"NILAI {ID} 7")
    assert "1 sampai 5" in text
    assert "contoh: NILAI LPR-" in text and "SMS Anda tidak dapat kami baca" not in text


def test_a_wrong_tracking_id_is_told_so_with_the_cek_format() -> None:
    text = reply_to("CEK LPR-7K3M-9QX2A")  # wrong check symbol
    assert "nomor laporan pada SMS Anda salah" in text
    assert "CEK <nomor laporan> ke 1708" in text


def test_an_empty_reply_says_what_to_put_after_the_number() -> None:
    text = reply_to(f"BALAS {ID}")
    assert "BALAS <nomor laporan> <isi balasan>" in text
    assert "BUKA <nomor laporan> <alasan>" in text
    assert "BANJAR <isi laporan>" in text


def test_a_rating_before_the_answer_is_refused_and_not_thanked() -> None:
    answered = CitizenCommandAnswered(
        event_id="command:sms:gw-1",
        occurred_at=NOW,
        command="rating",
        found=True,
        tracking_id=ID,
        region="banjar",
        state=State.ASSIGNED,
        score=4,
        refused="cannot rate a complaint that is assigned (allowed: closed, responded)",
    )
    message = domain.command_reply(answered, "Dinas PUPR")
    assert message.template == "rating_refused"
    text = TEMPLATES.render(message.template, **message.values)
    assert "belum dapat dicatat" in text and "Didisposisikan" in text
    assert "Terima kasih atas nilai" not in text and "cannot rate" not in text


@pytest.mark.parametrize(("agency", "template"), [("PUPR", "ack"), (None, "ack_triage")])
def test_a_cut_sms_is_told_in_the_acknowledgement(agency: str | None, template: str) -> None:
    event = DeadlinesSet(
        event_id="deadlines:routed:LPR-1:0",
        occurred_at=NOW,
        complaint_id=ID,
        region="banjar",
        agency=agency,
        priority=Priority.NORMAL,
        state=State.ASSIGNED if agency else State.TRIAGE,
        received_at=NOW,
        deadlines=Deadlines(answer=NOW + timedelta(days=14)),
        cause_event_id="routed:LPR-1:0",
    )
    assert domain.acknowledgement(event, "Dinas PUPR").template == template
    cut = domain.acknowledgement(event, "Dinas PUPR", truncated=True)
    assert cut.template == f"{template}_truncated"
    values = {k: v.isoformat() if isinstance(v, datetime) else v for k, v in cut.values.items()}
    text = TEMPLATES.render(cut.template, **values)
    assert ID in text and "1600 huruf pertama" in text
