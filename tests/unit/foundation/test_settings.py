import secrets
from pathlib import Path

import pytest
from pydantic import ValidationError

from lapor.runtime.settings import InfraSettings
from services.intake.settings import IntakeSettings
from services.notify.settings import NotifySettings

DATA = Path(__file__).resolve().parents[3] / "data"


@pytest.fixture(autouse=True)
def _clean_env(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in (
        "NATS_URL",
        "MONGO_URL",
        "MONGO_DB",
        "INTAKE_HTTP_PORT",
        "LAPOR_PHONE_HASH_KEY",
        "LAPOR_CITIZEN_LINK_KEY",
        "LAPOR_CITIZEN_LINK_OLD_KEYS",
        "LAPOR_ENV",
    ):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("LAPOR_DATA_DIR", str(DATA))


def test_local_defaults() -> None:
    infra = InfraSettings()
    assert infra.nats_url == "nats://127.0.0.1:4222"
    assert infra.mongo_url == "mongodb://127.0.0.1:27017"
    assert NotifySettings().http_port == 8083


def test_service_prefix_and_shared_connection(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("INTAKE_HTTP_PORT", "9000")
    monkeypatch.setenv("NATS_URL", "nats://nats:4222")
    monkeypatch.setenv("LAPOR_PHONE_HASH_KEY", secrets.token_urlsafe(32))
    monkeypatch.setenv("LAPOR_CITIZEN_LINK_KEY", secrets.token_urlsafe(32))
    settings = IntakeSettings()  # type: ignore[call-arg]
    assert settings.http_port == 9000
    assert settings.infra.nats_url == "nats://nats:4222"


@pytest.mark.parametrize(
    ("name", "value"),
    [
        ("NATS_URL", "http://localhost:4222"),
        ("MONGO_URL", "postgres://x"),
        ("MONGO_DB", "bad name"),
        ("LAPOR_DATA_DIR", "/nonexistent"),
    ],
)
def test_bad_values_fail_fast(monkeypatch: pytest.MonkeyPatch, name: str, value: str) -> None:
    monkeypatch.setenv(name, value)
    with pytest.raises(ValidationError):
        InfraSettings()


def test_intake_refuses_to_start_without_phone_hash_key() -> None:
    with pytest.raises(ValidationError, match="LAPOR_PHONE_HASH_KEY"):
        IntakeSettings()  # type: ignore[call-arg]


def test_port_out_of_range(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("NOTIFY_HTTP_PORT", "70000")
    with pytest.raises(ValidationError):
        NotifySettings()
