"""Prometheus metrics of the hotspots service. Labels name agencies, never people."""

from __future__ import annotations

from collections.abc import Iterable

from prometheus_client import CollectorRegistry, Counter, Gauge

from services.hotspots.domain import Hotspot, Tally


class HotspotMetrics:
    def __init__(self, registry: CollectorRegistry) -> None:
        self.open = Gauge(
            "lapor_hotspots_open",
            "Open hotspots (suggested or confirmed, two members or more), by agency.",
            ["agency"],
            registry=registry,
        )
        self.joined = Counter(
            "lapor_hotspot_members_joined_total",
            "Complaints grouped into a hotspot automatically (forming or joining one).",
            ["agency"],
            registry=registry,
        )
        self.changes = Counter(
            "lapor_hotspot_changes_total",
            "Hotspot changes stored, by change (formed, joined, left, confirmed, split, "
            "merged, answered).",
            ["change"],
            registry=registry,
        )
        self.answered = Counter(
            "lapor_hotspot_answers_sent_total",
            "Answer commands sent for the members of answered hotspots, by agency.",
            ["agency"],
            registry=registry,
        )

    def set_open(self, hotspots: Iterable[Hotspot]) -> None:
        counts = Tally.of(hotspots).by_agency
        for labels in list(self.open._metrics):  # agencies that no longer have any
            if labels[0] not in counts:
                self.open.labels(agency=labels[0]).set(0)
        for agency, count in counts.items():
            self.open.labels(agency=agency).set(count)
