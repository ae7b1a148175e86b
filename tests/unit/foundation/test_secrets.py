"""Outside development, the services refuse placeholder and weak secrets at start-up."""

import re
import secrets
from pathlib import Path

import pytest
from pydantic import ValidationError

from lapor.runtime.pii import new_key, public_key_of
from lapor.runtime.settings import InfraSettings, secret_problem
from services.intake.settings import IntakeSettings
from services.notify.settings import NotifySettings
from tools.devstack import Stack

pytestmark = [pytest.mark.security]

ROOT = Path(__file__).resolve().parents[3]
SECRET_NAME = re.compile(r"PASSWORD|SECRET|TOKEN|KEY")
# 40 characters, 16 distinct, no marker: passes every rule.
STRONG = "0123456789abcdef" * 2 + "01234567"

VARIABLES = (
    "NATS_URL",
    "NATS_USER",
    "NATS_PASSWORD",
    "MONGO_URL",
    "LAPOR_ENV",
    "LAPOR_PHONE_HASH_KEY",
    "LAPOR_CITIZEN_LINK_KEY",
    "LAPOR_CITIZEN_LINK_OLD_KEYS",
    "LAPOR_PII_OLD_KEYS",
)


@pytest.fixture(autouse=True)
def _production(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in VARIABLES:
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("LAPOR_DATA_DIR", str(ROOT / "data"))
    key = new_key()
    monkeypatch.setenv("LAPOR_PII_KEY", key)
    monkeypatch.setenv("LAPOR_PII_PUBLIC_KEY", public_key_of(key))
    monkeypatch.setenv("LAPOR_PHONE_HASH_KEY", secrets.token_urlsafe(32))
    monkeypatch.setenv("LAPOR_CITIZEN_LINK_KEY", secrets.token_urlsafe(32))


def placeholders() -> dict[str, str]:
    found = {}
    for line in (ROOT / ".env.example").read_text().splitlines():
        name, sep, value = line.partition("=")
        if sep and not line.startswith("#") and SECRET_NAME.search(name):
            found[name] = value
    return found


def refusal(settings: type[InfraSettings] | type[IntakeSettings] | type[NotifySettings]) -> str:
    with pytest.raises(ValidationError) as info:
        settings()
    return str(info.value)


def test_strong_generated_secrets_start_in_production() -> None:
    settings = IntakeSettings()  # type: ignore[call-arg]
    assert settings.infra.env == "production"
    assert secret_problem(STRONG) is None


@pytest.mark.parametrize("name", sorted(placeholders()))
def test_every_placeholder_of_env_example_is_refused(name: str) -> None:
    assert secret_problem(placeholders()[name]) == "is a placeholder from .env.example"


@pytest.mark.parametrize(
    ("variable", "settings"),
    [
        ("LAPOR_PHONE_HASH_KEY", IntakeSettings),
        ("LAPOR_CITIZEN_LINK_KEY", IntakeSettings),
        ("LAPOR_CITIZEN_LINK_OLD_KEYS", IntakeSettings),
        ("NATS_PASSWORD", InfraSettings),
    ],
)
def test_a_placeholder_is_refused_naming_the_variable_not_the_value(
    monkeypatch: pytest.MonkeyPatch, variable: str, settings: type[InfraSettings]
) -> None:
    # Contained, not only equal: a placeholder with something appended is one too.
    value = "change-me-" + secrets.token_hex(20)
    monkeypatch.setenv(variable, value)
    message = refusal(settings)
    assert f"{variable} is a placeholder" in message
    assert value not in message and value[10:] not in message


def test_the_placeholder_in_the_database_url_is_refused(monkeypatch: pytest.MonkeyPatch) -> None:
    password = placeholders()["LAPOR_DB_ROUTER_PASSWORD"]
    monkeypatch.setenv("MONGO_URL", f"mongodb://lapor-router:{password}@mongo:27017/lapor")
    message = refusal(InfraSettings)
    assert "the password in MONGO_URL is a placeholder" in message
    assert password not in message


def test_the_placeholder_pii_key_is_refused(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("LAPOR_PII_KEY", placeholders()["LAPOR_PII_KEY"])
    assert "LAPOR_PII_KEY" in refusal(NotifySettings)


def test_notify_refuses_a_public_key_that_is_not_its_keys_half(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # Intake would seal every reply address to a key notify cannot open.
    monkeypatch.setenv("LAPOR_PII_PUBLIC_KEY", public_key_of(new_key()))
    assert "LAPOR_PII_PUBLIC_KEY is not the public half of LAPOR_PII_KEY" in refusal(NotifySettings)


@pytest.mark.parametrize("env", ["production", "development"])
def test_the_placeholder_pii_public_key_is_refused(
    monkeypatch: pytest.MonkeyPatch, env: str
) -> None:
    # It seals every reply address: a placeholder would stop all replies, in any stack.
    monkeypatch.setenv("LAPOR_ENV", env)
    monkeypatch.setenv("LAPOR_PII_PUBLIC_KEY", placeholders()["LAPOR_PII_PUBLIC_KEY"])
    assert "LAPOR_PII_PUBLIC_KEY is a placeholder" in refusal(InfraSettings)


@pytest.mark.parametrize("value", ["c2hvcnQ=", "not base64 at all!", new_key()[:40]])
def test_a_malformed_pii_public_key_is_refused(monkeypatch: pytest.MonkeyPatch, value: str) -> None:
    monkeypatch.setenv("LAPOR_PII_PUBLIC_KEY", value)
    message = refusal(InfraSettings)
    assert "LAPOR_PII_PUBLIC_KEY" in message and value not in message


@pytest.mark.parametrize("variable", ["LAPOR_PHONE_HASH_KEY", "LAPOR_CITIZEN_LINK_KEY"])
def test_a_short_secret_is_refused(monkeypatch: pytest.MonkeyPatch, variable: str) -> None:
    value = secrets.token_hex(15)  # 30 characters, well mixed
    monkeypatch.setenv(variable, value)
    message = refusal(IntakeSettings)
    assert f"{variable} is shorter than 32 characters" in message
    assert value not in message


def test_a_refused_value_is_not_echoed_by_field_checks_either(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    key = secrets.token_hex(5)  # below the 16 characters a key needs anywhere
    monkeypatch.setenv("LAPOR_CITIZEN_LINK_KEY", key)
    message = refusal(IntakeSettings)
    assert "LAPOR_CITIZEN_LINK_KEY" in message and key not in message
    password = secrets.token_hex(20)
    monkeypatch.setenv("NATS_URL", f"http://intake:{password}@nats:4222")
    message = refusal(InfraSettings)
    assert "http://nats:4222" in message and password not in message


def test_a_short_nats_password_is_refused(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("NATS_PASSWORD", "p" + secrets.token_hex(10))
    assert "NATS_PASSWORD is shorter than 32 characters" in refusal(InfraSettings)


@pytest.mark.parametrize("value", ["k" * 32, "abcdefghi" * 5, "0123" * 16])
def test_a_secret_of_little_variety_is_refused(monkeypatch: pytest.MonkeyPatch, value: str) -> None:
    monkeypatch.setenv("LAPOR_PHONE_HASH_KEY", value)
    message = refusal(IntakeSettings)
    assert "LAPOR_PHONE_HASH_KEY has fewer than 10 distinct characters" in message
    assert value not in message


def test_a_weak_password_inside_the_nats_url_is_refused(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("NATS_URL", "nats://intake:secret@nats:4222")
    assert "the password in NATS_URL is shorter" in refusal(InfraSettings)


def test_the_citizen_link_key_is_not_the_phone_hash_key(monkeypatch: pytest.MonkeyPatch) -> None:
    shared = secrets.token_urlsafe(32)
    monkeypatch.setenv("LAPOR_PHONE_HASH_KEY", shared)
    monkeypatch.setenv("LAPOR_CITIZEN_LINK_KEY", shared)
    message = refusal(IntakeSettings)
    assert "LAPOR_CITIZEN_LINK_KEY must differ from LAPOR_PHONE_HASH_KEY" in message
    assert shared not in message


def test_intake_refuses_to_start_without_a_citizen_link_key(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.delenv("LAPOR_CITIZEN_LINK_KEY")
    assert "LAPOR_CITIZEN_LINK_KEY" in refusal(IntakeSettings)


def test_old_citizen_link_keys_verify_only(monkeypatch: pytest.MonkeyPatch) -> None:
    old = [secrets.token_urlsafe(32), secrets.token_urlsafe(32)]
    monkeypatch.setenv("LAPOR_CITIZEN_LINK_OLD_KEYS", ",".join(old))
    current, olds = IntakeSettings().citizen_link_keys()  # type: ignore[call-arg]
    assert olds == tuple(k.encode() for k in old) and current not in olds


def test_development_takes_weak_secrets(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("LAPOR_ENV", "development")
    monkeypatch.setenv("LAPOR_PHONE_HASH_KEY", "k" * 32)
    monkeypatch.setenv("NATS_PASSWORD", "change-me-nats-intake")
    assert IntakeSettings().infra.env == "development"  # type: ignore[call-arg]


def test_an_unknown_environment_name_is_refused(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("LAPOR_ENV", "dev")
    assert "LAPOR_ENV" in refusal(InfraSettings)


def test_the_development_stack_generates_secrets_strong_enough_for_production(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    for name in ("LAPOR_PII_KEY", "LAPOR_PHONE_HASH_KEY", "LAPOR_CITIZEN_LINK_KEY"):
        monkeypatch.delenv(name)
    stack = Stack(workdir=tmp_path)
    env = stack.service_env("intake")
    assert env["LAPOR_ENV"] == "development"
    assert (tmp_path / "citizen_link_key").exists()
    assert env["LAPOR_CITIZEN_LINK_KEY"] != env["LAPOR_PHONE_HASH_KEY"]
    assert stack.service_env("intake-2")["LAPOR_CITIZEN_LINK_KEY"] == env["LAPOR_CITIZEN_LINK_KEY"]
    for name, value in {**env, "LAPOR_ENV": "production"}.items():
        monkeypatch.setenv(name, value)
    settings = IntakeSettings()  # type: ignore[call-arg]
    assert settings.infra.nats_password == env["NATS_PASSWORD"]
