"""The complaint gauges' counters on the real FerretDB: after a mix of transitions
stored by two replicas at once, redeliveries among them, the gauges read from the
counters equal a full recount; the reconciliation repairs what a crash lost."""

from __future__ import annotations

import asyncio
import random
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from lapor.contracts import Channel, ComplaintRouted, Deadlines, DeadlinesSet, Priority, State
from services.intake import domain
from services.intake.complaint_counts import COUNTS, OPEN_DOC, MongoCountStore, read_figures
from services.intake.counts import (
    CountBuffer,
    MongoReconcileLease,
    reconcile,
    reconcile_if_due,
)
from services.intake.metrics import ComplaintFigures, complaints_in_state, open_complaints
from services.intake.repository import ComplaintRepository

pytestmark = [pytest.mark.integration]

NOW = datetime.now(UTC).replace(microsecond=0)


def _new(i: int) -> dict[str, Any]:
    return domain.new_complaint(
        tracking_id=f"LPR-CNT-{i:04d}",
        region="banjar",
        channel=Channel.SMS,
        text="jalan berlubang di depan pasar",
        received_at=NOW - timedelta(days=3),
        source_key=f"sms:count-{i}",
        phone_hash=f"h{i}",
        anonymous=False,
        confidential=False,
        truncated=False,
        stored_at=NOW - timedelta(days=3),
    )


def _routed(cid: str, rng: random.Random) -> ComplaintRouted:
    urgent = rng.random() < 0.3
    return ComplaintRouted(
        event_id=f"routed:{cid}:0",
        occurred_at=NOW - timedelta(hours=rng.randint(0, 5)),
        complaint_id=cid,
        region="banjar",
        received_at=NOW - timedelta(days=3),
        agency=rng.choice(["PUPR", "RSUD", "DINKES"]),
        priority=Priority.URGENT if urgent else Priority.NORMAL,
        category="jalan",
        confidence=0.9,
        triage=rng.random() < 0.15,
    )


def _deadlines(cid: str, rng: random.Random) -> DeadlinesSet:
    def at() -> datetime:
        return NOW + timedelta(seconds=rng.randint(-2 * 86400, 2 * 86400))

    return DeadlinesSet(
        event_id=f"deadlines:{cid}:0",
        occurred_at=NOW,
        complaint_id=cid,
        region="banjar",
        agency="PUPR",
        priority=Priority.NORMAL,
        state=State.ASSIGNED,
        received_at=NOW - timedelta(days=3),
        deadlines=Deadlines(routing=at(), first_response=at(), answer=at()),
        cause_event_id=f"routed:{cid}:0",
    )


def _moved(cid: str, state: State, n: int) -> domain.Transition:
    return domain.Transition(
        event_id=f"test:{cid}:{n}",
        at=NOW,
        actor="agency:officer-1",
        state=state,
        reason="test transition",
    )


async def _life(
    repo: ComplaintRepository, i: int, other: ComplaintRepository | None = None
) -> None:
    rng = random.Random(i)
    doc, _ = await repo.add_complaint(_new(i))
    cid = doc["_id"]
    if i % 6 == 5:
        await repo.apply(cid, domain.deadlines_transition(_deadlines(cid, rng)))
        return  # received, with a routing deadline
    routed = domain.routed_transition(_routed(cid, rng))
    deadlines = domain.deadlines_transition(_deadlines(cid, rng))
    # Routing and deadlines arrive at once, each also redelivered to the other
    # replica: the writes conflict on the version and are decided again.
    both = (repo, other or repo)
    await asyncio.gather(*(r.apply(cid, t) for r in both for t in (routed, deadlines)))
    step = rng.random()
    if step < 0.3:
        await repo.apply(cid, _moved(cid, State.IN_PROGRESS, 1))
    elif step < 0.45:
        await repo.apply(cid, _moved(cid, State.IN_PROGRESS, 1))
        await repo.apply(cid, _moved(cid, State.RESPONDED, 2))
    elif step < 0.55:
        await repo.apply(cid, _moved(cid, State.CLOSED, 1))
        await repo.apply(cid, _moved(cid, State.CLOSED, 1))  # redelivered


