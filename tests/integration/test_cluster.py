"""The whole pipeline on a three-node JetStream cluster survives the loss of a node.

Three nats-servers form a cluster (the devstack's single-node configuration
with its own server name, store and ports, plus a `cluster` block); the four
services and the dead-letter watcher connect with NATS_URL listing all three
and create their streams with NATS_STREAM_REPLICAS=3. A gateway (NATS user
`gateway`) submits SMS complaints at a steady rate, each retried with its
gateway id as `Nats-Msg-Id` until JetStream acknowledges it; a third of the way
in, the leader of LAPOR_EVENTS is SIGKILLed while the earlier complaints are
still moving through intake, router, sla and notify.

With the node still down, every complaint must be stored, routed, given its
deadlines and acknowledged by exactly one SMS in LAPOR_OUTBOUND. Then the node
is started again and catches up; once every consumer has drained, the same
check must still hold (no late duplicate), with nothing in `dead_letters` and
no service restarted.
"""

from __future__ import annotations

import asyncio
import itertools
import json
import time
from collections import Counter, defaultdict
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
import nats
import pytest
from nats.js.errors import NotFoundError
from pymongo import AsyncMongoClient

from lapor.contracts import subjects
from services.deadletters.domain import ADVISORY_STREAM, WATCHER
from tests.chaos.jepsen import ACK_TEMPLATES
from tests.e2e.helpers import SMS_PATH, consumers_idle, eventually
from tools.devstack import SERVICES, Stack

pytestmark = [pytest.mark.integration, pytest.mark.e2e]

DB = "lapor_cluster"
NODES = 3
COMPLAINTS = 60
RATE = 10.0  # SMS per second offered by the gateway
KILL_AFTER = COMPLAINTS // 3  # SMS at the steady rate before the node dies
BURST = 10  # SMS sent at once just before the kill, so that they are in flight
SETTLE_S = 90.0  # generous: leader elections, reconnects, redeliveries
# Every stream the services declare (LAPOR_ADVISORIES is the watcher's own).
STREAMS = tuple(spec.name for spec in subjects.STREAMS)
TEXTS = (
    "jalan rusak berlubang di depan SDN {i} Martapura",
    "lampu jalan mati di gang {i} Martapura",
    "air PDAM tidak mengalir sudah 3 hari di RT {i} Kelurahan Jawa",
    "sampah menumpuk di pasar blok {i} tidak diangkut petugas",
    "guru honorer belum menerima gaji tiga bulan di sekolah {i}",
    # No agency recognised: goes to triage.
    "tolong dicek ada masalah di dekat rumah nomor {i} Martapura",
)


@pytest.fixture(scope="module")
def cluster(workdir: Path) -> Iterator[Stack]:
    stack = Stack.for_tests(
        workdir / "cluster",
        nats_nodes=NODES,
        mongo_db=DB,
        extra_env={"LOG_LEVEL": "INFO", "LOG_FORMAT": "json", "NATS_STREAM_REPLICAS": "3"},
    )
    try:
        stack.start_servers()
        stack.start_services(SERVICES)
        yield stack
    finally:
        stack.stop()


async def _quiet(_exc: Exception) -> None:
    """Connection errors are expected while a node is down."""


async def _connect(stack: Stack, user: str, name: str) -> Any:
    return await nats.connect(
        stack.nats_url_for(user).split(","),
        name=name,
        inbox_prefix=f"_INBOX.{user}" if user != "admin" else "_INBOX",
        max_reconnect_attempts=-1,
        reconnect_time_wait=0.2,
        error_cb=_quiet,
    )


# -- the gateway ---------------------------------------------------------------------


@dataclass
class Gateway:
    js: Any
    attempted: set[str] = field(default_factory=set)  # gateway ids
    accepted: set[str] = field(default_factory=set)  # those JetStream acknowledged
    retries: int = 0

    async def submit(self, i: int) -> None:
        gid = f"cluster-{i:04d}"
        sender = f"+62815{i:08d}"
        payload = {
            "from": sender,
            "to": "1708",
            "text": "BANJAR " + TEXTS[i % len(TEXTS)].format(i=i + 1),
            "gateway_id": gid,
            "received_at": datetime.now(UTC).isoformat(),
        }
        data = json.dumps(payload).encode()
        self.attempted.add(gid)
        deadline = time.monotonic() + SETTLE_S
        while time.monotonic() < deadline:
            try:
                await self.js.publish(
                    subjects.INBOUND_SMS, data, headers={"Nats-Msg-Id": gid}, timeout=2
                )
            except Exception:
                # No PubAck (timeout, no responders, reconnecting): send again, same id.
                self.retries += 1
                await asyncio.sleep(0.25)
                continue
            self.accepted.add(gid)
            return


