"""Least privilege inside the database: each process reaches its own collections only.

The stack `make run` starts: our FerretDB with authentication and the access
table of lapor/runtime/db_access.py, every child with its own login. A
compromised router, using exactly the login its process gets, can read neither
notify's contacts (where citizens' reply addresses are) nor the API token
hashes, nor forge a complaint; notify's login reads its contacts (and looks
token hashes up, changing none); a wrong
password and no password are refused. And the services, each under its own
grants, still take an SMS all the way to a reply.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import nats
import pytest
import pytest_asyncio
from pymongo import AsyncMongoClient
from pymongo.errors import OperationFailure

from lapor.contracts import subjects
from tests.e2e.helpers import eventually, sms_payload
from tools.devstack import SERVICES, Stack

pytestmark = [pytest.mark.integration]

UNAUTHORIZED = 13
AUTHENTICATION_FAILED = 18


@pytest.fixture(scope="module")
def guarded(workdir: Path) -> Iterator[Stack]:
    stack = Stack.for_tests(workdir / "db_least_privilege", db_auth=True)
    try:
        stack.start_servers()
        stack.start_services(SERVICES)
        yield stack
    finally:
        stack.stop()


@pytest_asyncio.fixture(loop_scope="session")
async def operator(guarded: Stack) -> AsyncIterator[Any]:
    client: AsyncMongoClient[dict[str, Any]] = AsyncMongoClient(guarded.mongo, tz_aware=True)
    yield client[guarded.mongo_db]
    await client.close()


def _login(stack: Stack, child: str) -> str:
    """The database URL the child process really gets."""
    env = stack.service_env(child) if child in SERVICES else stack._child_env(child)
    return env["MONGO_URL"]


async def _refused(action: Any) -> int:
    with pytest.raises(OperationFailure) as refused:
        await action
    return refused.value.code or 0


@pytest.mark.security
@pytest.mark.asyncio(loop_scope="session")
async def test_a_compromised_router_reads_no_contacts_and_no_tokens(
    guarded: Stack, operator: Any
) -> None:
    await operator.notify_contacts.update_one(
        {"_id": "LPR-PRIVILEGE"}, {"$set": {"reply_to": "sealed-address"}}, upsert=True
    )
    await operator.api_tokens.update_one(
        {"_id": "tok-privilege"}, {"$set": {"hash": "token-hash"}}, upsert=True
    )
    router: AsyncMongoClient[dict[str, Any]] = AsyncMongoClient(_login(guarded, "router"))
    notify: AsyncMongoClient[dict[str, Any]] = AsyncMongoClient(_login(guarded, "notify"))
    try:
        db = router[guarded.mongo_db]
        assert await _refused(db.notify_contacts.find_one({})) == UNAUTHORIZED
        assert await _refused(db.api_tokens.find_one({})) == UNAUTHORIZED
        assert await _refused(db.complaints.insert_one({"_id": "forged"})) == UNAUTHORIZED
        assert await _refused(db.notify_contacts.count_documents({})) == UNAUTHORIZED
        assert await _refused(router.admin["system.users"].find_one({})) == UNAUTHORIZED
        # What the router does need still works: it keeps a message that broke its contract.
        await db.dead_letters.insert_one({"_id": "privilege-probe", "service": "router"})

        contact = await notify[guarded.mongo_db].notify_contacts.find_one({"_id": "LPR-PRIVILEGE"})
        assert contact is not None and contact["reply_to"] == "sealed-address"
        # Notify looks token hashes up (officers read its delivery log), changes none,
        # and reads no complaint.
        assert await notify[guarded.mongo_db].api_tokens.find_one({"_id": "tok-privilege"})
        tokens = notify[guarded.mongo_db].api_tokens
        assert await _refused(tokens.update_one({}, {"$set": {"role": "admin"}})) == UNAUTHORIZED
        assert await _refused(notify[guarded.mongo_db].complaints.find_one({})) == UNAUTHORIZED
    finally:
        await router.close()
        await notify.close()


@pytest.mark.security
@pytest.mark.asyncio(loop_scope="session")
async def test_a_wrong_password_or_none_is_refused(guarded: Stack) -> None:
    right = guarded.db_password("notify")
    wrong: AsyncMongoClient[dict[str, Any]] = AsyncMongoClient(
        _login(guarded, "notify").replace(right, "not-" + right), serverSelectionTimeoutMS=5000
    )
    anonymous: AsyncMongoClient[dict[str, Any]] = AsyncMongoClient(
        f"mongodb://127.0.0.1:{guarded.mongo_port}", serverSelectionTimeoutMS=5000
    )
    try:
        failed = await _refused(wrong[guarded.mongo_db].notify_contacts.find_one({}))
        assert failed == AUTHENTICATION_FAILED
        failed = await _refused(anonymous[guarded.mongo_db].notify_contacts.find_one({}))
        assert failed == UNAUTHORIZED
    finally:
        await wrong.close()
        await anonymous.close()


@pytest.mark.asyncio(loop_scope="session")
async def test_each_service_does_its_work_under_its_own_grants(
    guarded: Stack, operator: Any
) -> None:
    gateway = await nats.connect(guarded.nats_url_for("gateway"), name="lapor-tests")
    try:
        payload = sms_payload("+6281234500777", "BANJAR jalan rusak berlubang di depan pasar")
        await gateway.publish(subjects.INBOUND_SMS, json.dumps(payload).encode())
        await gateway.flush()
    finally:
        await gateway.close()
    source_key = f"sms:{payload['gateway_id']}"

    async def answered() -> dict[str, Any] | None:
        doc = await operator.complaints.find_one({"source_key": source_key})
        if not doc or doc["state"] != "assigned" or not doc["deadlines"].get("answer"):
            return None
        # notify stored the reply address and sent the acknowledgement.
        sent = await operator.notifications.find_one({"complaint_id": doc["_id"]})
        contact = await operator.notify_contacts.find_one({"_id": doc["_id"]})
        return doc if sent and contact else None

    await eventually(answered, timeout=60)
    assert await operator.sla_clocks.find_one({}) is not None

    async def counted() -> bool:
        # intake's own login keeps the complaint gauges' counters.
        counts = await operator.complaint_counts.find_one({"_id": "open"})
        return bool(counts and counts["c"].get("o|assigned|PUPR|normal"))

    await eventually(counted, timeout=30)
    for child in [*SERVICES, "dlq"]:
        assert guarded.children[child].alive(), child
        log = (guarded.workdir / "logs" / f"{child}.log").read_text()
        assert "not authorized" not in log, child


@pytest.mark.asyncio(loop_scope="session")
async def test_each_service_s_login_may_ping_its_database_for_the_client_watch(
    guarded: Stack,
) -> None:
    """The watch that gives up a stuck client (lapor/runtime/db_watch.py) compares the
    service's client with a new one under the same login: that one must get through,
    or the watch could never tell a stuck client from an outage."""
    from lapor.runtime.db_watch import fresh_ping

    for service in SERVICES:
        assert await fresh_ping(_login(guarded, service), guarded.mongo_db)(), service
    right = guarded.db_password("notify")
    wrong = _login(guarded, "notify").replace(right, "not-" + right)
    assert not await fresh_ping(wrong, guarded.mongo_db, timeout_s=2)()
