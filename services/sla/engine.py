"""Timers as data: keep each complaint's timers in step with its facts, and fire what is due.

Scheduling (`record`, `replan`)
    A new fact is added to the complaint's clock document by the write that
    returns the facts stored before it, the plan is recomputed from all facts
    (services/sla/plan.py), and `sla_timers` is made to match it: missing
    timers are inserted (unless the ledger shows they already fired), moved
    ones get their new due time, timers the plan no longer has are deleted;
    what is stored is known from the clock document's record of the timers
    last written, not read back. The summary, that record and the deadline
    announcements are then stored in one write, only if no fact was added
    meanwhile (another replica); otherwise it is done again, so the stored
    timers always end up matching the latest facts. A crash before that write
    leaves the event unacknowledged: its redelivery writes the same timers
    again (inserts of existing ids are ignored) and stores the summary.

    A complaint's first routing, which is how most are first heard of, is
    stored in one insert: the clock document with the fact, summary, timers and
    announcements. Its timers stay in that document (`timers_in`) until the
    first is due, and its later facts replan them there: a complaint answered
    before its first warning never costs a write of its timers. If the document
    exists (a redelivery, another fact first), it goes the way above.

Sweeping (`sweep`)
    First moves the timers of clock documents whose first timer is due into
    `sla_timers` (a replan that writes them, conditional on the document still
    keeping them). Then takes pending timers with `due_at <= now` in (due_at, _id) order, in
    batches, by keyset (each due timer is read once per sweep). Each one is
    checked against the plan recomputed from the facts *now*: gone → deleted,
    moved later → rescheduled, a warning whose breach is also due already →
    skipped (a warning after the deadline helps nobody). Otherwise:

    1. claim: insert `sla_fired` with `_id` = firing id and the built event; a
       duplicate key means another replica (or an earlier run) has it;
    2. publish with `Nats-Msg-Id` = the event's id (the firing id, or
       `deadlines:<firing id>` for the deadline a lapsed reply window fixes);
    3. settle: accountability record, delete the timer, mark the claim settled.
       Only the call that marks it settled counts it in the metrics, so a
       firing published again after a crash is counted once.

    A claim that was never settled (a crash between 1 and 3) is published again
    from the stored payload: at start-up from the ledger, and on every sweep for
    timers claimed longer than `republish_after` ago. JetStream drops the
    repeated message id, so the event exists once.

Nothing here sleeps until a deadline: the only timer in memory is the sweep
interval, so a restart loses nothing.
"""

import asyncio
import logging
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable, Mapping, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass, fields
from datetime import UTC, datetime, timedelta
from typing import Protocol

from pydantic import BaseModel

from lapor.contracts import (
    DeadlinesSet,
)
from lapor.runtime.locks import KeyedLock
from services.sla.breach_store import BreachUpdate, breach_id
from services.sla.clock_store import IN_DOCUMENT, ClockState, clock_summary
from services.sla.clocks import Plan, TimerKind
from services.sla.facts import Fact, Routed
from services.sla.firing import (
    COMPARED,
    MODELS,
    PUBLISHED,
    SKIPPED,
    breach_update,
    differs,
    ledger_entry,
    moved_fields,
    timer_doc,
    with_event,
)
from services.sla.metrics import SlaMetrics
from services.sla.plan import RegionRules, build_plan
from services.sla.repository import PENDING, Document, SlaStore

log = logging.getLogger(__name__)

_REPLAN_ATTEMPTS = 5


# The deadline announcements a plan calls for, stored with its clock summary.
Announce = Callable[[Plan], Sequence[DeadlinesSet]]
# A store's query for what is due by a moment, past a keyset, at most so many.
DueFetch = Callable[[datetime, tuple[datetime, str] | None, int], Awaitable[list[Document]]]


def _recorded(timer: Document) -> Document:
    """What the clock document keeps of a timer written for the plan."""
    return {key: timer[key] for key in ("_id", *COMPARED)}


class Publisher(Protocol):
    subject: str

    async def publish(self, message: BaseModel, msg_id: str) -> bool: ...


