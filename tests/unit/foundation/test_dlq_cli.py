"""`lapor dlq` against a running `make run` with nothing exported.

The stack's operator file (var/dev/operator.json, or LAPOR_DEV_DIR's) names
the admin NATS URL, the database and the PII key file; the command line and
the environment still win over it.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

from lapor.runtime.pii import PiiOpener, PiiSealer, new_key, public_key_of
from tools import deadletters_cli as dlq
from tools.cli import app
from tools.devstack import DEV_DIR_ENV, OPERATOR_FILE

STACK_NATS = "nats://admin:secretPassword@127.0.0.1:14222"


@pytest.fixture
def dev_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> tuple[Path, str]:
    key = new_key()
    (tmp_path / "pii_key").write_text(key)
    operator = {
        "nats_url": STACK_NATS,
        "api_url": "http://127.0.0.1:18080",
        "mongo_url": "mongodb://127.0.0.1:37017",
        "mongo_db": "lapor_dev",
        "pii_key_file": str(tmp_path / "pii_key"),
    }
    (tmp_path / OPERATOR_FILE).write_text(json.dumps(operator))
    monkeypatch.setenv(DEV_DIR_ENV, str(tmp_path))
    for name in ("NATS_URL", "MONGO_URL", "MONGO_DB", "LAPOR_PII_KEY", "LAPOR_PII_OLD_KEYS"):
        monkeypatch.delenv(name, raising=False)
    return tmp_path, key


def test_list_uses_the_running_stack(
    dev_dir: tuple[Path, str], monkeypatch: pytest.MonkeyPatch
) -> None:
    seen: dict[str, Any] = {}

    async def fake_list(
        mongo_url: str, mongo_db: str, pending: bool, opener: PiiOpener, **_: Any
    ) -> tuple[list, int]:
        seen.update(mongo_url=mongo_url, mongo_db=mongo_db, opener=opener)
        return [], 0

    monkeypatch.setattr(dlq, "_list", fake_list)
    result = CliRunner().invoke(app, ["dlq", "list", "--json"])

    assert result.exit_code == 0, result.output
    assert (seen["mongo_url"], seen["mongo_db"]) == ("mongodb://127.0.0.1:37017", "lapor_dev")
    # What the services and the watcher sealed with the stack's public key.
    sealed = PiiSealer(public_key_of(dev_dir[1])).seal("x", "id")
    assert seen["opener"].open(sealed, "id") == "x"


def test_replay_uses_the_stacks_admin_login_and_the_environment_wins(
    dev_dir: tuple[Path, str], monkeypatch: pytest.MonkeyPatch
) -> None:
    seen: dict[str, Any] = {}

    async def fake_replay(nats_url: str, mongo_url: str, mongo_db: str, *_: Any) -> tuple:
        seen.update(nats_url=nats_url, mongo_url=mongo_url, mongo_db=mongo_db)
        return 1, 0

    monkeypatch.setattr(dlq, "_replay", fake_replay)
    monkeypatch.setenv("MONGO_DB", "lapor_other")
    result = CliRunner().invoke(app, ["dlq", "replay", "--all"])

    assert result.exit_code == 0, result.output
    assert seen == {
        "nats_url": STACK_NATS,
        "mongo_url": "mongodb://127.0.0.1:37017",
        "mongo_db": "lapor_other",
    }


def test_help_never_shows_the_stacks_password(dev_dir: tuple[Path, str]) -> None:
    for command in ("list", "replay", "resolve"):
        result = CliRunner().invoke(app, ["dlq", command, "--help"])
        assert result.exit_code == 0 and "secretPassword" not in result.output


def test_resolve_needs_a_reason(dev_dir: tuple[Path, str]) -> None:
    result = CliRunner().invoke(app, ["dlq", "resolve", "LAPOR_EVENTS:1:x", "--reason", "  "])
    assert result.exit_code != 0
