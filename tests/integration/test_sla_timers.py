"""SLA timers on the real nats-server and FerretDB, with a fake clock.

(a) two SLA replicas sweeping the same database and bus at the same time fire
    every warning, breach and escalation exactly once;
(b) a sweep killed in the middle (cancelled mid-publish, or the process dying
    right after a claim) and restarted leaves no event missing and none twice;
(c) a pause in needs_info extends the answer deadline (announced on the bus),
    re-routing does not move it — through the real consumers; a question left
    unanswered ends its pause when the reply window lapses, and the sweep
    announces the deadline that fixed.
"""

from __future__ import annotations

import asyncio
import json
from collections import Counter
from collections.abc import Callable
from datetime import datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

import pytest
from prometheus_client import CollectorRegistry
from pydantic import BaseModel
from pymongo import AsyncMongoClient

from lapor.contracts import (
    ComplaintRouted,
    ComplaintStateChanged,
    DeadlinesSet,
    State,
    subjects,
)
from lapor.runtime.broker import EventPublisher, declare_consumers
from lapor.runtime.outbox import Outbox
from lapor.runtime.service import Late, build_runtime
from lapor.runtime.settings import InfraSettings
from services.sla.clock_store import clock_summary, fact_to_doc
from services.sla.clocks import Timer
from services.sla.engine import SlaEngine
from services.sla.facts import routed_fact
from services.sla.firing import MODELS, timer_doc
from services.sla.handlers import SlaDeps, handle_routed, handle_state_changed
from services.sla.metrics import SlaMetrics
from services.sla.plan import build_plan
from services.sla.repository import MongoSlaStore
from services.sla.settings import SlaSettings
from services.sla.wiring import load_rules, register
from tests.e2e.helpers import eventually, stored_messages
from tests.unit.sla.fakes import FakeClock, routed, state
from tools.devstack import ROOT, Stack

pytestmark = [pytest.mark.integration]

WITA = ZoneInfo("Asia/Makassar")
START = datetime(2026, 12, 21, 10, 0, tzinfo=WITA)  # Monday before Christmas


class Killed(BaseException):
    """The process dies: nothing after this line runs (not caught as an error)."""


class CountingPublisher:
    """Counts every publish attempt; optionally stops the world around one of them."""

    def __init__(self, inner: EventPublisher, attempts: list[str]) -> None:
        self.inner = inner
        self.subject, self.schema = inner.subject, inner.schema
        self.attempts = attempts
        self.after_publish: Callable[[str], Any] | None = None

    async def publish(self, message: BaseModel, msg_id: str) -> bool:
        self.attempts.append(msg_id)
        fresh = await self.inner.publish(message, msg_id)
        if self.after_publish is not None:
            await self.after_publish(msg_id)
        return fresh


class DyingStore(MongoSlaStore):
    """Stores like the real one; after `survive` claims to publish, the next such claim
    is stored and then the process dies, before it is published."""

    def __init__(self, db: Any, survive: int) -> None:
        super().__init__(db)
        self.survive = survive

    async def claim(self, doc: dict[str, Any]) -> bool:
        claimed = await super().claim(doc)
        if claimed and doc["outcome"] == "published":  # not a skipped warning
            if self.survive == 0:
                raise Killed(f"died right after claiming {doc['_id']}")
            self.survive -= 1
        return claimed


