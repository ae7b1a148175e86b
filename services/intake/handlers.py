"""Intake's entry points on the bus: each takes one message as the wire gives it,
calls its use case (services/intake/usecases.py for inbound messages,
services/intake/changes.py for stored complaints) and decides the acknowledgement.

A message is acknowledged once its use case returns, also when it ended in a
kept rejection or a refusal answered on the bus. An exception asks for the
message again: `ComplaintNotYetKnown` (an event about a complaint this replica
cannot see yet) and any failure of the store or the bus.
"""

import logging
from datetime import datetime

from lapor.contracts import (
    AutoCloseDue,
    Channel,
    ComplaintRouted,
    DeadlinesSet,
    InboundSms,
    InboundWeb,
)
from lapor.contracts.commands import ComplaintCommand
from lapor.contracts.partners import partner_source
from lapor.runtime.service import ContractViolation
from services.intake import changes, usecases
from services.intake.ports import IntakeDeps
from services.intake.usecases import SubmissionConflict, SubmissionRejected

log = logging.getLogger(__name__)


async def handle_sms(
    sms: InboundSms, deps: IntakeDeps, received_at: datetime | None = None
) -> None:
    """`received_at`: when the server stored the message (now, if unknown), never the
    time the payload claims, which only the gateway vouches for."""
    await usecases.receive_sms(sms, deps, received_at or deps.clock())


async def handle_partner(
    submission: InboundWeb, partner: str, deps: IntakeDeps, received_at: datetime | None = None
) -> None:
    """`lapor.inbound.partner.<partner>`: stored as `partner:<partner>`, the name the
    subject gives, since only that partner's login may publish there; the payload's
    `source` could name anyone. So a partner's message ids are its own, and it can
    only file complaints: a phone number it gives is a reply contact, never a sender
    of SMS commands. A rejection is kept and announced; it is not retried. A used
    `message_id` with a different submission changes nothing."""
    submission = submission.model_copy(update={"source": partner_source(partner)})
    try:
        await usecases.accept_submission(submission, Channel.WEB, deps, received_at)
    except SubmissionRejected:
        pass
    except SubmissionConflict as conflict:
        log.warning("partner message ignored: %s (partner %s)", conflict, partner)


async def handle_contract_violation(
    violation: ContractViolation, channel: Channel, deps: IntakeDeps
) -> None:
    """After the runtime kept its dead letter: a `malformed` rejection record."""
    await usecases.reject_malformed(violation, channel, deps)


async def handle_command(command: ComplaintCommand, deps: IntakeDeps) -> None:
    await changes.run_command(command, deps)


async def handle_auto_close(event: AutoCloseDue, deps: IntakeDeps) -> None:
    await changes.close_or_open_reply_window(event, deps)


async def handle_routed(event: ComplaintRouted, deps: IntakeDeps) -> None:
    await changes.record_routing(event, deps)


async def handle_deadlines(event: DeadlinesSet, deps: IntakeDeps) -> None:
    await changes.record_deadlines(event, deps)
