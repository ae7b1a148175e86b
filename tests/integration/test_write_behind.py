"""Deferred writes on the real database: many complaints' clears in one command, in
order, kept over a failure; an announcement published once while its clear waits."""

from __future__ import annotations

import asyncio
import secrets
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from pymongo import AsyncMongoClient
from pymongo.errors import ServerSelectionTimeoutError

from lapor.runtime.outbox import FLAG, OUTBOX, Outbox
from lapor.runtime.write_behind import WriteBehind
from tests.integration.command_log import listened
from tests.outbox_fakes import Noted, Publisher
from tools.devstack import Stack

pytestmark = [pytest.mark.integration]


async def test_many_updates_go_out_in_few_commands_and_in_order(servers: Stack) -> None:
    client, listener = listened(servers.mongo)
    try:
        db = client[f"lapor_write_behind_{secrets.token_hex(4)}"]
        await db.docs.insert_many([{"_id": i, "step": 0} for i in range(40)])
        deferred = WriteBehind(db, per_command=32)
        for i in range(40):
            deferred.update("docs", {"_id": i, "step": 0}, {"$set": {"step": 1}})
            # Matches only after the statement before it: the order is kept.
            deferred.update("docs", {"_id": i, "step": 1}, {"$set": {"step": 2}})
        listener.names.clear()
        assert await deferred.flush() == 80
        assert listener.names == ["update", "update", "update"]  # 32 + 32 + 16
        assert await db.docs.count_documents({"step": 2}) == 40
        assert deferred.pending() == 0
    finally:
        await client.close()


async def test_a_failed_statement_is_dropped_alone_and_not_reported_done(
    mongo: AsyncMongoClient[dict[str, Any]],
) -> None:
    db = mongo[f"lapor_write_behind_{secrets.token_hex(4)}"]
    await db.entries.insert_many([{"_id": "b", "version": 5}, {"_id": "c", "version": "x"}])
    deferred = WriteBehind(db)
    done: list[str] = []
    for name in ("a", "b", "c", "d"):
        # b: an upsert of an older version meets the newer entry's key, a duplicate
        # (done: the entry is newer already); c: `$inc` of a string fails.
        change = {"$inc": {"version": 1}} if name == "c" else {"$set": {"version": 2}}
        deferred.update(
            "entries",
            {"_id": name, "version": {"$ne": 9} if name == "c" else {"$lt": 2}},
            change,
            upsert=True,
            done=lambda name=name: done.append(name),  # type: ignore[misc]
        )
    assert await deferred.flush() == 4
    assert done == ["a", "b", "d"]
    stored = {d["_id"]: d["version"] async for d in db.entries.find()}
    assert stored == {"a": 2, "b": 5, "c": "x", "d": 2}
    assert deferred.pending() == 0


async def test_a_failed_flush_keeps_every_statement() -> None:
    # Nothing listens on port 9: the command fails as when the database is away.
    client: AsyncMongoClient[dict[str, Any]] = AsyncMongoClient(
        "mongodb://127.0.0.1:9", serverSelectionTimeoutMS=200
    )
    try:
        deferred = WriteBehind(client["lapor_away"], per_command=2)
        done: list[int] = []
        for i in range(5):
            deferred.update(
                "a" if i < 3 else "b", {"_id": i}, {"$set": {"x": 1}}, done=lambda: done.append(1)
            )
        with pytest.raises(ServerSelectionTimeoutError):
            await deferred.flush()
        assert deferred.pending() == 5
        assert done == []
    finally:
        await client.close()


async def test_an_announcement_waiting_for_its_clear_is_not_published_again(
    mongo: AsyncMongoClient[dict[str, Any]],
) -> None:
    db = mongo[f"lapor_write_behind_{secrets.token_hex(4)}"]
    publisher = Publisher()
    deferred = WriteBehind(db)
    outbox = Outbox([publisher], deferred)  # type: ignore[list-item]
    now = datetime.now(UTC)
    docs = [
        outbox.document(
            {"_id": f"LPR-{i}", "version": 1},
            [Noted(event_id=f"e-{i}", complaint_id=f"LPR-{i}")],
            now,
        )
        for i in range(3)
    ]
    await db.complaints.insert_many(docs)
    for doc in docs:
        assert await outbox.flush(db.complaints, doc) == 1
    # Stored, still pending: a second flush (a redelivery, the sweeper) skips them.
    assert await db.complaints.count_documents({FLAG: "pending"}) == 3
    for doc in docs:
        assert await outbox.flush(db.complaints, doc) == 0
    assert await outbox.sweep([db.complaints], older_than=timedelta(0)) == 0
    assert publisher.published == ["e-0", "e-1", "e-2"]

    await deferred.flush()
    assert await db.complaints.count_documents({FLAG: "pending"}) == 0
    assert await db.complaints.count_documents({OUTBOX: {"$exists": True}}) == 0


