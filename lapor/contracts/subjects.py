"""Subject names and the JetStream streams that keep them.

Inbound subjects are written by outside channels (the SMS gateway, partner
systems, each on its own subject); events are written by the services;
outbound subjects are read by delivery connectors (the SMS gateway connector).
"""

from dataclasses import dataclass

INBOUND_SMS = "lapor.inbound.sms"
INBOUND_PARTNER_PREFIX = "lapor.inbound.partner"
INBOUND_PARTNERS = f"{INBOUND_PARTNER_PREFIX}.*"


def inbound_partner(partner: str) -> str:
    """The one subject partner `partner` publishes on (see `lapor.contracts.partners`)."""
    return f"{INBOUND_PARTNER_PREFIX}.{partner}"


def partner_of(subject: str) -> str | None:
    """The partner a message came from, named by the subject it was published on."""
    prefix, _, partner = subject.rpartition(".")
    return partner if prefix == INBOUND_PARTNER_PREFIX and partner else None


COMPLAINT_RECEIVED = "lapor.event.complaint.received"
COMPLAINT_ROUTED = "lapor.event.complaint.routed"
COMPLAINT_DEADLINES = "lapor.event.complaint.deadlines"
COMPLAINT_STATE_CHANGED = "lapor.event.complaint.state"
# The move to `assigned` or `triage` that a routing decision causes: the same
# event, apart, as no service needs it beside the decision itself
# (`ComplaintStateChanged.follows_routing`); the whole history subscribes to both.
COMPLAINT_STATE_ROUTED = "lapor.event.complaint.state.routed"
COMPLAINT_PHOTO_ATTACHED = "lapor.event.complaint.photo"
PHOTO_REFUSED = "lapor.event.photo.refused"

SLA_ALERT = "lapor.event.sla.alert"
SLA_ESCALATION = "lapor.event.sla.escalation"
SLA_AUTO_CLOSE = "lapor.event.sla.auto_close"
INBOUND_REJECTED = "lapor.event.inbound.rejected"
HOTSPOT_CHANGED = "lapor.event.hotspot.changed"
CITIZEN_COMMAND_ANSWERED = "lapor.event.citizen.answered"

COMPLAINT_FORWARDED = "lapor.event.complaint.forwarded"
COMMAND_REJECTED = "lapor.event.command.rejected"
COMMAND_PREFIX = "lapor.command.complaint"
COMMANDS = f"{COMMAND_PREFIX}.*"

OUTBOUND_SMS = "lapor.outbound.sms"
OUTBOUND_SMS_STATUS = "lapor.outbound.sms.status"


@dataclass(frozen=True)
class StreamSpec:
    name: str
    subjects: tuple[str, ...]


# One stream per direction: inbound traffic, domain events, outbound messages.
INBOUND_STREAM = StreamSpec("LAPOR_INBOUND", ("lapor.inbound.>",))
EVENTS_STREAM = StreamSpec("LAPOR_EVENTS", ("lapor.event.>",))
OUTBOUND_STREAM = StreamSpec("LAPOR_OUTBOUND", ("lapor.outbound.>",))
COMMANDS_STREAM = StreamSpec("LAPOR_COMMANDS", ("lapor.command.>",))
STREAMS = (INBOUND_STREAM, EVENTS_STREAM, OUTBOUND_STREAM, COMMANDS_STREAM)

# Notify gave up on a notification (permanent error or retries exhausted).
NOTIFICATION_FAILED = "lapor.event.notification.failed"