# -- reading back --------------------------------------------------------------------


class StreamReader:
    """Every message of one stream, read by sequence from the stream itself (a core
    subscription would miss what was published while the client reconnected)."""

    def __init__(self, js: Any, stream: str) -> None:
        self.js, self.stream = js, stream
        self.next_seq = 1
        self.messages: list[tuple[str, dict[str, Any]]] = []  # (subject, body)

    async def refresh(self) -> list[tuple[str, dict[str, Any]]]:
        last = (await self.js.stream_info(self.stream)).state.last_seq
        while self.next_seq <= last:
            try:
                msg = await self.js.get_msg(self.stream, self.next_seq)
                self.messages.append((msg.subject, json.loads(msg.data)))
            except NotFoundError:
                pass  # nothing is deleted here, but a gap is not a message
            self.next_seq += 1
        return self.messages


@dataclass
class Snapshot:
    complaints: list[dict[str, Any]]
    clocks: set[str]
    ack_notes: list[tuple[str, str]]  # (notification id, complaint id)
    outbound: list[tuple[str, str | None]]  # (notification id, complaint id)
    dead_letters: list[dict[str, Any]]
    all_complaints: int  # stored in the database, ours or not

    def ack_sms_per_complaint(self) -> Counter[str]:
        ack_ids = {nid for nid, _cid in self.ack_notes}
        return Counter(cid for nid, cid in self.outbound if nid in ack_ids and cid is not None)

    def unfinished(self, expected: int) -> list[str]:
        """What is still missing for `expected` complaints to be done; empty when done."""
        missing = []
        if len(self.complaints) < expected:
            missing.append(f"{len(self.complaints)}/{expected} complaints stored")
        unrouted = [d["_id"] for d in self.complaints if not _routed(d)]
        if unrouted:
            missing.append(f"{len(unrouted)} not routed")
        no_deadlines = [
            d["_id"]
            for d in self.complaints
            if not d.get("deadlines") or d["_id"] not in self.clocks
        ]
        if no_deadlines:
            missing.append(f"{len(no_deadlines)} without deadlines")
        sent = self.ack_sms_per_complaint()
        unacked = [d["_id"] for d in self.complaints if not sent.get(d["_id"])]
        if unacked:
            missing.append(f"{len(unacked)} without an acknowledgement SMS")
        return missing


def _routed(doc: dict[str, Any]) -> bool:
    return bool(doc.get("agency")) or doc.get("state") == "triage"


async def snapshot(db: Any, outbound: StreamReader, keys: list[str]) -> Snapshot:
    complaints = [
        doc
        async for doc in db.complaints.find(
            {"source_key": {"$in": keys}},
            {"source_key": 1, "agency": 1, "state": 1, "deadlines": 1, "history": 1},
        )
    ]
    ids = [doc["_id"] for doc in complaints]
    clocks = {doc["_id"] async for doc in db.sla_clocks.find({"_id": {"$in": ids}}, {"_id": 1})}
    notes = [
        (doc["_id"], doc["complaint_id"])
        async for doc in db.notifications.find(
            {"template": {"$in": list(ACK_TEMPLATES)}}, {"complaint_id": 1}
        )
    ]
    sms = [
        (body["notification_id"], body.get("complaint_id"))
        for subject, body in await outbound.refresh()
        if subject == subjects.OUTBOUND_SMS
    ]
    dead = [doc async for doc in db.dead_letters.find({}, {"payload_sealed": 0})]
    return Snapshot(complaints, clocks, notes, sms, dead, await db.complaints.count_documents({}))


