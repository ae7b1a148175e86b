"""Expired sessions and old failed logins are deleted by intake itself, on the real FerretDB.

FerretDB v1 has no TTL index: without this purge both collections would only grow.
The purge reads a bounded batch over an index (an equality, then a date range,
which is what our FerretDB build answers from the index) and deletes those.
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from pymongo import AsyncMongoClient

from lapor.account_store import MongoAccounts
from lapor.contracts.commands import Role
from services.intake.auth import new_token, session_record, token_record
from services.intake.sessions import purge_expired
from tests.e2e.helpers import eventually
from tests.integration.intake_harness import serving_intake
from tools.devstack import Stack

pytestmark = [pytest.mark.integration]

NOW = datetime(2026, 12, 7, 2, 0, tzinfo=UTC)
ACCOUNT = {"_id": "budi", "name": "Budi", "role": "agency", "agency": "PUPR", "region": "banjar"}


def _session(expired_for: timedelta, **fields: Any) -> dict[str, Any]:
    """A session of 12 hours that expired `expired_for` before NOW (negative: still runs)."""
    started = NOW - expired_for - timedelta(hours=12)
    return session_record(new_token(), ACCOUNT, hours=12, now=started) | fields


async def _fresh(own_mongo: Any, name: str) -> tuple[Any, MongoAccounts]:
    await own_mongo.drop_database(name)
    database = own_mongo[name]
    store = MongoAccounts(database)
    await store.ensure_indexes()
    return database, store


async def test_expired_sessions_and_old_failures_go_in_bounded_batches(own_mongo: Any) -> None:
    database, store = await _fresh(own_mongo, "lapor_login_purge")
    expired = [_session(timedelta(hours=h)) for h in range(1, 8)]
    revoked_expired = _session(timedelta(minutes=5), revoked_at=NOW - timedelta(hours=3))
    alive = _session(-timedelta(hours=2))
    revoked_alive = _session(-timedelta(hours=1), revoked_at=NOW - timedelta(minutes=1))
    # A machine's token stays after its expiry: admins see it listed as expired.
    machine = token_record(new_token(), Role.AGENCY, "pupr-bot", "PUPR", days=1, now=NOW)
    machine["expires_at"] = NOW - timedelta(days=3)
    for record in (*expired, revoked_expired, alive, revoked_alive, machine):
        await store.add_session(record)
    for days in (31, 40, 45, 60, 90):
        await store.add_failure({"username": "budi", "at": NOW - timedelta(days=days)})
    for age in (timedelta(days=29), timedelta(minutes=3)):
        await store.add_failure({"username": "budi", "at": NOW - age, "client": "c1"})

    first = await purge_expired(store, NOW, timedelta(days=30), batch=2, batches=2)
    assert (first.sessions, first.failures) == (4, 4)
    second = await purge_expired(store, NOW, timedelta(days=30), batch=2, batches=2)
    assert (second.sessions, second.failures) == (4, 1)
    third = await purge_expired(store, NOW, timedelta(days=30), batch=2, batches=2)
    assert (third.sessions, third.failures) == (0, 0)

    left = {doc["id"] async for doc in database.api_tokens.find({})}
    assert left == {alive["id"], revoked_alive["id"], machine["id"]}
    assert await database.login_failures.count_documents({}) == 2
    recent = {"at": {"$gte": NOW - timedelta(days=30)}}
    assert await database.login_failures.count_documents(recent) == 2


async def test_the_throttling_window_is_never_purged(own_mongo: Any) -> None:
    _, store = await _fresh(own_mongo, "lapor_login_purge_window")
    await store.add_failure({"username": "budi", "at": NOW - timedelta(minutes=10)})
    purged = await purge_expired(store, NOW, timedelta(seconds=1))
    assert purged.failures == 0
    assert await store.recent_failures("username", "budi", NOW - timedelta(minutes=15))


async def test_the_purge_reads_through_the_indexes(own_mongo: Any) -> None:
    database, _ = await _fresh(own_mongo, "lapor_login_purge_plan")
    indexes = {
        "api_tokens": await database.api_tokens.index_information(),
        "login_failures": await database.login_failures.index_information(),
    }
    keys = {name: [list(i["key"]) for i in found.values()] for name, found in indexes.items()}
    assert [("kind", 1), ("expires_at", 1)] in keys["api_tokens"]
    assert [("kind", 1), ("at", 1)] in keys["login_failures"]
    plan = await database.command(
        "explain",
        {
            "find": "login_failures",
            "filter": {"kind": "login", "at": {"$lt": NOW}},
            "sort": {"at": 1},
            "limit": 2,
        },
    )
    assert plan.get("filterPushdown") is True, plan


async def test_a_running_intake_purges_by_itself(own_servers: Stack, own_mongo: Any) -> None:
    name = "lapor_login_purge_running"
    database, store = await _fresh(own_mongo, name)
    async with serving_intake(own_servers, name, login_purge_s=0.2):
        stale = _session(timedelta(minutes=1))
        await store.add_session(stale)
        await store.add_failure({"username": "budi", "at": datetime.now(UTC) - timedelta(days=31)})

        async def purged() -> bool:
            sessions = await database.api_tokens.count_documents({"id": stale["id"]})
            failures = await database.login_failures.count_documents({})
            return sessions == 0 and failures == 0

        assert await eventually(purged, timeout=20)


@pytest.fixture(scope="module")
def guarded(workdir: Path) -> Iterator[Stack]:
    """Our FerretDB with the access table of lapor/runtime/db_access.py, as `make run`."""
    stack = Stack.for_tests(workdir / "login_purge_guarded", db_auth=True)
    try:
        stack.start_servers()
        yield stack
    finally:
        stack.stop()


async def test_intakes_own_login_may_purge(guarded: Stack) -> None:
    client: AsyncMongoClient[dict[str, Any]] = AsyncMongoClient(
        guarded.mongo_url_for("intake"), tz_aware=True
    )
    try:
        store = MongoAccounts(client[guarded.mongo_db])
        await store.ensure_indexes()
        await store.add_session(_session(timedelta(hours=1)))
        await store.add_failure({"username": "budi", "at": NOW - timedelta(days=40)})
        purged = await purge_expired(store, NOW, timedelta(days=30))
        assert (purged.sessions, purged.failures) == (1, 1)
    finally:
        await client.close()
