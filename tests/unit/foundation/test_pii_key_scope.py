"""Only notify and the operator's tools get the private personal-data key; every other
process seals with its public half, which opens nothing."""

from __future__ import annotations

import secrets
from pathlib import Path

import pytest

from lapor.runtime.pii import PiiCipher, new_key, public_key_of
from services.intake.settings import IntakeSettings
from services.router.settings import RouterSettings
from services.sla.settings import SlaSettings
from tools.devstack import DLQ, Stack

pytestmark = [pytest.mark.security]

ROOT = Path(__file__).resolve().parents[3]
KEY = new_key()


@pytest.fixture(autouse=True)
def _production(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("LAPOR_ENV", "NATS_URL", "MONGO_URL", "NATS_PASSWORD", "LAPOR_PII_OLD_KEYS"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("LAPOR_DATA_DIR", str(ROOT / "data"))
    monkeypatch.setenv("LAPOR_PHONE_HASH_KEY", secrets.token_urlsafe(32))
    monkeypatch.setenv("LAPOR_CITIZEN_LINK_KEY", secrets.token_urlsafe(32))
    monkeypatch.setenv("LAPOR_PII_PUBLIC_KEY", public_key_of(KEY))
    monkeypatch.delenv("LAPOR_PII_KEY", raising=False)


@pytest.mark.parametrize("settings", [IntakeSettings, RouterSettings, SlaSettings])
def test_the_services_but_notify_start_in_production_without_the_private_key(
    settings: type[IntakeSettings],
) -> None:
    assert settings().infra.env == "production"  # type: ignore[call-arg]


def test_what_a_service_holds_does_not_open_what_notify_stores() -> None:
    """An attacker inside router tries the public key it holds as a key."""
    stored = PiiCipher(KEY).seal("+6281234567890", "LPR-AAAA-BBBBB")
    public = RouterSettings().infra.pii.public_key  # type: ignore[call-arg]
    with pytest.raises(ValueError):
        PiiCipher(public).open(stored, "LPR-AAAA-BBBBB")


def test_the_development_stack_gives_the_private_key_to_notify_only(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Even one inherited from the caller's environment, as in the test session.
    monkeypatch.setenv("LAPOR_PII_KEY", KEY)
    monkeypatch.setenv("LAPOR_PII_OLD_KEYS", new_key())
    stack = Stack(workdir=tmp_path)
    envs = {name: stack.service_env(name) for name in ("intake", "router", "sla", "notify")}
    envs[DLQ] = stack._child_env(DLQ)
    envs["intake-2"] = stack.service_env("intake-2")
    for name, env in envs.items():
        assert env["LAPOR_PII_PUBLIC_KEY"] == public_key_of(KEY), name
        holds = {var for var in ("LAPOR_PII_KEY", "LAPOR_PII_OLD_KEYS") if var in env}
        assert holds == ({"LAPOR_PII_KEY", "LAPOR_PII_OLD_KEYS"} if name == "notify" else set())
    assert envs["notify"]["LAPOR_PII_KEY"] == KEY
