"""Stored-data scaling: seed complaints and SLA timers in bulk, time the SLA sweep query.

Seeded documents have the shape the services write (complaints by intake,
`sla_timers` by sla: warnings at 50% and 80% and the breach of each open
clock), with a realistic spread of states, agencies and deadlines, and go into
the pipeline's own collections, so the indexes the services created at
start-up are maintained while seeding, as in production. A fixed number of
timers is due now whatever the size, so the sweep (sla's own query,
`MongoSlaStore.due_timers`) shows whether its cost follows the timers due or
the timers stored. The complaint gauges' counters are kept up to date with each
seeded batch (`services.intake.complaint_counts`), as intake keeps them with each
change, so the gauges count the seeded complaints without a recount.
"""

from __future__ import annotations

import asyncio
import random
import statistics
import time
from collections import Counter
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any

from pymongo.errors import BulkWriteError, OperationFailure

from bench.texts import complaint_text
from services.intake.complaint_counts import Key, MongoCountStore, contribution
from services.sla.repository import MongoSlaStore

SEED_PREFIX = "SEED-"
DUE_NOW = 100  # timers seeded due within SWEEP_AHEAD, at every size
# The sweep is timed as of this far ahead. Seeded timers are never due for the
# running sla service itself, which would fire them for complaints it never saw
# and disturb the throughput measured right after.
SWEEP_AHEAD = timedelta(days=1)
BATCH = 500
SWEEP_LIMIT = 500
# Above this many stored timers the every-timer-due sweep is not timed.
ALL_DUE_MAX_TIMERS = 300_000

# state → share of stored complaints (most are done or waiting for an agency)
STATES = (
    ("closed", 0.55),
    ("responded", 0.10),
    ("in_progress", 0.15),
    ("assigned", 0.17),
    ("triage", 0.03),
)
PRIORITIES = (("normal", 0.85), ("high", 0.10), ("urgent", 0.05))


def _pick(rng: random.Random, table: tuple[tuple[str, float], ...]) -> str:
    return rng.choices([k for k, _ in table], weights=[w for _, w in table])[0]


def seeded_pair(
    i: int, rng: random.Random, now: datetime
) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    """A stored complaint and its pending SLA timers; the first DUE_NOW have one timer due
    within SWEEP_AHEAD, every other timer is due later than that."""
    cid = f"{SEED_PREFIX}{i:09d}"
    text, agency = complaint_text(rng)
    state = _pick(rng, STATES)
    priority = _pick(rng, PRIORITIES)
    received = now - timedelta(days=rng.uniform(0, 365))
    answer = received + timedelta(days=14 if priority == "normal" else 3)
    first = received + timedelta(days=5)
    open_ = state not in ("closed", "responded")
    if i < DUE_NOW:
        next_due: datetime | None = now + timedelta(hours=rng.uniform(1, 20))
    elif open_:
        next_due = now + timedelta(hours=rng.uniform(1, 24 * 14))
    else:
        next_due = None
    history = _seeded_history(cid, received, agency)
    complaint = {
        "_id": cid,
        "region": "banjar",
        "channel": "sms",
        "text": text.split(" ", 1)[1],
        "text_truncated": False,
        "received_at": received,
        "source_key": f"seed:{i}",
        "reporter": {"phone_hash": f"{rng.getrandbits(128):032x}"},
        "anonymous": rng.random() < 0.05,
        "confidential": rng.random() < 0.02,
        "state": state,
        "agency": agency if state != "triage" else None,
        "priority": priority,
        "category": None,
        "deadlines": {"routing": None, "first_response": first, "answer": answer},
        "history": history,
        "event_ids": [h["event_id"] for h in history],
        "updated_at": received + timedelta(seconds=1),
    }
    timers: list[dict[str, Any]] = []
    if next_due is not None:
        timers = _seeded_timers(i, complaint, next_due, now)
    return complaint, timers


def _seeded_history(cid: str, received: datetime, agency: str) -> list[dict[str, Any]]:
    """Received by SMS, then routed to `agency` a second later."""
    return [
        {
            "at": received,
            "state": "received",
            "actor": "intake:sms",
            "reason": "complaint stored",
            "event_id": f"received:{cid}",
        },
        {
            "at": received + timedelta(seconds=1),
            "state": "assigned",
            "actor": "router",
            "reason": f"keywords point to {agency}",
            "event_id": f"routed:{cid}:0",
        },
    ]


def _seeded_timers(
    i: int, complaint: dict[str, Any], next_due: datetime, now: datetime
) -> list[dict[str, Any]]:
    """The pending warning and breach timers of an open complaint's two clocks."""
    cid, priority, received = complaint["_id"], complaint["priority"], complaint["received_at"]
    deadlines = {
        "first_response": complaint["deadlines"]["first_response"],
        "answer": complaint["deadlines"]["answer"],
    }
    timers: list[dict[str, Any]] = []
    for clock, deadline in deadlines.items():
        for n, (point, kind) in enumerate(((50, "warning"), (80, "warning"), (100, "breach"))):
            due = next_due + timedelta(hours=n) if clock == "first_response" else deadline
            # Exactly one timer of each of the first DUE_NOW complaints is due soon.
            due_soon = i < DUE_NOW and clock == "first_response" and n == 0
            later = now + 2 * SWEEP_AHEAD
            timers.append(
                {
                    "_id": f"{cid}|{clock}|{point}|r0",
                    "complaint_id": cid,
                    "clock": clock,
                    "point": point,
                    "round": 0,
                    "kind": kind,
                    "due_at": due if due_soon else max(due, later),
                    "deadline": deadline,
                    "agency": complaint["agency"],
                    "priority": priority,
                    "status": "pending",
                    "updated_at": received,
                }
            )
    return timers


