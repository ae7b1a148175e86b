"""One sender per attempt on the real FerretDB: replicas (each its own client and
connections) racing to claim a notification's next attempt, after a retry and
after a dead worker's lease, get one claim between them; a record stored before
attempts were embedded is finished through the old attempt log."""

from __future__ import annotations

import asyncio
from collections import Counter
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
import pytest_asyncio
from prometheus_client import CollectorRegistry
from pymongo import AsyncMongoClient

from lapor.runtime.pii import PiiCipher, new_key
from services.notify.attempts import Claim, InFlight, claim_of
from services.notify.channels import ChannelSet, DeliveryResult, OutgoingMessage
from services.notify.delivery import Deliverer, Notification, NotifyMetrics
from services.notify.repository import Finished, Finishing, NotificationRepository
from services.notify.retry import RetryPolicy
from tests.integration.command_log import listened
from tools.devstack import Stack

pytestmark = [pytest.mark.integration]

DATABASE = "lapor_notify_claims"
REPLICAS = 4
ROUNDS = 15
T0 = datetime(2026, 12, 7, 3, 0, tzinfo=UTC)


class Gateway:
    name = "bus"

    def __init__(self) -> None:
        self.sent: Counter[str] = Counter()
        self.failing: set[str] = set()

    async def send(self, message: OutgoingMessage) -> DeliveryResult:
        await asyncio.sleep(0.01)  # a send takes a while: the others act meanwhile
        self.sent[message.notification_id] += 1
        if message.notification_id in self.failing:
            self.failing.discard(message.notification_id)
            return DeliveryResult.temporary("HTTP 503")
        return DeliveryResult.sent()


class Clock:
    def __init__(self) -> None:
        self.now = T0

    def __call__(self) -> datetime:
        return self.now


@pytest_asyncio.fixture
async def repos(servers: Stack) -> AsyncIterator[list[NotificationRepository]]:
    """One repository per replica, each on a client of its own."""
    clients: list[AsyncMongoClient[dict[str, Any]]] = [
        AsyncMongoClient(servers.mongo, tz_aware=True) for _ in range(REPLICAS)
    ]
    await clients[0].drop_database(DATABASE)
    cipher = PiiCipher(new_key())
    repos = [NotificationRepository(client[DATABASE], cipher) for client in clients]
    await repos[0].ensure_indexes()
    try:
        yield repos
    finally:
        await clients[0].drop_database(DATABASE)
        for client in clients:
            await client.close()


def replica(repo: NotificationRepository, gateway: Gateway, clock: Clock) -> Deliverer:
    return Deliverer(
        repo,
        ChannelSet(sms=gateway, email=gateway, webhook=gateway),  # type: ignore[arg-type]
        None,  # type: ignore[arg-type]
        NotifyMetrics(CollectorRegistry()),
        # Every retry is left to a redelivery of the event.
        RetryPolicy(base_s=1, factor=2, max_delay_s=5, max_attempts=5, inline_max_s=0, jitter=0),
        send_timeout_s=1.0,
        clock=clock,
    )


def sms(nid: str) -> Notification:
    message = OutgoingMessage(nid, "sms", "+6281234500999", "Laporan diterima", template="ack")
    return Notification(message, "citizen", f"received:{nid}")


async def test_replicas_claiming_the_attempt_after_a_retry_get_one_claim(
    repos: list[NotificationRepository],
) -> None:
    gateway, clock = Gateway(), Clock()
    first = replica(repos[0], gateway, clock)
    for r in range(ROUNDS):
        nid = f"ntf-retry-{r}"
        gateway.failing.add(nid)
        assert await first.deliver(sms(nid)) == 1.0  # attempt 1 failed: back in 1 s
        clock.now += timedelta(seconds=2)
        seen = await repos[0].get(nid)
        assert seen is not None
        # Every replica read the same record and claims the next attempt at once.
        claims = await asyncio.gather(
            *(repo.claim_attempt(seen, clock.now, 12.0, "bus") for repo in repos)
        )
        won = [c for c in claims if isinstance(c, Claim)]
        assert [c.n for c in won] == [2], claims
        assert sum(isinstance(c, InFlight) for c in claims) == REPLICAS - 1


async def test_replicas_taking_over_a_dead_workers_attempt_abandon_it_once(
    repos: list[NotificationRepository],
) -> None:
    gateway, clock = Gateway(), Clock()
    dead = replica(repos[0], gateway, clock)
    for r in range(ROUNDS):
        nid = f"ntf-dead-{r}"
        # The worker stored the record with attempt 1 claimed, then died mid-send.
        opened = await repos[0].open(dead._new_record(sms(nid)))
        assert opened.created
        clock.now += timedelta(minutes=5)
        claims = await asyncio.gather(
            *(repo.claim_attempt(opened.record, clock.now, 12.0, "bus") for repo in repos)
        )
        [won] = [c for c in claims if isinstance(c, Claim)]
        stored = await repos[0].get(nid)
        assert stored is not None and won.n == 2
        assert [(a["n"], a["outcome"]) for a in stored["attempt_log"]] == [(1, "abandoned")]
        # The dead worker's late outcome no longer counts: the attempt is someone else's.
        late = Claim(nid, 1, "bus", opened.record["created_at"])
        assert await repos[0].finish_attempt(late, "sent", None, clock.now, {}) is Finished.LOST


