"""The console's Prometheus metrics: pages served and the services' answer times.

Labels are route templates and service names only: never a username, a tracking
id or anything a citizen typed.
"""

from prometheus_client import CollectorRegistry, Counter, Histogram

_BUCKETS = (0.01, 0.025, 0.05, 0.1, 0.2, 0.5, 1.0, 2.5, 5.0)


class ConsoleMetrics:
    def __init__(self, registry: CollectorRegistry) -> None:
        self.pages = Counter(
            "lapor_console_requests",
            "Console requests by route template, method and status",
            ["route", "method", "status"],
            registry=registry,
        )
        self.page_seconds = Histogram(
            "lapor_console_request_seconds",
            "Server time of a console request, by route template",
            ["route"],
            buckets=_BUCKETS,
            registry=registry,
        )
        self.backend_seconds = Histogram(
            "lapor_console_backend_seconds",
            "Time of one call to intake, SLA or notify",
            ["service"],
            buckets=_BUCKETS,
            registry=registry,
        )
        self.refusals = Counter(
            "lapor_console_refusals",
            "Requests the console refused itself: csrf, session",
            ["reason"],
            registry=registry,
        )
