"""Domain metrics every service can put on its own Prometheus registry.

Two kinds live here:

- counters of things that happen (a complaint received, a routing decision, a
  breach recorded, a notification sent). The service that does the thing
  increments them in its handler, once per *new* fact: handlers are
  idempotent and see redeliveries, so increment only when the store said the
  record was new;
- gauges of the current state (open complaints, deadlines due soon, consumer
  backlog, dead letters). They need the database or the JetStream API, so one
  background task per service refreshes them on a timer, however often
  Prometheus scrapes and however many label combinations exist: the complaint
  figures from the counters intake keeps with each transition (a few small
  documents, `lapor.runtime.complaint_counts`), the dead letters from one
  `$group`/`$sum` aggregation. Each refreshed gauge is a snapshot
  swapped in whole, so label combinations that disappear (an agency with no
  open complaint left) disappear from the output too, and a scrape never sees
  a half-refreshed family.

Label values are codes from closed sets (channel, region, agency code,
priority, state, clock, escalation level, stream and consumer names): never a
phone number, tracking id or free text.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import (
    AsyncIterator,
    Awaitable,
    Callable,
    Iterable,
    Iterator,
    Mapping,
    Sequence,
)
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, Protocol

from prometheus_client import CollectorRegistry, Counter
from prometheus_client.core import GaugeMetricFamily, Metric
from prometheus_client.registry import Collector
from pymongo.asynchronous.database import AsyncDatabase

from lapor.contracts import Priority, State

# The figures' rules, shared with the counters intake keeps.
from lapor.runtime.complaint_counts import CLOCK_STATES as CLOCK_STATES
from lapor.runtime.complaint_counts import DUE_SOON as DUE_SOON
from lapor.runtime.complaint_counts import NONE as NONE
from lapor.runtime.complaint_counts import OPEN_STATES as OPEN_STATES
from lapor.runtime.complaint_counts import RECONCILED_DOC, MongoCountStore, read_figures
from lapor.runtime.complaint_counts import UNKNOWN_KECAMATAN as UNKNOWN_KECAMATAN
from lapor.runtime.complaint_counts import URGENT_ACK_AFTER as URGENT_ACK_AFTER
from lapor.runtime.complaint_counts import assigned_since as assigned_since
from lapor.runtime.complaint_counts import aware as _aware
from lapor.runtime.complaint_counts import kecamatan_of as kecamatan_of
from lapor.runtime.complaint_counts import label_value as _label

log = logging.getLogger(__name__)

Document = dict[str, Any]
Labels = tuple[str, ...]


class SnapshotGauge(Collector):
    """A gauge family whose samples are replaced as a whole by each refresh."""

    def __init__(
        self,
        name: str,
        documentation: str,
        labelnames: Sequence[str] = (),
        registry: CollectorRegistry | None = None,
    ) -> None:
        self.name = name
        self.documentation = documentation
        self.labelnames = tuple(labelnames)
        self._samples: dict[Labels, float] = {}
        if registry is not None:
            registry.register(self)

    def replace(self, samples: Mapping[Labels, float]) -> None:
        for labels in samples:
            if len(labels) != len(self.labelnames):
                raise ValueError(f"{self.name}: labels {labels} do not match {self.labelnames}")
        self._samples = dict(samples)

    def set(self, value: float) -> None:
        """For a family without labels."""
        self.replace({(): value})

    def value(self, *labels: str) -> float | None:
        return self._samples.get(tuple(labels))

    def samples(self) -> dict[Labels, float]:
        return dict(self._samples)

    def describe(self) -> Iterable[Metric]:
        return [GaugeMetricFamily(self.name, self.documentation, labels=self.labelnames)]

    def collect(self) -> Iterable[Metric]:
        family = GaugeMetricFamily(self.name, self.documentation, labels=self.labelnames)
        for labels, value in sorted(self._samples.items()):
            family.add_metric(list(labels), value)
        return [family]


def _counter(
    registry: CollectorRegistry, name: str, documentation: str, labelnames: Sequence[str]
) -> Counter:
    """A counter on `registry`, or the one a service's own metrics already put there.

    A service may count the same fact in its own metrics class (sla counts
    breaches); adopting that counter keeps one series instead of a
    registration error. Labels must then be passed by keyword: the adopted
    counter may order them differently.
    """
    existing = registry._names_to_collectors.get(name)
    if existing is None:
        return Counter(name, documentation, labelnames, registry=registry)
    existing_labels = set(getattr(existing, "_labelnames", ()))
    if not isinstance(existing, Counter) or existing_labels != set(labelnames):
        raise ValueError(f"{name} is already registered with other labels: {existing_labels}")
    return existing


class DomainMetrics:
    """Lapor's own metrics on one service's registry (create it once per registry).

    Pass label values by keyword (`.labels(agency="PUPR", clock="answer")`).
    """

    def __init__(self, registry: CollectorRegistry) -> None:
        # Declared in this order, the order /metrics lists them.
        self._complaint_counters(registry)
        self._deadline_counters(registry)
        self._citizen_counters(registry)
        self._complaint_snapshots(registry)
        self._deadline_snapshots(registry)
        self._pipeline_snapshots(registry)

    def _complaint_counters(self, r: CollectorRegistry) -> None:
        """Counters, incremented by the service that makes the fact happen: complaints."""
        self.received = _counter(
            r,
            "lapor_complaints_received_total",
            "New complaints stored, by channel and region",
            ["channel", "region"],
        )
        self.rejections = _counter(
            r,
            "lapor_rejections_total",
            "Inbound messages kept as rejections, by channel and reason",
            ["channel", "reason"],
        )
        self.routing_decisions = _counter(
            r,
            "lapor_routing_decisions_total",
            "Routing decisions, by agency code (OUT_OF_SCOPE, or TRIAGE when unsure) and priority",
            ["agency", "priority"],
        )

    def _deadline_counters(self, r: CollectorRegistry) -> None:
        """Counters: deadlines missed and escalated."""
        self.breaches = _counter(
            r,
            "lapor_sla_breaches_total",
            "Deadlines missed (recorded breaches), by agency and clock",
            ["agency", "clock"],
        )
        self.escalations = _counter(
            r,
            "lapor_sla_escalations_total",
            "Escalations raised, by level of the chain",
            ["level"],
        )

    def _citizen_counters(self, r: CollectorRegistry) -> None:
        """Counters: what citizens do and what reaches them."""
        self.citizen_actions = _counter(
            r,
            "lapor_citizen_actions_total",
            "Citizens' own actions that took effect (reply, rate, reopen, withdraw), by region",
            ["action", "region"],
        )
        self.notifications = _counter(
            r,
            "lapor_notifications_total",
            "Notifications that reached a final status (sent or failed), by channel",
            ["channel", "status"],
        )

    def _complaint_snapshots(self, r: CollectorRegistry) -> None:
        """Snapshots, refreshed by the background task: open complaints."""
        self.open_complaints = SnapshotGauge(
            "lapor_complaints_open",
            "Complaints not yet closed or rejected, by state, agency and priority",
            ["state", "agency", "priority"],
            r,
        )
        # Its own gauge: a kecamatan label on the one above would multiply its series.
        self.open_by_kecamatan = SnapshotGauge(
            "lapor_complaints_open_by_kecamatan",
            "Complaints not yet closed or rejected, by the Kemendagri code of the kecamatan "
            "they are about (unknown when none or several fit)",
            ["kecamatan"],
            r,
        )
        self.triage_queue = SnapshotGauge(
            "lapor_triage_queue_complaints",
            "Complaints waiting for a Diskominfo triage decision",
            registry=r,
        )

    def _deadline_snapshots(self, r: CollectorRegistry) -> None:
        """Snapshots: running deadlines and urgent complaints waiting."""
        self.deadlines_due = SnapshotGauge(
            "lapor_deadlines_due_next_24h",
            "Running deadlines that fall within the next 24 hours, by clock",
            ["clock"],
            r,
        )
        self.deadlines_overdue = SnapshotGauge(
            "lapor_deadlines_overdue",
            "Running deadlines already passed, by clock",
            ["clock"],
            r,
        )
        self.urgent_unacknowledged = SnapshotGauge(
            "lapor_urgent_unacknowledged_complaints",
            "Urgent complaints assigned for more than an hour without the agency's "
            "first response, by agency",
            ["agency"],
            r,
        )
        self.urgent_oldest_age = SnapshotGauge(
            "lapor_urgent_unacknowledged_oldest_age_seconds",
            "Age of the oldest assignment of an urgent complaint still unacknowledged "
            "(0 when there is none)",
            registry=r,
        )

    def _pipeline_snapshots(self, r: CollectorRegistry) -> None:
        """Snapshots of dead letters and consumers, and how the refresh itself fares."""
        self.dead_letters = SnapshotGauge(
            "lapor_dead_letters",
            # Not `service`: Prometheus adds that label to every target.
            "Dead letters waiting for an operator (neither replayed nor resolved), "
            "by the service that stored them",
            ["stored_by"],
            r,
        )
        self.consumer_backlog = SnapshotGauge(
            "lapor_jetstream_consumer_backlog_messages",
            "Messages a durable consumer has not finished: pending delivery plus "
            "delivered and not yet acked",
            ["stream", "consumer"],
            r,
        )
        self.consumer_redelivered = SnapshotGauge(
            "lapor_jetstream_consumer_redelivered_messages",
            "Messages of a durable consumer redelivered and not yet acked",
            ["stream", "consumer"],
            r,
        )
        self.refresh_timestamp = SnapshotGauge(
            "lapor_metrics_refresh_timestamp_seconds",
            "When each part of the background refresh last succeeded (Unix time)",
            ["part"],
            r,
        )
        self.refresh_errors = _counter(
            r,
            "lapor_metrics_refresh_errors_total",
            "Background refreshes of a part that failed",
            ["part"],
        )
        self.counts_drift = SnapshotGauge(
            "lapor_complaint_counts_drift",
            "Difference between the complaint counters and a recount that the last "
            "reconciliation found and repaired (0: the counters were right)",
            registry=r,
        )
        self.counts_reconciled = SnapshotGauge(
            "lapor_complaint_counts_reconciled_timestamp_seconds",
            "When the complaint counters were last reconciled with a recount (Unix time)",
            registry=r,
        )


# --------------------------------------------------------------------------
# Refresh: complaints (intake), dead letters (intake), consumers (every service)
# --------------------------------------------------------------------------


class ConsumerInfoSource(Protocol):
    def consumer_info(self, stream: str, consumer: str) -> Awaitable[Any]: ...


JetStreamSource = Callable[[], ConsumerInfoSource | None]


@dataclass(frozen=True)
class RefreshPlan:
    """What one service refreshes. Complaints and dead letters belong to intake
    alone, so each figure is exported by exactly one scrape target."""

    complaints: bool = False
    dead_letters: bool = False
    consumers: Sequence[tuple[str, str]] = ()


async def _aggregate(db: AsyncDatabase[Document], name: str, pipeline: list[Document]) -> list[Any]:
    cursor = await db[name].aggregate(pipeline)
    return await cursor.to_list(None)


def _per_clock() -> dict[Labels, float]:
    return {(clock,): 0.0 for clock in CLOCK_STATES}


@dataclass
class ComplaintFigures:
    """The complaint gauges of one refresh, tallied one open complaint at a time
    (state, agency, priority, deadlines; the history of assigned ones), so a
    refresh holds no complaint in memory."""

    now: datetime
    open: dict[Labels, float] = field(default_factory=dict)
    deadlines_due: dict[Labels, float] = field(default_factory=_per_clock)
    deadlines_overdue: dict[Labels, float] = field(default_factory=_per_clock)
    urgent_unacknowledged: dict[Labels, float] = field(default_factory=dict)
    urgent_oldest_age_s: float = 0.0
    open_by_kecamatan: dict[Labels, float] = field(default_factory=dict)

    def add(self, complaint: Mapping[str, Any]) -> None:
        state, agency = complaint.get("state"), _label(complaint.get("agency"))
        labels = (_label(state), agency, _label(complaint.get("priority")))
        self.open[labels] = self.open.get(labels, 0) + 1
        where = (kecamatan_of(complaint),)
        self.open_by_kecamatan[where] = self.open_by_kecamatan.get(where, 0) + 1
        deadlines = complaint.get("deadlines") or {}
        for clock, states in CLOCK_STATES.items():
            deadline = deadlines.get(clock)
            if state not in states or not isinstance(deadline, datetime):
                continue
            deadline = _aware(deadline)
            if deadline < self.now:
                self.deadlines_overdue[(clock,)] += 1
            elif deadline < self.now + DUE_SOON:
                self.deadlines_due[(clock,)] += 1
        if state == State.ASSIGNED and complaint.get("priority") == Priority.URGENT:
            since = assigned_since(complaint.get("history") or [])
            if since is None:
                return
            age = (self.now - since).total_seconds()
            self.urgent_oldest_age_s = max(self.urgent_oldest_age_s, age)
            if age > URGENT_ACK_AFTER.total_seconds():
                late = self.urgent_unacknowledged
                late[(agency,)] = late.get((agency,), 0) + 1

    @property
    def triage_queue(self) -> float:
        return sum(n for (state, _, _), n in self.open.items() if state == State.TRIAGE)


_FIGURE_FIELDS: Document = {
    "_id": 0,
    "state": 1,
    "agency": 1,
    "priority": 1,
    "deadlines": 1,
    "place.kecamatan.code": 1,
}


async def open_complaints(db: AsyncDatabase[Document]) -> AsyncIterator[Document]:
    """The open complaints, with the fields `ComplaintFigures.add` reads.

    One equality query per state: FerretDB answers it through the (state, agency)
    index, where a `$in` or an aggregation per figure would decode every stored
    complaint, closed ones included (minutes each with a million stored).
    """
    for state in OPEN_STATES:
        async for doc in complaints_in_state(db, state):
            yield doc


def complaints_in_state(db: AsyncDatabase[Document], state: str) -> AsyncIterator[Document]:
    """The complaints in one state, with the fields the figures read (see above)."""
    fields = _FIGURE_FIELDS
    if state == State.ASSIGNED:
        # For the urgent ones' assignment time; few fields, not kept apart.
        fields = {**fields, "history.state": 1, "history.at": 1}
    return aiter(db["complaints"].find({"state": state}, fields))


async def refresh_complaints(
    metrics: DomainMetrics, db: AsyncDatabase[Document], now: datetime
) -> None:
    """The complaint gauges from the counters intake keeps with each transition
    (`lapor.runtime.complaint_counts`): a dozen small documents, however many
    complaints are stored."""
    store = MongoCountStore(db)
    figures = await read_figures(store, now)
    metrics.open_complaints.replace(figures.open)
    metrics.open_by_kecamatan.replace(figures.open_by_kecamatan)
    metrics.triage_queue.set(figures.triage_queue)
    metrics.deadlines_due.replace(figures.deadlines_due)
    metrics.deadlines_overdue.replace(figures.deadlines_overdue)
    metrics.urgent_unacknowledged.replace(figures.urgent_unacknowledged)
    metrics.urgent_oldest_age.set(figures.urgent_oldest_age_s)
    reconciled = await db["complaint_counts"].find_one({"_id": RECONCILED_DOC})
    if reconciled is not None:
        metrics.counts_drift.set(float(reconciled.get("drift") or 0))
        metrics.counts_reconciled.set(_aware(reconciled["at"]).timestamp())


async def refresh_dead_letters(metrics: DomainMetrics, db: AsyncDatabase[Document]) -> None:
    # An operator settles a dead letter with `lapor dlq replay` (`replayed_at`) or
    # `lapor dlq resolve` (`resolved_at`); the rest wait. Null matches a missing field.
    rows = await _aggregate(
        db,
        "dead_letters",
        [
            {"$match": {"replayed_at": None, "resolved_at": None}},
            {"$group": {"_id": "$service", "n": {"$sum": 1}}},
        ],
    )
    metrics.dead_letters.replace({(_label(row["_id"]),): float(row["n"]) for row in rows})


async def refresh_consumers(
    metrics: DomainMetrics, js: ConsumerInfoSource, consumers: Sequence[tuple[str, str]]
) -> None:
    backlog: dict[Labels, float] = {}
    redelivered: dict[Labels, float] = {}
    for stream, durable in consumers:
        try:
            async with asyncio.timeout(5.0):
                info = await js.consumer_info(stream, durable)
        except Exception as exc:  # a consumer not declared yet is not an error
            log.debug("no consumer info for %s/%s: %s", stream, durable, type(exc).__name__)
            continue
        backlog[(stream, durable)] = float((info.num_pending or 0) + (info.num_ack_pending or 0))
        redelivered[(stream, durable)] = float(info.num_redelivered or 0)
    metrics.consumer_backlog.replace(backlog)
    metrics.consumer_redelivered.replace(redelivered)


def declared_consumers(broker: Any) -> list[tuple[str, str]]:
    """(stream, durable) of every consumer declared on `broker` with `durable(...)`."""
    from lapor.runtime import broker as broker_module

    declared = broker_module._consumers.get(broker, [])
    return [(stream, config.durable_name) for stream, config in declared if config.durable_name]


def jetstream_of(source: Any) -> JetStreamSource:
    """Accept a FastStream NatsBroker (connected later) or a nats-py JetStreamContext."""
    if hasattr(source, "consumer_info"):
        return lambda: source

    def from_broker() -> ConsumerInfoSource | None:
        try:
            js: ConsumerInfoSource | None = source.config.connection_state.stream
        except Exception:  # not connected yet
            return None
        return js

    return from_broker


async def refresh_once(
    metrics: DomainMetrics,
    db: AsyncDatabase[Document] | None,
    jetstream: JetStreamSource | None,
    plan: RefreshPlan,
    now: datetime | None = None,
) -> None:
    """One refresh of every part in `plan`; a failing part is counted, not raised."""
    moment = now or datetime.now(UTC)
    for part, run in _parts(metrics, db, jetstream, plan, moment):
        try:
            done = await run()
        except Exception as exc:
            metrics.refresh_errors.labels(part).inc()
            log.warning("metrics refresh of %s failed: %s", part, type(exc).__name__)
            continue
        if done:
            stamps = metrics.refresh_timestamp.samples()
            stamps[(part,)] = time.time()
            metrics.refresh_timestamp.replace(stamps)


def _parts(
    metrics: DomainMetrics,
    db: AsyncDatabase[Document] | None,
    jetstream: JetStreamSource | None,
    plan: RefreshPlan,
    now: datetime,
) -> Iterator[tuple[str, Callable[[], Awaitable[bool]]]]:
    async def complaints() -> bool:
        assert db is not None
        await refresh_complaints(metrics, db, now)
        return True

    async def dead_letters() -> bool:
        assert db is not None
        await refresh_dead_letters(metrics, db)
        return True

    async def consumers() -> bool:
        js = jetstream() if jetstream is not None else None
        if js is None:
            return False
        await refresh_consumers(metrics, js, plan.consumers)
        return True

    if plan.complaints and db is not None:
        yield "complaints", complaints
    if plan.dead_letters and db is not None:
        yield "dead_letters", dead_letters
    if plan.consumers:
        yield "consumers", consumers


# The gauges' aggregations may never take more than this share of the database's
# time: on a server that scans instead of using an index (FerretDB on SQLite
# with a million complaints), back-to-back refreshes would otherwise starve
# the handlers and keep a reader open all the time.
REFRESH_DUTY_MAX = 0.1


def pause_after(took_s: float, interval_s: float) -> float:
    """Seconds to wait after a refresh that took `took_s`: the interval, longer when
    refreshing is slow, so it stays under REFRESH_DUTY_MAX of the time."""
    return max(interval_s, took_s * (1.0 - REFRESH_DUTY_MAX) / REFRESH_DUTY_MAX)


def start_refresher(
    metrics: DomainMetrics,
    db: AsyncDatabase[Document] | None,
    jetstream: Any,
    plan: RefreshPlan,
    interval_s: float = 30.0,
) -> Callable[[], Awaitable[None]]:
    """Refresh now and then every `interval_s` (see `pause_after`) in one task; returns
    the stop coroutine. `metrics.refresh_timestamp` shows how fresh each part is.

    `jetstream`: the service's NatsBroker (its connection is used once the
    broker is connected), a nats-py JetStreamContext, or None.
    """
    source = jetstream_of(jetstream) if jetstream is not None else None

    async def loop() -> None:
        while True:
            started = time.monotonic()
            await refresh_once(metrics, db, source, plan)
            await asyncio.sleep(pause_after(time.monotonic() - started, interval_s))

    task = asyncio.create_task(loop(), name="lapor-metrics-refresh")

    async def stop() -> None:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task

    return stop


def start_consumer_refresher(
    metrics: DomainMetrics, broker: Any, interval_s: float
) -> Callable[[], Awaitable[None]]:
    """Backlog and redeliveries of the consumers `broker` declared, for a service that
    exports no database figures of its own; returns the stop coroutine."""
    return start_refresher(
        metrics, None, broker, RefreshPlan(consumers=declared_consumers(broker)), interval_s
    )