class Replica:
    """One SLA service instance in-process: its own broker and database client."""

    def __init__(
        self,
        servers: Stack,
        db_name: str,
        clock: FakeClock,
        name: str,
        *,
        consume: bool = False,
        store: Callable[[Any], MongoSlaStore] = MongoSlaStore,
    ) -> None:
        infra = InfraSettings(
            NATS_URL=servers.nats,
            MONGO_URL=servers.mongo,
            MONGO_DB=db_name,
            LAPOR_DATA_DIR=str(ROOT / "data"),
        )  # type: ignore[call-arg]
        self.settings = SlaSettings(infra=infra)
        self.runtime = build_runtime("sla", self.settings)
        late: Late[SlaDeps] = Late("deps")
        if consume:
            publishers = register(self.runtime, late)
        else:
            # Publishers only: routing decisions are handed to the handlers directly.
            broker = self.runtime.broker
            publishers = {
                "deadlines": EventPublisher(
                    broker, subjects.COMPLAINT_DEADLINES, DeadlinesSet, "Deadlines set"
                ),
                **{
                    key: EventPublisher(broker, subject, MODELS[subject], key)
                    for key, subject in (
                        ("alert", subjects.SLA_ALERT),
                        ("escalation", subjects.SLA_ESCALATION),
                        ("auto_close", subjects.SLA_AUTO_CLOSE),
                    )
                },
            }
        self.client: AsyncMongoClient[dict[str, Any]] = AsyncMongoClient(
            servers.mongo, tz_aware=True
        )
        self.db = self.client[db_name]
        self.runtime.db.set(self.db)
        self.attempts: list[str] = []
        self.registry = CollectorRegistry()
        self.publishers = {
            key: CountingPublisher(pub, self.attempts) for key, pub in publishers.items()
        }
        self.engine = SlaEngine(
            store(self.db),
            load_rules(self.settings),
            [self.publishers[k] for k in ("alert", "escalation", "auto_close", "deadlines")],
            clock,
            SlaMetrics(self.registry),
            replica=name,
            batch_size=5,
            concurrency=4,
            republish_after=timedelta(seconds=30),
        )
        self.engine.store.outbox = Outbox([self.publishers["deadlines"]])  # type: ignore[attr-defined,list-item]
        self.deps = SlaDeps(engine=self.engine, reply_windows=self.publishers["auto_close"])
        late.set(self.deps)

    async def start(self) -> Replica:
        await self.engine.store.ensure_indexes()
        await declare_consumers(self.runtime.broker)
        await self.runtime.broker.start()
        return self

    async def stop(self) -> None:
        await self.runtime.broker.stop()
        await self.client.close()


async def caught_up(db: Any, now: datetime) -> bool:
    due = await db.sla_timers.count_documents({"status": "pending", "due_at": {"$lte": now}})
    claimed = await db.sla_timers.count_documents({"status": "claimed"})
    return due == 0 and claimed == 0


async def stream_events(nc: Any, subject: str, prefix: str) -> list[tuple[str, dict[str, Any]]]:
    """(Nats-Msg-Id, body) of every message stored on `subject` for complaints `prefix*`."""
    found: list[tuple[str, dict[str, Any]]] = []
    for msg in await stored_messages(nc.jetstream(), subject):
        body = json.loads(msg.data)
        if body.get("complaint_id", "").startswith(prefix):
            found.append(((msg.headers or {}).get("Nats-Msg-Id", ""), body))
    return found


async def expected_firings(engine: SlaEngine, complaints: list[str], until: datetime) -> set[str]:
    wanted: set[str] = set()
    for complaint_id in complaints:
        plan = await engine.plan_of(complaint_id)
        assert plan is not None
        wanted |= {t.id for t in plan.timers if _due(t, until)}
    return wanted


def _due(timer: Timer, until: datetime) -> bool:
    return timer.due_at <= until


