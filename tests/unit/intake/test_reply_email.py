"""The e-mail address a web, Open311 or partner submission gives for replies: checked,
and carried to notify on `ComplaintReceived.reply_email_sealed`, sealed to its key."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import pytest

from lapor.contracts import Channel, ComplaintReceived, InboundWeb
from lapor.contracts.events import contact_context
from lapor.runtime.pii import PiiOpener, new_key
from services.intake import handlers

NOW = datetime(2026, 11, 2, 1, 0, tzinfo=UTC)
NOTIFY_KEY = PiiOpener(new_key())


def opened(event: ComplaintReceived, field: str) -> str | None:
    """A sealed address as notify reads it."""
    sealed = getattr(event, field)
    return sealed and NOTIFY_KEY.open(sealed, contact_context(event.event_id, field))


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
    assert handlers.reply_email(raw) == usable


class Repo:
    """A first submission: stored with its `received` announcement, then announced."""

    def __init__(self) -> None:
        self.pending: list[Any] = []
        self.announced: list[str] = []

    async def by_source(self, source_key: str) -> dict[str, Any] | None:
        return None

    async def add_complaint(
        self, doc: dict[str, Any], events: list[Any]
    ) -> tuple[dict[str, Any], bool]:
        self.pending.extend(events)
        return doc, True

    async def announce(self, doc: dict[str, Any]) -> int:
        self.announced.append(doc["_id"])
        return len(self.pending)

    async def record_sender_message(self, source_key: str, phone_hash: str, at: datetime) -> None:
        pass  # each number's submissions count against its limit; none is reached here

    async def count_sender_messages(self, phone_hash: str, since: datetime) -> int:
        return 1


def deps(repo: Repo) -> handlers.IntakeDeps:
    unused: Any = object()
    return handlers.IntakeDeps(
        repo=repo,  # type: ignore[arg-type]
        answered=unused,
        command_rejected=unused,
        region_keywords={"BANJAR": "banjar"},
        phone_key=b"k" * 32,
        sealer=NOTIFY_KEY.sealer(),
    )


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
    repo = Repo()
    given = submission(email=" Warga@Example.ORG", confidential=True)
    stored = await handlers.accept_submission(given, channel, deps(repo))

    [event] = repo.pending
    assert isinstance(event, ComplaintReceived)
    assert event.event_id == f"received:{stored['_id']}" and repo.announced == [stored["_id"]]
    assert (opened(event, "reply_email_sealed"), event.reply_to_sealed) == (
        "Warga@example.org",
        None,
    )
    assert "Warga" not in event.model_dump_json()
    # Through the wire and back, as notify reads it.
    again = ComplaintReceived.model_validate_json(event.model_dump_json())
    assert opened(again, "reply_email_sealed") == "Warga@example.org" and again.confidential


async def test_phone_and_email_both_travel_and_a_bad_address_is_dropped() -> None:
    repo = Repo()
    both = submission(phone="0812-3456-7001", email="warga@example.org")
    await handlers.accept_submission(both, Channel.WEB, deps(repo))
    bad = submission(message_id="m-2", email="bukan alamat")
    await handlers.accept_submission(bad, Channel.WEB, deps(repo))

    [first, second] = repo.pending
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
