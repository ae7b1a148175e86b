"""Each running service answers its health routes and serves metrics that Prometheus
accepts, after it has handled real traffic: what ops scrape, read off the processes."""

from __future__ import annotations

import asyncio
import json
import os
import re
import shutil
import subprocess
from typing import Any

import httpx
import pytest

from lapor.contracts import subjects
from tests.e2e.helpers import Outbox, eventually, sms_payload
from tools.devstack import SERVICES, Stack

pytestmark = [pytest.mark.e2e]

# Families each service must expose once it has handled a complaint.
EXPECTED = {
    "intake": ("lapor_complaints_received_total", "lapor_complaints_open"),
    "router": ("lapor_routing_decisions_total",),
    "sla": ("lapor_sla_sweep_seconds",),
    "notify": ("lapor_notifications_total",),
    "hotspots": ("lapor_hotspots_open", "lapor_hotspot_members_joined"),
}
SENDER = "+6281234509991"
PHONE_DIGITS = re.compile(r"8\d{9,11}")


@pytest.fixture(scope="module")
async def handled_one(stack: Stack, nc: Any) -> None:
    outbox = await Outbox().attach(nc)
    try:
        payload = sms_payload(SENDER, "BANJAR banyu PDAM kada mengalir sudah tiga hari")
        await nc.jetstream().publish(subjects.INBOUND_SMS, json.dumps(payload).encode())
        await eventually(lambda: _value(outbox.to(SENDER)))
    finally:
        await outbox.detach()


async def _value(value: Any) -> Any:
    return value


@pytest.mark.parametrize("service", SERVICES)
async def test_health_routes_answer(stack: Stack, service: str) -> None:
    async with httpx.AsyncClient(base_url=stack.url(service), timeout=5) as http:
        assert (await http.get("/healthz")).status_code in (200, 204)
        ready = await http.get("/readyz")
    assert ready.status_code == 200, ready.text


@pytest.mark.parametrize("service", SERVICES)
async def test_metrics_are_valid_and_hold_the_domain_families(
    stack: Stack, handled_one: None, service: str
) -> None:
    async with httpx.AsyncClient(base_url=stack.url(service), timeout=5) as http:
        scraped = await http.get("/metrics")
    assert scraped.status_code == 200
    text = scraped.text
    assert "faststream_received_messages_total" in text or service == "sla"
    for family in EXPECTED[service]:
        assert f"# TYPE {family}" in text or f"# HELP {family}" in text, family
    # No phone number in any label or value.
    assert SENDER not in text and SENDER.lstrip("+") not in text
    assert not any(PHONE_DIGITS.fullmatch(v) for v in re.findall(r'"([^"]*)"', text))

    tool = shutil.which("promtool")
    if tool is None:
        if os.environ.get("CI"):
            pytest.fail("promtool missing in CI (.ci/run installs Debian's prometheus)")
        pytest.skip("promtool is not installed (Debian package `prometheus`)")
    checked = await asyncio.to_thread(
        subprocess.run,
        [tool, "check", "metrics"],
        input=text,
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert checked.returncode == 0, checked.stdout + checked.stderr
