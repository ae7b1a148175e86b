"""The agency report computed by FerretDB aggregations, over HTTP, on the command
line, and rendered by headless Chromium."""

from __future__ import annotations

import asyncio
import dataclasses
import json
import re
import shutil
import struct
import subprocess
import sys
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest
import pytest_asyncio
from fastapi import FastAPI
from typer.testing import CliRunner

from lapor.report import build_report, fetch_report_data, report_router
from tests.unit.observability import scenario
from tools.cli import app
from tools.devstack import Stack

pytestmark = [pytest.mark.integration]

ROOT = Path(__file__).resolve().parents[2]
DB = "lapor_obs_report"


def _outside_the_period() -> list[dict[str, Any]]:
    early = scenario.complaint("E1", "PUPR", "jalan", [(1, "assigned")])
    early["received_at"] = scenario.T0 - timedelta(days=40)
    elsewhere = scenario.complaint("O1", "PUPR", "jalan", [(1, "assigned")])
    elsewhere["region"] = "tapin"
    return [early, elsewhere]


@pytest_asyncio.fixture(scope="module", loop_scope="session")
async def db(own_mongo: Any) -> AsyncIterator[Any]:
    database = own_mongo[DB]
    await database["complaints"].insert_many([*scenario.complaints(), *_outside_the_period()])
    await database["sla_breaches"].insert_many(scenario.breaches())
    yield database


PERIOD = {
    "start": datetime(2026, 3, 1, tzinfo=UTC),
    "end": datetime(2026, 4, 1, tzinfo=UTC),
}


async def test_database_figures_match_the_hand_computed_report(db: Any) -> None:
    data = await fetch_report_data(db, region="banjar", as_of=scenario.AS_OF, **PERIOD)
    got = build_report(data)
    hand_made = scenario.report_data(scenario.complaints(), with_breaches=True)
    expected = build_report(dataclasses.replace(hand_made, **PERIOD))
    assert got == expected
    pupr = next(row for row in got["agencies"] if row["agency"] == "PUPR")
    assert pupr["received"] == 6
    assert pupr["time_to_answer"] == {"n": 5, "median_hours": 96.0, "p90_hours": 336.0}
    assert pupr["answered_within_deadline"]["on_time"] == 4
    assert pupr["breaches"]["total"] == 3 and pupr["rating"]["average"] == 4.5
    assert got["method"]["breaches_source"] == "sla_breaches"
    assert got["ranking"] == ["DISDUKCAPIL", "PUPR"]


async def test_without_sla_breaches_the_deadlines_count(own_mongo: Any) -> None:
    database = own_mongo["lapor_obs_report_nosla"]
    await database["complaints"].insert_many(scenario.complaints())
    report = build_report(await fetch_report_data(database, as_of=scenario.AS_OF))
    assert report["method"]["breaches_source"] == "deadlines"
    assert report["totals"]["breaches"]["total"] == 3


@pytest_asyncio.fixture(scope="module", loop_scope="session")
async def client(db: Any) -> AsyncIterator[httpx.AsyncClient]:
    app = FastAPI()
    app.include_router(report_router(lambda: db, data_dir=ROOT / "data"))
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://report") as http:
        yield http


async def test_http_json_and_html(client: httpx.AsyncClient) -> None:
    params = {"region": "banjar", "from": "2026-03-01", "to": "2026-03-31"}
    response = await client.get("/api/v1/reports/agencies", params=params)
    assert response.status_code == 200
    report = response.json()
    assert report["totals"]["received"] == 14
    assert report["period"]["from"].startswith("2026-03-01T00:00:00+08:00")
    pupr = next(row for row in report["agencies"] if row["agency"] == "PUPR")
    assert pupr["name"] == "Dinas Pekerjaan Umum dan Penataan Ruang"

    page = await client.get("/reports/agencies.html", params=params)
    assert page.status_code == 200 and page.headers["content-type"].startswith("text/html")
    assert page.text.count("<svg") == 4
    # The region's own name, days and clock, from its data directory.
    assert "<h1>Kinerja penanganan aduan — Kabupaten Banjar</h1>" in page.text
    assert "Periode 1 Maret 2026 – 31 Maret 2026; data per " in page.text
    assert re.search(r"data per \d{1,2} \w+ \d{4} \d{2}\.\d{2} WITA<", page.text)
    for secret in ("teks aduan", "detail-pribadi-xyz", "komentar", "hash-", "P1"):
        assert secret not in page.text


