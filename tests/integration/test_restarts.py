"""Services ride out server restarts by themselves and stop without losing work.

The four services run as separate processes. nats-server and FerretDB are
killed (SIGKILL) and started again on the same port and data directory while
the services keep running; a complaint sent afterwards must be acknowledged by
SMS within seconds, by the same service processes; a publish whose PubAck died
with the server is sent again with the same message id and stored once. A
service that gets SIGTERM while a handler is running finishes it, acks, and
exits.
"""

from __future__ import annotations

import asyncio
import json
import signal
import time
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import httpx
import nats
import pytest
import pytest_asyncio
from prometheus_client.parser import text_string_to_metric_families

from lapor.contracts import subjects
from tests.e2e.helpers import eventually, sms_payload, stored_messages
from tools.devstack import SERVICES, Stack

pytestmark = [pytest.mark.integration, pytest.mark.e2e]

DB = "lapor_restarts"
# The promise: consumers resume within 5 s of a NATS restart.
RESUME_S = 5.0
# uvicorn's line when SIGTERM has reached the lifespan, i.e. the broker is stopping.
SHUTDOWN_BEGINS = "Waiting for application shutdown."


@pytest.fixture(scope="module")
def stack(own_servers: Stack) -> Iterator[Stack]:
    own_servers.mongo_db = DB
    own_servers.start_services(SERVICES)
    yield own_servers


class Citizen:
    """Sends SMS like a gateway (retrying until JetStream acks) and collects replies."""

    def __init__(self, nc: Any) -> None:
        self.nc = nc
        self.replies: dict[str, float] = {}
        self.count = 0
        self.last_seq = 0

    async def attach(self) -> Citizen:
        async def on_reply(msg: Any) -> None:
            self.replies.setdefault(json.loads(msg.data)["to"], time.monotonic())

        await self.nc.subscribe(subjects.OUTBOUND_SMS, cb=on_reply)
        return self

    async def send(self) -> str:
        self.count += 1
        sender = f"+62812770{self.count:05d}"
        payload = sms_payload(sender, f"BANJAR lampu jalan mati di gang {self.count} Martapura")
        data = json.dumps(payload).encode()
        headers = {"Nats-Msg-Id": payload["gateway_id"]}
        while True:
            try:
                ack = await self.nc.jetstream().publish(
                    subjects.INBOUND_SMS, data, headers=headers, timeout=2
                )
                self.last_seq = ack.seq
                return sender
            except (nats.errors.TimeoutError, nats.errors.NoRespondersError):
                await asyncio.sleep(0.1)

    async def reply_time(self, sender: str, timeout: float = 60.0) -> float:
        return await eventually(lambda: _value(self.replies.get(sender)), timeout, 0.02)


async def _value(value: float | None) -> float | None:
    return value


@pytest_asyncio.fixture(scope="module", loop_scope="session")
async def citizen(stack: Stack) -> AsyncIterator[Citizen]:
    nc = await nats.connect(
        stack.nats, max_reconnect_attempts=-1, reconnect_time_wait=0.1, name="citizen"
    )
    yield await Citizen(nc).attach()
    await nc.close()


def _pids(stack: Stack) -> dict[str, int]:
    return {s: stack.children[s].process.pid for s in SERVICES}  # type: ignore[union-attr]


@pytest.mark.parametrize("downtime", [0.0, 6.0])
async def test_consumers_resume_within_seconds_of_a_nats_restart(
    stack: Stack, citizen: Citizen, downtime: float
) -> None:
    await citizen.reply_time(await citizen.send())
    # Idle first: this measures the consumers' resumption, not a lost publish
    # (see the next test).
    await eventually(lambda: _idle(citizen.nc.jetstream()), timeout=60)
    pids = _pids(stack)

    stack.kill("nats")
    await asyncio.sleep(downtime)  # the outage itself: its length is the point
    stack.start("nats")
    back = time.monotonic()
    sender = await citizen.send()
    accepted = time.monotonic()
    answered = await citizen.reply_time(sender)

    print(
        f"NATS down {downtime:.0f}s: SMS accepted {accepted - back:.2f}s and acknowledged "
        f"{answered - back:.2f}s after the restart"
    )
    assert answered - back < RESUME_S
    assert _pids(stack) == pids, "the services reconnected by themselves"


async def test_a_publish_cut_off_by_a_nats_crash_does_not_stall_the_pipeline(
    stack: Stack, citizen: Citizen, mongo_restarts: Any
) -> None:
    js = citizen.nc.jetstream()
    await eventually(lambda: _idle(js), timeout=60)
    ferretdb, nats_server = stack.children["ferretdb"], stack.children["nats"]
    assert ferretdb.process is not None and nats_server.process is not None
    events_before = (await js.stream_info("LAPOR_EVENTS")).state.last_seq

    # Hold intake's handler at the database, freeze NATS, let the handler go on:
    # its publish of the received event now waits for a PubAck that never comes.
    stored = await mongo_restarts.complaints.count_documents({})
    ferretdb.signal(signal.SIGSTOP)
    try:
        await eventually(lambda: _stopped(ferretdb.process.pid), timeout=10, interval=0.01)
        sender = await citizen.send()
        await eventually(lambda: _in_flight(js, citizen.last_seq), timeout=10)
        await eventually(lambda: _handling(stack, subjects.INBOUND_SMS), timeout=10)
        nats_server.signal(signal.SIGSTOP)
    finally:
        ferretdb.signal(signal.SIGCONT)
    # Stored with its announcement pending: what the handler sends next is the publish.
    await eventually(lambda: _stored(mongo_restarts, stored + 1), timeout=30)
    stack.kill("nats")
    stack.start("nats")
    back = time.monotonic()
    answered = await citizen.reply_time(sender)

    print(f"publish cut off by a NATS crash: acknowledged {answered - back:.2f}s after restart")
    assert answered - back < RESUME_S
    # Sent again with the same Nats-Msg-Id: stored once, whichever copy got through.
    received = await stored_messages(js, subjects.COMPLAINT_RECEIVED, after_seq=events_before)
    assert len(received) == 1, received


