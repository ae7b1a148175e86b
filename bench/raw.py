"""Raw limits of the same servers with the same clients: nats-py and pymongo async.

Each figure is the better of a sequential run (one operation awaited after
the other, as one handler does) and a concurrent run (as a batch of 32
handlers does), so the ratio against the pipeline is against the best the
client and server manage here.
"""

from __future__ import annotations

import asyncio
import contextlib
import random
import time
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from nats.js.api import AckPolicy, ConsumerConfig, StorageType, StreamConfig

BENCH_STREAM = "LAPOR_BENCH_RAW"
BENCH_SUBJECT = "lapor_bench_raw.msgs"
CONCURRENCY = 32


async def _rate(
    op: Callable[[int], Awaitable[None]], seconds: float, concurrency: int
) -> dict[str, float]:
    """Operations per second of `op` run by `concurrency` workers for `seconds`."""
    counter = 0
    stop_at = time.perf_counter() + seconds
    start = time.perf_counter()

    async def worker() -> None:
        nonlocal counter
        while time.perf_counter() < stop_at:
            counter += 1
            await op(counter)

    await asyncio.gather(*(worker() for _ in range(concurrency)))
    elapsed = time.perf_counter() - start
    return {"ops": counter, "per_s": round(counter / elapsed, 1), "concurrency": concurrency}


async def _best(op: Callable[[int], Awaitable[None]], seconds: float) -> dict[str, Any]:
    sequential = await _rate(op, seconds, 1)
    concurrent = await _rate(op, seconds, CONCURRENCY)
    best = max(sequential["per_s"], concurrent["per_s"])
    return {
        "per_s": best,
        "sequential_per_s": sequential["per_s"],
        "concurrent_per_s": concurrent["per_s"],
    }


# -- NATS -------------------------------------------------------------------------


async def nats_limits(nc: Any, seconds: float) -> dict[str, Any]:
    """JetStream publish (with PubAck) and pull-consume-with-ack on a stream of our own."""
    js = nc.jetstream()
    with contextlib.suppress(Exception):
        await js.delete_stream(BENCH_STREAM)
    # File storage and de-duplication like the pipeline's streams.
    await js.add_stream(
        StreamConfig(
            name=BENCH_STREAM,
            subjects=[BENCH_SUBJECT],
            storage=StorageType.FILE,
            duplicate_window=2 * 3600.0,
        )
    )
    payload = b"x" * 420  # about the size of a ComplaintReceived event
    try:

        async def publish(i: int) -> None:
            await js.publish(
                BENCH_SUBJECT, payload, headers={"Nats-Msg-Id": f"raw-{i}-{time.perf_counter_ns()}"}
            )

        published = await _best(publish, seconds)
        consumed = await _consume(js, seconds)
    finally:
        with contextlib.suppress(Exception):
            await js.delete_stream(BENCH_STREAM)
    return {"publish": published, "consume_ack": consumed, "payload_bytes": len(payload)}


async def _consume(js: Any, seconds: float) -> dict[str, Any]:
    """Fetch batches of 32 from a durable pull consumer and ack each, like the services."""
    config = ConsumerConfig(durable_name="raw", ack_policy=AckPolicy.EXPLICIT, max_ack_pending=1000)
    sub = await js.pull_subscribe(BENCH_SUBJECT, durable="raw", stream=BENCH_STREAM, config=config)
    count = 0
    start = time.perf_counter()
    stop_at = start + seconds
    while time.perf_counter() < stop_at:
        try:
            msgs = await sub.fetch(batch=32, timeout=1.0)
        except TimeoutError:
            break
        for msg in msgs:
            await msg.ack()
        count += len(msgs)
    elapsed = time.perf_counter() - start
    await sub.unsubscribe()
    return {"per_s": round(count / elapsed, 1), "messages": count, "batch": 32}


# -- database ---------------------------------------------------------------------


def complaint_like(i: int, now: datetime) -> dict[str, Any]:
    """A document of the size and shape of a stored complaint."""
    return {
        "_id": f"RAW-{i:09d}",
        "region": "banjar",
        "channel": "sms",
        "text": "jalan rusak berlubang besar di depan pasar Martapura mohon segera diperbaiki",
        "received_at": now,
        "source_key": f"raw:{i}",
        "reporter": {"phone_hash": f"{i:032x}"},
        "anonymous": False,
        "confidential": False,
        "state": "received",
        "agency": None,
        "priority": None,
        "deadlines": {"routing": None, "first_response": None, "answer": None},
        "history": [
            {
                "at": now,
                "state": "received",
                "actor": "intake:sms",
                "reason": "stored",
                "event_id": f"received:{i}",
            }
        ],
        "event_ids": [f"received:{i}"],
        "updated_at": now,
    }


async def db_limits(
    client: Any, db_name: str, seconds: float, *, size: int, ferretdb_dir: Path | None
) -> dict[str, Any]:
    """insert_one, then update_one, find_one_and_update and find_one by _id.

    The reads and updates run on a collection holding `size` documents, as many
    as the pipeline's complaints collection holds at that moment: on FerretDB
    the cost of a lookup grows with the collection, so only equal sizes compare.
    """
    db = client[db_name]
    await client.drop_database(db_name)
    inserts = db["inserts"]
    await inserts.create_index("source_key", unique=True)
    now = datetime.now(UTC)
    ids = iter(range(10**9))

    async def insert(_i: int) -> None:
        await inserts.insert_one(complaint_like(next(ids), now))

    results: dict[str, Any] = {"insert": await _best(insert, seconds)}
    # Reads and updates on their own collection of exactly `size` documents.
    coll = db["docs"]
    await coll.create_index("source_key", unique=True)
    stored = 0
    while stored < max(size, 1):
        batch = [complaint_like(i, now) for i in range(stored, min(max(size, 1), stored + 500))]
        await coll.insert_many(batch, ordered=False)
        stored += len(batch)
    rng = random.Random(7)  # noqa: S311 - load data, not secrets

    def some_id() -> str:
        return f"RAW-{rng.randrange(stored):09d}"

    async def update(i: int) -> None:
        await coll.update_one(
            {"_id": some_id()},
            {"$set": {"state": "assigned", "updated_at": now + timedelta(seconds=i)}},
        )

    async def find_and_modify(i: int) -> None:
        await coll.find_one_and_update(
            {"_id": some_id(), "event_ids": {"$ne": f"e{i}"}},
            {"$set": {"updated_at": now}, "$push": {"event_ids": f"e{i}"}},
        )

    async def find(_i: int) -> None:
        await coll.find_one({"_id": some_id()})

    results["update"] = await _best(update, seconds)
    results["findAndModify"] = await _best(find_and_modify, seconds)
    results["find"] = await _best(find, seconds)
    results["documents"] = stored
    if ferretdb_dir is not None:
        results["ferretdb_id_lookup"] = await id_lookup_plan(db, "docs", some_id())
    await client.drop_database(db_name)
    return results


async def id_lookup_plan(db: Any, collection: str, some_id: str) -> dict[str, Any]:
    """The SQLite plan FerretDB reports for a lookup by `_id`: our build's patch makes it
    use the `_id` index (upstream v1.24.2 scans the table, see ferretdb/patches/)."""
    try:
        explained = await db.command("explain", {"find": collection, "filter": {"_id": some_id}})
    except Exception as exc:
        return {"error": str(exc)[:200]}
    plan = explained.get("queryPlanner", {}).get("Plan")
    return {
        "filterPushdown": explained.get("filterPushdown"),
        "plan": " / ".join(str(line) for line in plan) if isinstance(plan, list) else None,
    }