async def _recount(db: Any, now: datetime) -> ComplaintFigures:
    figures = ComplaintFigures(now)
    async for complaint in open_complaints(db):
        figures.add(complaint)
    return figures


async def _same_as_recount(db: Any, now: datetime) -> None:
    counted = await read_figures(MongoCountStore(db), now)
    recount = await _recount(db, now)
    assert counted.open == recount.open
    assert counted.open_by_kecamatan == recount.open_by_kecamatan
    assert counted.deadlines_due == recount.deadlines_due
    assert counted.deadlines_overdue == recount.deadlines_overdue
    assert counted.urgent_unacknowledged == recount.urgent_unacknowledged
    assert counted.urgent_oldest_age_s == recount.urgent_oldest_age_s


async def test_the_counted_gauges_equal_a_recount_after_two_replicas_wrote(
    own_mongo: Any,
) -> None:
    db = own_mongo["lapor_counts"]
    await db.drop_collection(COUNTS)
    store = MongoCountStore(db)
    # Two replicas: each its own buffer, flushing to the same counter documents.
    replicas = [ComplaintRepository(db, counts=CountBuffer(store)) for _ in range(2)]
    await replicas[0].ensure_indexes()

    async def flushing(buffer: CountBuffer, done: asyncio.Event) -> None:
        while not done.is_set():
            await buffer.flush()
            await asyncio.sleep(0)

    done = asyncio.Event()
    flushers = [asyncio.create_task(flushing(r.counts, done)) for r in replicas if r.counts]
    await asyncio.gather(*(_life(replicas[i % 2], i, replicas[(i + 1) % 2]) for i in range(60)))
    done.set()
    await asyncio.gather(*flushers)
    for replica in replicas:
        assert replica.counts is not None
        await replica.counts.flush()

    figures = await read_figures(store, NOW)
    assert sum(figures.open.values()) > 30 and figures.urgent_unacknowledged
    assert sum(figures.deadlines_overdue.values()) and sum(figures.deadlines_due.values())
    for moment in (NOW, NOW + timedelta(hours=7), NOW - timedelta(days=1, minutes=3)):
        await _same_as_recount(db, moment)


async def test_the_reconciliation_repairs_the_counters_through_the_index(
    own_mongo: Any,
) -> None:
    db = own_mongo["lapor_counts_repair"]
    store = MongoCountStore(db)
    repo = ComplaintRepository(db, counts=CountBuffer(store))
    await repo.ensure_indexes()
    for i in range(20):
        await _life(repo, i)
    assert repo.counts is not None
    await repo.counts.flush()
    # A crash between the writes and the flush, and a counter wrong for no reason.
    for i in range(20, 26):
        await _life(repo, i)
    repo.counts.pending.clear()
    await store.increment({(OPEN_DOC, "o|assigned|PUPR|normal"): 3})

    lease = MongoReconcileLease(db)
    outcome = await reconcile_if_due(
        store, lambda state: complaints_in_state(db, state), lease, timedelta(hours=1), settle_s=0
    )
    assert outcome is not None and outcome.drift > 3 and outcome.busy == 0
    await _same_as_recount(db, NOW)
    recorded = await db[COUNTS].find_one({"_id": "reconciled"})
    assert recorded is not None and recorded["drift"] == outcome.drift
    # Another replica finds the round done and does not repeat it within the hour.
    other = MongoReconcileLease(db)
    assert (
        await reconcile_if_due(
            store, lambda s: complaints_in_state(db, s), other, timedelta(hours=1), settle_s=0
        )
        is None
    )
    assert (await reconcile(store, lambda s: complaints_in_state(db, s), settle_s=0)).drift == 0
