"""Message contracts shared by every Lapor service: subjects and payload models.

This package is the public contract of the bus. It holds no behaviour beyond
validation, so every service (and any outside channel) can depend on it.
"""

from lapor.contracts.events import (
    AGENCY_OUT_OF_SCOPE,
    STATE_LABELS,
    AutoCloseDue,
    Channel,
    CitizenCommandAnswered,
    ComplaintReceived,
    ComplaintRouted,
    ComplaintStateChanged,
    DeadlineAlert,
    Deadlines,
    DeadlinesSet,
    EscalationLevel,
    EscalationRaised,
    Event,
    InboundRejected,
    Place,
    PlaceArea,
    PlaceCandidate,
    Priority,
    RejectionReason,
    SlaClock,
    State,
    routed_event_id,
    routing_round,
)
from lapor.contracts.inbound import InboundSms, InboundWeb, Location
from lapor.contracts.outbound import NotificationFailed, OutboundSms, SmsDeliveryReceipt

__all__ = [
    "AGENCY_OUT_OF_SCOPE",
    "STATE_LABELS",
    "AutoCloseDue",
    "Channel",
    "CitizenCommandAnswered",
    "ComplaintReceived",
    "ComplaintRouted",
    "ComplaintStateChanged",
    "DeadlineAlert",
    "Deadlines",
    "DeadlinesSet",
    "EscalationLevel",
    "EscalationRaised",
    "Event",
    "InboundRejected",
    "InboundSms",
    "InboundWeb",
    "Location",
    "NotificationFailed",
    "OutboundSms",
    "Place",
    "PlaceArea",
    "PlaceCandidate",
    "Priority",
    "RejectionReason",
    "SlaClock",
    "SmsDeliveryReceipt",
    "State",
    "routed_event_id",
    "routing_round",
]