async def test_two_replicas_sweeping_together_fire_each_point_exactly_once(
    own_servers: Stack, own_nc: Any
) -> None:
    clock = FakeClock(START)
    one = await Replica(own_servers, "lapor_sla_two", clock, "replica-1").start()
    two = await Replica(own_servers, "lapor_sla_two", clock, "replica-2").start()
    complaints = [f"TWO{n:02d}" for n in range(24)]
    try:
        # Both replicas take routing decisions at the same time, like a shared consumer.
        await asyncio.gather(
            *(
                handle_routed(
                    routed(cid, START + timedelta(minutes=n)), (one if n % 2 else two).deps
                )
                for n, cid in enumerate(complaints)
            )
        )
        end = datetime(2027, 1, 25, tzinfo=WITA)
        while clock.now < end:
            clock.advance(hours=12)
            await asyncio.gather(one.engine.sweep(), two.engine.sweep())
            assert await caught_up(one.db, clock.now)
        expected = await expected_firings(one.engine, complaints, clock.now)
        assert len(expected) == 24 * 14

        attempts = Counter(a for a in one.attempts + two.attempts if not a.startswith("deadlines:"))
        assert set(attempts) == expected
        assert max(attempts.values()) == 1, "a firing was published twice"
        claimed_by = Counter(
            [doc["claimed_by"] async for doc in one.db.sla_fired.find({}, {"claimed_by": 1})]
        )
        assert set(claimed_by) == {"replica-1", "replica-2"}
        assert sum(claimed_by.values()) == len(expected)

        stored = [msg_id for msg_id, _ in await stream_events(own_nc, "lapor.event.sla.>", "TWO")]
        assert sorted(stored) == sorted(expected)
        # Each escalation is counted once, by the replica that settled it.
        for level in ("liaison", "head", "sekda", "ombudsman"):
            counted = sum(
                replica.registry.get_sample_value("lapor_sla_escalations_total", {"level": level})
                or 0.0
                for replica in (one, two)
            )
            assert counted == sum(1 for i in expected if f":{level}:" in i), level
        assert await one.db.sla_breaches.count_documents({}) == 24 * 2
        assert await one.db.sla_timers.count_documents({}) == 0
    finally:
        await one.stop()
        await two.stop()


async def test_a_sweep_killed_midway_and_restarted_misses_nothing_and_repeats_nothing(
    own_servers: Stack, own_nc: Any
) -> None:
    clock = FakeClock(START)
    db_name = "lapor_sla_kill"
    complaints = [f"KIL{n:02d}" for n in range(12)]
    first = await Replica(own_servers, db_name, clock, "first").start()
    for n, cid in enumerate(complaints):
        await handle_routed(routed(cid, START + timedelta(minutes=n)), first.deps)
    # 31 Dec 09:00: every first-response breach and liaison notice, and the
    # answer's 50% warning, are due — 36 firings at once.
    clock.set(datetime(2026, 12, 31, 9, 0, tzinfo=WITA))
    expected_now = await expected_firings(first.engine, complaints, clock.now)
    expected_now = {i for i in expected_now if "warn" not in i or ":answer:" in i}

    # 1. Cancelled while publishing: after the 7th event reached the bus, before it settled.
    reached = asyncio.Event()
    published: list[str] = []

    async def stop_the_world(msg_id: str) -> None:
        published.append(msg_id)
        if len(published) == 7:
            reached.set()
            await asyncio.sleep(3600)

    for publisher in first.publishers.values():
        publisher.after_publish = stop_the_world
    sweeping = asyncio.create_task(first.engine.sweep())
    await asyncio.wait_for(reached.wait(), 30)
    sweeping.cancel()
    with pytest.raises(asyncio.CancelledError):
        await sweeping
    await first.stop()

    # 2. The restarted service dies right after its 5th claim, before publishing it.
    second = await Replica(
        own_servers, db_name, clock, "second", store=lambda db: DyingStore(db, survive=4)
    ).start()
    with pytest.raises(BaseExceptionGroup) as died:
        await second.engine.sweep(startup=True)
    assert died.group_contains(Killed)
    assert await second.db.sla_fired.count_documents({"settled_at": None}) >= 1
    await second.stop()

    # 3. Restarted again, healthy: the start-up sweep settles what was left.
    third = await Replica(own_servers, db_name, clock, "third").start()
    try:
        await third.engine.sweep(startup=True)
        assert await caught_up(third.db, clock.now)
        assert await third.db.sla_fired.count_documents({"settled_at": None}) == 0

        events = await stream_events(own_nc, "lapor.event.sla.>", "KIL")
        ids = Counter(msg_id for msg_id, _ in events)
        assert set(ids) == expected_now, "missing or unexpected events"
        assert max(ids.values()) == 1, "an event reached the bus twice"
        assert {body["event_id"] for _, body in events} == expected_now
        # Something was really in flight at each crash, and was sent again.
        assert Counter(first.attempts + second.attempts + third.attempts).most_common(1)[0][1] == 2

        # Time goes on normally afterwards.
        clock.set(datetime(2027, 1, 25, tzinfo=WITA))
        await third.engine.sweep()
        everything = await expected_firings(third.engine, complaints, clock.now)
        events = await stream_events(own_nc, "lapor.event.sla.>", "KIL")
        ids = Counter(msg_id for msg_id, _ in events)
        skipped = {
            doc["_id"] async for doc in third.db.sla_fired.find({"outcome": "skipped"}, {"_id": 1})
        }
        assert set(ids) == everything - skipped and max(ids.values()) == 1
        assert skipped and all(":warn" in s for s in skipped)  # too late to warn
    finally:
        await third.stop()


