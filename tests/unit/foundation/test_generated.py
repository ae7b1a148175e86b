"""The committed generated files: written by their generator, and a stale or missing
one fails the check with the generator's message and exit code 1."""

from __future__ import annotations

from pathlib import Path

import pytest

from lapor.runtime import db_access
from lapor.runtime.generated import write_or_check
from tools import asyncapi, openapi
from tools.devstack import cli as devstack_cli


def listed(stale: list[Path]) -> str:
    return "stale: " + ", ".join(path.name for path in stale)


def test_write_then_check(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    files = {tmp_path / "a.txt": "a\n", tmp_path / "sub" / "b.txt": "b\n"}
    assert write_or_check(files, check=False, stale_message=listed, announce=True) == 0
    assert (tmp_path / "sub" / "b.txt").read_text(encoding="utf-8") == "b\n"
    assert (
        capsys.readouterr().out
        == f"wrote {tmp_path / 'a.txt'}\nwrote {tmp_path / 'sub' / 'b.txt'}\n"
    )
    assert write_or_check(files, check=True, stale_message=listed) == 0
    assert capsys.readouterr().err == ""


def test_check_names_the_stale_and_missing_files(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    (tmp_path / "a.txt").write_text("old\n", encoding="utf-8")
    (tmp_path / "c.txt").write_text("c\n", encoding="utf-8")
    files = {tmp_path / "a.txt": "a\n", tmp_path / "b.txt": "b\n", tmp_path / "c.txt": "c\n"}
    assert write_or_check(files, check=True, stale_message=listed) == 1
    assert capsys.readouterr().err == "stale: a.txt, b.txt\n"
    # A check writes nothing.
    assert not (tmp_path / "b.txt").exists()
    assert (tmp_path / "a.txt").read_text(encoding="utf-8") == "old\n"


def test_a_stale_auth_conf_fails_its_check(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    stale = tmp_path / "auth.conf"
    stale.write_text("authorization {}\n", encoding="utf-8")
    monkeypatch.setattr(devstack_cli, "AUTH_CONF", stale)
    monkeypatch.setattr(devstack_cli, "nats_users", lambda: [])
    assert devstack_cli.main(["auth-conf", "--check"]) == 1
    assert capsys.readouterr().err == (
        f"{stale} is stale: run python -m tools.devstack auth-conf\n"
    )
    assert devstack_cli.main(["auth-conf"]) == 0
    assert capsys.readouterr().out == f"wrote {stale}\n"
    assert devstack_cli.main(["auth-conf", "--check"]) == 0


def test_a_stale_access_file_fails_its_check(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    stale = tmp_path / "db-access.json"
    stale.write_text("{}\n", encoding="utf-8")
    monkeypatch.setattr(db_access, "ACCESS_JSON", stale)
    assert db_access.main(["--check"]) == 1
    assert capsys.readouterr().err == (f"{stale} is stale: run python -m lapor.runtime.db_access\n")
    assert db_access.main([]) == 0
    assert stale.read_text(encoding="utf-8") == db_access.render_access()


def test_stale_api_documents_fail_their_checks(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setattr(openapi, "render_dlq", lambda: "{}\n")
    assert openapi.main(["openapi", "check"]) == 1
    assert capsys.readouterr().err == (
        "OpenAPI out of date (run `make docs`): docs/openapi/dlq.json\n"
    )
    monkeypatch.setattr(asyncapi, "SERVICES", ("router",))
    monkeypatch.setattr(asyncapi, "render", lambda service: f"{service}: stale\n")
    assert asyncapi.main(["asyncapi", "check"]) == 1
    assert capsys.readouterr().err == (
        "AsyncAPI out of date (run `make asyncapi`): docs/asyncapi/router.yaml\n"
    )
