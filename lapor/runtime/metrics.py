"""The machinery every service's Prometheus metrics share.

Each service declares its own families in `services/<service>/metrics.py`;
this module holds what they have in common:

- `counter`, for the counters of things that happen, which the service that
  does the thing increments in its handler once per *new* fact (handlers are
  idempotent and see redeliveries: increment only when the store said the
  record was new);
- `SnapshotGauge`, for gauges of the current state that need the database or
  the JetStream API: one background task per service refreshes them on a
  timer (`start_refresher`), however often Prometheus scrapes and however many
  label combinations exist. Each refreshed gauge is a snapshot swapped in
  whole, so label combinations that disappear disappear from the output too,
  and a scrape never sees a half-refreshed family;
- `PipelineMetrics`, the families of that refresh every service exports: the
  backlog of its durable consumers and how fresh each refreshed part is.

Label values are codes from closed sets (channel, region, agency code,
priority, state, clock, escalation level, stream and consumer names): never a
phone number, tracking id or free text.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, Protocol

from prometheus_client import CollectorRegistry, Counter
from prometheus_client.core import GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from lapor.runtime.periodic import start_task

log = logging.getLogger(__name__)

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


def counter(
    registry: CollectorRegistry, name: str, documentation: str, labelnames: Sequence[str]
) -> Counter:
    """A counter on `registry`, or the one another metrics class already put there.

    Two classes on one registry may count the same fact; adopting the counter
    keeps one series instead of a registration error. Labels must then be
    passed by keyword: the adopted counter may order them differently.
    """
    existing = registry._names_to_collectors.get(name)
    if existing is None:
        return Counter(name, documentation, labelnames, registry=registry)
    existing_labels = set(getattr(existing, "_labelnames", ()))
    if not isinstance(existing, Counter) or existing_labels != set(labelnames):
        raise ValueError(f"{name} is already registered with other labels: {existing_labels}")
    return existing


class PipelineMetrics:
    """The refresher's own families: consumer backlog and how each part fares.

    Create it once per registry; a service's metrics class that refreshes
    figures of its own extends it.
    """

    def __init__(self, registry: CollectorRegistry) -> None:
        self.consumer_backlog = SnapshotGauge(
            "lapor_jetstream_consumer_backlog_messages",
            "Messages a durable consumer has not finished: pending delivery plus "
            "delivered and not yet acked",
            ["stream", "consumer"],
            registry,
        )
        self.consumer_redelivered = SnapshotGauge(
            "lapor_jetstream_consumer_redelivered_messages",
            "Messages of a durable consumer redelivered and not yet acked",
            ["stream", "consumer"],
            registry,
        )
        self.refresh_timestamp = SnapshotGauge(
            "lapor_metrics_refresh_timestamp_seconds",
            "When each part of the background refresh last succeeded (Unix time)",
            ["part"],
            registry,
        )
        self.refresh_errors = counter(
            registry,
            "lapor_metrics_refresh_errors_total",
            "Background refreshes of a part that failed",
            ["part"],
        )


# --------------------------------------------------------------------------
# Refresh: a service's own parts, and its consumers
# --------------------------------------------------------------------------


class ConsumerInfoSource(Protocol):
    def consumer_info(self, stream: str, consumer: str) -> Awaitable[Any]: ...


JetStreamSource = Callable[[], ConsumerInfoSource | None]
# One part of a refresh: sets its gauges for the moment it is given.
Part = Callable[[datetime], Awaitable[None]]


@dataclass(frozen=True)
class RefreshPlan:
    """What one service refreshes: its own parts (by the name the
    `part` label shows), refreshed in that order, then its consumers. A figure
    belongs to one service's parts, so it is exported by exactly one scrape target."""

    consumers: Sequence[tuple[str, str]] = ()
    parts: Mapping[str, Part] = field(default_factory=dict)


async def refresh_consumers(
    metrics: PipelineMetrics, js: ConsumerInfoSource, consumers: Sequence[tuple[str, str]]
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
    metrics: PipelineMetrics,
    jetstream: JetStreamSource | None,
    plan: RefreshPlan,
    now: datetime | None = None,
) -> None:
    """One refresh of every part in `plan`; a failing part is counted, not raised."""
    moment = now or datetime.now(UTC)
    for part, run in _parts(metrics, jetstream, plan, moment):
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
    metrics: PipelineMetrics,
    jetstream: JetStreamSource | None,
    plan: RefreshPlan,
    now: datetime,
) -> Iterable[tuple[str, Callable[[], Awaitable[bool]]]]:
    def own(refresh: Part) -> Callable[[], Awaitable[bool]]:
        async def run() -> bool:
            await refresh(now)
            return True

        return run

    async def consumers() -> bool:
        js = jetstream() if jetstream is not None else None
        if js is None:
            return False
        await refresh_consumers(metrics, js, plan.consumers)
        return True

    for name, refresh in plan.parts.items():
        yield name, own(refresh)
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
    metrics: PipelineMetrics,
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
            await refresh_once(metrics, source, plan)
            await asyncio.sleep(pause_after(time.monotonic() - started, interval_s))

    return start_task("lapor-metrics-refresh", loop())


def start_consumer_refresher(
    metrics: PipelineMetrics, broker: Any, interval_s: float
) -> Callable[[], Awaitable[None]]:
    """Backlog and redeliveries of the consumers `broker` declared, for a service that
    exports no refreshed figures of its own; returns the stop coroutine."""
    return start_refresher(metrics, broker, RefreshPlan(declared_consumers(broker)), interval_s)
