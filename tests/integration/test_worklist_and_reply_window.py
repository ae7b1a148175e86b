"""The agency worklist order and the reopen window, on the real FerretDB (and NATS).

The worklist sorts by stored keys (`next_deadline`, `has_next_deadline`) that
every write keeps in step: FerretDB cannot sort by a computed expression.
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

import pytest

from lapor.contracts import (
    AutoCloseDue,
    Channel,
    Deadlines,
    DeadlinesSet,
    Priority,
    State,
)
from lapor.contracts.commands import Action, Actor, ComplaintCommand, Outcome, Role
from lapor.runtime.write_behind import WriteBehind
from services.intake import changes, domain, handlers, lifecycle
from services.intake.repository import ComplaintRepository
from services.intake.views import public_view
from services.intake.worklist import PENDING, WORKLIST_MARK
from services.intake.worklist_api import OPEN_STATES
from tests.factories import complaint_routed
from tests.integration.command_log import listened
from tests.integration.intake_harness import running_intake
from tools.devstack import Stack

pytestmark = [pytest.mark.integration]

WITA = ZoneInfo("Asia/Makassar")
T0 = datetime(2026, 11, 2, 1, 0, tzinfo=UTC)
OFFICER = Actor(role=Role.AGENCY, id="budi", agency="PUPR")
CITIZEN = Actor(role=Role.CITIZEN, id="web")


async def _new(repo: ComplaintRepository, name: str, minutes: int) -> str:
    tracking_id = f"LPR-{name}-{uuid.uuid4().hex[:6].upper()}"
    doc = domain.new_complaint(
        tracking_id=tracking_id,
        region="banjar",
        channel=Channel.WEB,
        text=f"keluhan {name} jalan rusak",
        received_at=T0 + timedelta(minutes=minutes),
        source_key=f"test:{tracking_id}",
        phone_hash=None,
        anonymous=False,
        confidential=False,
        truncated=False,
        stored_at=T0 + timedelta(minutes=minutes),
    )
    await repo.add_complaint(doc)
    return tracking_id


async def _with_deferred(db: Any, name: str) -> tuple[WriteBehind, ComplaintRepository, str]:
    """A repository whose tidying writes wait for `deferred.flush()`, and one complaint."""
    deferred = WriteBehind(db)
    repo = ComplaintRepository(db, deferred=deferred)
    await repo.ensure_indexes()
    return deferred, repo, await _new(repo, name, 0)


async def _route(
    repo: ComplaintRepository, tracking_id: str, priority: Priority, agency: str = "PUPR"
) -> None:
    event = complaint_routed(tracking_id, at=T0, agency=agency, priority=priority)
    await repo.apply(tracking_id, domain.routed_transition(event))


def _deadlines_set(tracking_id: str, deadlines: Deadlines, event_id: str) -> DeadlinesSet:
    """PUPR's deadlines of the complaint's first routing."""
    return DeadlinesSet(
        event_id=event_id,
        occurred_at=T0,
        complaint_id=tracking_id,
        region="banjar",
        agency="PUPR",
        priority=Priority.NORMAL,
        state=State.ASSIGNED,
        received_at=T0,
        deadlines=deadlines,
        cause_event_id=f"routed:{tracking_id}:0",
    )


async def _deadlines(
    repo: ComplaintRepository, tracking_id: str, first_days: float, answer_days: float
) -> None:
    deadlines = Deadlines(
        routing=T0 + timedelta(days=1),
        first_response=T0 + timedelta(days=first_days),
        answer=T0 + timedelta(days=answer_days),
    )
    event = _deadlines_set(
        tracking_id, deadlines, f"deadlines:{tracking_id}:{uuid.uuid4().hex[:6]}"
    )
    await repo.apply(tracking_id, domain.deadlines_transition(event))


def _decided(change: domain.Change) -> Callable[[Any], domain.Change]:
    return lambda _doc: change


async def _act(repo: ComplaintRepository, tracking_id: str, action: Action, **fields: Any) -> None:
    command = ComplaintCommand(
        command_id=uuid.uuid4().hex,
        complaint_id=tracking_id,
        action=action,
        actor=OFFICER,
        **fields,
    )
    doc = await repo.get(tracking_id)
    assert doc is not None
    decision = lifecycle.decide(doc, command, now=T0)
    await repo.apply(tracking_id, domain.command_transition(command, decision, T0))


async def test_a_routing_is_listed_with_the_deferred_writes_an_officers_change_at_once(
    own_mongo: Any,
) -> None:
    db = own_mongo[f"lapor_worklist_later_{uuid.uuid4().hex[:6]}"]
    deferred, repo, tracking_id = await _with_deferred(db, "LATER")
    routed = complaint_routed(tracking_id, at=T0, agency="PUPR", priority=Priority.NORMAL)
    transition = domain.routed_transition(routed)
    await repo.change(tracking_id, lambda _: domain.Change(transition, listed_later=True))
    # Nothing written for the entry yet: it goes out with the next deferred writes,
    # and the complaint's mark is cleared only after that (a crash leaves it to the sweep).
    assert await db.worklist_entries.count_documents({"_id": tracking_id}) == 0
    await deferred.flush()
    assert await repo.worklist("PUPR", [State.ASSIGNED.value]) != []
    assert (await db.complaints.find_one({"_id": tracking_id}))[WORKLIST_MARK] == PENDING
    await deferred.flush()
    assert (await db.complaints.find_one({"_id": tracking_id}))[WORKLIST_MARK] is None
    # An officer's change is listed before the write returns.
    await _act(repo, tracking_id, Action.ACKNOWLEDGE)
    assert [d["state"] for d in await repo.worklist("PUPR", list(OPEN_STATES))] == ["in_progress"]


async def test_worklist_urgent_first_then_nearest_pending_deadline_none_last(
    own_mongo: Any,
) -> None:
    repo = ComplaintRepository(own_mongo["lapor_worklist_order"])
    await repo.ensure_indexes()
    ids: dict[str, str] = {}
    for minutes, (name, priority) in enumerate(
        [
            ("NORMAL_FIRST5", Priority.NORMAL),
            ("URGENT_ANSWER3", Priority.URGENT),
            ("URGENT_NONE", Priority.URGENT),
            ("NORMAL_ANSWER2", Priority.NORMAL),
            ("NORMAL_RESPONDED", Priority.NORMAL),
            ("HIGH_FIRST1", Priority.HIGH),
            ("NORMAL_LATE_REROUTE", Priority.NORMAL),
            ("NORMAL_NONE", Priority.NORMAL),
        ]
    ):
        ids[name] = await _new(repo, name, minutes)
        await _route(repo, ids[name], priority)
    other = await _new(repo, "DLH_URGENT", 99)
    await _route(repo, other, Priority.URGENT, agency="DLH")
    await _deadlines(repo, other, 0.5, 1)

    # Not acknowledged: the nearer of first response and answer.
    await _deadlines(repo, ids["NORMAL_FIRST5"], 5, 14)
    await _deadlines(repo, ids["HIGH_FIRST1"], 1, 7)
    await _deadlines(repo, ids["NORMAL_LATE_REROUTE"], 20, 4)  # the cap comes first
    # Acknowledged (before or after its deadlines arrived): the answer.
    await _act(repo, ids["URGENT_ANSWER3"], Action.ACKNOWLEDGE)
    await _deadlines(repo, ids["URGENT_ANSWER3"], 1, 3)
    await _deadlines(repo, ids["NORMAL_ANSWER2"], 0.5, 2)
    await _act(repo, ids["NORMAL_ANSWER2"], Action.ACKNOWLEDGE)
    # Answered: nothing pending any more.
    await _deadlines(repo, ids["NORMAL_RESPONDED"], 0.1, 0.2)
    await _act(repo, ids["NORMAL_RESPONDED"], Action.ANSWER, text="Sudah diperbaiki.")

    states = [s.value for s in OPEN_STATES]
    order = [doc["_id"] for doc in await repo.worklist("PUPR", states)]
    assert order == [
        ids[name]
        for name in (
            "URGENT_ANSWER3",
            "URGENT_NONE",
            "HIGH_FIRST1",
            "NORMAL_ANSWER2",
            "NORMAL_LATE_REROUTE",
            "NORMAL_FIRST5",
            "NORMAL_RESPONDED",
            "NORMAL_NONE",
        )
    ]
    first = await repo.get(ids["NORMAL_FIRST5"])
    assert first is not None and first["next_deadline"] == T0 + timedelta(days=5)

    # Acknowledging moves its deadline to the answer, and it down the list.
    await _act(repo, ids["NORMAL_FIRST5"], Action.ACKNOWLEDGE)
    order = [doc["_id"] for doc in await repo.worklist("PUPR", states)]
    assert order.index(ids["NORMAL_FIRST5"]) == 5
    acknowledged = await repo.get(ids["NORMAL_FIRST5"])
    assert acknowledged is not None
    assert acknowledged["next_deadline"] == T0 + timedelta(days=14)
    # The status filter still applies.
    only_assigned = await repo.worklist("PUPR", [State.ASSIGNED.value])
    assert [d["_id"] for d in only_assigned] == [
        ids["URGENT_NONE"],
        ids["HIGH_FIRST1"],
        ids["NORMAL_LATE_REROUTE"],
        ids["NORMAL_NONE"],
    ]


class Clock:
    def __init__(self, now: datetime) -> None:
        self.now = now

    def __call__(self) -> datetime:
        return self.now


def _command(tracking_id: str, action: Action, actor: Actor, **fields: Any) -> ComplaintCommand:
    return ComplaintCommand(
        command_id=uuid.uuid4().hex,
        complaint_id=tracking_id,
        action=action,
        actor=actor,
        **fields,
    )


def _window(doc: dict[str, Any], until: datetime, cause: str | None = None) -> AutoCloseDue:
    cause = cause or doc["reopen_from"]
    return AutoCloseDue(
        event_id=f"reopen-window:{cause}",
        occurred_at=T0,
        complaint_id=doc["_id"],
        region="banjar",
        responded_at=T0,
        kind="reopen_window",
        reopen_until=until,
        cause_event_id=cause,
    )


async def test_sla_s_reopen_window_is_stored_applied_and_follows_the_latest_answer(
    own_servers: Stack, own_mongo: Any
) -> None:
    clock = Clock(T0)
    async with running_intake(own_servers, own_mongo, "lapor_reply_window", clock=clock) as deps:
        tracking_id = await _new(deps.repo, "WINDOW", 0)
        await _route(deps.repo, tracking_id, Priority.NORMAL)
        answered = await changes.execute(
            _command(tracking_id, Action.ANSWER, OFFICER, text="Sudah ditambal."), deps
        )
        assert answered["reopen_until"] is None and answered["reopen_from"]
        first_cause = answered["reopen_from"]
        until = datetime(2026, 11, 16, 15, 59, 59, tzinfo=UTC)
        await handlers.handle_auto_close(_window(answered, until), deps)
        await handlers.handle_auto_close(_window(answered, until), deps)  # redelivered
        stored = await deps.repo.get(tracking_id)
        assert stored is not None and stored["reopen_until"] == until
        assert [h["reason"] for h in stored["history"]].count("reopen window set") == 1
        view = public_view(stored, WITA)
        assert view.reopen_until == until.astimezone(WITA)
        assert view.reopen_until is not None and view.reopen_until.isoformat().endswith("+08:00")

        # After the window: refused, nothing changes.
        clock.now = until + timedelta(seconds=1)
        reopen = _command(tracking_id, Action.REOPEN, CITIZEN, text="masih rusak")
        with pytest.raises(lifecycle.Refused, match="reply window for reopening has passed"):
            await changes.execute(reopen, deps)
        assert (await deps.repo.get(tracking_id) or {})["state"] == State.RESPONDED.value

        # Within it: reopened; a new answer opens a new window, and the first one,
        # delivered late, no longer applies.
        clock.now = until - timedelta(days=1)
        reopened = await changes.execute(reopen, deps)
        assert reopened["state"] == State.IN_PROGRESS.value and reopened["reopen_until"] is None
        clock.now = until + timedelta(days=3)
        again = await changes.execute(
            _command(tracking_id, Action.ANSWER, OFFICER, text="Sudah diaspal ulang."), deps
        )
        assert again["reopen_from"] != first_cause
        await handlers.handle_auto_close(
            _window(answered, until, cause=first_cause).model_copy(
                update={"event_id": "reopen-window:late"}
            ),
            deps,
        )
        late = await deps.repo.get(tracking_id)
        assert late is not None and late["reopen_until"] is None
        # BUKA is allowed until SLA has counted the new window.
        second_until = until + timedelta(days=17)
        await handlers.handle_auto_close(_window(again, second_until), deps)
        assert (await deps.repo.get(tracking_id) or {})["reopen_until"] == second_until

        # The citizen rated the new answer: its auto-close says so, not no_reply.
        await changes.execute(_command(tracking_id, Action.RATE, CITIZEN, score=4), deps)
        clock.now = second_until
        auto_close = AutoCloseDue(
            event_id=f"{tracking_id}:answer:auto_close:2",
            occurred_at=clock.now,
            complaint_id=tracking_id,
            region="banjar",
            responded_at=clock.now - timedelta(days=14),
        )
        await handlers.handle_auto_close(auto_close, deps)
        closed = await deps.repo.get(tracking_id)
        assert closed is not None and closed["state"] == State.CLOSED.value
        assert closed["outcome"] == Outcome.RESOLVED.value
        assert closed["closed_at"] is not None and closed["reopen_until"] is None
        assert closed["reopen_from"] == f"state:command:{auto_close.event_id}"


async def test_out_of_scope_and_merged_complaints_are_closed_with_a_window(
    own_servers: Stack, own_mongo: Any
) -> None:
    async with running_intake(
        own_servers,
        own_mongo,
        "lapor_closed_windows",
        agencies={"banjar": frozenset({"PUPR", "OUT_OF_SCOPE"})},
    ) as deps:
        keep = await _new(deps.repo, "KEEP", 0)
        merged = await _new(deps.repo, "MERGED", 1)
        doc = await changes.execute(
            _command(merged, Action.MERGE, Actor(role=Role.ADMIN, id="a"), duplicate_of=keep),
            deps,
        )
        assert doc["closed_at"] is not None and doc["reopen_from"].startswith("state:command:")
        outside = await _new(deps.repo, "OUTSIDE", 2)
        await handlers.handle_routed(
            complaint_routed(
                outside, at=T0, agency="OUT_OF_SCOPE", category="pidana", confidence=0.95
            ),
            deps,
        )
        closed = await deps.repo.get(outside)
        assert closed is not None and closed["state"] == State.CLOSED.value
        assert closed["closed_at"] == T0 and closed["reopen_from"] == f"state:routed:{outside}:0"
        await handlers.handle_auto_close(_window(closed, T0 + timedelta(days=14)), deps)
        assert (await deps.repo.get(outside) or {})["reopen_until"] == T0 + timedelta(days=14)


async def test_the_routing_and_the_deadlines_heard_at_once_read_nothing(
    servers: Stack,
) -> None:
    """Both are decided on the complaint as this process wrote it, one after the other:
    no read and no lost race for the version."""
    client, listener = listened(servers.mongo)
    try:
        repo = ComplaintRepository(client[f"lapor_worklist_both_{uuid.uuid4().hex[:6]}"])
        await repo.ensure_indexes()
        tracking_id = await _new(repo, "BOTH", 0)
        routed = complaint_routed(tracking_id, at=T0, agency="PUPR", priority=Priority.NORMAL)
        first = Deadlines(first_response=T0 + timedelta(days=7))
        deadlines = _deadlines_set(tracking_id, first, f"deadlines:{routed.event_id}")
        listener.names.clear()
        routing = domain.Change(domain.routed_transition(routed))
        deadline = domain.Change(domain.deadlines_transition(deadlines))
        await asyncio.gather(
            repo.change(tracking_id, lambda _: routing),
            repo.change(tracking_id, lambda _: deadline),
        )
        assert [n for n in listener.names if n in ("find", "findAndModify")] == [
            "findAndModify",
            "findAndModify",
        ]
        stored = await repo.get(tracking_id)
        assert stored is not None and stored["state"] == "assigned" and stored["version"] == 3
    finally:
        await client.close()


async def test_the_routing_and_the_deadlines_are_listed_by_one_entry_write_and_one_clear(
    servers: Stack,
) -> None:
    client, listener = listened(servers.mongo)
    try:
        db = client[f"lapor_worklist_once_{uuid.uuid4().hex[:6]}"]
        deferred, repo, tracking_id = await _with_deferred(db, "ONCE")
        routed = complaint_routed(tracking_id, at=T0, agency="PUPR", priority=Priority.NORMAL)
        first = Deadlines(first_response=T0 + timedelta(days=7))
        deadlines = _deadlines_set(tracking_id, first, f"deadlines:{routed.event_id}")
        for change in (
            domain.Change(domain.routed_transition(routed), listed_later=True),
            domain.Change(domain.deadlines_transition(deadlines), listed_later=True),
        ):
            await repo.change(tracking_id, _decided(change))
        listener.clear()
        await deferred.flush()
        await deferred.flush()
        assert listener.statements == ["update:worklist_entries", "update:complaints"]
        entry = await db.worklist_entries.find_one({"_id": tracking_id})
        assert entry is not None and entry["version"] == 3 and entry["next_deadline"] is not None
        stored = await db.complaints.find_one({"_id": tracking_id})
        assert stored is not None and stored[WORKLIST_MARK] is None
    finally:
        await client.close()


async def test_an_older_entrys_clear_never_takes_the_place_of_a_newer_ones(
    own_mongo: Any,
) -> None:
    """The routing's entry, deferred, is written while an officer's change is listed
    at once: its mark's clear, queued after the officer's, must not replace it."""
    db = own_mongo[f"lapor_worklist_race_{uuid.uuid4().hex[:6]}"]
    deferred, repo, tracking_id = await _with_deferred(db, "RACE")
    await _route(repo, tracking_id, Priority.NORMAL)
    routed = await repo.get(tracking_id)
    await _act(repo, tracking_id, Action.ACKNOWLEDGE)
    acknowledged = await repo.get(tracking_id)
    assert routed is not None and acknowledged is not None
    # The order in which the two entries' writes end when they overlap.
    repo._unmark_later(deferred, acknowledged)
    repo._unmark_later(deferred, routed)
    await deferred.flush()
    stored = await db.complaints.find_one({"_id": tracking_id})
    assert stored is not None and stored["version"] == 3 and stored[WORKLIST_MARK] is None
