"""The complaint gauges' counters: kept with each stored change, read as the gauges,
repaired by the reconciliation."""

from __future__ import annotations

import asyncio
import random
from collections.abc import AsyncIterator, Mapping
from datetime import UTC, datetime, timedelta
from typing import Any

from lapor.contracts import Deadlines, DeadlinesSet, Priority, State
from lapor.contracts.commands import Action
from services.intake import changes, usecases
from services.intake.complaint_counts import (
    OPEN_DOC,
    OPEN_STATES,
    CountedFigures,
    MemoryCountStore,
    contribution,
    read_figures,
)
from services.intake.counts import CountBuffer, Reconciled, reconcile, reconcile_if_due
from services.intake.metrics import ComplaintFigures
from services.intake.ports import IntakeDeps
from tests.factories import complaint_routed
from tests.unit.intake.fakes import MemoryComplaints, intake_deps
from tests.unit.intake.test_usecases import AT, OTHER, command, filed, sms

H = timedelta(hours=1)


def _deps() -> tuple[IntakeDeps, MemoryComplaints, CountBuffer, MemoryCountStore]:
    store = MemoryCountStore()
    counts = CountBuffer(store)
    repo = MemoryComplaints(counts)
    return intake_deps(repo), repo, counts, store


def _recount(repo: MemoryComplaints, now: datetime) -> ComplaintFigures:
    figures = ComplaintFigures(now)
    for complaint in repo.complaints.values():
        if complaint["state"] in OPEN_STATES:
            figures.add(complaint)
    return figures


def _same(counted: CountedFigures, recount: ComplaintFigures) -> None:
    assert counted.open == recount.open
    assert counted.open_by_kecamatan == recount.open_by_kecamatan
    assert counted.triage_queue == recount.triage_queue
    assert counted.deadlines_due == recount.deadlines_due
    assert counted.deadlines_overdue == recount.deadlines_overdue
    assert counted.urgent_unacknowledged == recount.urgent_unacknowledged
    assert counted.urgent_oldest_age_s == recount.urgent_oldest_age_s


def _deadlines(cid: str, n: int, first: datetime, answer: datetime) -> DeadlinesSet:
    return DeadlinesSet(
        event_id=f"deadlines:{cid}:{n}",
        occurred_at=AT,
        complaint_id=cid,
        region="banjar",
        agency="PUPR",
        priority=Priority.NORMAL,
        state=State.ASSIGNED,
        received_at=AT,
        deadlines=Deadlines(first_response=first, answer=answer),
        cause_event_id=f"routed:{cid}:0",
    )


async def _pipeline(deps: IntakeDeps, n: int) -> list[str]:
    """`n` complaints through receipt, routing (some urgent, some to triage),
    deadlines, acknowledgement and closing."""
    ids = []
    for i in range(n):
        complaint = await filed(
            deps, f"BANJAR jalan rusak nomor {i} di desa kami", sender=f"+62812345{i:05d}"
        )
        cid = complaint["_id"]
        ids.append(cid)
        if i % 7 == 6:
            continue  # stays received
        at = AT + timedelta(minutes=i)
        if i % 5 == 4:
            await changes.record_routing(complaint_routed(cid, at=at, triage=True), deps)
            continue
        urgent = i % 3 == 0
        priority = Priority.URGENT if urgent else Priority.NORMAL
        agency = "RSUD" if urgent else "PUPR"
        await changes.record_routing(
            complaint_routed(cid, at=at, agency=agency, priority=priority), deps
        )
        # Some deadlines already passed at AT + 2 days, some due within a day.
        await changes.record_deadlines(
            _deadlines(cid, 0, AT + timedelta(hours=10 + 7 * i), AT + timedelta(days=i % 4)), deps
        )
        if i % 4 == 1:
            await changes.run_command(command(cid, Action.ACKNOWLEDGE), deps)
        if i % 8 == 2:
            await changes.run_command(command(cid, Action.ACKNOWLEDGE), deps)
            await changes.run_command(command(cid, Action.ANSWER, text="Sudah diperbaiki"), deps)
    return ids


async def test_counts_follow_every_transition() -> None:
    deps, repo, counts, store = _deps()
    await _pipeline(deps, 24)
    await counts.flush()
    for now in (AT, AT + 2 * H, AT + timedelta(days=2), AT + timedelta(days=3, minutes=7)):
        _same(await read_figures(store, now), _recount(repo, now))
    figures = await read_figures(store, AT + timedelta(days=2))
    assert sum(figures.open.values()) == len(repo.complaints)
    assert {state for state, _, _ in figures.open} == {
        "received",
        "triage",
        "assigned",
        "in_progress",
        "responded",
    }
    assert figures.deadlines_overdue[("answer",)] > 0
    assert figures.urgent_unacknowledged


async def test_a_redelivered_transition_counts_once() -> None:
    deps, repo, counts, store = _deps()
    complaint = await filed(deps)
    routed = complaint_routed(complaint["_id"], at=AT)
    deadlines = _deadlines(complaint["_id"], 0, AT + 5 * H, AT + 30 * H)
    again = sms("BANJAR lampu jalan mati sejak minggu lalu", OTHER, gateway_id="g-again")
    for _ in range(3):
        await changes.record_routing(routed, deps)
        await changes.record_deadlines(deadlines, deps)
        # The same SMS delivered again by the gateway.
        await usecases.receive_sms(again, deps, AT)
    await counts.flush()
    figures = await read_figures(store, AT)
    assert figures.open == {("assigned", "PUPR", "normal"): 1, ("received", "none", "none"): 1}
    assert figures.deadlines_due == {("routing",): 0, ("first_response",): 1, ("answer",): 0}
    _same(figures, _recount(repo, AT))
    # Acknowledged, and then the routing delivered once more: the complaint stays in
    # progress, and so do its counts.
    await changes.run_command(command(complaint["_id"], Action.ACKNOWLEDGE), deps)
    await changes.record_routing(routed, deps)
    await counts.flush()
    figures = await read_figures(store, AT)
    assert figures.open == {("in_progress", "PUPR", "normal"): 1, ("received", "none", "none"): 1}
    _same(figures, _recount(repo, AT))


