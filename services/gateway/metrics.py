"""The connector's Prometheus metrics. No label carries a phone number or a text."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge


class GatewayMetrics:
    def __init__(self, registry: CollectorRegistry) -> None:
        self.registry = registry
        self.received = Counter(
            "lapor_gateway_sms_received_total",
            "SMS Kannel handed over from the SMSC, by outcome "
            "(published, duplicate: a retried callback, invalid).",
            ["outcome"],
            registry=registry,
        )
        self.queued = Counter(
            "lapor_gateway_sms_queued_total",
            "Outgoing SMS Kannel or the SMSC holds for later delivery.",
            ["where"],
            registry=registry,
        )
        self.submitted = Counter(
            "lapor_gateway_sms_submitted_total",
            "Outgoing SMS accepted by Kannel's sendsms interface.",
            registry=registry,
        )
        self.delivered = Counter(
            "lapor_gateway_sms_delivered_total",
            "Outgoing SMS the SMSC reported delivered to the phone.",
            registry=registry,
        )
        self.failed = Counter(
            "lapor_gateway_sms_failed_total",
            "Outgoing SMS that failed for good, by reason "
            "(refused by Kannel, rejected by the SMSC, undelivered, expired).",
            ["reason"],
            registry=registry,
        )
        self.kannel_errors = Counter(
            "lapor_gateway_kannel_errors_total",
            "Calls to Kannel that failed and will be retried, by kind "
            "(unreachable, timeout, busy, login, status).",
            ["kind"],
            registry=registry,
        )
        self.kannel_up = Gauge(
            "lapor_gateway_kannel_up",
            "1 when bearerbox's status page answered at the last poll.",
            registry=registry,
        )
        self.smsc_up = Gauge(
            "lapor_gateway_smsc_up",
            "1 when Kannel's link to the SMSC is online, per smsc-id.",
            ["smsc"],
            registry=registry,
        )
