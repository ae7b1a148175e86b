"""The sla and notify services export what intake and router do: the backlog and
redeliveries of each of their durable consumers, refreshed from JetStream by the
background refresher, next to their own counters (escalations by level for sla).
Each service app runs its real lifespan against the real nats-server and FerretDB."""

from __future__ import annotations

import asyncio
import shutil
import subprocess
from collections.abc import Callable
from typing import Any

import httpx
import pytest
from fastapi import FastAPI
from prometheus_client.parser import text_string_to_metric_families

from lapor.runtime.settings import InfraSettings
from services.notify.settings import NotifySettings
from services.notify.wiring import create_app as notify_app
from services.sla.settings import SlaSettings
from services.sla.wiring import create_app as sla_app
from tests.e2e.helpers import eventually
from tools.devstack import ROOT, Stack

pytestmark = [pytest.mark.integration]

BACKLOG = "lapor_jetstream_consumer_backlog_messages"
REDELIVERED = "lapor_jetstream_consumer_redelivered_messages"


def infra(servers: Stack, db_name: str) -> InfraSettings:
    return InfraSettings(  # type: ignore[call-arg]
        NATS_URL=servers.nats,
        MONGO_URL=servers.mongo,
        MONGO_DB=db_name,
        LAPOR_DATA_DIR=str(ROOT / "data"),
    )


def consumers_in(text: str, family: str) -> set[tuple[str, str]]:
    found: set[tuple[str, str]] = set()
    for metric in text_string_to_metric_families(text):
        for sample in metric.samples:
            if sample.name == family:
                found.add((sample.labels["stream"], sample.labels["consumer"]))
    return found


async def scrape_until(app: FastAPI, done: Callable[[str], bool], timeout: float = 30.0) -> str:
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://svc") as http:

        async def probe() -> str | None:
            text = (await http.get("/metrics")).text
            return text if done(text) else None

        return await eventually(probe, timeout=timeout, interval=0.2)


@pytest.mark.parametrize(
    ("service", "build", "expected"),
    [
        (
            "sla",
            lambda i: sla_app(SlaSettings(infra=i, metrics_interval_s=0.2)),
            {("LAPOR_EVENTS", "sla-routed"), ("LAPOR_EVENTS", "sla-state")},
        ),
        (
            "notify",
            lambda i: notify_app(NotifySettings(infra=i, metrics_interval_s=0.2)),
            {
                ("LAPOR_EVENTS", "notify-received"),
                ("LAPOR_EVENTS", "notify-deadlines"),
                ("LAPOR_EVENTS", "notify-escalations"),
                ("LAPOR_OUTBOUND", "notify-receipts"),
            },
        ),
    ],
)
async def test_backlog_gauges_exist_for_every_consumer_of_the_service(
    own_servers: Stack,
    service: str,
    build: Callable[[InfraSettings], FastAPI],
    expected: set[tuple[str, str]],
) -> None:
    app = build(infra(own_servers, f"lapor_metrics_{service}"))
    async with app.router.lifespan_context(app):
        text = await scrape_until(app, lambda t: expected <= consumers_in(t, BACKLOG))
    assert expected <= consumers_in(text, REDELIVERED)
    assert all(consumer.startswith(f"{service}-") for _, consumer in consumers_in(text, BACKLOG))
    if service == "sla":
        assert "# TYPE lapor_sla_escalations_total counter" in text
    tool = shutil.which("promtool")
    if tool is not None:
        result = await asyncio.to_thread(_check_metrics, tool, text.encode())
        assert result.returncode == 0, (result.stdout + result.stderr).decode()


def _check_metrics(tool: str, text: bytes) -> subprocess.CompletedProcess[Any]:
    return subprocess.run([tool, "check", "metrics"], input=text, capture_output=True, timeout=60)