async def test_services_reconnect_to_the_database_after_a_restart(
    stack: Stack, citizen: Citizen
) -> None:
    await citizen.reply_time(await citizen.send())
    pids = _pids(stack)

    stack.kill("ferretdb")
    await asyncio.sleep(2.0)  # the outage itself: its length is the point
    stack.start("ferretdb")
    back = time.monotonic()
    answered = await citizen.reply_time(await citizen.send())

    print(f"FerretDB restart: acknowledgement SMS {answered - back:.2f}s after restart")
    assert answered - back < 15.0
    assert _pids(stack) == pids


async def test_sigterm_finishes_and_acks_the_message_in_flight(
    stack: Stack, citizen: Citizen, mongo_restarts: Any
) -> None:
    js = citizen.nc.jetstream()
    ferretdb, intake = stack.children["ferretdb"], stack.children["intake"]
    await eventually(lambda: _settled(js), timeout=30)
    before = await js.consumer_info("LAPOR_INBOUND", "intake-sms")
    stored = await mongo_restarts.complaints.count_documents({})

    # Freeze the database so that intake's handler is caught mid-way.
    ferretdb.signal(signal.SIGSTOP)
    try:
        assert ferretdb.process is not None
        await eventually(lambda: _stopped(ferretdb.process.pid), timeout=10, interval=0.01)
        sender = await citizen.send()
        await eventually(lambda: _in_flight(js, citizen.last_seq), timeout=10)
        # A pull of up to 32 messages returns after its 2 s window; then the
        # handler runs and waits for the database.
        await eventually(lambda: _handling(stack, subjects.INBOUND_SMS), timeout=10)
        shutdowns = _log_count(stack, "intake", SHUTDOWN_BEGINS)
        intake.signal(signal.SIGTERM)
        await eventually(
            lambda: _value(_log_count(stack, "intake", SHUTDOWN_BEGINS) > shutdowns), timeout=10
        )
        assert intake.alive(), "intake must wait for its running handler"
    finally:
        ferretdb.signal(signal.SIGCONT)
    assert intake.process is not None
    code = await asyncio.to_thread(intake.process.wait, 30)

    after = await js.consumer_info("LAPOR_INBOUND", "intake-sms")
    # uvicorn re-raises the signal it caught once the shutdown is complete.
    assert code in (0, -signal.SIGTERM)
    assert "Application shutdown complete" in (stack.workdir / "logs" / "intake.log").read_text()
    assert after.num_ack_pending == 0 and after.num_pending == 0
    assert after.ack_floor.stream_seq == citizen.last_seq
    assert after.num_redelivered == before.num_redelivered
    assert await mongo_restarts.complaints.count_documents({}) == stored + 1
    stack.start_service("intake")
    await citizen.reply_time(sender)


async def _idle(js: Any) -> bool:
    for stream in ("LAPOR_INBOUND", "LAPOR_EVENTS", "LAPOR_OUTBOUND"):
        for info in await js._jsm.consumers_info(stream):
            if info.num_pending or info.num_ack_pending:
                return False
    return True


async def _stopped(pid: int) -> bool:
    stat = await asyncio.to_thread(Path(f"/proc/{pid}/stat").read_text)
    return stat.rsplit(")", 1)[1].split()[0] == "T"


async def _handling(stack: Stack, subject: str) -> bool:
    """Intake's handler for `subject` has a message and has not finished it: the
    gauge FastStream keeps of messages in process, on intake's /metrics."""
    async with httpx.AsyncClient(timeout=5.0) as http:
        text = (await http.get(f"{stack.url('intake')}/metrics")).text
    return any(
        sample.labels.get("handler") == subject and sample.value > 0
        for family in text_string_to_metric_families(text)
        if family.name == "faststream_received_messages_in_process"
        for sample in family.samples
    )


async def _stored(db: Any, count: int) -> bool:
    return await db.complaints.count_documents({}) >= count


def _log_count(stack: Stack, service: str, line: str) -> int:
    return (stack.workdir / "logs" / f"{service}.log").read_text().count(line)


async def _settled(js: Any) -> bool:
    info = await js.consumer_info("LAPOR_INBOUND", "intake-sms")
    return info.num_ack_pending == 0 and info.num_pending == 0


async def _in_flight(js: Any, seq: int) -> bool:
    """Our message was handed to intake and is not acked yet."""
    info = await js.consumer_info("LAPOR_INBOUND", "intake-sms")
    return info.delivered.stream_seq >= seq and info.ack_floor.stream_seq < seq


@pytest_asyncio.fixture(scope="module", loop_scope="session")
async def mongo_restarts(own_mongo: Any) -> Any:
    return own_mongo[DB]
