"""A sender's messages counted on the real database: once each, in one command,
across replicas, and kept no longer than the windows that count them need."""

from __future__ import annotations

import asyncio
import secrets
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from pymongo import AsyncMongoClient

from lapor.runtime.write_behind import WriteBehind
from services.intake.repository import ComplaintRepository
from services.intake.sender_store import KEPT_FOR
from tests.integration.command_log import listened
from tools.devstack import Stack

pytestmark = [pytest.mark.integration]

AT = datetime(2026, 12, 7, 9, 0, tzinfo=UTC)


def _db(mongo: AsyncMongoClient[dict[str, Any]]) -> Any:
    return mongo[f"lapor_senders_{secrets.token_hex(4)}"]


async def test_a_message_is_counted_once_in_one_command_whatever_the_retries(
    servers: Stack,
) -> None:
    client, listener = listened(servers.mongo)
    try:
        repo = ComplaintRepository(_db(client))
        listener.names.clear()
        first = await repo.record_sender_message("sms:gw-1", "h1", AT)
        assert listener.names == ["findAndModify"]
        assert first.first and first.times == (AT,)
        later = AT + timedelta(minutes=5)
        second = await repo.record_sender_message("sms:gw.2", "h1", later)
        assert second.first and sorted(second.times) == [AT, later]
        # The gateway retries the first: not counted again, the count still told.
        retried = await repo.record_sender_message("sms:gw-1", "h1", later)
        assert not retried.first and sorted(retried.times) == [AT, later]
        assert second.since(AT + timedelta(minutes=1)) == 1
        # Another number is counted apart.
        other = await repo.record_sender_message("sms:gw-3", "h2", later)
        assert other.first and other.times == (later,)
    finally:
        await client.close()


async def test_replicas_counting_a_senders_first_messages_at_once_count_each_once(
    mongo: AsyncMongoClient[dict[str, Any]],
) -> None:
    db = _db(mongo)
    # Two replicas (two stores) take the same sender's first messages at the same
    # moment: each upsert may meet the other's new document.
    replicas = [ComplaintRepository(db), ComplaintRepository(db)]
    keys = [f"sms:gw-{n}" for n in range(8)]
    counted = await asyncio.gather(
        *(replicas[n % 2].record_sender_message(key, "h1", AT) for n, key in enumerate(keys)),
        *(replicas[n % 2].record_sender_message(key, "h1", AT) for n, key in enumerate(keys)),
    )
    assert sum(c.first for c in counted) == len(keys)
    stored = await db.sender_activity.find_one({"_id": "h1"})
    assert len(stored["m"]) == len(keys)


async def test_messages_older_than_the_windows_need_are_removed_with_the_deferred_writes(
    mongo: AsyncMongoClient[dict[str, Any]],
) -> None:
    db = _db(mongo)
    deferred = WriteBehind(db)
    repo = ComplaintRepository(db, deferred=deferred)
    old = AT - KEPT_FOR - timedelta(minutes=1)
    await repo.record_sender_message("sms:gw-old", "h1", old)
    recent = await repo.record_sender_message("sms:gw-new", "h1", AT)
    assert recent.times == (AT,)  # the old one no longer counts
    assert len((await db.sender_activity.find_one({"_id": "h1"}))["m"]) == 2
    assert await deferred.flush() == 1
    assert len((await db.sender_activity.find_one({"_id": "h1"}))["m"]) == 1
