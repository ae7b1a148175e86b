"""The e-mail address a web, Open311 or partner submission gives for replies: checked,
and carried to notify on `ComplaintReceived.reply_email_sealed`, sealed to its key."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import pytest

from lapor.contracts import Channel, ComplaintReceived, InboundWeb
from services.intake import inbound, usecases
from tests.contacts import opened
from tests.unit.intake.fakes import MemoryComplaints, intake_deps

NOW = datetime(2026, 11, 2, 1, 0, tzinfo=UTC)


@pytest.mark.parametrize(
    ("raw", "usable"),
    [
        ("warga@example.org", "warga@example.org"),
        ("  warga@example.org ", "warga@example.org"),
        ("Siti.Aminah+lapor@Mail.Example.CO.ID", "Siti.Aminah+lapor@mail.example.co.id"),
        ("budi_99@sub-domain.example.id", "budi_99@sub-domain.example.id"),
        ("a@example.org.", "a@example.org"),
        ("pak@bücher.de", "pak@xn--bcher-kva.de"),
        (None, None),
        ("", None),
        ("   ", None),
        ("warga", None),
        ("warga@", None),
        ("@example.org", None),
        ("warga@localhost", None),
        ("warga@@example.org", None),
        ("war ga@example.org", None),
        ("warga@exa mple.org", None),
        ("Warga <warga@example.org>", None),
        ("warga@example.org, lain@example.org", None),
        (".warga@example.org", None),
        ("warga.@example.org", None),
        ("war..ga@example.org", None),
        ("warga@-example.org", None),
        ("warga@example..org", None),
        ("warga@example.o", None),
        ("warga@example.123", None),
        ("warga@127.0.0.1", None),
        ("warga@[127.0.0.1]", None),
        ('"warga"@example.org', None),
        ("warga\n@example.org", None),
        ("warga@example.org\r\nBcc: x@example.org", None),
        ("x" * 65 + "@example.org", None),
        ("a@" + "b" * 64 + ".org", None),
    ],
)
def test_only_a_plain_address_is_used_for_replies(raw: str | None, usable: str | None) -> None:
    assert inbound.reply_email(raw) == usable


def submission(**fields: Any) -> InboundWeb:
    given: dict[str, Any] = {
        "source": "web",
        "message_id": "m-1",
        "text": "lampu jalan mati di depan sekolah",
        "received_at": NOW,
    }
    return InboundWeb(**(given | fields))


@pytest.mark.parametrize("channel", [Channel.WEB, Channel.OPEN311])
async def test_the_received_event_carries_the_reply_address(channel: Channel) -> None:
    repo = MemoryComplaints()
    given = submission(email=" Warga@Example.ORG", confidential=True)
    stored = await usecases.accept_submission(given, channel, intake_deps(repo))

    [event] = repo.published
    assert isinstance(event, ComplaintReceived)
    assert event.event_id == f"received:{stored['_id']}" and not repo.pending
    assert (opened(event, "reply_email_sealed"), event.reply_to_sealed) == (
        "Warga@example.org",
        None,
    )
    assert "Warga" not in event.model_dump_json()
    # Through the wire and back, as notify reads it.
    again = ComplaintReceived.model_validate_json(event.model_dump_json())
    assert opened(again, "reply_email_sealed") == "Warga@example.org" and again.confidential


async def test_phone_and_email_both_travel_and_a_bad_address_is_dropped() -> None:
    repo = MemoryComplaints()
    both = submission(phone="0812-3456-7001", email="warga@example.org")
    await usecases.accept_submission(both, Channel.WEB, intake_deps(repo))
    bad = submission(message_id="m-2", email="bukan alamat")
    await usecases.accept_submission(bad, Channel.WEB, intake_deps(repo))

    [first, second] = repo.announced(ComplaintReceived)
    assert (opened(first, "reply_to_sealed"), opened(first, "reply_email_sealed")) == (
        "+6281234567001",
        "warga@example.org",
    )
    assert (second.reply_to_sealed, second.reply_email_sealed) == (None, None)


def test_an_old_payload_is_still_valid_but_its_plain_number_is_not_taken_up() -> None:
    old = {
        "event_id": "received:LPR-OLD",
        "occurred_at": NOW.isoformat(),
        "complaint_id": "LPR-OLD",
        "region": "banjar",
        "channel": "sms",
        "text": "jalan rusak",
        "received_at": NOW.isoformat(),
        "reply_to": "+6281234567002",
    }
    event = ComplaintReceived.model_validate(old)
    assert event.reply_email_sealed is None and event.reply_to_sealed is None
    assert "6281234567002" not in event.model_dump_json()
