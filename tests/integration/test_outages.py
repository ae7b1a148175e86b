"""Long outages of the database and of NATS: complaints wait, nothing is dead-lettered.

A handler that fails because FerretDB or nats-server is away must not spend its
`MAX_DELIVER` attempts within seconds: its redeliveries follow the consumers'
backoff, so the messages outlast an outage of minutes and are handled once the
server is back, instead of ending in `dead_letters`.

A full stack (nats-server, FerretDB, intake, router, sla, notify and the
dead-letter watcher) runs on free ports with its own data directories. The
gateway (NATS user `gateway`) submits SMS, retrying each with its gateway id
as `Nats-Msg-Id` until JetStream acks it. One server is killed (SIGKILL) and
kept down for a fixed time, then started again on the same port and data
directory while the services keep running. Afterwards every SMS must have
given exactly one complaint, routed and with deadlines, and exactly one
acknowledgement SMS in the LAPOR_OUTBOUND stream (the chaos run's read-back and
check); no consumer may have given up on a message: no advisory in
LAPOR_ADVISORIES, nothing in `dead_letters`, no dead letter in the watcher's
log, and every process is still the one started.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import time
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import nats
import pytest

from services.deadletters.domain import ADVISORY_STREAM
from tests.chaos.jepsen import ACK_TEMPLATES, History, Verdict, check, gateway_id
from tests.chaos.test_chaos import DB, _expected, _submit, drained, observe, wait_drained
from tests.e2e.helpers import eventually
from tools.devstack import DLQ, SERVICES, Stack

pytestmark = [pytest.mark.integration, pytest.mark.e2e]

# The point of these tests: outages longer than the old redeliveries lasted
# (8 attempts, about 5 s each while the database does not answer).
DB_OUTAGE_S = 90.0
NATS_OUTAGE_S = 60.0
COMPLAINTS = 30
# Once the server is back, redeliveries spaced 10, 15, 30 or 60 s apart must
# still find every message; this is the limit, not the expected time.
SETTLE_S = 360.0
# Polls without any message in flight, 2 s apart, after which what is missing
# will not come any more (dead-lettered or dropped): the test stops waiting.
QUIET_POLLS = 3
# The test's NATS clients ride out the outage; its connection errors are expected.
RECONNECTING: dict[str, Any] = {
    "max_reconnect_attempts": -1,
    "reconnect_time_wait": 0.2,
    "error_cb": _expected,
}
# Each routed to an agency (not to triage) by Banjar's router.
TEXTS = [
    "BANJAR jalan rusak berlubang besar di depan pasar Martapura",
    "BANJAR air PDAM mati sudah tiga hari di Kelurahan Jawa",
    "BANJAR lampu jalan mati di gang 7 Martapura sudah seminggu",
    "BANJAR sampah menumpuk di pinggir jalan dekat sekolah sudah seminggu tidak diangkut",
]


@pytest.fixture
def outage_stack(workdir: Path, request: pytest.FixtureRequest) -> Iterator[Stack]:
    """A stack of this test alone, as it kills its servers. Its database takes the
    chaos run's name, so that the chaos read-back (`observe`) serves unchanged."""
    stack = Stack.for_tests(
        workdir / request.node.name,
        mongo_db=DB,
        extra_env={"LOG_LEVEL": "INFO", "LOG_FORMAT": "json"},
    )
    with stack.running(SERVICES):
        yield stack


@contextlib.asynccontextmanager
async def gateway(stack: Stack) -> AsyncIterator[Any]:
    """The SMS gateway's JetStream context (user `gateway`), reconnecting for ever."""
    nc = await nats.connect(
        stack.nats_url_for("gateway"), inbox_prefix="_INBOX.gateway", **RECONNECTING
    )
    try:
        yield nc.jetstream()
    finally:
        await nc.close()


async def submit(js: Any, history: History, numbers: range, per_second: float = 0.0) -> None:
    """SMS number `i` of `numbers` from its own sender, each retried until acked;
    `per_second` spreads them out (0: all at once)."""
    slots = asyncio.Semaphore(len(numbers))
    tasks = []
    start = time.monotonic()
    try:
        for k, i in enumerate(numbers):
            if per_second:
                await asyncio.sleep(max(0.0, start + k / per_second - time.monotonic()))
            await slots.acquire()
            tasks.append(asyncio.create_task(_submit(js, history, i, TEXTS, slots)))
        await asyncio.gather(*tasks)
    finally:
        for task in tasks:
            task.cancel()


async def until(deadline: float) -> None:
    """Keeps a server down until `deadline`: the outage's length is the point."""
    await asyncio.sleep(max(0.0, deadline - time.monotonic()))


async def complete(db: Any) -> set[str]:
    """Gateway ids whose complaint is routed to an agency, has its deadlines and
    whose acknowledgement was sent."""
    acked = {
        note["complaint_id"]
        async for note in db.notifications.find(
            {"template": {"$in": list(ACK_TEMPLATES)}, "status": {"$in": ["sent", "delivered"]}},
            {"complaint_id": 1},
        )
    }
    return {
        gateway_id(doc["source_key"]) or doc["source_key"]
        async for doc in db.complaints.find({}, {"source_key": 1, "state": 1, "deadlines": 1})
        if doc.get("state") == "assigned"
        and (doc.get("deadlines") or {}).get("answer") is not None
        and doc["_id"] in acked
    }


