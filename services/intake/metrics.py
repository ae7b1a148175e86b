"""Intake's Prometheus metrics: the complaints it stores, their open figures and
the dead letters waiting for an operator.

The complaint figures come from the counters intake keeps with each transition
(a few small documents, `services.intake.complaint_counts`), the dead letters
from one `$group`/`$sum` aggregation; both are refreshed by the runtime's
background task (`lapor.runtime.metrics.start_refresher`, see `refresh_plan`).
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from prometheus_client import CollectorRegistry
from pymongo.asynchronous.database import AsyncDatabase

from lapor.contracts import Priority, State
from lapor.runtime.metrics import PipelineMetrics, RefreshPlan, SnapshotGauge, counter

# The figures' rules, shared with the counters intake keeps.
from services.intake.complaint_counts import CLOCK_STATES as CLOCK_STATES
from services.intake.complaint_counts import COUNTS, RECONCILED_DOC, MongoCountStore, read_figures
from services.intake.complaint_counts import DUE_SOON as DUE_SOON
from services.intake.complaint_counts import NONE as NONE
from services.intake.complaint_counts import OPEN_STATES as OPEN_STATES
from services.intake.complaint_counts import UNKNOWN_KECAMATAN as UNKNOWN_KECAMATAN
from services.intake.complaint_counts import URGENT_ACK_AFTER as URGENT_ACK_AFTER
from services.intake.complaint_counts import assigned_since as assigned_since
from services.intake.complaint_counts import aware as _aware
from services.intake.complaint_counts import kecamatan_of as kecamatan_of
from services.intake.complaint_counts import label_value as _label

Document = dict[str, Any]
Labels = tuple[str, ...]

COMPLAINTS = "complaints"
DEAD_LETTERS = "dead_letters"


class IntakeMetrics(PipelineMetrics):
    """Intake's families on its registry (create it once per registry).

    Pass label values by keyword (`.labels(channel="sms", region="banjar")`).
    """

    def __init__(self, registry: CollectorRegistry) -> None:
        # Declared in this order, the order /metrics lists them.
        self._complaint_counters(registry)
        self._complaint_snapshots(registry)
        self._deadline_snapshots(registry)
        self.dead_letters = SnapshotGauge(
            "lapor_dead_letters",
            # Not `service`: Prometheus adds that label to every target.
            "Dead letters waiting for an operator (neither replayed nor resolved), "
            "by the service that stored them",
            ["stored_by"],
            registry,
        )
        super().__init__(registry)
        self._counts_snapshots(registry)

    def _complaint_counters(self, r: CollectorRegistry) -> None:
        """Counters, incremented once per new fact: complaints and citizens' actions."""
        self.received = counter(
            r,
            "lapor_complaints_received_total",
            "New complaints stored, by channel and region",
            ["channel", "region"],
        )
        self.rejections = counter(
            r,
            "lapor_rejections_total",
            "Inbound messages kept as rejections, by channel and reason",
            ["channel", "reason"],
        )
        self.citizen_actions = counter(
            r,
            "lapor_citizen_actions_total",
            "Citizens' own actions that took effect (reply, rate, reopen, withdraw), by region",
            ["action", "region"],
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

    def _counts_snapshots(self, r: CollectorRegistry) -> None:
        """Snapshots: how the last reconciliation of the complaint counters went."""
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
    return aiter(db[COMPLAINTS].find({"state": state}, fields))


async def refresh_complaints(
    metrics: IntakeMetrics, db: AsyncDatabase[Document], now: datetime
) -> None:
    """The complaint gauges from the counters intake keeps with each transition
    (`services.intake.complaint_counts`): a dozen small documents, however many
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
    reconciled = await db[COUNTS].find_one({"_id": RECONCILED_DOC})
    if reconciled is not None:
        metrics.counts_drift.set(float(reconciled.get("drift") or 0))
        metrics.counts_reconciled.set(_aware(reconciled["at"]).timestamp())


async def refresh_dead_letters(metrics: IntakeMetrics, db: AsyncDatabase[Document]) -> None:
    # An operator settles a dead letter with `lapor dlq replay` (`replayed_at`) or
    # `lapor dlq resolve` (`resolved_at`); the rest wait. Null matches a missing field.
    cursor = await db[DEAD_LETTERS].aggregate(
        [
            {"$match": {"replayed_at": None, "resolved_at": None}},
            {"$group": {"_id": "$service", "n": {"$sum": 1}}},
        ]
    )
    rows = await cursor.to_list(None)
    metrics.dead_letters.replace({(_label(row["_id"]),): float(row["n"]) for row in rows})


def refresh_plan(
    metrics: IntakeMetrics, db: AsyncDatabase[Document], consumers: Sequence[tuple[str, str]]
) -> RefreshPlan:
    """Intake's parts of the background refresh: complaints, dead letters, its consumers.
    Both figures belong to intake alone, so each is exported by exactly one scrape target."""

    async def complaints(now: datetime) -> None:
        await refresh_complaints(metrics, db, now)

    async def dead_letters(_now: datetime) -> None:
        await refresh_dead_letters(metrics, db)

    return RefreshPlan(
        consumers=consumers, parts={"complaints": complaints, "dead_letters": dead_letters}
    )
