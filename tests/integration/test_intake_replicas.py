"""Intake as several replicas, and no change without its announcement (real NATS, FerretDB).

Each replica has its own repository and database connection, as two processes
would; nothing in-process is shared between them. A lifecycle decision is
written only if the complaint is still the one it was made on, so two replicas
never both apply a command to the same old state. An announcement is stored
with the change: a publish that fails after the write is sent by the retry of
the same command, or by the sweeper after a crash.
"""

from __future__ import annotations

import asyncio
import json
import uuid
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from pymongo import AsyncMongoClient

from lapor.contracts import Channel, State, subjects
from lapor.contracts.commands import Action, Actor, ComplaintCommand, Role
from lapor.runtime.broker import EventPublisher
from services.intake import changes, domain, lifecycle
from services.intake.ports import IntakeDeps
from services.intake.repository import ComplaintRepository
from tests.e2e.helpers import stored_messages
from tests.factories import complaint_routed
from tests.integration.intake_harness import running_intake
from tools.devstack import Stack

pytestmark = [pytest.mark.integration]

T0 = datetime(2026, 11, 2, 1, 0, tzinfo=UTC)
OFFICER = Actor(role=Role.AGENCY, id="budi", agency="PUPR")
DB = "lapor_intake_replicas"


async def _assigned(repo: ComplaintRepository) -> str:
    tracking_id = await _received(repo)
    routed = complaint_routed(tracking_id, at=T0 + timedelta(minutes=1), received_at=T0)
    await repo.apply(tracking_id, domain.routed_transition(routed))
    return tracking_id


async def _received(repo: ComplaintRepository) -> str:
    tracking_id = f"LPR-R{uuid.uuid4().hex[:8].upper()}"
    doc = domain.new_complaint(
        tracking_id=tracking_id,
        region="banjar",
        channel=Channel.WEB,
        text="jalan rusak di depan pasar",
        received_at=T0,
        source_key=f"test:{tracking_id}",
        phone_hash=None,
        anonymous=False,
        confidential=False,
        truncated=False,
        stored_at=T0,
    )
    await repo.add_complaint(doc)
    return tracking_id


def _acknowledge(tracking_id: str, by: str) -> ComplaintCommand:
    return ComplaintCommand(
        command_id=f"ack-{by}-{tracking_id}",
        complaint_id=tracking_id,
        action=Action.ACKNOWLEDGE,
        actor=OFFICER,
    )


async def _outcome(deps: IntakeDeps, command: ComplaintCommand) -> str:
    try:
        await changes.execute(command, deps)
    except lifecycle.Refused:
        return "refused"
    return "applied"


async def test_two_replicas_never_both_decide_on_the_same_old_state(
    own_servers: Stack, own_mongo: Any
) -> None:
    second_client: AsyncMongoClient[dict[str, Any]] = AsyncMongoClient(
        own_servers.mongo, tz_aware=True
    )
    async with running_intake(own_servers, own_mongo, DB) as first:
        second = replace(first, repo=ComplaintRepository(second_client[DB], first.repo.outbox))
        complaints = [await _assigned(first.repo) for _ in range(25)]
        # Both replicas acknowledge every complaint at the same moment.
        outcomes = await asyncio.gather(
            *(
                _outcome(deps, _acknowledge(tracking_id, name))
                for tracking_id in complaints
                for name, deps in (("first", first), ("second", second))
            )
        )
        stored = [await first.repo.get(tracking_id) for tracking_id in complaints]
    await second_client.close()

    for tracking_id, pair, doc in zip(
        complaints, zip(outcomes[::2], outcomes[1::2], strict=True), stored, strict=True
    ):
        assert sorted(pair) == ["applied", "refused"], (tracking_id, pair)
        assert doc is not None
        acknowledged = [h for h in doc["history"] if h["state"] == State.IN_PROGRESS.value]
        assert len(acknowledged) == 1, (tracking_id, doc["history"])
        assert doc["version"] == len(doc["history"]), tracking_id


class FailingOnce:
    """The state-changed publisher, failing its first publish as a NATS outage would."""

    def __init__(self, real: EventPublisher) -> None:
        self.real = real
        self.subject, self.schema = real.subject, real.schema
        self.failed = False

    async def publish(self, message: Any, msg_id: str) -> bool:
        if not self.failed:
            self.failed = True
            raise TimeoutError("no PubAck")
        return await self.real.publish(message, msg_id)


async def _announced(own_nc: Any, event_id: str) -> list[dict[str, Any]]:
    """Every copy of one event in the LAPOR_EVENTS stream."""
    stored = await stored_messages(own_nc.jetstream(), subjects.COMPLAINT_STATE_CHANGED)
    return [body for msg in stored if (body := json.loads(msg.data))["event_id"] == event_id]