async def test_the_worklist_sweep_clears_its_marks_at_once(
    mongo: AsyncMongoClient[dict[str, Any]],
) -> None:
    """A complaint's worklist mark is cleared after its entry is written, deferred on
    the handlers' path; the sweep must not leave it for later, or its next round
    would find and list the same complaints again."""
    from services.intake.repository import ComplaintRepository
    from services.intake.worklist import PENDING, WORKLIST_MARK

    db = mongo[f"lapor_write_behind_{secrets.token_hex(4)}"]
    await db.complaints.insert_many(
        [
            {
                "_id": f"LPR-{i}",
                "version": 3,
                "open_agency": "PUPR",
                "agency": "PUPR",
                "state": "assigned",
                WORKLIST_MARK: PENDING,
            }
            for i in range(5)
        ]
    )
    repo = ComplaintRepository(db, deferred=WriteBehind(db))
    assert await repo.sync_worklist(batch=2, rounds=20) == 5
    assert await db.complaints.count_documents({WORKLIST_MARK: PENDING}) == 0
    assert await db.worklist_entries.count_documents({"version": 3}) == 5


async def test_the_worklist_sweep_leaves_a_fresh_mark_to_the_deferred_writes(
    mongo: AsyncMongoClient[dict[str, Any]],
) -> None:
    """Listed by the sweep too, a fresh mark's entry would be newer than the one the
    deferred writes bring: their command would meet a duplicate key."""
    from services.intake.repository import ComplaintRepository
    from services.intake.worklist import PENDING, WORKLIST_MARK

    db = mongo[f"lapor_write_behind_{secrets.token_hex(4)}"]
    now = datetime.now(UTC)
    await db.complaints.insert_many(
        [
            {
                "_id": f"LPR-{name}",
                "version": 3,
                "open_agency": "PUPR",
                "agency": "PUPR",
                "state": "assigned",
                "updated_at": at,
                WORKLIST_MARK: PENDING,
            }
            for name, at in (("old", now - timedelta(minutes=1)), ("fresh", now))
        ]
    )
    repo = ComplaintRepository(db, deferred=WriteBehind(db))
    assert await repo.sync_worklist(grace=timedelta(seconds=10)) == 1
    assert [d["_id"] async for d in db.worklist_entries.find()] == ["LPR-old"]
    assert await repo.sync_worklist() == 1  # at start-up: every mark


async def test_a_failure_announced_is_not_announced_again_while_its_note_waits(
    mongo: AsyncMongoClient[dict[str, Any]],
) -> None:
    from lapor.runtime.pii import PiiCipher, new_key
    from services.notify.repository import NotificationRepository

    db = mongo[f"lapor_write_behind_{secrets.token_hex(4)}"]
    await db.notifications.insert_many(
        [{"_id": f"n-{i}", "status": "failed", "failure_announced": False} for i in range(3)]
    )
    deferred = WriteBehind(db)
    repo = NotificationRepository(db, PiiCipher(new_key()), deferred)
    await repo.mark_announced("n-0")
    assert [r["_id"] for r in await repo.unannounced_failures()] == ["n-1", "n-2"]
    assert await db.notifications.count_documents({"failure_announced": True}) == 0
    await deferred.flush()
    assert await db.notifications.count_documents({"failure_announced": True}) == 1
    assert [r["_id"] for r in await repo.unannounced_failures()] == ["n-1", "n-2"]


async def test_a_statement_for_the_same_purpose_takes_the_queued_ones_place(
    servers: Stack,
) -> None:
    client, listener = listened(servers.mongo)
    try:
        db = client[f"lapor_write_behind_{secrets.token_hex(4)}"]
        await db.docs.insert_many([{"_id": i, "step": 0} for i in range(3)])
        deferred = WriteBehind(db)
        done: list[str] = []
        for round_ in ("a", "b", "c"):
            for i in range(3):
                deferred.update(
                    "docs",
                    {"_id": i},
                    {"$set": {"step": round_}},
                    done=lambda name=f"{i}{round_}": done.append(name),  # type: ignore[misc]
                    replaces=("step", i),
                )
        deferred.update("docs", {"_id": 0, "step": "c"}, {"$set": {"after": True}})
        assert deferred.pending() == 4
        listener.clear()
        assert await deferred.flush() == 4
        assert listener.statements == ["update:docs"] * 4
        # In the first one's place: the statement queued after them all saw its work.
        stored = {d["_id"]: (d["step"], d.get("after")) async for d in db.docs.find()}
        assert stored == {0: ("c", True), 1: ("c", None), 2: ("c", None)}
        assert done == ["0a", "0b", "0c", "1a", "1b", "1c", "2a", "2b", "2c"]
    finally:
        await client.close()