async def _publish(nc: Any, subject: str, event: BaseModel, msg_id: str) -> None:
    ack = await nc.jetstream().publish(
        subject, event.model_dump_json().encode(), headers={"Nats-Msg-Id": msg_id}
    )
    assert ack.seq


async def test_pause_extends_the_answer_and_rerouting_does_not_through_the_bus(
    own_servers: Stack, own_nc: Any
) -> None:
    clock = FakeClock(datetime(2026, 11, 2, 9, 0, tzinfo=WITA))
    sla = await Replica(own_servers, "lapor_sla_pause", clock, "sla", consume=True).start()
    cid = "PAU01"
    received = datetime(2026, 11, 2, 9, 0, tzinfo=WITA)

    async def deadlines(event_id: str) -> dict[str, Any]:
        async def probe() -> dict[str, Any] | None:
            for msg_id, body in await stream_events(own_nc, subjects.COMPLAINT_DEADLINES, cid):
                if msg_id == event_id:
                    return body
            return None

        return await eventually(probe, timeout=30)

    async def send(event: ComplaintRouted | ComplaintStateChanged) -> None:
        subject = (
            subjects.COMPLAINT_ROUTED
            if isinstance(event, ComplaintRouted)
            else subjects.COMPLAINT_STATE_CHANGED
        )
        await _publish(own_nc, subject, event, event.event_id)

    try:
        await send(routed(cid, received))
        first = await deadlines(f"deadlines:routed:{cid}:0")
        assert first["deadlines"]["answer"] == "2026-11-16T23:59:59+08:00"

        ask = state(cid, "ask", State.NEEDS_INFO, datetime(2026, 11, 4, 10, tzinfo=WITA))
        reply = state(cid, "reply", State.IN_PROGRESS, datetime(2026, 11, 7, 16, tzinfo=WITA))
        await send(ask)
        await send(reply)
        extended = await deadlines(f"deadlines:{reply.event_id}")
        # Waited 3 days 6 hours for the citizen: the cap moves by exactly that.
        assert extended["deadlines"]["answer"] == "2026-11-20T05:59:59+08:00"
        assert extended["cause_event_id"] == reply.event_id
        assert extended["state"] == "in_progress"

        await send(state(cid, "forward", State.RECEIVED, datetime(2026, 11, 9, 9, tzinfo=WITA)))
        await send(
            routed(
                cid,
                datetime(2026, 11, 9, 9, 0, 1, tzinfo=WITA),
                round_=1,
                agency="DLH",
                received_at=received,
            )
        )
        rerouted = await deadlines(f"deadlines:routed:{cid}:1")
        assert rerouted["deadlines"]["answer"] == "2026-11-20T05:59:59+08:00"
        assert rerouted["deadlines"]["first_response"] == "2026-11-16T23:59:59+08:00"
        assert rerouted["agency"] == "DLH"

        # The sweep fires the answer at its extended deadline and the new agency's clock.
        clock.set(datetime(2026, 11, 20, 6, 0, tzinfo=WITA))
        await sla.engine.sweep()
        alerts = {
            msg_id: body for msg_id, body in await stream_events(own_nc, subjects.SLA_ALERT, cid)
        }
        assert alerts[f"{cid}:answer:breach:0"]["due_at"] == "2026-11-20T05:59:59+08:00"
        assert alerts[f"{cid}:first_response:breach:1"]["agency"] == "DLH"
        assert f"{cid}:first_response:breach:0" not in alerts
        record = await sla.db.sla_breaches.find_one({"_id": f"{cid}:answer:0"})
        assert record is not None and record["agency"] == "DLH"
        summary = await sla.db.sla_clocks.find_one({"_id": cid})
        assert summary is not None and summary["paused_s"] == (3 * 24 + 6) * 3600
    finally:
        await sla.stop()


