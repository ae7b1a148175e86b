"""Intake's complaint counters: kept with each transition, reconciled with a recount.

The repository records each stored change (`CountBuffer.record`: a new
complaint, or a transition that actually applied, so a redelivery counts
nothing); the differences are added to the counter documents with `$inc`
every few seconds in one command (`flush`, `INTAKE_COUNTS_FLUSH_S`), so the
counters cost one database command every few seconds, not a few per complaint;
the gauges, read every `INTAKE_METRICS_INTERVAL_S`, lag by no more than both.

No transaction spans a complaint and its counters: a crash between the
complaint's write and the flush loses that difference. The reconciliation
(`reconcile`) recounts the open complaints through intake's `(state, agency)`
index, one state at a time, and repairs every counter that is wrong and did
not change while it was recounted (a counter that changed may have seen a
transition the recount missed or counted twice; the next round takes it). It
runs on one replica at a time (a lease in the counters' collection), spaced
by `every`, and records the drift it found for the gauges.
"""

from __future__ import annotations

import asyncio
import logging
import secrets
import time
from collections import Counter
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any, Protocol

from pymongo.asynchronous.database import AsyncDatabase
from pymongo.errors import DuplicateKeyError

from lapor.runtime import periodic
from services.intake.complaint_counts import (
    COUNTS,
    OPEN_DOC,
    OPEN_STATES,
    RECONCILED_DOC,
    CountStore,
    Key,
    contribution,
    difference,
)
from services.intake.metrics import complaints_in_state

log = logging.getLogger(__name__)

Document = dict[str, Any]
_LEASE = "reconcile-lease"
# A round's time, nine times over, passes before the next one: a tenth of the time.
REST_PER_ROUND = 9


class CountBuffer:
    """The differences of stored changes not yet added to the counters."""

    def __init__(self, store: CountStore) -> None:
        self.store = store
        self.pending: Counter[Key] = Counter()
        self._flushing = asyncio.Lock()

    def record(self, before: Mapping[str, Any] | None, after: Mapping[str, Any] | None) -> None:
        """A stored change from `before` (None: new) to `after`; call once per write."""
        self.pending.update(difference(before, after))

    async def flush(self) -> int:
        """Add what is pending to the counters; how many counters changed."""
        async with self._flushing:
            taken = Counter({k: n for k, n in self.pending.items() if n})
            self.pending.clear()
            if not taken:
                return 0
            try:
                await self.store.increment(taken)
            except Exception:
                # Most likely not applied (database unreachable): kept for the next
                # flush. Had it been applied after all, the reconciliation repairs it.
                self.pending.update(taken)
                raise
            return len(taken)

    def start(self, every_s: float = 1.0) -> periodic.Stop:
        """Flush every `every_s` in one task; returns the stop coroutine (a last flush)."""
        return periodic.start_flushing(
            "lapor-complaint-counts", every_s, self.flush, "complaint counters not flushed"
        )


# --------------------------------------------------------------------------
# Reconciliation
# --------------------------------------------------------------------------

ComplaintsInState = Callable[[str], AsyncIterator[Mapping[str, Any]]]


class ReconcileLease(Protocol):
    async def take(self) -> bool:
        """True if this replica may reconcile now."""

    async def renew(self) -> None: ...

    async def release(self, until: datetime) -> None:
        """No replica reconciles again before `until`."""

    async def record(self, outcome: Reconciled) -> None: ...


@dataclass(frozen=True)
class Reconciled:
    at: datetime
    drift: int  # the sum of the repaired differences, in complaints
    repaired: int  # counters repaired
    busy: int  # counters found wrong but changing meanwhile: left to the next round
    seconds: float


async def reconcile(
    store: CountStore,
    complaints_in: ComplaintsInState,
    *,
    settle_s: float = 3.0,
    between: Callable[[], Awaitable[None]] | None = None,
) -> Reconciled:
    """Recount the open complaints and repair the counters that were wrong and stayed
    still meanwhile. `settle_s`: how long a change stored just now may take to reach
    the counters (a replica's flush interval, with margin)."""
    started, at = time.monotonic(), datetime.now(UTC)
    everything_before = await store.read_all()
    expected: Counter[Key] = Counter()
    repairs: Counter[Key] = Counter()
    busy = 0
    for state in OPEN_STATES:
        busy += await _reconcile_state(store, complaints_in, state, settle_s, expected, repairs)
        if between is not None:
            await between()
    # The rest (kecamatan, deadlines) sums over every state: checked over the whole pass.
    await asyncio.sleep(settle_s)
    everything_after = await store.read_all()
    busy += _reconcile_the_rest(everything_before, everything_after, expected, repairs)
    if repairs:
        await store.increment(repairs)
        log.warning(
            "complaint counters repaired: %d counters, drift %d",
            len(repairs),
            sum(abs(n) for n in repairs.values()),
        )
    return Reconciled(
        at=at,
        drift=sum(abs(n) for n in repairs.values()),
        repaired=len(repairs),
        busy=busy,
        seconds=round(time.monotonic() - started, 2),
    )


def _judge(repairs: Counter[Key], key: Key, want: int, before: int, now: int) -> int:
    """Note the repair of a counter that is wrong and stayed still; 1 for one that is
    wrong but changed meanwhile (left to the next round), else 0."""
    if want == now:
        return 0
    if before == now:
        repairs[key] = want - now
        return 0
    return 1


