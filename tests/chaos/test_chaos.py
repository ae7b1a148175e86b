"""Chaos: complaints keep arriving while every process is SIGKILLed and restarted.

Every service and the dead-letter watcher run as two replicas (children
`intake`, `intake-2`, ...). A gateway (NATS user `gateway`) submits SMS at a
steady rate and retries each one, with the same gateway id, until JetStream
acknowledges it. Meanwhile, in turn, each replica, nats-server and FerretDB is
killed with SIGKILL and started again on the same port and data directory; and
once each, the database and NATS are down for a while (outages: killed, kept
down, started again, then every replica must be ready; `make chaos`: two
minutes and one minute). When the
submissions are done, the system gets time to drain; then the check reads back
the complaints with their histories, the acknowledgement notifications, the SMS
in the LAPOR_OUTBOUND stream and the routing and deadline announcements in
LAPOR_EVENTS, and compares them with the client's history (see jepsen.py):
lost, duplicated, unexpected, invalid_history, unrouted and no_deadlines must
all be zero. The kills go on after the last submission until most SMS are
acknowledged (and every process was killed once and both outages are over), so
that the faults hit the whole pipeline at work, not just the intake.

Short run (part of `make test`): LAPOR_CHAOS_COMPLAINTS=2000 by default;
`make chaos` runs 10,000. Tunables: LAPOR_CHAOS_RATE (SMS/s offered),
LAPOR_CHAOS_KILL_EVERY_S, LAPOR_CHAOS_UNTIL, LAPOR_CHAOS_MAX_S, LAPOR_CHAOS_DRAIN_S,
LAPOR_CHAOS_REPLICAS, LAPOR_CHAOS_DB_OUTAGE_S and LAPOR_CHAOS_NATS_OUTAGE_S (0: none).
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import json
import os
import random
import signal
import statistics
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
import nats
import pytest
from nats.js.api import AckPolicy, ConsumerConfig, DeliverPolicy

from lapor.contracts import subjects
from tests.chaos.jepsen import (
    ACK_TEMPLATES,
    DEADLINES,
    ROUTED,
    History,
    Observed,
    Verdict,
    check,
)
from tests.e2e.helpers import eventually
from tools.devstack import DLQ, ROOT, SERVICES, Stack

COMPLAINTS = int(os.environ.get("LAPOR_CHAOS_COMPLAINTS", "2000"))
RATE = float(os.environ.get("LAPOR_CHAOS_RATE", "10"))
KILL_EVERY_S = float(os.environ.get("LAPOR_CHAOS_KILL_EVERY_S", "6"))
DRAIN_S = float(os.environ.get("LAPOR_CHAOS_DRAIN_S", "900"))
# Faults continue after the last SMS until this share is acknowledged (or for at most
# LAPOR_CHAOS_MAX_S seconds); then the system drains in peace.
CHAOS_UNTIL = float(os.environ.get("LAPOR_CHAOS_UNTIL", "0.95"))
CHAOS_MAX_S = float(os.environ.get("LAPOR_CHAOS_MAX_S", "3600"))
REPLICAS = int(os.environ.get("LAPOR_CHAOS_REPLICAS", "2"))
# The outages: how long each server stays down, and when it goes down, as a share of
# the submission time (COMPLAINTS / RATE); 0 seconds: no outage. `make chaos` takes
# the database down for 120 s and NATS for 60 s; the short run in `make test` halves
# both to stay within CI's time.
DB_OUTAGE_S = float(os.environ.get("LAPOR_CHAOS_DB_OUTAGE_S", "60"))
NATS_OUTAGE_S = float(os.environ.get("LAPOR_CHAOS_NATS_OUTAGE_S", "30"))
OUTAGES = [
    (at, victim, seconds)
    for at, victim, seconds in ((0.2, "ferretdb", DB_OUTAGE_S), (0.6, "nats", NATS_OUTAGE_S))
    if seconds > 0
]
# One round of quick kills, per replica: a service, a server, a service, ...
ROUND = (SERVICES[0], "nats", SERVICES[1], "ferretdb", SERVICES[2], SERVICES[3], DLQ)
DB = "lapor_chaos"
CORPUS = ROOT / "tests" / "data" / "router_corpus_banjar.jsonl"

pytestmark = [pytest.mark.chaos, pytest.mark.e2e]


def complaint_texts() -> list[str]:
    """Corpus texts the router sends to an agency (or to triage), long enough for intake."""
    from services.router.domain import Router

    router = Router.load(ROOT / "data" / "regions" / "banjar")
    texts = []
    for line in CORPUS.read_text().splitlines():
        text = json.loads(line)["text"]
        if len(text.split()) >= 6 and router.decide(text).agency != "OUT_OF_SCOPE":
            texts.append(text)
    return texts


def victims(stack: Stack) -> list[str]:
    """The quick kills in turn: each replica once, nats-server and FerretDB once per replica."""
    return [
        stack.replica_names(name)[replica] if name in (*SERVICES, DLQ) else name
        for replica in range(stack.replicas)
        for name in ROUND
    ]


@dataclass
class Kill:
    victim: str
    killed: float
    back: float
    ready: float
    # an outage: the time the victim was kept down on purpose
    outage_s: float = 0.0


@dataclass
class Run:
    history: History = field(default_factory=History)
    kills: list[Kill] = field(default_factory=list)
    outages: list[Kill] = field(default_factory=list)
    # set once every planned outage is over and every victim was killed at least once
    faults_done: asyncio.Event = field(default_factory=asyncio.Event)
    bus_sms: list[float] = field(default_factory=list)
    crashed: list[str] = field(default_factory=list)
    started: float = field(default_factory=time.monotonic)
    submitted: float = 0.0
    drained: float = 0.0


@pytest.fixture(scope="module")
def chaos_stack(workdir: Path) -> Iterator[Stack]:
    stack = Stack.for_tests(
        workdir / "chaos",
        mongo_db=DB,
        replicas=REPLICAS,
        extra_env={"LOG_LEVEL": "INFO", "LOG_FORMAT": "json"},
    )
    try:
        stack.start_servers()
        stack.start_services(SERVICES)
        yield stack
    finally:
        stack.stop()


# -- the gateway ---------------------------------------------------------------------


async def submit_all(stack: Stack, run: Run, texts: list[str]) -> None:
    nc = await nats.connect(
        stack.nats_url_for("gateway"),
        inbox_prefix="_INBOX.gateway",
        max_reconnect_attempts=-1,
        reconnect_time_wait=0.2,
        name="chaos-gateway",
        error_cb=_expected,
    )
    js = nc.jetstream()
    slots = asyncio.Semaphore(256)
    tasks = []
    try:
        start = time.monotonic()
        for i in range(COMPLAINTS):
            # Paces the gateway at RATE SMS per second, as a real one would send.
            await asyncio.sleep(max(0.0, start + i / RATE - time.monotonic()))
            await slots.acquire()
            tasks.append(asyncio.create_task(_submit(js, run.history, i, texts, slots)))
        await asyncio.gather(*tasks)
    finally:
        await nc.close()


async def _submit(
    js: Any, history: History, i: int, texts: list[str], slots: asyncio.Semaphore
) -> None:
    gid = f"chaos-{i:06d}"
    payload = {
        "from": f"+62813{i:08d}",
        "to": "1708",
        "text": f"BANJAR {texts[i % len(texts)]}",
        "gateway_id": gid,
        "received_at": datetime.now(UTC).isoformat(),
    }
    data = json.dumps(payload).encode()
    history.attempted.add(gid)
    deadline = time.monotonic() + 180
    try:
        while time.monotonic() < deadline:
            try:
                await js.publish(
                    subjects.INBOUND_SMS, data, headers={"Nats-Msg-Id": gid}, timeout=2
                )
            except Exception:
                # Timeout, no responders, reconnecting: a gateway tries again.
                await asyncio.sleep(0.25)
                continue
            history.accepted.add(gid)
            return
    finally:
        slots.release()


async def _expected(_exc: Exception) -> None:
    """Connection errors are the point of this test; the check counts what matters."""


# -- the chaos -----------------------------------------------------------------------


async def kill_in_turn(stack: Stack, run: Run, stop: asyncio.Event) -> None:
    rng = random.Random(9)
    turn = 0
    order = victims(stack)
    planned = list(OUTAGES)
    while not stop.is_set():
        if not planned and turn >= len(order):
            run.faults_done.set()
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(stop.wait(), KILL_EVERY_S)
            break
        due = [o for o in planned if time.monotonic() - run.started >= o[0] * COMPLAINTS / RATE]
        if due:
            planned.remove(due[0])
            await outage(stack, run, due[0][1], due[0][2])
            continue
        victim = order[turn % len(order)]
        turn += 1
        killed = time.monotonic()
        stack.kill(victim)
        await asyncio.sleep(rng.uniform(0.2, 2.0))  # the outage itself, of a random length
        stack.start(victim, wait=False)
        back = time.monotonic()
        if victim not in ("nats", "ferretdb") and not victim.startswith(DLQ):
            await _ready(stack, victim)
        run.kills.append(Kill(victim, killed, back, time.monotonic()))


async def outage(stack: Stack, run: Run, victim: str, seconds: float) -> None:
    """`victim` (nats or ferretdb) down for `seconds`, then back on the same port and
    data; over once every replica of every service is ready again."""
    killed = time.monotonic()
    stack.kill(victim)
    await asyncio.sleep(seconds)  # the outage itself: its length is the point
    stack.start(victim, wait=False)
    back = time.monotonic()
    for service in SERVICES:
        for name in stack.replica_names(service):
            await _ready(stack, name, timeout=600.0)
    run.outages.append(Kill(victim, killed, back, time.monotonic(), outage_s=seconds))


async def until_faults_done(run: Run, chaos: asyncio.Task[None]) -> None:
    """Until every planned outage is over and every victim was killed once (or the
    chaos itself failed)."""
    done = asyncio.ensure_future(run.faults_done.wait())
    await asyncio.wait({done, chaos}, return_when=asyncio.FIRST_COMPLETED)
    done.cancel()


async def _ready(stack: Stack, service: str, timeout: float = 120.0) -> None:
    deadline = time.monotonic() + timeout
    answer = "no answer"
    async with httpx.AsyncClient(timeout=1.0) as client:
        while time.monotonic() < deadline:
            try:
                reply = await client.get(f"{stack.url(service)}/readyz")
                if reply.status_code == 200:
                    return
                answer = f"{reply.status_code} {reply.text}"
            except httpx.HTTPError as exc:
                answer = repr(exc)
            await asyncio.sleep(0.1)
    why = await _why(stack, service, answer)
    raise TimeoutError(f"{service} not ready {timeout:.0f}s after its restart\n{why}")


async def _why(stack: Stack, service: str, answer: str) -> str:
    """What an unready replica looked like: enough to tell a dead process from a stuck
    one, and, if stuck, what it waits for (lapor/runtime/diagnostics: USR2, USR1)."""
    child = stack.children.get(service)
    running = child is not None and child.alive()
    code = child.process.returncode if child and child.process else None
    log = stack.workdir / "logs" / f"{service}.log"
    lines = _lines(log)
    dump: list[str] = []
    if running and child is not None:
        child.signal(signal.SIGUSR2)
        child.signal(signal.SIGUSR1)

        async def dumped() -> list[str] | None:
            written = _lines(log)[len(lines) :]
            return written if any("end of tasks" in x for x in written) else None

        try:
            dump = await eventually(dumped, timeout=10, interval=0.05)
        except AssertionError:  # no end marker: show whatever part of the dump came
            dump = _lines(log)[len(lines) :]
    state = "running" if running else f"exited ({code})"
    return "\n".join(
        [f"process {state}; last /readyz: {answer}", "last log lines:", *lines[-60:], *dump]
    )


def _lines(log: Path) -> list[str]:
    return log.read_text(encoding="utf-8", errors="replace").splitlines() if log.exists() else []


# -- observing -----------------------------------------------------------------------


async def watch_bus(stack: Stack, run: Run) -> Any:
    nc = await nats.connect(
        stack.nats,
        max_reconnect_attempts=-1,
        reconnect_time_wait=0.2,
        name="chaos-watch",
        error_cb=_expected,
    )

    async def on_sms(_msg: Any) -> None:
        run.bus_sms.append(time.monotonic())

    await nc.subscribe(subjects.OUTBOUND_SMS, cb=on_sms)
    return nc


async def until_mostly_acknowledged(stack: Stack, run: Run) -> None:
    from pymongo import AsyncMongoClient

    client: AsyncMongoClient[dict[str, Any]] = AsyncMongoClient(
        stack.mongo, serverSelectionTimeoutMS=2_000
    )
    deadline = time.monotonic() + CHAOS_MAX_S
    try:
        while time.monotonic() < deadline:
            try:
                done = await client[DB].notifications.count_documents(
                    {"template": {"$in": list(ACK_TEMPLATES)}}
                )
            except Exception:
                done = 0  # FerretDB is being restarted
            if done >= CHAOS_UNTIL * len(run.history.accepted):
                return
            await asyncio.sleep(5.0)
    finally:
        await client.close()


STREAMS = ("LAPOR_INBOUND", "LAPOR_EVENTS", "LAPOR_OUTBOUND", "LAPOR_ADVISORIES")


async def drained(js: Any) -> bool:
    """No consumer has work left (pending or waiting for an ack), and nothing was
    stored while they were asked: every stream's last sequence is the same after the
    pass as before it. A handler stores what it causes before it acks, so no work can
    hide between the consumers of one pass."""
    before = await _last_sequences(js)
    for stream in STREAMS:
        for info in await js._jsm.consumers_info(stream):
            if info.num_pending or info.num_ack_pending:
                return False
    return await _last_sequences(js) == before


async def _last_sequences(js: Any) -> list[int]:
    return [(await js.stream_info(stream)).state.last_seq for stream in STREAMS]


async def wait_drained(js: Any, timeout: float) -> bool:
    async def settled() -> bool:
        try:
            return await drained(js)
        except Exception:  # a server still starting up
            return False

    try:
        await eventually(settled, timeout=timeout, interval=0.5)
    except AssertionError:
        return False
    return True


async def read_stream(js: Any, stream: str, subject: str) -> list[dict[str, Any]]:
    """Every message on `subject` in `stream`, read back from the stream itself."""
    sub = await js.pull_subscribe(
        subject,
        stream=stream,
        config=ConsumerConfig(
            ack_policy=AckPolicy.NONE, deliver_policy=DeliverPolicy.ALL, inactive_threshold=120
        ),
    )
    found: list[dict[str, Any]] = []
    while True:
        try:
            batch = await sub.fetch(500, timeout=3)
        except (TimeoutError, nats.errors.TimeoutError):
            break
        found += [json.loads(msg.data) for msg in batch]
    await sub.unsubscribe()
    return found


async def outbound_sms(js: Any) -> list[tuple[str, str | None]]:
    """Every SMS notify put on the bus."""
    return [
        (body["notification_id"], body.get("complaint_id"))
        for body in await read_stream(js, "LAPOR_OUTBOUND", subjects.OUTBOUND_SMS)
    ]


async def announcements(js: Any) -> list[tuple[str, str, str]]:
    """The routing decisions and deadlines announced: (subject, event id, complaint id)."""
    return [
        (subject, body["event_id"], body["complaint_id"])
        for subject in (ROUTED, DEADLINES)
        for body in await read_stream(js, "LAPOR_EVENTS", subject)
    ]


async def observe(stack: Stack, js: Any) -> tuple[Observed, list[dict[str, Any]]]:
    from pymongo import AsyncMongoClient

    client: AsyncMongoClient[dict[str, Any]] = AsyncMongoClient(stack.mongo)
    try:
        db = client[DB]
        fields = ("source_key", "state", "agency", "outcome", "deadlines", "history", "version")
        records = {
            doc["_id"]: doc async for doc in db.complaints.find({}, dict.fromkeys(fields, 1))
        }
        complaints = [(doc["source_key"], cid) for cid, doc in records.items()]
        notes = [
            (doc["_id"], doc["complaint_id"])
            async for doc in db.notifications.find(
                {"template": {"$in": list(ACK_TEMPLATES)}}, {"complaint_id": 1}
            )
        ]
        dead = [doc async for doc in db.dead_letters.find({}, {"payload_sealed": 0})]
    finally:
        await client.close()
    observed = Observed(complaints, notes, await outbound_sms(js), records, await announcements(js))
    return observed, dead


# -- the report ----------------------------------------------------------------------


def report(run: Run, verdict: Verdict, dead: list[dict[str, Any]], drained_ok: bool) -> dict:
    restarts: dict[str, list[float]] = {}
    for kill in run.kills:
        restarts.setdefault(kill.victim, []).append(kill.ready - kill.killed)
    chaos_end = max((k.ready for k in [*run.kills, *run.outages]), default=run.submitted)
    during = sorted(t for t in run.bus_sms if run.started <= t <= chaos_end)
    gaps = [b - a for a, b in itertools.pairwise(during)]
    return {
        "complaints_offered": COMPLAINTS,
        "rate_per_s": RATE,
        "replicas": REPLICAS,
        "verdict": verdict.summary(),
        **verdict.counts(),
        "findings": {
            "lost": verdict.lost[:50],
            "duplicated": verdict.duplicated[:50],
            "unexpected": verdict.unexpected[:50],
            "invalid_history": verdict.invalid_history[:50],
            "unrouted": verdict.unrouted[:50],
            "no_deadlines": verdict.no_deadlines[:50],
        },
        "outages": [
            {
                "victim": o.victim,
                "down_s": round(o.back - o.killed, 1),
                "back_to_ready_s": round(o.ready - o.back, 1),
            }
            for o in run.outages
        ],
        "dead_letters": [f"{d['_id']} {d.get('reason')}: {d.get('error')}" for d in dead],
        "kills": {v: len(t) for v, t in restarts.items()},
        "kill_to_ready_s": {
            v: {"mean": round(statistics.fmean(t), 2), "max": round(max(t), 2)}
            for v, t in restarts.items()
        },
        "longest_pause_between_sms_s": round(max(gaps, default=0.0), 2),
        "submit_s": round(run.submitted - run.started, 1),
        "drain_after_last_restart_s": round(run.drained - chaos_end, 1),
        "drained": drained_ok,
        "crashed_by_themselves": run.crashed,
    }


@pytest.mark.timeout(
    int(COMPLAINTS / RATE + CHAOS_MAX_S + DRAIN_S + DB_OUTAGE_S + NATS_OUTAGE_S + 300)
)
async def test_no_complaint_lost_or_duplicated_under_chaos(
    chaos_stack: Stack, capsys: pytest.CaptureFixture[str]
) -> None:
    stack = chaos_stack
    texts = complaint_texts()
    run = Run()
    watcher = await watch_bus(stack, run)
    stop = asyncio.Event()
    chaos = asyncio.create_task(kill_in_turn(stack, run, stop))
    try:
        await submit_all(stack, run, texts)
        run.submitted = time.monotonic()
        # The faults go on while the backlog is worked off, not only while SMS arrive.
        await until_mostly_acknowledged(stack, run)
        await until_faults_done(run, chaos)
    finally:
        stop.set()
        await chaos
    # Every process must still be there: one that died by itself is a finding.
    for name, child in stack.children.items():
        if not child.alive():
            run.crashed.append(name)
            stack.start(name, wait=False)

    admin = await nats.connect(
        stack.nats, max_reconnect_attempts=-1, reconnect_time_wait=0.2, error_cb=_expected
    )
    try:
        js = admin.jetstream()
        drained_ok = await wait_drained(js, DRAIN_S)
        run.drained = time.monotonic()
        observed, dead = await observe(stack, js)
    finally:
        await admin.close()
        await watcher.close()

    verdict = check(run.history, observed)
    result = report(run, verdict, dead, drained_ok)
    (stack.workdir / "chaos-result.json").write_text(json.dumps(result, indent=2))
    counts = " ".join(f"{name}={n}" for name, n in verdict.counts().items())
    with capsys.disabled():
        print("\nchaos:", json.dumps(result, indent=2))
        print(f"chaos summary: {counts}")
    assert drained_ok, "the system did not drain"
    assert not run.crashed, f"crashed without being killed: {run.crashed}"
    assert verdict.ok, verdict.summary()
    assert verdict.accepted >= COMPLAINTS * 0.99
    assert set(result["kills"]) == set(victims(stack)), "every process was killed at least once"
    assert sorted(o.victim for o in run.outages) == sorted(v for _at, v, _s in OUTAGES)