async def _planned(db: Any, complaint_id: str, timer_id: str) -> bool:
    """The timer is planned: kept in the clock document or in `sla_timers`."""
    clock = await db.sla_clocks.find_one({"_id": complaint_id})
    kept = clock is not None and any(t["_id"] == timer_id for t in clock.get("timers") or ())
    return kept or await db.sla_timers.find_one({"_id": timer_id}) is not None


async def test_an_unanswered_question_lapses_and_the_sweep_announces_the_new_date(
    own_servers: Stack, own_nc: Any
) -> None:
    received = datetime(2026, 11, 2, 9, 0, tzinfo=WITA)
    clock = FakeClock(received)
    sla = await Replica(own_servers, "lapor_sla_lapse", clock, "sla", consume=True).start()
    cid = "LAP01"
    lapsed_id = f"deadlines:{cid}:answer:reply_lapsed:1"

    async def announced() -> dict[str, dict[str, Any]]:
        return dict(await stream_events(own_nc, subjects.COMPLAINT_DEADLINES, cid))

    try:
        await _publish(own_nc, subjects.COMPLAINT_ROUTED, routed(cid, received), f"r:{cid}")
        ask = state(cid, "ask", State.NEEDS_INFO, datetime(2026, 11, 4, 10, tzinfo=WITA))
        await _publish(own_nc, subjects.COMPLAINT_STATE_CHANGED, ask, ask.event_id)
        await eventually(lambda: _planned(sla.db, cid, f"{cid}:answer:reply_lapsed:1"))

        # The day before the window ends (10 working days: Wednesday 18 Nov 23:59:59)
        # nothing of the answer clock has fired, although its old cap (16 Nov) passed.
        clock.set(datetime(2026, 11, 18, 12, 0, tzinfo=WITA))
        await sla.engine.sweep()
        assert lapsed_id not in await announced()
        alerts = await stream_events(own_nc, subjects.SLA_ALERT, cid)
        assert not [msg_id for msg_id, _ in alerts if ":answer:" in msg_id]

        clock.set(datetime(2026, 11, 19, 0, 0, tzinfo=WITA))
        await sla.engine.sweep()
        await sla.engine.sweep()  # a second sweep finds nothing left to announce
        events = await stream_events(own_nc, subjects.COMPLAINT_DEADLINES, cid)
        assert [msg_id for msg_id, _ in events].count(lapsed_id) == 1
        body = dict(events)[lapsed_id]
        assert body["event_id"] == lapsed_id and body["state"] == "needs_info"
        assert body["cause_event_id"] == ask.event_id
        assert body["deadlines"]["answer"] == "2026-12-01T13:59:58+08:00"
        summary = await sla.db.sla_clocks.find_one({"_id": cid})
        assert summary is not None
        answer = next(run for run in summary["runs"] if run["clock"] == "answer")
        assert answer["resumes_at"] == datetime(2026, 11, 18, 23, 59, 59, tzinfo=WITA)

        # The clock runs again: the answer is breached at the deadline just announced.
        clock.set(datetime(2026, 12, 1, 14, 0, tzinfo=WITA))
        await sla.engine.sweep()
        alerts = await stream_events(own_nc, subjects.SLA_ALERT, cid)
        breach = dict(alerts)[f"{cid}:answer:breach:0"]
        assert breach["due_at"] == "2026-12-01T13:59:58+08:00"
    finally:
        await sla.stop()


