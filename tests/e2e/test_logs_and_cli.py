"""One complaint followed through the logs of all four services by its tracking id,
and the citizen's CLI finding a running stack without any setting.

Runs the four services as separate processes against the real nats-server and FerretDB.
"""

from __future__ import annotations

import asyncio
import json
import os
import re
import shutil
import stat
import sys
from pathlib import Path
from typing import Any

import pytest

from lapor.contracts import subjects
from tests.e2e.helpers import Outbox, eventually, sms_payload
from tools.devstack import DEV_DIR_ENV, OPERATOR_FILE, SERVICES, Stack

pytestmark = [pytest.mark.e2e]

TRACKING = re.compile(r"\bLPR-[A-Z0-9-]{4,}\b")


def _log_lines(stack: Stack, service: str) -> list[dict[str, Any]]:
    path = stack.workdir / "logs" / f"{service}.log"
    lines = []
    for text in path.read_text(encoding="utf-8").splitlines() if path.exists() else []:
        if text.startswith("{"):
            lines.append(json.loads(text))
    return lines


async def test_a_complaint_can_be_followed_through_every_service_log(stack: Stack, nc: Any) -> None:
    outbox = await Outbox().attach(nc)
    sender = "+6281234500071"
    text = "BANJAR lampu jalan mati di depan SDN 3 Martapura sejak minggu lalu"
    payload = sms_payload(sender, text)
    await nc.publish(subjects.INBOUND_SMS, json.dumps(payload).encode())
    reply = (await eventually(lambda: _async(outbox.to(sender)), timeout=60))[0]
    await outbox.detach()
    tracking_id = reply["complaint_id"]
    assert tracking_id

    async def followed() -> dict[str, list[dict[str, Any]]] | None:
        found = {
            service: [
                line
                for line in _log_lines(stack, service)
                if line.get("complaint_id") == tracking_id and line["logger"] == "lapor.messages"
            ]
            for service in SERVICES
        }
        return found if all(found.values()) else None

    found = await eventually(followed, timeout=60)
    for service, lines in found.items():
        for line in lines:
            assert line["service"] == service
            assert line["outcome"] == "acked", line
            assert line["subject"].startswith("lapor."), line
            assert line["consumer"].startswith(f"{service}-"), line
            assert line["delivery"] >= 1 and line["duration_ms"] >= 0, line
    # Events name the complaint and themselves: the router's line is for the
    # received event, which carries both ids.
    assert any(line.get("event_id") for line in found["router"])
    # The SMS itself carries no tracking id: intake binds the one it creates.
    assert any(line["subject"] == subjects.INBOUND_SMS for line in found["intake"])
    digits = sender.removeprefix("+62")
    for service in SERVICES:
        text = (stack.workdir / "logs" / f"{service}.log").read_text(encoding="utf-8")
        assert digits not in text, service


def _cli() -> list[str]:
    script = shutil.which("lapor", path=str(Path(sys.executable).parent))
    return [script] if script else [sys.executable, "-m", "tools.cli"]


async def _run_cli(stack: Stack, *args: str) -> tuple[int, str]:
    env = {k: v for k, v in os.environ.items() if k not in ("NATS_URL", "LAPOR_API_URL")}
    env[DEV_DIR_ENV] = str(stack.workdir)
    env["COLUMNS"] = "200"  # rich wraps at the terminal width
    proc = await asyncio.create_subprocess_exec(
        *_cli(),
        *args,
        env=env,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.STDOUT,
    )
    out, _ = await asyncio.wait_for(proc.communicate(), timeout=120)
    return proc.returncode or 0, out.decode()


async def test_the_cli_finds_the_running_stack_without_settings(stack: Stack) -> None:
    operator = stack.workdir / OPERATOR_FILE
    assert stat.S_IMODE(operator.stat().st_mode) == 0o600
    assert json.loads(operator.read_text())["api_url"] == stack.url("intake")

    code, out = await _run_cli(
        stack,
        "sms",
        "+6281234500072",
        "BANJAR saluran air tersumbat di Jalan Ahmad Yani km 5 banjir tiap hujan",
        "--timeout",
        "60",
    )
    assert code == 0, out
    tracking = TRACKING.search(out)
    assert tracking, out

    last: list[str] = []

    async def status() -> str | None:
        code, out = await _run_cli(stack, "status", tracking.group(0))
        last[:] = [out]
        # Stored, decided by the router and timed by sla: the whole chain answered.
        return out if code == 0 and "deadlines set" in out else None

    try:
        out = await eventually(status, timeout=60, interval=1.0)
    except AssertionError:
        raise AssertionError(f"lapor status never showed the timed complaint: {last}") from None
    assert tracking.group(0) in out and "router" in out


async def test_the_cli_says_what_to_do_without_a_running_stack(tmp_path: Path) -> None:
    stopped = Stack.for_tests(tmp_path)  # never started: no operator file, nothing listens
    nowhere = f"nats://127.0.0.1:{stopped.nats_port}"
    code, out = await _run_cli(stopped, "sms", "+6281234500073", "BANJAR tes", "--nats", nowhere)
    assert code == 1
    assert "make run" in out


async def _async(value: Any) -> Any:
    return value