async def test_replicas_delivering_one_notification_send_each_attempt_once(
    repos: list[NotificationRepository],
) -> None:
    gateway, clock = Gateway(), Clock()
    replicas = [replica(repo, gateway, clock) for repo in repos]
    for r in range(ROUNDS):
        nid = f"ntf-race-{r}"
        gateway.failing.add(nid)
        # The same event at every replica (redeliveries), twice over.
        for _ in range(2):
            await asyncio.gather(*(d.deliver(sms(nid)) for d in replicas))
            clock.now += timedelta(seconds=2)
        record = await repos[0].get(nid)
        assert record is not None and record["status"] == "sent"
        assert gateway.sent[nid] == 2  # the failed attempt 1 and the sent attempt 2
        outcomes = [a["outcome"] for a in await repos[0].attempts_of(record)]
        assert outcomes == ["temporary", "sent"] and record["attempts"] == 2


async def test_a_record_stored_before_attempts_were_embedded_is_finished_in_the_old_log(
    repos: list[NotificationRepository],
) -> None:
    gateway, clock = Gateway(), Clock()
    deliverer = replica(repos[0], gateway, clock)
    db = repos[0].notifications.database
    legacy = deliverer._new_record(sms("ntf-legacy"))
    for key in ("attempt", "attempt_log"):
        legacy.pop(key)
    await db.notifications.insert_one(legacy)
    # Its attempt 1, claimed the old way by a worker that then died.
    await db.notification_attempts.insert_one(
        {
            "_id": "ntf-legacy#1",
            "notification_id": "ntf-legacy",
            "n": 1,
            "transport": "bus",
            "started_at": T0,
            "finished_at": None,
        }
    )
    assert isinstance(await deliverer.deliver(sms("ntf-legacy")), float)  # still in flight
    clock.now += timedelta(minutes=5)
    assert await deliverer.deliver(sms("ntf-legacy")) is None

    record = await repos[0].get("ntf-legacy")
    assert record is not None and "attempt" not in record
    assert (record["status"], record["attempts"], gateway.sent["ntf-legacy"]) == ("sent", 2, 1)
    attempts = await repos[0].attempts_of(record)
    assert [(a["n"], a["outcome"]) for a in attempts] == [(1, "abandoned"), (2, "sent")]
    assert await db.notification_attempts.count_documents({"notification_id": "ntf-legacy"}) == 2


async def test_the_notices_of_one_event_are_stored_in_one_command_and_sent_once(
    repos: list[NotificationRepository],
) -> None:
    """A redelivery after a crash finds some records stored: only the new ones count
    as its own, each notice goes out once."""
    gateway, clock = Gateway(), Clock()
    deliverer = replica(repos[0], gateway, clock)
    stored_before = await repos[0].open(deliverer._new_record(sms("ntf-b")))
    assert stored_before.created
    opened = await repos[0].open_all(
        [deliverer._new_record(sms(nid)) for nid in ("ntf-a", "ntf-b", "ntf-c")]
    )
    assert [o.created for o in opened] == [True, False, True]
    assert opened[1].record["_id"] == "ntf-b"
    again = await repos[0].open_all([deliverer._new_record(sms(n)) for n in ("ntf-d", "ntf-e")])
    assert [o.created for o in again] == [True, True]
    # Stored by the open_all above, attempt 1 claimed: in flight, look again later.
    assert isinstance(await deliverer.deliver_all([sms("ntf-d"), sms("ntf-e")]), float)
    assert gateway.sent == {}
    assert await deliverer.deliver_all([sms("ntf-f"), sms("ntf-g")]) is None
    assert gateway.sent == {"ntf-f": 1, "ntf-g": 1}


async def test_the_endings_of_one_events_notices_are_written_in_one_command_each_as_its_own(
    servers: Stack, repos: list[NotificationRepository]
) -> None:
    """Both pending: one command moves both. A receipt settled one meanwhile: its
    ending is still recorded (kept), the other's moved; a claim taken over: lost."""
    client, listener = listened(servers.mongo)
    repo = NotificationRepository(client[DATABASE], PiiCipher(new_key()))
    deliverer = replica(repo, Gateway(), Clock())
    names = ("ntf-x1", "ntf-x2", "ntf-y1", "ntf-y2", "ntf-y3")
    opened = await repo.open_all([deliverer._new_record(sms(nid)) for nid in names])
    claims = {o.record["_id"]: claim_of(o.record) for o in opened}
    sent = {"status": "sent", "sent_at": T0}

    def ending(nid: str) -> Finishing:
        claim = claims[nid]
        assert claim is not None
        return Finishing(claim, "sent", None, T0, sent)

    listener.names.clear()
    assert await repo.finish_attempts([ending("ntf-x1"), ending("ntf-x2")]) == [
        Finished.MOVED,
        Finished.MOVED,
    ]
    assert listener.names == ["update"]
    assert await repo.mark_delivered("ntf-y2", T0, T0)  # a receipt came first
    await repo.notifications.update_one({"_id": "ntf-y3"}, {"$set": {"attempt.n": 2}})
    how = await repo.finish_attempts([ending(n) for n in ("ntf-y1", "ntf-y2", "ntf-y3")])
    assert how == [Finished.MOVED, Finished.KEPT, Finished.LOST]
    stored = {d["_id"]: d async for d in repo.notifications.find({"_id": {"$in": names}})}
    assert [stored[n]["status"] for n in names] == ["sent", "sent", "sent", "delivered", "pending"]
    assert [len(stored[n]["attempt_log"]) for n in names] == [1, 1, 1, 1, 0]
    await client.close()