def verdict(gateway: Gateway, snap: Snapshot, events: list[tuple[str, dict[str, Any]]]) -> dict:
    """Lost, duplicated and unexpected, from the gateway's history and what is stored."""
    lost: list[str] = []
    duplicated: list[str] = []
    unexpected: list[str] = []
    by_sms: dict[str, list[str]] = defaultdict(list)
    for doc in snap.complaints:
        by_sms[doc["source_key"].removeprefix("sms:")].append(doc["_id"])
    for gid in sorted(gateway.accepted):
        if not by_sms.get(gid):
            lost.append(f"sms {gid}: accepted, no complaint")
        elif len(by_sms[gid]) > 1:
            duplicated.append(f"sms {gid}: complaints {sorted(by_sms[gid])}")
    ours = {doc["_id"] for doc in snap.complaints}
    if snap.all_complaints != len(ours):
        unexpected.append(f"{snap.all_complaints - len(ours)} complaints nobody sent")
    notes = Counter(cid for _nid, cid in snap.ack_notes)
    sent = snap.ack_sms_per_complaint()
    for cid in sorted(ours):
        for what, n in (("acknowledgement notifications", notes[cid]), ("ack SMS", sent[cid])):
            if n == 0:
                lost.append(f"complaint {cid}: no {what}")
            elif n > 1:
                duplicated.append(f"complaint {cid}: {n} {what}")
    unexpected += [f"acknowledgement of unknown {cid}" for cid in notes if cid not in ours]
    # One event is stored once in LAPOR_EVENTS, whatever was sent again.
    stored = Counter((subj, body["event_id"]) for subj, body in events if body.get("event_id"))
    duplicated += [
        f"{subject} {eid}: stored {n} times" for (subject, eid), n in stored.items() if n > 1
    ]
    for doc in snap.complaints:
        entries = Counter(h.get("event_id") for h in doc.get("history", []) if h.get("event_id"))
        duplicated += [
            f"{doc['_id']}: history entry {e} {n} times" for e, n in entries.items() if n > 1
        ]
    return {"lost": lost, "duplicated": duplicated, "unexpected": unexpected}


async def wait_complete(
    db: Any, outbound: StreamReader, keys: list[str], timeout: float
) -> Snapshot:
    state: dict[str, Any] = {"missing": ["nothing read yet"]}

    async def probe() -> Snapshot | None:
        try:
            snap = await snapshot(db, outbound, keys)
        except Exception as exc:  # a JetStream request during a leader election
            state["missing"] = [f"read failed: {type(exc).__name__}"]
            return None
        state["missing"] = snap.unfinished(len(keys))
        return None if state["missing"] else snap

    try:
        return await eventually(probe, timeout=timeout, interval=0.25)
    except AssertionError:
        raise AssertionError(f"not done after {timeout:.0f}s: {state['missing']}") from None


async def streams_replicated(js: Any, nodes: int) -> dict[str, Any] | None:
    """Each stream's cluster info when all have a leader and nodes-1 current replicas."""
    found = {}
    for name in STREAMS:
        info = await js.stream_info(name)
        cl = info.cluster
        if info.config.num_replicas != nodes or cl is None or not cl.leader:
            return None
        if len(cl.replicas or []) != nodes - 1 or not all(r.current for r in cl.replicas):
            return None
        found[name] = cl
    return found


async def meta_leader(stack: Stack) -> str | None:
    async with httpx.AsyncClient(timeout=2.0) as http:
        for node in stack.nats_node_names():
            if not stack.children[node].alive():
                continue
            port = stack.nats_node(node)["monitor"]
            try:
                jsz = (await http.get(f"http://127.0.0.1:{port}/jsz")).json()
            except (httpx.HTTPError, ValueError):
                continue
            leader = (jsz.get("meta_cluster") or {}).get("leader")
            if leader:
                return str(leader)
    return None


def _pids(stack: Stack) -> dict[str, int | None]:
    names = (*SERVICES, "dlq")
    return {n: stack.children[n].process.pid for n in names}  # type: ignore[union-attr]


def _log_count(stack: Stack, marker: str) -> dict[str, int]:
    logs = stack.workdir / "logs"
    counts = {}
    for service in (*SERVICES, "dlq"):
        path = logs / f"{service}.log"
        if path.exists():
            counts[service] = path.read_text(errors="replace").count(marker)
    return counts


# -- the test ------------------------------------------------------------------------


