"""The router's Prometheus metrics."""

from __future__ import annotations

from prometheus_client import CollectorRegistry

from lapor.runtime.metrics import PipelineMetrics, counter


class RouterMetrics(PipelineMetrics):
    """The router's families on its registry (create it once per registry)."""

    def __init__(self, registry: CollectorRegistry) -> None:
        # Incremented once per new routing decision; pass labels by keyword.
        self.routing_decisions = counter(
            registry,
            "lapor_routing_decisions_total",
            "Routing decisions, by agency code (OUT_OF_SCOPE, or TRIAGE when unsure) and priority",
            ["agency", "priority"],
        )
        super().__init__(registry)
