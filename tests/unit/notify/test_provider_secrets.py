"""Outside development, notify refuses provider credentials copied from an example."""

from pathlib import Path

import pytest
from pydantic import ValidationError

from lapor.runtime.pii import new_key, public_key_of
from services.notify.settings import NotifySettings

pytestmark = [pytest.mark.security]

ROOT = Path(__file__).resolve().parents[3]
COPIED = "change-me-smtp-password"


@pytest.fixture(autouse=True)
def _production(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("LAPOR_ENV", "NATS_URL", "MONGO_URL", "NATS_PASSWORD", "LAPOR_PII_OLD_KEYS"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("LAPOR_DATA_DIR", str(ROOT / "data"))
    key = new_key()
    monkeypatch.setenv("LAPOR_PII_KEY", key)
    monkeypatch.setenv("LAPOR_PII_PUBLIC_KEY", public_key_of(key))


@pytest.mark.parametrize(
    ("variables", "named"),
    [
        ({"NOTIFY_SMTP_USER": "lapor", "NOTIFY_SMTP_PASSWORD": COPIED}, "NOTIFY_SMTP_PASSWORD"),
        (
            {
                "NOTIFY_SMS_GATEWAY_URL": "https://sms.example",
                "NOTIFY_SMS_GATEWAY_AUTH_VALUE": COPIED,
            },
            "NOTIFY_SMS_GATEWAY_AUTH_VALUE",
        ),
        ({"NOTIFY_WEBHOOK_SECRETS": '{"PUPR": "change-me-webhook-secret"}'}, "(PUPR)"),
    ],
)
def test_a_copied_provider_secret_is_refused_in_production(
    monkeypatch: pytest.MonkeyPatch, variables: dict[str, str], named: str
) -> None:
    for name, value in variables.items():
        monkeypatch.setenv(name, value)
    with pytest.raises(ValidationError) as info:
        NotifySettings()
    assert named in str(info.value)
    assert "change-me" not in str(info.value).replace(".env.example", "")


def test_real_provider_secrets_and_development_placeholders_start(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # A provider's password may be short: only a copied example is refused.
    monkeypatch.setenv("NOTIFY_SMTP_USER", "lapor")
    monkeypatch.setenv("NOTIFY_SMTP_PASSWORD", "Tq7!x2")
    assert NotifySettings().smtp_password is not None
    monkeypatch.setenv("LAPOR_ENV", "development")
    monkeypatch.setenv("NOTIFY_SMTP_PASSWORD", COPIED)
    assert NotifySettings().smtp_password is not None