async def test_http_rejects_a_reversed_period(client: httpx.AsyncClient) -> None:
    response = await client.get(
        "/api/v1/reports/agencies", params={"from": "2026-03-31", "to": "2026-03-01"}
    )
    assert response.status_code == 422


def _cli(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "tools.cli", "report", *args],
        capture_output=True,
        text=True,
        timeout=120,
        cwd=ROOT,
    )


async def test_command_line_report(own_servers: Stack, db: Any, tmp_path: Path) -> None:
    common = [
        "--mongo",
        own_servers.mongo,
        "--db",
        DB,
        "--from",
        "2026-03-01",
        "--to",
        "2026-03-31",
    ]
    # The installed entry point once, as an operator runs it ...
    result = await asyncio.to_thread(_cli, "--format", "json", *common)
    assert result.returncode == 0, result.stderr
    report = json.loads(result.stdout)
    assert report["totals"]["received"] == 14 and report["ranking"] == ["DISDUKCAPIL", "PUPR"]

    # ... the other formats in-process (the command runs its own event loop).
    runner = CliRunner()
    text = await asyncio.to_thread(
        runner.invoke, app, ["report", "--format", "text", *common], catch_exceptions=False
    )
    assert text.exit_code == 0, text.output
    assert "DISDUKCAPIL" in text.output and "Jalan rusak" in text.output

    out = tmp_path / "report.html"
    html = await asyncio.to_thread(
        runner.invoke, app, ["report", "--format", "html", "--out", str(out), *common]
    )
    assert html.exit_code == 0, html.output
    assert out.read_text().count("<svg") == 4


def _chromium() -> str | None:
    for name in ("chromium", "chromium-browser", "google-chrome", "google-chrome-stable"):
        found = shutil.which(name)
        if found:
            return found
    return None


def _headless(browser: str, profile: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [
            browser,
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-background-networking",
            "--disable-component-update",
            "--disable-sync",
            "--no-first-run",
            f"--user-data-dir={profile}",
            *args,
        ],
        capture_output=True,
        text=True,
        timeout=120,
    )


def _png_size(path: Path) -> tuple[int, int]:
    header = path.read_bytes()[:24]
    assert header[:8] == b"\x89PNG\r\n\x1a\n", "not a PNG"
    width, height = struct.unpack(">II", header[16:24])
    return width, height


async def test_html_renders_in_headless_chromium(client: httpx.AsyncClient, tmp_path: Path) -> None:
    browser = _chromium()
    if browser is None:
        pytest.skip("no headless Chromium (Debian package `chromium`; .ci/run installs it)")
    page = await client.get(
        "/reports/agencies.html", params={"from": "2026-03-01", "to": "2026-12-01"}
    )
    html = tmp_path / "agencies.html"
    html.write_text(page.text, encoding="utf-8")
    url = html.as_uri()

    shot = tmp_path / "agencies.png"
    result = await asyncio.to_thread(
        _headless,
        browser,
        tmp_path / "profile-shot",
        f"--screenshot={shot}",
        "--window-size=1280,2000",
        url,
    )
    assert shot.is_file(), result.stderr[-2000:]
    assert _png_size(shot) == (1280, 2000)
    # A blank page compresses to a few kilobytes; charts, text and tables do not.
    assert shot.stat().st_size > 40_000, shot.stat().st_size

    result = await asyncio.to_thread(
        _headless, browser, tmp_path / "profile-dom", "--dump-dom", url
    )
    assert result.returncode == 0, result.stderr[-2000:]
    dom = result.stdout
    for chart in ("chart-compliance", "chart-received", "chart-answer-time", "chart-weak"):
        assert f'id="{chart}"' in dom, chart
    assert dom.count("<svg") == 4 and dom.count("<rect") >= 10