async def test_a_clock_stored_before_facts_moved_into_it_keeps_its_facts(
    own_servers: Stack,
) -> None:
    """A complaint routed by the version that kept facts in `sla_facts` only."""
    clock = FakeClock(START)
    sla = await Replica(own_servers, "lapor_sla_old_shape", clock, "sla").start()
    cid = "OLD01"
    try:
        first = routed_fact(routed(cid, START))
        plan = build_plan(cid, [first], sla.engine.regions)
        assert plan is not None
        await sla.db.sla_facts.insert_one(fact_to_doc(cid, first))
        await sla.db.sla_timers.insert_many([timer_doc(t, START) for t in plan.timers])
        await sla.db.sla_clocks.insert_one({"_id": cid, **clock_summary(plan, START), "version": 1})
        assert any(":first_response:" in t.id for t in plan.timers)

        clock.advance(hours=1)
        ack = state(cid, "ack", State.IN_PROGRESS, clock.now, State.ASSIGNED)
        await handle_state_changed(ack, sla.deps)

        stored = await sla.db.sla_clocks.find_one({"_id": cid})
        assert stored is not None and stored["state"] == "in_progress"
        assert {f["_id"] for f in stored["facts"]} == {first.event_id, ack.event_id}
        timers = {doc["_id"] async for doc in sla.db.sla_timers.find({"complaint_id": cid})}
        assert timers and not [t for t in timers if ":first_response:" in t]
        assert {t["_id"] for t in stored["timers"]} == timers
        again = await sla.engine.plan_of(cid)
        assert again is not None and again.state is State.IN_PROGRESS
    finally:
        await sla.stop()


async def test_a_first_routings_timers_wait_in_its_clock_until_the_first_is_due(
    own_servers: Stack, own_nc: Any
) -> None:
    clock = FakeClock(START)
    sla = await Replica(own_servers, "lapor_sla_kept", clock, "sla").start()
    store = sla.engine.store
    cid = "KEPT01"
    try:
        await handle_routed(routed(cid, START), sla.deps)
        plan = await sla.engine.plan_of(cid)
        assert plan is not None
        first = min(plan.timers, key=lambda t: t.due_at)
        kept = await sla.db.sla_clocks.find_one({"_id": cid})
        assert kept is not None and kept["timers_in"] == "document"
        assert kept["timers_due_at"] == first.due_at
        assert {t["_id"] for t in kept["timers"]} == {t.id for t in plan.timers}
        assert await sla.db.sla_timers.count_documents({"complaint_id": cid}) == 0

        # The sweep finds the document through its index, once the first is due.
        before = first.due_at - timedelta(seconds=1)
        assert await store.clocks_due(before, None, 10) == []
        assert [doc["_id"] for doc in await store.clocks_due(first.due_at, None, 10)] == [cid]
        query = {"timers_in": "document", "timers_due_at": {"$lte": first.due_at}}
        explained = await sla.db.command("explain", {"find": "sla_clocks", "filter": query})
        if "ferretdbVersion" in explained.get("serverInfo", {}):
            assert "USING INDEX" in " ".join(explained["queryPlanner"]["Plan"])

        clock.set(first.due_at)
        await sla.engine.sweep()
        alerts = await stream_events(own_nc, subjects.SLA_ALERT, cid)
        assert [msg_id for msg_id, _ in alerts] == [first.id]
        moved = {doc["_id"] async for doc in sla.db.sla_timers.find({"complaint_id": cid})}
        assert moved == {t.id for t in plan.timers} - {first.id}
        stored = await sla.db.sla_clocks.find_one({"_id": cid})
        assert stored is not None and stored["timers_in"] is None
        # A replan computed over the kept timers is refused now that they moved.
        refused = await store.save_clock(
            cid,
            {"updated_at": first.due_at},
            facts_added=stored["facts_added"],
            timers=[],
            in_document=True,
        )
        assert refused is None
        assert await store.clocks_due(first.due_at + timedelta(days=60), None, 10) == []
    finally:
        await sla.stop()