@dataclass
class Outcome:
    verdict: Verdict
    done: set[str]
    dead_letters: list[str]
    advisories: int
    watcher_lines: list[str]
    crashed: list[str]
    settled_s: float

    def report(self) -> str:
        return json.dumps(
            {
                "verdict": self.verdict.summary(),
                "routed_with_deadlines_and_acknowledged": len(self.done),
                "lost": self.verdict.lost[:10],
                "duplicated": self.verdict.duplicated[:10],
                "unexpected": self.verdict.unexpected[:10],
                "dead_letters": len(self.dead_letters),
                "dead_letter_examples": self.dead_letters[:5],
                "advisories": self.advisories,
                "watcher_dead_letter_lines": len(self.watcher_lines),
                "crashed_by_themselves": self.crashed,
                "settled_s_after_restart": round(self.settled_s, 1),
            },
            indent=2,
        )


async def settle(stack: Stack, history: History, back: float) -> Outcome:
    """Wait until every accepted SMS is complete, or nothing moves any more, then
    read back what the system holds. `back` is when the server came back."""
    from pymongo import AsyncMongoClient

    admin = await nats.connect(stack.nats, **RECONNECTING)
    client: AsyncMongoClient[dict[str, Any]] = AsyncMongoClient(
        stack.mongo, serverSelectionTimeoutMS=2_000, tz_aware=True
    )
    try:
        js, db = admin.jetstream(), client[stack.mongo_db]
        deadline, quiet = time.monotonic() + SETTLE_S, 0
        while time.monotonic() < deadline:
            with contextlib.suppress(Exception):  # a server still starting up
                if await complete(db) >= history.accepted:
                    break
                quiet = quiet + 1 if await drained(js) else 0
                if quiet >= QUIET_POLLS:
                    break
            if any(not child.alive() for child in stack.children.values()):
                break  # a process died by itself: no use waiting for it
            await asyncio.sleep(2.0)
        settled = time.monotonic() - back
        # Anything still on its way (a second acknowledgement) gets its chance to show.
        await wait_drained(js, 60.0)
        done = await complete(db)
        observed, dead = await observe(stack, js)
        advisories = (await js.stream_info(ADVISORY_STREAM)).state.messages
    finally:
        await client.close()
        await admin.close()
    watcher_log = (stack.workdir / "logs" / f"{DLQ}.log").read_text(errors="replace")
    return Outcome(
        verdict=check(history, observed),
        done=done,
        dead_letters=[f"{d['_id']} {d.get('reason')}: {d.get('error')}" for d in dead],
        advisories=advisories,
        watcher_lines=[line for line in watcher_log.splitlines() if "dead letter" in line],
        crashed=[name for name, child in stack.children.items() if not child.alive()],
        settled_s=settled,
    )


def assert_nothing_lost(outcome: Outcome, history: History, expected: int) -> None:
    print(outcome.report())
    summary = f"\n{outcome.report()}"
    assert len(history.accepted) == expected, summary
    assert not outcome.crashed, summary
    assert outcome.verdict.ok, summary
    assert outcome.done == history.accepted, summary
    assert not outcome.dead_letters, summary
    assert outcome.advisories == 0, summary
    assert not outcome.watcher_lines, summary


@pytest.mark.timeout(int(DB_OUTAGE_S + SETTLE_S + 240))
async def test_sms_received_during_a_90_s_database_outage_are_all_handled_afterwards(
    outage_stack: Stack,
) -> None:
    stack, history = outage_stack, History()
    stack.kill("ferretdb")
    up_again = time.monotonic() + DB_OUTAGE_S
    async with gateway(stack) as js:
        await submit(js, history, range(COMPLAINTS))
    assert len(history.accepted) == COMPLAINTS, "JetStream takes SMS while the database is down"
    await until(up_again)
    stack.start("ferretdb")
    back = time.monotonic()

    outcome = await settle(stack, history, back)
    assert_nothing_lost(outcome, history, COMPLAINTS)


@pytest.mark.timeout(int(NATS_OUTAGE_S + SETTLE_S + 240))
async def test_sms_around_a_60_s_nats_outage_are_all_handled_once(outage_stack: Stack) -> None:
    stack, history = outage_stack, History()
    async with gateway(stack) as js:
        # The first batch arrives at 10 SMS/s; NATS dies when a third of it is
        # accepted, with the rest of the batch still to come from the gateway,
        # which retries through the outage, and the accepted ones on their way
        # through the services.
        first = asyncio.create_task(submit(js, history, range(COMPLAINTS), per_second=10.0))

        async def a_third_accepted() -> bool:
            return len(history.accepted) >= COMPLAINTS // 3

        try:
            await eventually(a_third_accepted, timeout=30.0, interval=0.02)
            stack.kill("nats")
            print(f"NATS killed with {len(history.accepted)} of {COMPLAINTS} SMS accepted")
            up_again = time.monotonic() + NATS_OUTAGE_S
            await until(up_again)
            stack.start("nats")
            back = time.monotonic()
            await first
        finally:
            first.cancel()  # a failed test leaves no gateway behind
        await submit(js, history, range(COMPLAINTS, 2 * COMPLAINTS))

    outcome = await settle(stack, history, back)
    assert_nothing_lost(outcome, history, 2 * COMPLAINTS)
