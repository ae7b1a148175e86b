"""Prometheus metrics of the SLA service (one registry per app)."""

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram


class SlaMetrics:
    def __init__(self, registry: CollectorRegistry | None = None) -> None:
        registry = registry if registry is not None else CollectorRegistry()
        self.fired = Counter(
            "lapor_sla_fired",
            "SLA events published: warnings, breaches, escalations, auto-close, reply lapses",
            ["kind", "clock"],
            registry=registry,
        )
        self.breaches = Counter(
            "lapor_sla_breaches",
            "Deadlines breached (breach alerts published), by clock and agency",
            ["clock", "agency"],
            registry=registry,
        )
        self.escalations = Counter(
            "lapor_sla_escalations",
            "Escalations raised, by level of the chain",
            ["level"],
            registry=registry,
        )
        self.sweep_timers = Counter(
            "lapor_sla_sweep_timers",
            "Due timers taken by sweeps, by outcome "
            "(fired, republished, cancelled, rescheduled, skipped, contended)",
            ["outcome"],
            registry=registry,
        )
        self.sweep_seconds = Histogram(
            "lapor_sla_sweep_seconds",
            "Duration of one sweep",
            buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30),
            registry=registry,
        )
        self.sweep_errors = Counter(
            "lapor_sla_sweep_errors",
            "Sweeps, or complaints within a sweep, that failed (retried next sweep)",
            registry=registry,
        )
        self.last_sweep = Gauge(
            "lapor_sla_last_sweep_timestamp_seconds",
            "Wall-clock time the last sweep completed",
            registry=registry,
        )
        self.calendar_days_off = Gauge(
            "lapor_sla_calendar_extra_holidays",
            "Days off listed in the region's days_off.yaml for this and next year, read at "
            "start-up (0: the calendar of that year is probably incomplete)",
            ["region", "year"],
            registry=registry,
        )
        self.overdue = Gauge(
            "lapor_sla_timers_overdue",
            "Due timers the last sweep read but could not settle (should stay near 0)",
            registry=registry,
        )
