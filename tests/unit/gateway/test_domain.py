"""Pure decisions of the SMS gateway connector."""

from __future__ import annotations

from datetime import UTC, datetime
from urllib.parse import parse_qs, urlsplit

import pytest

from services.gateway import domain
from services.gateway.domain import Coding

LOGIN = domain.SendSmsLogin(
    username="lapor",
    password="secret-password",
    sender="1708",
    callback_url="http://gateway:8085/",
    callback_token="tokentokentoken",
)
NOW = datetime(2026, 12, 6, 10, 0, tzinfo=UTC)


@pytest.mark.parametrize(
    ("text", "coding"),
    [
        ("Laporan Anda diterima: LPR-7K3M-9QX2T", Coding.GSM7),
        ("Harga [BBM] naik {lagi} ~ 5€ ^_^ | \\", Coding.GSM7),
        ("Ñandu àè ÄÖÜ ß @£$¥ Éé", Coding.GSM7),
        ("Terima kasih “Bapak”", Coding.UCS2),
        ("Tolong 🙏", Coding.UCS2),
        ("ç lowercase is not in GSM 03.38", Coding.UCS2),
        ("escape \x1b is not a character", Coding.UCS2),
    ],
)
def test_coding_is_gsm7_only_when_every_character_fits(text: str, coding: Coding) -> None:
    assert domain.coding_for(text) is coding


def test_sendsms_asks_for_every_report_and_names_the_notification() -> None:
    query = domain.sendsms_query(LOGIN, "+6281234567890", "Halo “warga”", "n:abc/1")
    assert query["coding"] == "2"
    assert query["charset"] == "UTF-8"
    assert query["dlr-mask"] == "31"
    assert query["from"] == "1708"
    url = query["dlr-url"]
    # Kannel reads `%` as its own escapes: only its placeholders may carry one.
    assert url.count("%") == 3
    assert url.endswith("&type=%d&reply=%A&at=%T")
    # smsbox logs this URL when the call fails: no number in it (%p is the citizen).
    assert "6281234567890" not in url
    fixed = parse_qs(urlsplit(url).query)
    assert fixed["token"] == ["tokentokentoken"]
    assert domain.notification_of(fixed["id"][0]) == "n:abc/1"
    assert url.startswith("http://gateway:8085/kannel/dlr?")


def test_gsm_text_goes_as_coding_0() -> None:
    assert domain.sendsms_query(LOGIN, "+62812", "Halo", "n1")["coding"] == "0"


def test_a_notification_key_that_is_not_one_is_refused() -> None:
    with pytest.raises(ValueError):
        domain.notification_of("%%%")


SENDER = {"X-Kannel-From": "+6281234567890"}


def test_a_ucs2_sms_is_read_from_its_utf16_bytes() -> None:
    text = "BANJAR air keruh “coklat” 🙏"
    headers = SENDER | {
        "Content-Type": 'text/plain; charset="UTF-16BE"',
        "X-Kannel-Coding": "2",
        "X-Kannel-Time": "2026-12-06 23:43:08",
        "X-Kannel-To": "1708",
        "X-Kannel-SMSC": "inject",
    }
    sms = domain.parse_received("u-1", headers, text.encode("utf-16-be"), NOW)
    assert sms.kannel_id == "u-1"
    assert sms.text == text
    assert sms.sender == "+6281234567890"
    assert sms.receiver == "1708"
    assert sms.sent_at == datetime(2026, 12, 6, 23, 43, 8, tzinfo=UTC)


def test_gsm_text_is_read_in_its_charset() -> None:
    headers = SENDER | {"Content-Type": 'text/plain; charset="ISO-8859-1"', "X-Kannel-Coding": "0"}
    sms = domain.parse_received("1", headers, "BANJAR jalan é".encode("latin-1"), NOW)
    assert sms.text == "BANJAR jalan é"
    # No X-Kannel-Time: the SMS is dated when it arrives.
    assert sms.sent_at == NOW


def test_header_names_are_read_in_any_case() -> None:
    headers = {"x-kannel-from": "+62812", "content-type": "text/plain"}
    assert domain.parse_received("1", headers, b"BANJAR", NOW).sender == "+62812"


def test_an_sms_without_the_smscs_time_stamp_is_dated_on_arrival() -> None:
    headers = SENDER | {"X-Kannel-Time": "1970-01-01 00:00:00"}
    assert domain.parse_received("1", headers, b"BANJAR", NOW).sent_at == NOW


@pytest.mark.parametrize(
    ("kannel_id", "headers"),
    [
        ("1", {"X-Kannel-Coding": "0"}),
        ("", SENDER),
        ("1", SENDER | {"X-Kannel-Time": "soon"}),
        ("1", SENDER | {"X-Kannel-Coding": "ucs2"}),
    ],
)
def test_a_received_sms_needs_its_id_sender_and_readable_headers(
    kannel_id: str, headers: dict[str, str]
) -> None:
    with pytest.raises(domain.InvalidCallback):
        domain.parse_received(kannel_id, headers, b"hi", NOW)


def test_the_query_keeps_the_bytes_sent() -> None:
    values = domain.query_bytes(b"token=t&id=1&reply=ACK%2F%E9")
    assert values == {"token": b"t", "id": b"1", "reply": b"ACK/\xe9"}


@pytest.mark.parametrize(
    ("dlr_type", "reply", "status", "reason"),
    [
        (1, "", "delivered", "delivered"),
        (2, "id:1 stat:UNDELIV err:001", "failed", "undelivered"),
        (2, "id:1 sub:001 dlvrd:000 stat:EXPIRED err:000", "expired", "expired"),
        (16, "NACK/0x00000045/Submit failed", "failed", "rejected"),
    ],
)
def test_final_reports(dlr_type: int, reply: str, status: str, reason: str) -> None:
    outcome = domain.outcome_of(dlr_type, reply)
    assert outcome is not None
    assert (outcome.status, outcome.reason) == (status, reason)
    if status == "failed":
        assert outcome.error is not None and reason in outcome.error.split(":")[0]


@pytest.mark.parametrize("dlr_type", [4, 8])
def test_progress_reports_are_not_outcomes(dlr_type: int) -> None:
    assert domain.outcome_of(dlr_type, "ACK/") is None


STATUS = """<?xml version="1.0"?>
<gateway><status>running</status>
<smscs><count>2</count>
  <smsc><name>SMPP:a</name><admin-id>operator</admin-id><id>operator</id>
    <status>online 120s</status></smsc>
  <smsc><name>FAKE:1</name><admin-id>inject</admin-id><id>inject</id>
    <status>re-connecting</status></smsc>
</smscs></gateway>"""


def test_links_are_read_from_the_status_page() -> None:
    assert domain.smsc_links(STATUS) == [
        domain.SmscLink("operator", True),
        domain.SmscLink("inject", False),
    ]