@dataclass
class SweepReport:
    due: int = 0  # due timers the sweep read
    fired: int = 0
    republished: int = 0
    cancelled: int = 0
    rescheduled: int = 0
    skipped: int = 0
    contended: int = 0
    errors: int = 0

    def add(self, outcome: str) -> None:
        setattr(self, outcome, getattr(self, outcome) + 1)

    def as_dict(self) -> dict[str, int]:
        return {f.name: getattr(self, f.name) for f in fields(self)}

    @property
    def left_due(self) -> int:
        """Due timers this sweep read but could not settle (contended or failed)."""
        return self.due - self.fired - self.cancelled - self.rescheduled - self.skipped


class SlaEngine:
    def __init__(
        self,
        store: SlaStore,
        regions: Mapping[str, RegionRules],
        publishers: Iterable[Publisher],
        clock: Callable[[], datetime] = lambda: datetime.now(UTC),
        metrics: SlaMetrics | None = None,
        *,
        replica: str | None = None,
        batch_size: int = 200,
        concurrency: int = 8,
        republish_after: timedelta = timedelta(seconds=30),
    ) -> None:
        self.store = store
        self.regions = regions
        self.publishers = {p.subject: p for p in publishers}
        missing = set(MODELS) - set(self.publishers)
        if missing:
            raise ValueError(f"no publisher for {sorted(missing)}")
        self.clock = clock
        self.metrics = metrics or SlaMetrics()
        self.replica = replica or uuid.uuid4().hex[:12]
        self.batch_size = batch_size
        self.concurrency = concurrency
        self.republish_after = republish_after
        self.locks = KeyedLock()

    # -- scheduling ------------------------------------------------------------

    async def plan_of(self, complaint_id: str) -> Plan | None:
        state = await self.store.clock_state(complaint_id)
        return build_plan(complaint_id, state.facts, self.regions)

    async def record(
        self, complaint_id: str, fact: Fact, announce: Announce | None = None
    ) -> Plan | None:
        """Store a fact (once per event id), bring the complaint's timers in line, and
        publish the deadline announcements the new plan calls for (`announce` names
        them; they are stored with the clock summary first, so a crash before the
        publish leaves them to a redelivery or the sweep)."""
        async with self.locks.hold(complaint_id):
            created = None
            if isinstance(fact, Routed) and fact.round == 0:
                created = await self._create(complaint_id, fact, announce)
            if created is None:
                state = await self.store.add_fact(complaint_id, fact)
                created = await self._replan(complaint_id, state, announce, fact)
            plan, stored = created
        await self.store.announce(complaint_id, stored)
        return plan

    async def _create(
        self,
        complaint_id: str,
        fact: Fact,
        announce: Announce | None,
    ) -> tuple[Plan | None, Document] | None:
        """The clock document of a complaint first heard of by `fact` (its first routing,
        for most), with the fact, summary, timers and announcements, in one insert;
        its timers stay in it until the first is due. None if the document exists (a
        redelivery, or another fact came first): then it goes the usual way."""
        state = ClockState(facts=[fact], facts_added=1, timers=[], new=True, in_document=True)
        plan = build_plan(complaint_id, state.facts, self.regions)
        now = self.clock()
        timers = await self._reconcile(complaint_id, plan, now, state, {}, keep=True)
        summary, announced = self._summary(plan, now, announce, in_document=True)
        stored = await self.store.create_clock(complaint_id, fact, summary, announced, timers)
        if stored is None:
            return None
        if plan is not None:
            await self._record_late_runs(plan, now)
        return plan, stored

    def _summary(
        self, plan: Plan | None, now: datetime, announce: Announce | None, *, in_document: bool
    ) -> tuple[Document, Sequence[DeadlinesSet]]:
        summary = clock_summary(plan, now) if plan is not None else {"updated_at": now}
        first_due = plan.next_due_at if plan is not None else None
        # Without a timer there is nothing to keep: the document holds them no more.
        kept = in_document and first_due is not None
        summary |= {
            "timers_in": IN_DOCUMENT if kept else None,
            "timers_due_at": first_due if kept else None,
        }
        announced = announce(plan) if announce is not None and plan is not None else ()
        return summary, announced

    async def replan(self, complaint_id: str) -> Plan | None:
        async with self.locks.hold(complaint_id):
            state = await self.store.clock_state(complaint_id)
            if not state.facts:
                return None  # nothing heard of it: no clock to store
            plan, _ = await self._replan(complaint_id, state)
            return plan

    async def _replan(
        self,
        complaint_id: str,
        state: ClockState,
        announce: Announce | None = None,
        fact: Fact | None = None,
        *,
        store_timers: bool = False,
    ) -> tuple[Plan | None, Document]:
        """Bring the timers in line with the facts and store the summary; timers kept
        in the document stay there unless `store_timers` (the first is due)."""
        # Timers an earlier attempt wrote count as written, in case the summary
        # that would have listed them was refused.
        written: dict[str, Document] = {}
        for _ in range(_REPLAN_ATTEMPTS):
            if fact is not None and all(f.event_id != fact.event_id for f in state.facts):
                state = await self.store.add_fact(complaint_id, fact)  # lost to another writer
            plan = build_plan(complaint_id, state.facts, self.regions)
            now = self.clock()
            keep = state.in_document and not store_timers
            timers = await self._reconcile(complaint_id, plan, now, state, written, keep=keep)
            summary, announced = self._summary(plan, now, announce, in_document=keep)
            stored = await self.store.save_clock(
                complaint_id,
                summary,
                announced,
                facts_added=state.facts_added,
                timers=timers,
                in_document=state.in_document,
            )
            if stored is not None:
                if plan is not None:
                    await self._record_late_runs(plan, now)
                return plan, stored
            # Another fact came in meanwhile (another replica): compute again.
            written.update((doc["_id"], doc) for doc in timers)
            state = await self.store.clock_state(complaint_id)
        raise RuntimeError(f"clock of {complaint_id}: facts kept changing while planning")

    async def _reconcile(
        self,
        complaint_id: str,
        plan: Plan | None,
        now: datetime,
        state: ClockState,
        written: Mapping[str, Document],
        *,
        keep: bool,
    ) -> list[Document]:
        """Make `sla_timers` match the plan, unless the timers are kept in the clock
        document (`keep`); returns the timers the plan wants, as recorded.

        What is stored is taken from the clock document's record of the timers
        last written (older documents: read). A fired or claimed timer may differ
        from that record; the writes below touch pending timers only, and a new
        one is not inserted if the ledger shows it fired.
        """
        wanted = {timer.id: timer for timer in plan.timers} if plan is not None else {}
        docs = {timer_id: timer_doc(timer, now) for timer_id, timer in wanted.items()}
        if keep:
            return [_recorded(doc) for doc in docs.values()]
        if state.in_document:
            # Moving them out of the document: none is in `sla_timers` but what an
            # attempt that did not finish left there, found as duplicates below.
            recorded: list[Document] = []
        elif state.timers is not None:
            recorded = state.timers
        else:
            recorded = await self.store.timers_of(complaint_id)
        stored = {**written, **{doc["_id"]: doc for doc in recorded}}
        new = [doc for timer_id, doc in docs.items() if timer_id not in stored]
        if new:
            # A timer that already fired is in the ledger, not among the timers: not
            # again. None of a complaint heard of for the first time has fired, and
            # one the document kept fired only if written by an unfinished move:
            # written again, its claim in the ledger is refused.
            unfired = state.new or state.in_document
            fired = set() if unfired else await self.store.fired_ids(complaint_id)
            there = await self.store.insert_timers([doc for doc in new if doc["_id"] not in fired])
            for timer_id in there if state.in_document else ():
                await self.store.update_pending_timer(timer_id, moved_fields(wanted[timer_id], now))
        for timer_id, timer in wanted.items():
            existing = stored.get(timer_id)
            if existing is None or existing.get("status", PENDING) != PENDING:
                continue
            if differs(existing, docs[timer_id]):
                await self.store.update_pending_timer(timer_id, moved_fields(timer, now))
        for timer_id, existing in stored.items():
            if timer_id not in wanted and existing.get("status", PENDING) == PENDING:
                await self.store.delete_pending_timer(timer_id)
        return [_recorded(doc) for doc in docs.values()]

    async def _record_late_runs(self, plan: Plan, now: datetime) -> None:
        """A clock that stopped after its deadline is a breach, fired or not yet."""
        for run in plan.runs:
            if not run.late or run.stopped_at is None:
                continue
            await self.store.record_breach(
                BreachUpdate(
                    breach_id=breach_id(plan.complaint_id, run.clock.value, run.round),
                    complaint_id=plan.complaint_id,
                    region=plan.region,
                    agency=run.agency,
                    official=plan.official_for(run.agency),
                    clock=run.clock.value,
                    round=run.round,
                    priority=run.priority.value,
                    due_at=run.due,
                    seen_at=now,
                    late_by_s=(run.stopped_at - run.due).total_seconds(),
                    resolved_at=run.stopped_at,
                )
            )

    # -- sweeping ---------------------------------------------------------------

    async def sweep(self, *, startup: bool = False) -> SweepReport:
        """Fire everything due now; on `startup` first re-publish every unsettled claim."""
        started = time.perf_counter()
        now = self.clock()
        report = SweepReport()
        if startup:
            await self._republish_ledger(now, report)
        await self._republish_claimed(now, None if startup else now - self.republish_after, report)
        # Deadline announcements a crash or an outage left in the clock summaries.
        report.republished += await self.store.announce_leftovers(
            timedelta(0) if startup else self.republish_after
        )
        gate = asyncio.Semaphore(self.concurrency)
        # Timers kept in their clock document go to `sla_timers` once the first is
        # due, before the timers due there are read.
        async for clocks in self._pages(self.store.clocks_due, now, "timers_due_at"):
            async with asyncio.TaskGroup() as tasks:
                for doc in clocks:
                    tasks.create_task(self._store_timers(doc, gate, report))
        async for batch in self._pages(self.store.due_timers, now, "due_at"):
            report.due += len(batch)
            groups: dict[str, list[Document]] = {}
            for doc in batch:
                groups.setdefault(doc["complaint_id"], []).append(doc)
            async with asyncio.TaskGroup() as tasks:
                for complaint_id, docs in groups.items():
                    tasks.create_task(self._fire_group(complaint_id, docs, now, gate, report))
        self.metrics.sweep_seconds.observe(time.perf_counter() - started)
        self.metrics.last_sweep.set(time.time())
        self.metrics.overdue.set(report.left_due)
        return report

    async def _pages(
        self, fetch: DueFetch, now: datetime, field: str
    ) -> AsyncIterator[list[Document]]:
        """What `fetch` finds due by `now`, a batch at a time, each document once (by
        keyset on (`field`, _id))."""
        after: tuple[datetime, str] | None = None
        while batch := await fetch(now, after, self.batch_size):
            yield batch
            if len(batch) < self.batch_size:
                return
            after = (batch[-1][field], batch[-1]["_id"])

    @asynccontextmanager
    async def _one_complaint(
        self, complaint_id: str, gate: asyncio.Semaphore, report: SweepReport
    ) -> AsyncIterator[None]:
        """A complaint's part of a sweep, under the gate and the complaint's lock."""
        async with gate, self.locks.hold(complaint_id):
            try:
                yield
            except Exception:
                # One complaint's trouble must not hold up every timer after it;
                # whatever is left is due again at the next sweep.
                report.errors += 1
                self.metrics.sweep_errors.inc()
                log.exception("sweep failed for a complaint", extra={"complaint_id": complaint_id})

    async def _store_timers(
        self, doc: Document, gate: asyncio.Semaphore, report: SweepReport
    ) -> None:
        async with self._one_complaint(doc["_id"], gate, report):
            state = await self.store.state_of(doc["_id"], doc)
            await self._replan(doc["_id"], state, store_timers=True)

    async def _fire_group(
        self,
        complaint_id: str,
        docs: list[Document],
        now: datetime,
        gate: asyncio.Semaphore,
        report: SweepReport,
    ) -> None:
        async with self._one_complaint(complaint_id, gate, report):
            plan = await self.plan_of(complaint_id)
            for doc in docs:
                outcome = await self._fire(doc, plan, now)
                report.add(outcome)
                self.metrics.sweep_timers.labels(outcome).inc()

    async def _fire(self, doc: Document, plan: Plan | None, now: datetime) -> str:
        timer_id = doc["_id"]
        timer = plan.timer(timer_id) if plan is not None else None
        if timer is None or plan is None:
            await self.store.delete_pending_timer(timer_id)
            return "cancelled"
        if timer.due_at > now:
            await self.store.update_pending_timer(timer_id, moved_fields(timer, now))
            return "rescheduled"
        if timer.kind is TimerKind.WARNING and timer.deadline <= now:
            await self.store.claim(ledger_entry(timer, now, self.replica, outcome=SKIPPED))
            await self.store.delete_timer(timer_id)
            return "skipped"
        ledger = with_event(
            ledger_entry(timer, now, self.replica, outcome=PUBLISHED),
            timer,
            plan,
            now,
            self.regions[plan.region].calendar,
        )
        if not await self.store.claim(ledger):
            existing = await self.store.firing(timer_id)
            if existing is not None and existing.get("settled_at") is not None:
                await self.store.delete_timer(timer_id)
            else:
                # Claimed elsewhere and not settled yet: in flight on another replica,
                # or left by a crash; the re-publish pass settles it after a grace time.
                claimed_at = existing.get("claimed_at") if existing else None
                await self.store.mark_timer_claimed(timer_id, claimed_at or now)
            return "contended"
        await self.store.mark_timer_claimed(timer_id, now)
        await self._publish_and_settle(ledger, now)
        return "fired"

    async def _publish_and_settle(self, ledger: Document, now: datetime) -> None:
        firing_id = ledger["_id"]
        subject = ledger["subject"]
        message = MODELS[subject].model_validate(ledger["payload"])
        await self.publishers[subject].publish(message, msg_id=message.event_id)
        breach = breach_update(ledger)
        if breach is not None:
            await self.store.record_breach(breach)
        await self.store.delete_timer(firing_id)
        if not await self.store.settle(firing_id, now):
            return  # settled by another replica meanwhile: it has counted it
        kind = ledger["kind"]
        self.metrics.fired.labels(kind, ledger["clock"]).inc()
        if kind == TimerKind.BREACH.value and breach is not None:
            self.metrics.breaches.labels(breach.clock, breach.agency or "").inc()
        if kind == TimerKind.ESCALATION.value:
            self.metrics.escalations.labels(level=ledger["point"]).inc()

    async def _republish_ledger(self, now: datetime, report: SweepReport) -> None:
        """Start-up: every claim not settled (a crash between claim and settle) goes out again."""
        while True:
            pending = await self.store.unsettled(self.batch_size)
            for ledger in pending:
                await self._settle_claim(ledger, now, report)
            if len(pending) < self.batch_size:
                return

    async def _republish_claimed(
        self, now: datetime, claimed_before: datetime | None, report: SweepReport
    ) -> None:
        for doc in await self.store.claimed_timers(claimed_before, self.batch_size):
            ledger = await self.store.firing(doc["_id"])
            if ledger is None:
                await self.store.release_timer(doc["_id"])  # marked, never claimed: fire normally
            elif ledger.get("settled_at") is not None:
                await self.store.delete_timer(doc["_id"])
            else:
                await self._settle_claim(ledger, now, report)

    async def _settle_claim(self, ledger: Document, now: datetime, report: SweepReport) -> None:
        async with self.locks.hold(ledger["complaint_id"]):
            if ledger.get("outcome") == SKIPPED or not ledger.get("subject"):
                await self.store.delete_timer(ledger["_id"])
                await self.store.settle(ledger["_id"], now)
                return
            await self._publish_and_settle(ledger, now)
            report.republished += 1
            self.metrics.sweep_timers.labels("republished").inc()
            log.info("re-published an unsettled firing %s", ledger["_id"])

    # -- the background loop -----------------------------------------------------

    async def run_forever(
        self, interval_s: float, ready: Callable[[], bool | Awaitable[bool]] | None = None
    ) -> None:
        """Sweep every `interval_s` until cancelled; the first sweep is the start-up one."""
        while ready is not None:
            outcome = ready()
            if outcome if isinstance(outcome, bool) else await outcome:
                break
            await asyncio.sleep(0.1)
        startup = True
        while True:
            try:
                report = await self.sweep(startup=startup)
                startup = False
                if report.fired or report.republished:
                    log.info("sweep: %s", report.as_dict())
            except asyncio.CancelledError:
                raise
            except Exception:
                self.metrics.sweep_errors.inc()
                log.exception("sweep failed; retrying in %.1f s", interval_s)
            await asyncio.sleep(interval_s)