async def test_a_statement_sent_in_a_failed_flush_gives_way_to_a_newer_one() -> None:
    client: AsyncMongoClient[dict[str, Any]] = AsyncMongoClient(
        "mongodb://127.0.0.1:9", serverSelectionTimeoutMS=200
    )
    try:
        deferred = WriteBehind(client["lapor_away"])
        done: list[str] = []
        deferred.update("a", {"_id": 1}, {"$set": {"v": 1}}, done=lambda: done.append("old"))
        deferred.update(
            "a", {"_id": 2}, {"$set": {"v": 1}}, replaces=2, done=lambda: done.append("1")
        )
        flushing = asyncio.create_task(deferred.flush())
        await asyncio.sleep(0)
        assert deferred.pending() == 0  # taken by the flush, which waits for the database
        deferred.update(
            "a", {"_id": 2}, {"$set": {"v": 2}}, replaces=2, done=lambda: done.append("2")
        )
        with pytest.raises(ServerSelectionTimeoutError):
            await flushing
        queued = [(q.statement["q"], q.statement["u"], len(q.dones)) for q in deferred._queue["a"]]
        assert queued == [({"_id": 1}, {"$set": {"v": 1}}, 1), ({"_id": 2}, {"$set": {"v": 2}}, 2)]
        # Taken again after a failure, it is replaced as if never sent.
        deferred.update(
            "a", {"_id": 2}, {"$set": {"v": 3}}, replaces=2, done=lambda: done.append("3")
        )
        assert deferred.pending() == 2
        assert deferred._queue["a"][1].statement["u"] == {"$set": {"v": 3}}
        assert done == []
    finally:
        await client.close()


async def test_a_document_written_three_times_is_cleared_by_one_statement(
    servers: Stack,
) -> None:
    """Announced, announced again, then written without an announcement: the clear
    follows the newest version, one statement, and nothing unpublished is cleared."""
    client, listener = listened(servers.mongo)
    try:
        db = client[f"lapor_write_behind_{secrets.token_hex(4)}"]
        publisher = Publisher()
        deferred = WriteBehind(db)
        outbox = Outbox([publisher], deferred)  # type: ignore[list-item]
        now = datetime.now(UTC)
        first = Noted(event_id="e-1", complaint_id="LPR-1")
        doc = outbox.document({"_id": "LPR-1", "version": 1}, [first], now)
        await db.complaints.insert_one(doc)
        assert await outbox.flush(db.complaints, doc) == 1
        second = outbox.fields("LPR-1", [Noted(event_id="e-2", complaint_id="LPR-1")], now)
        for version, fields in ((2, second), (3, {})):
            written = await db.complaints.find_one_and_update(
                {"_id": "LPR-1", "version": version - 1},
                {"$set": fields | {"version": version}},
                return_document=True,
            )
            await outbox.flush(db.complaints, written)
        assert publisher.published == ["e-1", "e-2"]
        listener.clear()
        await deferred.flush()
        assert listener.statements == ["update:complaints"]
        stored = await db.complaints.find_one({"_id": "LPR-1"})
        assert stored is not None and OUTBOX not in stored and FLAG not in stored

        # Written elsewhere after the publish: the clear of the version read matches
        # nothing, and the newer announcement waits for its own writer or the sweeper.
        third = Noted(event_id="e-3", complaint_id="LPR-1")
        written = await db.complaints.find_one_and_update(
            {"_id": "LPR-1"},
            {"$set": outbox.fields("LPR-1", [third], now) | {"version": 4}},
            return_document=True,
        )
        assert await outbox.flush(db.complaints, written) == 1
        fourth = Noted(event_id="e-4", complaint_id="LPR-1")
        await db.complaints.update_one(
            {"_id": "LPR-1"},
            {"$set": outbox.fields("LPR-1", [fourth], now + timedelta(seconds=1)) | {"version": 5}},
        )
        await deferred.flush()
        assert await db.complaints.count_documents({FLAG: "pending"}) == 1
        assert await outbox.sweep([db.complaints], older_than=timedelta(0)) == 2
        assert publisher.published[-2:] == ["e-3", "e-4"]
        await deferred.flush()
        assert await db.complaints.count_documents({FLAG: "pending"}) == 0
    finally:
        await client.close()