async def test_a_retried_command_announces_what_a_failed_publish_left_pending(
    own_servers: Stack, own_mongo: Any, own_nc: Any
) -> None:
    async with running_intake(own_servers, own_mongo, DB) as deps:
        outbox = deps.repo.outbox
        assert outbox is not None
        real = outbox._by_subject[subjects.COMPLAINT_STATE_CHANGED]
        flaky = FailingOnce(real)
        outbox._by_subject[subjects.COMPLAINT_STATE_CHANGED] = flaky  # type: ignore[assignment]
        tracking_id = await _assigned(deps.repo)
        command = _acknowledge(tracking_id, "officer")

        with pytest.raises(TimeoutError):
            await changes.execute(command, deps)
        stored = await deps.repo.get(tracking_id)
        assert stored is not None and stored["state"] == State.IN_PROGRESS.value
        assert stored.get("announce") == "pending"

        # The same command again (a redelivery, an HTTP retry): nothing changes twice,
        # and the announcement goes out.
        await changes.execute(command, deps)
        outbox._by_subject[subjects.COMPLAINT_STATE_CHANGED] = real

    event_id = domain.state_event_id(domain.command_event_id(command.command_id))
    copies = await _announced(own_nc, event_id)
    assert len(copies) == 1 and copies[0]["state"] == State.IN_PROGRESS.value
    after = await own_mongo[DB].complaints.find_one({"_id": tracking_id})
    assert "announce" not in after and "outbox" not in after
    assert [h["state"] for h in after["history"]].count(State.IN_PROGRESS.value) == 1


async def test_the_sweeper_announces_what_a_crash_left_pending(
    own_servers: Stack, own_mongo: Any, own_nc: Any
) -> None:
    async with running_intake(own_servers, own_mongo, DB) as deps:
        tracking_id = await _assigned(deps.repo)
        command = _acknowledge(tracking_id, "crashed")
        transition = domain.command_transition(
            command, lifecycle.decide(await deps.repo.get(tracking_id), command, now=T0), T0
        )
        # The change and its announcement stored, then the process died: no flush.
        await deps.repo.change(tracking_id, lambda _doc: domain.state_change(transition))
        assert deps.repo.outbox is not None
        published = await deps.repo.outbox.sweep(
            deps.repo.outbox_collections().values(), older_than=timedelta(0)
        )
        assert published >= 1

    copies = await _announced(own_nc, domain.state_event_id(transition.event_id))
    assert len(copies) == 1
    after = await own_mongo[DB].complaints.find_one({"_id": tracking_id})
    assert "announce" not in after


async def test_a_decision_on_the_remembered_complaint_never_refuses_what_the_stored_one_allows(
    own_servers: Stack, own_mongo: Any
) -> None:
    """Each replica remembers the complaints it wrote last and decides on them without
    a read; another replica's write since makes such a decision re-read. A refusal
    (or nothing to do) is never decided on the remembered one: here the replica still
    remembers the complaint as received, before another replica routed it."""
    async with running_intake(own_servers, own_mongo, DB) as deps:
        tracking_id = await _received(deps.repo)
        as_received = deps.repo.recent.get(tracking_id)
        assert as_received is not None and as_received["state"] == State.RECEIVED.value
        other = ComplaintRepository(own_mongo[DB], deps.repo.outbox)
        routed = complaint_routed(tracking_id, at=T0 + timedelta(minutes=1), received_at=T0)
        await other.apply(tracking_id, domain.routed_transition(routed))
        deps.repo.recent.put(as_received)

        assert await _outcome(deps, _acknowledge(tracking_id, "first")) == "applied"
        stored = await deps.repo.get(tracking_id)
        assert stored is not None and stored["state"] == State.IN_PROGRESS.value


async def test_the_next_transition_of_a_complaint_written_here_needs_no_read(
    own_servers: Stack,
) -> None:
    from pymongo import monitoring

    class Finds(monitoring.CommandListener):
        count = 0

        def started(self, event: monitoring.CommandStartedEvent) -> None:
            self.count += event.command_name == "find"

        def succeeded(self, event: monitoring.CommandSucceededEvent) -> None:
            pass

        def failed(self, event: monitoring.CommandFailedEvent) -> None:
            pass

    finds = Finds()
    client: AsyncMongoClient[dict[str, Any]] = AsyncMongoClient(
        own_servers.mongo, tz_aware=True, event_listeners=[finds]
    )
    try:
        repo = ComplaintRepository(client[DB])
        before = finds.count
        tracking_id = await _assigned(repo)
        assert finds.count == before  # stored, then routed without reading it back
        stored = await repo.get(tracking_id)
        assert stored is not None and stored["state"] == State.ASSIGNED.value
    finally:
        await client.close()


async def test_the_move_a_routing_causes_is_announced_apart_from_the_changes_services_act_on(
    own_servers: Stack, own_mongo: Any, own_nc: Any
) -> None:
    """sla, hotspots and notify hear the routing decision itself; the move to
    `assigned` it causes goes to its own subject, which none of them reads."""
    async with running_intake(own_servers, own_mongo, DB) as deps:
        tracking_id = await _received(deps.repo)
        routed = complaint_routed(tracking_id, at=T0 + timedelta(minutes=1), received_at=T0)
        await changes.record_routing(routed, deps)
        await changes.execute(_acknowledge(tracking_id, "officer"), deps)

    js = own_nc.jetstream()

    async def states(subject: str) -> list[str]:
        stored = await stored_messages(js, subject)
        return [
            body["state"]
            for msg in stored
            if (body := json.loads(msg.data))["complaint_id"] == tracking_id
        ]

    assert await states(subjects.COMPLAINT_STATE_ROUTED) == [State.ASSIGNED.value]
    assert await states(subjects.COMPLAINT_STATE_CHANGED) == [State.IN_PROGRESS.value]
