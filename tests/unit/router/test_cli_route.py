"""`lapor route`: the operators' check of routing rules, with the service's own Router."""

from __future__ import annotations

import json
from functools import cache
from typing import Any

from typer.testing import CliRunner

from lapor.directory import REGIONS_DIR
from services.router.domain import Router
from tools.cli import app

DATA_DIR = REGIONS_DIR.parent
KEYS = {"agency", "priority", "category", "confidence", "triage", "reasons"}
TEXTS = [
    "jln poros desa rusak parah tlg diperbaiki",
    "KEBAKARAN DI PASAR, API BESAR",
    "banyu pdam kada mengalir sudah saminggu",
    "motor saya dicuri di depan rumah",
    "",
    "halo",
    "   ",
    "rs nolak pasien bpjs padahal kritis",
]


@cache
def router() -> Router:
    return Router.load(REGIONS_DIR / "banjar")


def run(*args: str, stdin: str | None = None) -> list[dict[str, Any]]:
    result = CliRunner().invoke(
        app, ["route", "--region", "banjar", "--data-dir", str(DATA_DIR), *args], input=stdin
    )
    assert result.exit_code == 0, result.output
    return [json.loads(line) for line in result.stdout.splitlines()]


def test_json_prints_the_routers_decision() -> None:
    text = TEXTS[0]
    [printed] = run("--json", text)
    assert KEYS <= set(printed)
    assert printed == router().decide(text).as_json()
    assert printed["agency"] == "PUPR"


def test_stdin_prints_one_json_line_per_input_line_in_order() -> None:
    printed = run("--stdin", stdin="\n".join(TEXTS) + "\n")
    assert len(printed) == len(TEXTS)
    for text, line in zip(TEXTS, printed, strict=True):
        assert line == router().decide(text).as_json(), text
    assert [line["priority"] for line in printed[:2]] == ["normal", "urgent"]


def test_blank_input_lines_keep_their_place() -> None:
    printed = run("--stdin", "--json", stdin="ktp saya hilang\n\n\nlistrik padam\n")
    assert len(printed) == 4
    assert [line["agency"] for line in printed] == ["DISDUKCAPIL", None, None, "PLN"]
    assert printed[1]["triage"] and printed[2]["triage"]


def test_stdin_accepts_windows_line_ends_and_a_missing_last_newline() -> None:
    printed = run("--stdin", stdin="ktp saya hilang\r\nlistrik padam")
    assert [line["agency"] for line in printed] == ["DISDUKCAPIL", "PLN"]
    assert printed[0] == router().decide("ktp saya hilang").as_json()
