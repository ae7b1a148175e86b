"""SMS per second through Kannel: straight to its sendsms interface, then through
the gateway connector (bus → connector → Kannel → SMSC), with the same fakesmsc
as the SMSC in the same run.

    .venv/bin/python -m bench.kannel [--count 500] [--concurrency 8]

Both legs ask for delivery reports (dlr-mask 31, to the connector), so Kannel
does the same work in each; the second adds JetStream, the connector's record
per SMS and its PubAck-confirmed receipts. A leg ends when the SMSC has printed
every SMS of that leg.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import platform
import tempfile
import time
import uuid
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx

from lapor.contracts import subjects
from services.gateway import domain
from tools.devstack import GATEWAY, Stack, kannel_installed


def _arrived(stack: Stack, marker: str) -> int:
    return sum(1 for _from, _to, text in stack.smsc_messages() if marker in text)


async def _wait_arrived(stack: Stack, marker: str, count: int) -> None:
    async with asyncio.timeout(600):
        while True:
            if await asyncio.to_thread(_arrived, stack, marker) >= count:
                return
            await asyncio.sleep(0.2)


async def kannel_alone(stack: Stack, count: int, concurrency: int) -> float:
    marker = f"alone-{uuid.uuid4().hex[:6]}"
    login = domain.SendSmsLogin(
        "lapor",
        stack.kannel_secret("sendsms_password"),
        "1708",
        stack.url(GATEWAY),
        stack.kannel_secret("callback_token"),
    )
    url = f"http://127.0.0.1:{stack.kannel_port('sendsms')}/cgi-bin/sendsms"
    queue: asyncio.Queue[int] = asyncio.Queue()
    for i in range(count):
        queue.put_nowait(i)

    async def worker(client: httpx.AsyncClient) -> None:
        while not queue.empty():
            i = queue.get_nowait()
            text = f"Laporan {marker} nomor {i}"
            query = domain.sendsms_query(login, f"+6281300{i:05d}", text, f"{marker}-{i}")
            (await client.get(url, params=query, timeout=10)).raise_for_status()

    started = time.monotonic()
    async with httpx.AsyncClient() as client:
        await asyncio.gather(*(worker(client) for _ in range(concurrency)))
    await _wait_arrived(stack, marker, count)
    return count / (time.monotonic() - started)


async def through_connector(stack: Stack, count: int) -> float:
    import nats

    marker = f"bus-{uuid.uuid4().hex[:6]}"
    nc = await nats.connect(stack.nats)
    js = nc.jetstream()
    started = time.monotonic()
    try:
        for i in range(count):
            nid = f"{marker}-{i}"
            body = {
                "to": f"+6281400{i:05d}",
                "text": f"Laporan {marker} nomor {i}",
                "complaint_id": None,
                "notification_id": nid,
            }
            await js.publish(
                subjects.OUTBOUND_SMS, json.dumps(body).encode(), headers={"Nats-Msg-Id": nid}
            )
        await _wait_arrived(stack, marker, count)
    finally:
        await nc.close()
    return count / (time.monotonic() - started)


async def _streams(stack: Stack) -> None:
    """The streams intake and notify would declare (the connector may not)."""
    import nats

    from lapor.runtime.broker import stream_for

    nc = await nats.connect(stack.nats)
    try:
        js = nc.jetstream()
        for subject in (subjects.INBOUND_SMS, subjects.OUTBOUND_SMS):
            stream = stream_for(subject)
            await js.add_stream(config=stream.config, subjects=list(stream.subjects))
    finally:
        await nc.close()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--count", type=int, default=500)
    parser.add_argument("--concurrency", type=int, default=8)
    args = parser.parse_args()
    if not kannel_installed():
        print("Kannel is not installed: apt-get install kannel kannel-extras")
        return 1
    workdir = Path(tempfile.mkdtemp(prefix="lapor-bench-kannel-"))
    stack = Stack.for_tests(
        workdir,
        extra_env={"LOG_LEVEL": "WARNING", "GATEWAY_SEND_RATE_PER_S": "1000"},
        with_dlq=False,
    )
    try:
        stack.start_servers()
        asyncio.run(_streams(stack))
        stack.start_kannel()
        stack.start_gateway()
        alone = asyncio.run(kannel_alone(stack, args.count, args.concurrency))
        through = asyncio.run(through_connector(stack, args.count))
    finally:
        stack.stop()
    result: dict[str, Any] = {
        "date": datetime.now(UTC).date().isoformat(),
        "machine": f"{platform.machine()}, {platform.python_version()}",
        "count": args.count,
        "kannel_alone_sms_per_s": round(alone, 1),
        "through_connector_sms_per_s": round(through, 1),
        "ratio": round(through / alone, 2),
    }
    print(json.dumps(result, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
