"""Helpers for checking PromQL against the metrics the code really exposes."""

from __future__ import annotations

import re
import shutil
from typing import Any

from faststream.nats import NatsBroker
from faststream.nats.prometheus import NatsPrometheusMiddleware
from prometheus_client import CollectorRegistry

from lapor.runtime.metrics import PipelineMetrics
from services.gateway.metrics import GatewayMetrics
from services.hotspots.metrics import HotspotMetrics
from services.intake.metrics import IntakeMetrics
from services.intake.photo_api import PhotoMetrics
from services.intake.sessions import login_failures_metric
from services.notify.delivery import NotifyMetrics
from services.router.metrics import RouterMetrics
from services.sla.metrics import SlaMetrics

# Series Prometheus makes itself rather than scraping them.
PROMETHEUS_SERIES = frozenset({"up", "scrape_duration_seconds", "scrape_samples_scraped"})
# Series of the exporters docker-compose.yml runs, as they name them:
# prometheus-nats-exporter 0.20 (collector/healthz.go, collector/jsz.go; no
# -prefix, so core series are gnatsd_*, JetStream ones jetstream_*) and
# percona mongodb_exporter 0.47.
EXPORTER_SERIES = frozenset(
    {
        "gnatsd_healthz_status",
        "jetstream_consumer_num_pending",
        "jetstream_consumer_num_ack_pending",
        "mongodb_up",
    }
)
_KEYWORDS = frozenset({"and", "or", "unless", "offset", "bool", "inf", "nan"})
_CLAUSE = re.compile(
    r"\b(?:by|without|on|ignoring|group_left|group_right)\s*\([^)]*\)", re.IGNORECASE
)
_IDENT = re.compile(r"(?<![\w:.])([a-zA-Z_:][a-zA-Z0-9_:]*)(?![\w:])(\s*\()?")


def service_registries() -> dict[str, CollectorRegistry]:
    """Each service's own families, on its registry in the order its wiring declares them."""
    intake, router, sla, notify, hotspots, gateway = (CollectorRegistry() for _ in range(6))
    IntakeMetrics(intake)
    login_failures_metric(intake)
    PhotoMetrics(intake)
    RouterMetrics(router)
    SlaMetrics(sla)
    PipelineMetrics(sla)
    NotifyMetrics(notify)
    PipelineMetrics(notify)
    HotspotMetrics(hotspots)
    PipelineMetrics(hotspots)
    GatewayMetrics(gateway)
    return {
        "intake": intake,
        "router": router,
        "sla": sla,
        "notify": notify,
        "hotspots": hotspots,
        "gateway": gateway,
    }


def _lapor_collectors() -> dict[str, Any]:
    """Series name to collector, over every service's registry and FastStream's."""
    faststream = CollectorRegistry()
    NatsBroker(
        "nats://127.0.0.1:1",
        middlewares=[NatsPrometheusMiddleware(registry=faststream, app_name="check")],
    )
    collectors: dict[str, Any] = {}
    for registry in (*service_registries().values(), faststream):
        collectors.update(registry._names_to_collectors)
    return collectors


def known_series() -> frozenset[str]:
    """Every series name Prometheus can scrape: Lapor's (domain, FastStream) and the exporters'."""
    return frozenset(_lapor_collectors()) | PROMETHEUS_SERIES | EXPORTER_SERIES


def lapor_series() -> frozenset[str]:
    """Series scraped from the Lapor services (job `lapor`), which all carry the
    `service` target label; `up{job="lapor"}` does too."""
    return frozenset(_lapor_collectors()) | {"up"}


def series_with_label(label: str) -> frozenset[str]:
    """Lapor series whose own label names include `label`."""
    return frozenset(
        name
        for name, collector in _lapor_collectors().items()
        # prometheus_client's own metrics keep `_labelnames`, Lapor's snapshot gauges `labelnames`.
        if label
        in (getattr(collector, "_labelnames", None) or getattr(collector, "labelnames", ()))
    )


def metric_names(expr: str) -> set[str]:
    """Metric names used by a PromQL expression (functions, labels and keywords left out)."""
    text = re.sub(r'"(?:[^"\\]|\\.)*"', '""', expr)
    text = re.sub(r"\{[^}]*\}", "", text)
    text = re.sub(r"\[[^\]]*\]", "", text)
    text = _CLAUSE.sub("", text)
    names = set()
    for match in _IDENT.finditer(text):
        name, call = match.group(1), match.group(2)
        if call or name.lower() in _KEYWORDS:
            continue
        names.add(name)
    return names


def promtool() -> str | None:
    return shutil.which("promtool")
