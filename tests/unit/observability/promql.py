"""Helpers for checking PromQL against the metrics the code really exposes."""

from __future__ import annotations

import re
import shutil

from faststream.nats import NatsBroker
from faststream.nats.prometheus import NatsPrometheusMiddleware
from prometheus_client import CollectorRegistry

from lapor.runtime.metrics import DomainMetrics
from services.gateway.metrics import GatewayMetrics
from services.hotspots.metrics import HotspotMetrics
from services.intake.photo_api import PhotoMetrics
from services.intake.sessions import login_failures_metric
from services.notify.delivery import NotifyMetrics
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


def _lapor_registry() -> CollectorRegistry:
    registry = CollectorRegistry()
    # In the order sla registers them: its own families first, the shared ones adopt.
    SlaMetrics(registry)
    DomainMetrics(registry)
    NotifyMetrics(registry)
    GatewayMetrics(registry)
    HotspotMetrics(registry)
    PhotoMetrics(registry)
    login_failures_metric(registry)
    NatsBroker(
        "nats://127.0.0.1:1",
        middlewares=[NatsPrometheusMiddleware(registry=registry, app_name="check")],
    )
    return registry


def known_series() -> frozenset[str]:
    """Every series name Prometheus can scrape: Lapor's (domain, FastStream) and the exporters'."""
    names = _lapor_registry()._names_to_collectors
    return frozenset(names) | PROMETHEUS_SERIES | EXPORTER_SERIES


def lapor_series() -> frozenset[str]:
    """Series scraped from the Lapor services (job `lapor`), which all carry the
    `service` target label; `up{job="lapor"}` does too."""
    return frozenset(_lapor_registry()._names_to_collectors) | {"up"}


def series_with_label(label: str) -> frozenset[str]:
    """Lapor series whose own label names include `label`."""
    return frozenset(
        name
        for name, collector in _lapor_registry()._names_to_collectors.items()
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