@pytest.mark.timeout(240)
async def test_no_complaint_lost_or_duplicated_when_a_cluster_node_dies(
    cluster: Stack, capsys: pytest.CaptureFixture[str]
) -> None:
    started = time.monotonic()
    admin = await _connect(cluster, "admin", "cluster-admin")
    gateway_nc = await _connect(cluster, "gateway", "cluster-gateway")
    mongo: AsyncMongoClient[dict[str, Any]] = AsyncMongoClient(cluster.mongo, tz_aware=True)
    bus_sms: list[float] = []

    async def on_sms(_msg: Any) -> None:
        bus_sms.append(time.monotonic())

    try:
        js = admin.jetstream()
        db = mongo[DB]
        await admin.subscribe(subjects.OUTBOUND_SMS, cb=on_sms)

        # Every stream the services created has a leader and two current replicas.
        replicated = await eventually(lambda: streams_replicated(js, NODES), timeout=30)
        assert set(replicated) == set(STREAMS)
        pids = _pids(cluster)

        gateway = Gateway(gateway_nc.jetstream())
        outbound = StreamReader(js, subjects.OUTBOUND_STREAM.name)
        tasks: list[asyncio.Task[None]] = []
        victim, killed_at, at_kill = "", 0.0, {}
        was_meta_leader = False
        begin = started_sending = time.monotonic()
        for i in range(COMPLAINTS):
            if i == KILL_AFTER:
                # A burst, and as soon as JetStream has it, the leader of the events
                # stream dies: these complaints are somewhere in intake, router, sla
                # and notify at that moment.
                burst = [asyncio.create_task(gateway.submit(i + k)) for k in range(BURST)]
                await asyncio.gather(*burst)
                tasks += burst
                victim = (await js.stream_info("LAPOR_EVENTS")).cluster.leader
                was_meta_leader = victim == await meta_leader(cluster)
                at_kill = {
                    "accepted": len(gateway.accepted),
                    "stored": await db.complaints.count_documents({}),
                    "sms_on_bus": len(bus_sms),
                }
                await asyncio.to_thread(cluster.kill, victim)
                killed_at = time.monotonic()
                begin = time.monotonic() - (i + BURST) / RATE
            if i in range(KILL_AFTER, KILL_AFTER + BURST):
                continue
            # Paces the gateway at RATE SMS per second, as a real one would send.
            await asyncio.sleep(max(0.0, begin + i / RATE - time.monotonic()))
            tasks.append(asyncio.create_task(gateway.submit(i)))
        await asyncio.gather(*tasks)
        submitted = time.monotonic()
        assert victim in cluster.nats_node_names()
        assert gateway.accepted == gateway.attempted, "the gateway gave up"

        keys = [f"sms:{gid}" for gid in sorted(gateway.attempted)]
        # With the node still down: all done, by the two that are left.
        degraded = await wait_complete(db, outbound, keys, SETTLE_S)
        done_degraded = time.monotonic()
        events_leader = (await js.stream_info("LAPOR_EVENTS")).cluster.leader

        # The node comes back on its store and catches up (its /healthz waits for that).
        await asyncio.to_thread(cluster.start, victim)
        await eventually(lambda: streams_replicated(js, NODES), timeout=60)
        await consumers_idle(js, (*SMS_PATH, (ADVISORY_STREAM, WATCHER)), SETTLE_S)
        final = await wait_complete(db, outbound, keys, SETTLE_S)
        events = await StreamReader(js, "LAPOR_EVENTS").refresh()
        found = verdict(gateway, final, events)
        advisories = await js.stream_info("LAPOR_ADVISORIES")
    finally:
        await gateway_nc.close()
        await admin.close()
        await mongo.close()

    gaps = [b - a for a, b in itertools.pairwise(sorted(bus_sms))]
    result = {
        "victim": victim,
        "victim_was_meta_leader": was_meta_leader,
        "events_leader_after": events_leader,
        "at_kill": at_kill,
        "complaints": len(final.complaints),
        "events_stored": len(events),
        **found,
        "gateway_publish_retries": gateway.retries,
        "services_publish_retries": _log_count(cluster, "got no PubAck"),
        "handler_retries": _log_count(cluster, '"outcome": "retry"'),
        # The dead-letter watcher creates its own stream, with NATS_STREAM_REPLICAS too.
        "advisories_replicas": advisories.config.num_replicas,
        "advisories_on": advisories.cluster.leader if advisories.cluster else None,
        "longest_pause_between_sms_s": round(max(gaps, default=0.0), 2),
        "submit_s": round(submitted - started_sending, 1),
        "all_acknowledged_s_after_kill": round(done_degraded - killed_at, 1),
        "triage": sum(1 for d in final.complaints if d.get("state") == "triage"),
        "dead_letters": [
            f"{d['_id']} {d.get('reason')}: {d.get('error')}" for d in final.dead_letters
        ],
        "total_s": round(time.monotonic() - started, 1),
    }
    (cluster.workdir / "cluster-result.json").write_text(json.dumps(result, indent=2))
    with capsys.disabled():
        print("\ncluster:", json.dumps(result, indent=2))

    assert not degraded.unfinished(COMPLAINTS)
    assert not final.unfinished(COMPLAINTS)
    assert found == {"lost": [], "duplicated": [], "unexpected": []}, found
    assert len(final.complaints) == COMPLAINTS
    assert not final.dead_letters, result["dead_letters"]
    assert _pids(cluster) == pids, "no service restarted"
    assert all(cluster.children[name].alive() for name in pids), "every service still runs"


async def test_dead_letter_advisories_are_replicated_like_the_service_streams(
    cluster: Stack,
) -> None:
    admin = await _connect(cluster, "admin", "cluster-admin")
    try:
        info = await admin.jetstream().stream_info("LAPOR_ADVISORIES")
    finally:
        await admin.close()
    assert info.config.num_replicas == NODES
