"""Channel pieces that need no server: result classification, message shapes, settings."""

import json
import logging
from pathlib import Path

import aiosmtplib
import pytest
from pydantic import SecretStr, ValidationError

from services.notify import signing
from services.notify.channels import (
    LogSink,
    OutgoingMessage,
    Unavailable,
    Webhook,
    classify_http,
    classify_smtp_error,
    email_message,
    webhook_body,
)
from services.notify.settings import NotifySettings

DATA = Path(__file__).resolve().parents[3] / "data"

NOTICE = OutgoingMessage(
    notification_id="ntf-abc",
    kind="email",
    to="pengaduan.pupr@banjarkab.go.id",
    text="Yth. Pimpinan Dinas PUPR,\n\nLaporan BJR-1 …",
    subject="[LAPOR BJR-1] Disposisi laporan untuk Dinas PUPR",
    complaint_id="BJR-1",
    template="official_assignment",
    agency="PUPR",
    recipient_name="Petugas Pengaduan PUPR",
    data={"tracking_id": "BJR-1", "level": "liaison"},
)


@pytest.mark.parametrize(
    ("status", "ok", "permanent"),
    [
        (200, True, False),
        (202, True, False),
        (500, False, False),
        (503, False, False),
        (429, False, False),
        (408, False, False),
        (400, False, True),
        (401, False, True),
        (404, False, True),
        (302, False, True),
    ],
)
def test_http_status_classification(status: int, ok: bool, permanent: bool) -> None:
    result = classify_http(status, "body")
    assert (result.ok, result.permanent) == (ok, permanent)
    if not ok:
        assert f"HTTP {status}" in (result.error or "")


@pytest.mark.parametrize(
    ("exc", "permanent"),
    [
        (aiosmtplib.SMTPResponseException(550, "no such user"), True),
        (aiosmtplib.SMTPResponseException(451, "try again later"), False),
        (aiosmtplib.SMTPAuthenticationError(535, "bad credentials"), True),
        (
            aiosmtplib.SMTPRecipientsRefused(
                [aiosmtplib.SMTPRecipientRefused(550, "unknown", "a@x.go.id")]
            ),
            True,
        ),
        (
            aiosmtplib.SMTPRecipientsRefused(
                [aiosmtplib.SMTPRecipientRefused(452, "mailbox full", "a@x.go.id")]
            ),
            False,
        ),
        (aiosmtplib.SMTPConnectError("refused"), False),
        (aiosmtplib.SMTPServerDisconnected("gone"), False),
        (aiosmtplib.SMTPTimeoutError("slow"), False),
        (ConnectionRefusedError("refused"), False),
        (aiosmtplib.SMTPException("STARTTLS extension not supported by server."), True),
    ],
)
def test_smtp_error_classification(exc: Exception, permanent: bool) -> None:
    result = classify_smtp_error(exc)
    assert not result.ok
    assert result.permanent is permanent


def test_email_carries_a_stable_message_id_and_the_notification_id() -> None:
    mail = email_message(NOTICE, "LAPOR! Banjar <lapor@banjarkab.go.id>")
    assert mail["Message-ID"] == "<ntf-abc@banjarkab.go.id>"
    assert mail["X-Lapor-Notification-Id"] == "ntf-abc"
    assert mail["To"] == "Petugas Pengaduan PUPR <pengaduan.pupr@banjarkab.go.id>"
    assert mail["Subject"] == NOTICE.subject
    assert "Laporan BJR-1" in mail.get_content()


def test_webhook_body_is_json_with_the_notice_and_its_data() -> None:
    body = json.loads(webhook_body(NOTICE))
    assert body["notification_id"] == "ntf-abc"
    assert body["type"] == "official_assignment"
    assert body["data"] == {"tracking_id": "BJR-1", "level": "liaison"}


async def test_webhook_without_a_secret_fails_permanently_without_calling() -> None:
    hook = Webhook(client=None, secrets={})  # type: ignore[arg-type]
    result = await hook.send(NOTICE)
    assert (result.ok, result.permanent) == (False, True)
    assert "NOTIFY_WEBHOOK_SECRETS" in (result.error or "")


async def test_unconfigured_channel_fails_visibly() -> None:
    result = await Unavailable("e-mail is not configured").send(NOTICE)
    assert result.permanent and result.error == "e-mail is not configured"


async def test_log_sink_prints_the_message_with_the_phone_masked(
    caplog: pytest.LogCaptureFixture,
) -> None:
    sms = OutgoingMessage("ntf-1", "sms", "+6281234567890", "Laporan Anda diterima")
    with caplog.at_level(logging.INFO):
        assert (await LogSink().send(sms)).ok
    assert "Laporan Anda diterima" in caplog.text
    assert "+6281234567890" not in caplog.text


def test_signed_headers_name_the_notification() -> None:
    headers = signing.signed_headers("x" * 16, 1, b"{}", "ntf-abc")
    assert headers["Idempotency-Key"] == "ntf-abc"


# --- settings: a wrong value stops the service at start-up -----------------------------


@pytest.fixture
def env(monkeypatch: pytest.MonkeyPatch) -> pytest.MonkeyPatch:
    monkeypatch.setenv("LAPOR_DATA_DIR", str(DATA))
    for name in ("NOTIFY_CHANNEL", "NOTIFY_SMTP_HOST", "NOTIFY_WEBHOOK_SECRETS"):
        monkeypatch.delenv(name, raising=False)
    return monkeypatch


def test_settings_read_channels_and_secrets_from_the_environment(
    env: pytest.MonkeyPatch,
) -> None:
    env.setenv("NOTIFY_CHANNEL", "http")
    env.setenv("NOTIFY_SMS_GATEWAY_URL", "https://sms.example.id/api/send")
    env.setenv("NOTIFY_SMS_GATEWAY_AUTH_VALUE", "Bearer t0ken")
    env.setenv("NOTIFY_WEBHOOK_SECRETS", json.dumps({"PUPR": "p" * 32}))
    settings = NotifySettings()
    assert settings.webhook_secrets["PUPR"] == SecretStr("p" * 32)
    assert "t0ken" not in repr(settings)
    assert "p" * 32 not in repr(settings)


@pytest.mark.parametrize(
    ("name", "value"),
    [
        ("NOTIFY_CHANNEL", "carrier-pigeon"),
        ("NOTIFY_CHANNEL", "http"),  # without a gateway URL
        ("NOTIFY_SMS_GATEWAY_URL", "not a url"),
        ("NOTIFY_SMS_GATEWAY_TIMEOUT_S", "30"),  # longer than the ack wait allows
        ("NOTIFY_SMTP_PORT", "0"),
        ("NOTIFY_SMTP_FROM", "lapor at banjar"),
        ("NOTIFY_SMTP_USER", "lapor"),  # without a password
        ("NOTIFY_WEBHOOK_SECRETS", '{"PUPR": "short"}'),
        ("NOTIFY_WEBHOOK_SECRETS", '{"pupr": "long-enough-secret-123"}'),
        ("NOTIFY_WEBHOOK_SECRETS", "not json"),
        ("NOTIFY_RETRY_MAX_ATTEMPTS", "0"),
        ("NOTIFY_ADMIN_AGENCY", "diskominfo"),
    ],
)
def test_bad_values_fail_fast(env: pytest.MonkeyPatch, name: str, value: str) -> None:
    env.setenv(name, value)
    with pytest.raises((ValidationError, ValueError)):
        NotifySettings()