async def seed(
    db: Any,
    first: int,
    count: int,
    *,
    progress: Callable[[int, int], None] | None = None,
    writers: int = 1,
) -> dict[str, Any]:
    """Seed `count` complaints numbered from `first` (the numbers below DUE_NOW are due)."""
    await MongoSlaStore(db).ensure_indexes()
    counts = MongoCountStore(db)
    todo = list(range(first, first + count))
    now = datetime.now(UTC)
    start = time.perf_counter()
    done = timers = 0
    batches = [todo[i : i + BATCH] for i in range(0, len(todo), BATCH)]
    queue: asyncio.Queue[list[int]] = asyncio.Queue()
    for batch in batches:
        queue.put_nowait(batch)

    async def writer(seed_no: int) -> None:
        nonlocal done, timers
        rng = random.Random(seed_no)  # noqa: S311 - load data, not secrets
        while not queue.empty():
            batch = queue.get_nowait()
            pairs = [seeded_pair(i, rng, now) for i in batch]
            await _insert_retrying(db.complaints, [c for c, _ in pairs])
            # The gauges' counters follow a bulk load as they follow intake's writes.
            counted: Counter[Key] = Counter()
            for complaint, _ in pairs:
                counted.update(contribution(complaint))
            await counts.increment(counted)
            batch_timers = [t for _, ts in pairs for t in ts]
            await _insert_retrying(db.sla_timers, batch_timers)
            done += len(batch)
            timers += len(batch_timers)
            if progress is not None:
                progress(done, count)

    await asyncio.gather(*(writer(first + n) for n in range(writers)))
    elapsed = time.perf_counter() - start
    return {
        "inserted": done,
        "timers": timers,
        "seconds": round(elapsed, 1),
        "complaints_per_s": round(done / elapsed, 1) if elapsed > 0 and done else None,
    }


async def _insert_retrying(collection: Any, docs: list[dict[str, Any]]) -> None:
    """insert_many that waits out FerretDB's SQLite write lock (busy for over 10 s under load).

    A retried batch may have been stored in part: duplicates are skipped.
    """
    for attempt in range(6):
        try:
            await collection.insert_many(docs, ordered=False)
            return
        except BulkWriteError as exc:
            if all(e.get("code") == 11000 for e in exc.details.get("writeErrors", [])):
                return
            raise
        except OperationFailure as exc:
            if "locked" not in str(exc) or attempt == 5:
                raise
            await asyncio.sleep(2.0 * (attempt + 1))


async def sweep_times(
    db: Any, seeded_timers: int, repeats: int = 5, budget_s: float = 10.0
) -> dict[str, Any]:
    """sla's sweep query as of a day ahead (few timers due) and with every pending timer due.

    Repeated up to `repeats` times, fewer when one run is slow (a big collection
    on FerretDB), so the phase stays bounded in time. The timers are those the
    bench seeded (the pipeline's own are a few thousand more): counting them on
    FerretDB would decode every one, for many minutes at a million complaints.
    """
    store = MongoSlaStore(db)
    now = datetime.now(UTC)
    out: dict[str, Any] = {"seeded_timers": seeded_timers}
    for label, until in (("few_due", now + SWEEP_AHEAD), ("all_open", now + timedelta(days=3650))):
        if label == "all_open" and seeded_timers > ALL_DUE_MAX_TIMERS:
            # Its cost is known to follow the timers read (see the smaller sizes);
            # reading millions on FerretDB would take the better part of an hour.
            out[label] = {"skipped": f"more than {ALL_DUE_MAX_TIMERS:,} timers stored"}
            continue
        times: list[float] = []
        returned = 0
        for _ in range(repeats):
            if sum(times) / 1000.0 > budget_s:
                break
            start = time.perf_counter()
            docs = await store.due_timers(until, None, SWEEP_LIMIT)
            times.append((time.perf_counter() - start) * 1000.0)
            returned = len(docs)
        out[label] = {
            "median_ms": round(statistics.median(times), 2),
            "returned": returned,
            "plan": await _plan(db, {"status": "pending", "due_at": {"$lte": until}}),
        }
    return out


async def _plan(db: Any, query: dict[str, Any]) -> dict[str, Any]:
    """Whether the server used an index: FerretDB's SQLite plan or MongoDB's winning plan."""
    try:
        explained = await db.command(
            {
                "explain": {
                    "find": "sla_timers",
                    "filter": query,
                    "sort": {"due_at": 1, "_id": 1},
                    "limit": SWEEP_LIMIT,
                },
                "verbosity": "queryPlanner",
            }
        )
    except Exception as exc:
        return {"error": str(exc)[:200]}
    keys = ("filterPushdown", "sortPushdown", "limitPushdown")
    plan = {k: explained[k] for k in keys if k in explained}
    planner = explained.get("queryPlanner", {})
    if isinstance(planner.get("Plan"), list):
        plan["sqlite"] = " ".join(str(line) for line in planner["Plan"])[:300]
    winning = planner.get("winningPlan")
    if isinstance(winning, dict):
        plan["winning_stage"] = _stages(winning)
    return plan


def _stages(plan: dict[str, Any]) -> str:
    names = []
    node: dict[str, Any] | None = plan
    while isinstance(node, dict):
        names.append(str(node.get("stage", "?")))
        node = node.get("inputStage")
    return "<-".join(names)