def _source(repo: MemoryComplaints, during: Any = None) -> Any:
    async def complaints_in(state: str) -> AsyncIterator[Mapping[str, Any]]:
        for complaint in list(repo.complaints.values()):
            if complaint["state"] == state:
                if during is not None:
                    await during(state)
                yield complaint

    return complaints_in


async def test_the_reconciliation_repairs_what_a_crash_lost() -> None:
    deps, repo, counts, store = _deps()
    await _pipeline(deps, 16)
    await counts.flush()
    # A crash between the complaint's write and the flush: these differences are lost.
    await _pipeline(deps, 5)
    counts.pending.clear()
    # And a counter wrong in a direction no crash explains.
    await store.increment({(OPEN_DOC, "o|triage|none|normal"): 4})
    now = AT + timedelta(days=2)
    assert (await read_figures(store, now)).open != _recount(repo, now).open

    outcome = await reconcile(store, _source(repo), settle_s=0)
    assert outcome.drift > 0 and outcome.repaired > 0 and outcome.busy == 0
    _same(await read_figures(store, now), _recount(repo, now))
    again = await reconcile(store, _source(repo), settle_s=0)
    assert (again.drift, again.repaired, again.busy) == (0, 0, 0)


async def test_a_counter_changing_during_the_recount_is_left_for_the_next_round() -> None:
    deps, repo, counts, store = _deps()
    await _pipeline(deps, 10)
    await counts.flush()
    wrong = (OPEN_DOC, "o|assigned|PUPR|normal")
    await store.increment({wrong: 2})
    moved = False

    async def a_transition_meanwhile(state: str) -> None:
        nonlocal moved
        if state == "assigned" and not moved:
            moved = True
            await store.increment({wrong: 1, (OPEN_DOC, "o|responded|PUPR|normal"): -1})

    outcome = await reconcile(store, _source(repo, a_transition_meanwhile), settle_s=0)
    assert outcome.busy >= 1
    assert (await store.read([OPEN_DOC]))[OPEN_DOC][wrong[1]] == (
        _recount(repo, AT).open[("assigned", "PUPR", "normal")] + 3
    )


def test_the_counted_deadlines_match_a_recount_at_any_moment() -> None:
    rng = random.Random(7)
    now = datetime(2026, 12, 7, 23, 40, 12, tzinfo=UTC)
    complaints = []
    for i in range(300):
        state = rng.choice([*OPEN_STATES, "closed"])
        urgent = rng.random() < 0.3
        complaints.append(
            {
                "state": state,
                "agency": rng.choice(["PUPR", "RSUD", None]),
                "priority": "urgent" if urgent else "normal",
                "deadlines": {
                    clock: now + timedelta(seconds=rng.randint(-3 * 86400, 3 * 86400))
                    for clock in ("routing", "first_response", "answer")
                    if rng.random() < 0.8
                },
                "history": [
                    {"at": now - timedelta(seconds=rng.randint(0, 7200)), "state": "assigned"}
                ],
                "place": {"kecamatan": {"code": rng.choice(["63.03.01", "63.03.05"])}}
                if i % 2
                else {},
            }
        )
    store = MemoryCountStore()

    async def check() -> None:
        total: Any = {}
        for complaint in complaints:
            for key, n in contribution(complaint).items():
                total[key] = total.get(key, 0) + n
        await store.increment(total)
        for moment in (now, now + timedelta(minutes=25), now - timedelta(hours=30)):
            recount = ComplaintFigures(moment)
            for complaint in complaints:
                if complaint["state"] in OPEN_STATES:
                    recount.add(complaint)
            _same(await read_figures(store, moment), recount)

    asyncio.run(check())


class _Lease:
    def __init__(self) -> None:
        self.until: datetime | None = None
        self.recorded: list[Reconciled] = []

    async def take(self) -> bool:
        return self.until is None or self.until <= datetime.now(UTC)

    async def renew(self) -> None:
        pass

    async def release(self, until: datetime) -> None:
        self.until = until

    async def record(self, outcome: Reconciled) -> None:
        self.recorded.append(outcome)


async def test_a_long_round_is_followed_by_nine_times_its_length_of_rest() -> None:
    """With many open complaints a round reads for minutes: however short `every`,
    the reconciliation takes at most a tenth of the time."""
    deps, repo, _counts, store = _deps()
    await _pipeline(deps, 4)

    async def slowly(_state: str) -> None:
        await asyncio.sleep(0.05)  # a long read, in small

    lease = _Lease()
    every = timedelta(milliseconds=1)
    before = datetime.now(UTC)
    outcome = await reconcile_if_due(store, _source(repo, slowly), lease, every, settle_s=0)
    assert outcome is not None and outcome.seconds >= 0.05
    # It ended at least `seconds` after `before`; its rest starts at its end.
    assert lease.until is not None
    assert lease.until >= before + timedelta(seconds=outcome.seconds * 9)
    assert await reconcile_if_due(store, _source(repo), lease, every, settle_s=0) is None