async def _reconcile_state(
    store: CountStore,
    complaints_in: ComplaintsInState,
    state: str,
    settle_s: float,
    expected: Counter[Key],
    repairs: Counter[Key],
) -> int:
    """Recount one state's open complaints into `expected` and judge its open counts,
    over the short time that recount takes; how many were busy."""
    before = (await store.read([OPEN_DOC])).get(OPEN_DOC, {})
    recount: Counter[Key] = Counter()
    async for complaint in complaints_in(state):
        recount.update(contribution(complaint))
    expected.update(recount)
    await asyncio.sleep(settle_s)
    after = (await store.read([OPEN_DOC])).get(OPEN_DOC, {})
    prefix = f"o|{state}|"
    names = {n for n in (*before, *after) if n.startswith(prefix)}
    names |= {name for (doc, name) in recount if doc == OPEN_DOC and name.startswith(prefix)}
    busy = 0
    for name in names:
        want, now = recount.get((OPEN_DOC, name), 0), after.get(name, 0)
        busy += _judge(repairs, (OPEN_DOC, name), want, before.get(name, 0), now)
    return busy


def _reconcile_the_rest(
    everything_before: Mapping[str, Mapping[str, int]],
    everything_after: Mapping[str, Mapping[str, int]],
    expected: Counter[Key],
    repairs: Counter[Key],
) -> int:
    """Judge every counter but the open counts (checked state by state); how many
    were busy."""
    keys = {(doc, name) for doc, fields in everything_after.items() for name in fields}
    keys |= {(doc, name) for doc, fields in everything_before.items() for name in fields}
    keys |= set(expected)
    busy = 0
    for doc, name in keys:
        if doc == OPEN_DOC and name.startswith("o|"):
            continue
        want = expected.get((doc, name), 0)
        now = everything_after.get(doc, {}).get(name, 0)
        before = everything_before.get(doc, {}).get(name, 0)
        busy += _judge(repairs, (doc, name), want, before, now)
    return busy


class MongoReconcileLease:
    """The lease in the counters' collection: taken by a findAndModify that matches
    only an expired lease, with upsert (a held one makes the insert a duplicate key,
    as `services/hotspots` does); its expiry also spaces the rounds across replicas."""

    def __init__(self, db: AsyncDatabase[Document], ttl: timedelta = timedelta(minutes=5)) -> None:
        self.collection = db[COUNTS]
        self.ttl = ttl
        self.owner = secrets.token_hex(8)

    async def take(self) -> bool:
        now = datetime.now(UTC)
        held = await self.collection.find_one({"_id": _LEASE, "until": {"$gte": now}}, {"_id": 1})
        if held is not None:  # as a rule: no need for a refused upsert
            return False
        try:
            await self.collection.find_one_and_update(
                {"_id": _LEASE, "until": {"$lt": now}},
                {"$set": {"owner": self.owner, "until": now + self.ttl}},
                upsert=True,
            )
        except DuplicateKeyError:
            return False
        return True

    async def renew(self) -> None:
        await self.collection.update_one(
            {"_id": _LEASE, "owner": self.owner},
            {"$set": {"until": datetime.now(UTC) + self.ttl}},
        )

    async def release(self, until: datetime) -> None:
        await self.collection.update_one(
            {"_id": _LEASE, "owner": self.owner}, {"$set": {"until": until}}
        )

    async def record(self, outcome: Reconciled) -> None:
        await self.collection.update_one(
            {"_id": RECONCILED_DOC},
            {
                "$set": {
                    "at": outcome.at,
                    "drift": outcome.drift,
                    "repaired": outcome.repaired,
                    "busy": outcome.busy,
                    "seconds": outcome.seconds,
                }
            },
            upsert=True,
        )


async def reconcile_if_due(
    store: CountStore,
    complaints_in: ComplaintsInState,
    lease: ReconcileLease,
    every: timedelta,
    settle_s: float = 3.0,
) -> Reconciled | None:
    """One round if no replica has reconciled within `every`; None otherwise.

    The next round waits at least `REST_PER_ROUND` times as long as this one took,
    from its end: a round reads every open complaint (minutes with a million
    stored) and weighs on the live traffic while it runs, so it takes at most a
    tenth of the time, however many complaints are open."""
    if not await lease.take():
        return None
    try:
        outcome = await reconcile(store, complaints_in, settle_s=settle_s, between=lease.renew)
    except BaseException:
        await lease.release(datetime.now(UTC))
        raise
    await lease.record(outcome)
    rested = datetime.now(UTC) + timedelta(seconds=outcome.seconds * REST_PER_ROUND)
    await lease.release(max(outcome.at + every, rested))
    return outcome


def start_reconciler(
    db: AsyncDatabase[Document],
    store: CountStore,
    every: timedelta,
    settle_s: float = 3.0,
    poll_s: float = 30.0,
) -> Callable[[], Awaitable[None]]:
    """Reconcile now (when due) and then every `every` across the replicas; returns
    the stop coroutine."""
    lease = MongoReconcileLease(db)

    def complaints_in(state: str) -> AsyncIterator[Mapping[str, Any]]:
        return complaints_in_state(db, state)

    async def loop() -> None:
        while True:
            try:
                await reconcile_if_due(store, complaints_in, lease, every, settle_s)
            except Exception as exc:
                log.warning("complaint counters not reconciled: %s", type(exc).__name__)
            await asyncio.sleep(min(poll_s, every.total_seconds()))

    return periodic.start_task("lapor-complaint-counts-reconcile", loop())
