"""The `lapor` command line fails like a tool: a usage error names the choices, a
server that does not answer is one line on standard error within seconds, and
no failure ends in a traceback."""

from __future__ import annotations

import time
from pathlib import Path

import pytest
from typer.testing import CliRunner, Result

from lapor.runtime.pii import new_key
from tools.cli import app
from tools.devstack import DEV_DIR_ENV, OPERATOR_FILE, free_port

# Server selection gives up after 3 s; the rest is start-up on a busy machine.
WITHIN_S = 8.0


@pytest.fixture(autouse=True)
def no_stack(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """No running `make run` and nothing exported: only what a test passes counts."""
    monkeypatch.setenv(DEV_DIR_ENV, str(tmp_path / "no-stack"))
    for name in ("NATS_URL", "MONGO_URL", "MONGO_DB", "LAPOR_PII_KEY", "LAPOR_PII_OLD_KEYS"):
        monkeypatch.delenv(name, raising=False)


def invoke(*args: str) -> tuple[Result, float]:
    started = time.monotonic()
    result = CliRunner().invoke(app, list(args))
    return result, time.monotonic() - started


def assert_one_line_failure(result: Result, elapsed: float, expected: str) -> None:
    assert result.exit_code == 1, result.output
    assert elapsed < WITHIN_S, f"took {elapsed:.1f}s"
    assert result.exception is None or isinstance(result.exception, SystemExit)
    assert "Traceback" not in result.output
    assert result.stdout == ""
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith(f"lapor: {expected}"), lines[0]


def test_an_unknown_role_is_a_usage_error_naming_the_choices() -> None:
    result, _ = invoke("token", "create", "--name", "x", "--role", "bogus")

    assert result.exit_code == 2
    assert isinstance(result.exception, SystemExit) and "Traceback" not in result.output
    for choice in ("agency", "admin", "partner"):
        assert choice in result.stderr
    assert "bogus" in result.stderr and result.stdout == ""


def test_an_agency_token_without_its_agency_is_a_usage_error() -> None:
    result, _ = invoke("token", "create", "--name", "x", "--role", "agency")

    assert result.exit_code == 2 and "--agency" in result.stderr


@pytest.mark.parametrize(
    "command",
    [
        ["token", "create", "--name", "x", "--role", "admin"],
        ["token", "list"],
        ["token", "revoke", "tok_0000"],
        ["report", "--from", "2026-03-01", "--to", "2026-03-31"],
        ["dlq", "list", "--pii-key", new_key()],
        ["dlq", "resolve", "LAPOR_EVENTS:1:x", "--reason", "test"],
        ["keys", "rotate", "--pii-key", new_key()],
        ["keys", "check", "--pii-key", new_key()],
        ["backup", "--no-streams", "{tmp}/backup"],
    ],
    ids=lambda c: " ".join(c[:2]),
)
def test_a_database_that_does_not_answer_is_one_line_within_seconds(
    command: list[str], tmp_path: Path
) -> None:
    closed = f"mongodb://operator:hunter2@127.0.0.1:{free_port()}/?authSource=admin"

    result, elapsed = invoke(
        *[part.replace("{tmp}", str(tmp_path)) for part in command], "--mongo", closed
    )

    assert_one_line_failure(result, elapsed, "cannot reach the database at mongodb://127.0.0.1:")
    # The URL is named without its password.
    assert "hunter2" not in result.output


@pytest.mark.parametrize(
    "command",
    [
        ["dlq", "replay", "--all", "--pii-key", new_key()],
        ["backup", "{tmp}/backup"],
        ["restore", "{tmp}/backup", "--pii-key", new_key()],
    ],
    ids=lambda c: " ".join(c[:2]),
)
def test_a_nats_that_does_not_answer_is_one_line_within_seconds(
    command: list[str], tmp_path: Path
) -> None:
    if command[0] == "restore":
        (tmp_path / "backup").mkdir()
        (tmp_path / "backup" / "manifest.json").write_text(
            '{"format": "lapor-backup/1", "started_at": "x", "collections": [], "streams": []}'
        )
    nowhere = f"nats://admin:hunter2@127.0.0.1:{free_port()}"

    result, elapsed = invoke(
        *[part.replace("{tmp}", str(tmp_path)) for part in command], "--nats", nowhere
    )

    assert_one_line_failure(result, elapsed, "cannot reach NATS at nats://127.0.0.1:")
    assert "hunter2" not in result.output


def test_restore_of_a_folder_without_a_backup_is_one_line(tmp_path: Path) -> None:
    result, elapsed = invoke("restore", str(tmp_path), "--pii-key", new_key())

    assert_one_line_failure(result, elapsed, f"{tmp_path} holds no readable manifest.json")


def test_backup_refuses_a_folder_that_holds_something(tmp_path: Path) -> None:
    (tmp_path / "old").write_text("x")

    result, elapsed = invoke("backup", str(tmp_path))

    assert_one_line_failure(result, elapsed, f"{tmp_path} exists and is not an empty folder")


def test_help_of_the_operator_commands_never_shows_the_stacks_passwords(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    stack = tmp_path / "stack"
    stack.mkdir()
    (stack / OPERATOR_FILE).write_text(
        '{"nats_url": "nats://admin:secretPassword@127.0.0.1:1",'
        ' "mongo_url": "mongodb://op:secretPassword@127.0.0.1:2", "mongo_db": "x"}'
    )
    monkeypatch.setenv(DEV_DIR_ENV, str(stack))
    for command in (["backup"], ["restore"], ["keys", "rotate"], ["keys", "check"]):
        result, _ = invoke(*command, "--help")
        assert result.exit_code == 0 and "secretPassword" not in result.output
