"""Use cases of the SMS gateway connector: a received SMS onto the bus, an outgoing
SMS into Kannel, a delivery report back onto the bus."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Protocol

from pydantic import BaseModel

from lapor.contracts import InboundSms
from lapor.contracts.outbound import OutboundSms, SmsDeliveryReceipt
from lapor.runtime.http import TokenBuckets
from services.gateway import domain
from services.gateway.kannel import NO_ANSWER, KannelPort, KannelRefused, KannelUnavailable
from services.gateway.metrics import GatewayMetrics
from services.gateway.repository import (
    REFUSED,
    SUBMITTED,
    UNCERTAIN,
    Submission,
    SubmissionRepository,
)

log = logging.getLogger(__name__)


class Publisher(Protocol):
    async def publish(self, message: BaseModel, msg_id: str) -> bool: ...


class SendPace:
    """The SMSC account's rate: a token bucket, one token per SMS handed to Kannel."""

    KEY = "sendsms"

    def __init__(self, rate_per_s: float, clock: Callable[[], float] | None = None) -> None:
        # A burst of one second's worth: the contract counts per second.
        burst = max(1, int(rate_per_s))
        kwargs = {"clock": clock} if clock is not None else {}
        self._bucket = TokenBuckets(round(rate_per_s * 60), burst, **kwargs)

    async def wait(self) -> None:
        while True:
            delay = self._bucket.take(self.KEY)
            if delay <= 0:
                return
            await asyncio.sleep(delay)


@dataclass
class GatewayDeps:
    kannel: KannelPort
    submissions: SubmissionRepository
    inbound: Publisher
    receipts: Publisher
    metrics: GatewayMetrics
    pace: SendPace
    login: domain.SendSmsLogin
    # How long an SMS sent without an answer waits for a delivery report before it is
    # sent again (GATEWAY_UNANSWERED_WAIT_S).
    unanswered_wait: timedelta = timedelta(minutes=5)
    clock: Callable[[], datetime] = lambda: datetime.now(UTC)


# --- received SMS (MO) ---------------------------------------------------------------


async def receive_sms(sms: domain.ReceivedSms, short_code: str, deps: GatewayDeps) -> None:
    """Publish a received SMS; returns only once JetStream stored it. Kannel's id is the
    message id, so a callback Kannel retries is stored once."""
    message = InboundSms.model_validate(
        {
            "from": sms.sender,
            "to": sms.receiver or short_code,
            "text": sms.text,
            "gateway_id": f"kannel:{sms.kannel_id}",
            "received_at": sms.sent_at,
        }
    )
    new = await deps.inbound.publish(message, message.gateway_id)
    deps.metrics.received.labels(outcome="published" if new else "duplicate").inc()
    log.info("received SMS %s %s", message.gateway_id, "published" if new else "was a repeat")


# --- outgoing SMS (MT) ---------------------------------------------------------------


async def submit_sms(sms: OutboundSms, deps: GatewayDeps) -> None:
    """Hand one outgoing SMS to Kannel, once per notification id.

    Kannel unavailable: the exception goes back to the broker, which redelivers the
    message after the project's backoff; nothing is acked before Kannel accepted.
    """
    nid = sms.notification_id
    record = await deps.submissions.claim(nid, sms.complaint_id, deps.clock())
    if record.status == SUBMITTED:
        log.info("SMS %s already submitted to Kannel; not sent again", nid)
        return
    if record.status == REFUSED:
        # Its receipt may not have gone out before a crash: send it again (same id).
        await _publish_outcome(nid, "failed", record.error or "refused by Kannel", deps)
        return
    if record.status == UNCERTAIN and _still_unanswered(record, deps):
        if record.reported:
            log.info("SMS %s reached Kannel after all (delivery report); not sent again", nid)
            await deps.submissions.mark_submitted(nid, "reported", deps.clock())
            deps.metrics.submitted.inc()
            return
        # Tried again when the wait ends, not at the backoff's next step after it.
        raise KannelUnavailable(
            "awaiting_report",
            "sent without an answer, no report yet",
            retry_in_s=_left_to_wait(record, deps).total_seconds(),
        )
    await deps.pace.wait()
    query = domain.sendsms_query(deps.login, sms.to, sms.text, nid)
    try:
        answer = await deps.kannel.sendsms(query)
    except KannelUnavailable as exc:
        deps.metrics.kannel_errors.labels(kind=exc.kind).inc()
        if exc.kind == NO_ANSWER:
            await deps.submissions.mark_uncertain(nid, deps.clock())
        raise
    except KannelRefused as exc:
        error = f"refused by Kannel: {exc}"
        deps.metrics.failed.labels(reason="refused").inc()
        # The receipt first: a crash before the mark sends it again on redelivery.
        await _publish_outcome(nid, "failed", error, deps)
        await deps.submissions.mark_refused(nid, error, deps.clock())
        log.warning("SMS %s refused by Kannel: %s", nid, exc)
        return
    await deps.submissions.mark_submitted(nid, answer, deps.clock())
    deps.metrics.submitted.inc()
    if "queued" in answer.lower():
        deps.metrics.queued.labels(where="kannel").inc()
    log.info("SMS %s submitted to Kannel (%s)", nid, answer)


# --- delivery reports (DLR) ----------------------------------------------------------


def _left_to_wait(record: Submission, deps: GatewayDeps) -> timedelta:
    """What is left of the wait for a report after a call without an answer."""
    waited = deps.clock() - (record.uncertain_at or deps.clock())
    return max(deps.unanswered_wait - waited, timedelta(0))


def _still_unanswered(record: Submission, deps: GatewayDeps) -> bool:
    """Within the wait for a report after a call without an answer (or reported)."""
    if record.reported:
        return True
    return record.uncertain_at is not None and _left_to_wait(record, deps) > timedelta(0)


async def record_delivery_report(
    notification_id: str, dlr_type: int, smsc_reply: str, deps: GatewayDeps
) -> None:
    """A final report becomes one SmsDeliveryReceipt; progress reports are counted.
    Any report proves Kannel holds the SMS (see `submit_sms`)."""
    await deps.submissions.mark_reported(notification_id, deps.clock())
    outcome = domain.outcome_of(dlr_type, smsc_reply)
    if outcome is None:
        if dlr_type & domain.DLR_BUFFERED:
            deps.metrics.queued.labels(where="smsc").inc()
        return
    new = await _publish_outcome(notification_id, outcome.status, outcome.error, deps)
    if new:
        if outcome.status == "delivered":
            deps.metrics.delivered.inc()
        else:
            deps.metrics.failed.labels(reason=outcome.reason).inc()
    await deps.submissions.mark_outcome(notification_id, outcome.reason, deps.clock())
    log.info("SMS %s: %s", notification_id, outcome.reason)


async def _publish_outcome(
    notification_id: str, status: str, error: str | None, deps: GatewayDeps
) -> bool:
    receipt = SmsDeliveryReceipt.model_validate(
        {"notification_id": notification_id, "status": status, "error": error, "at": deps.clock()}
    )
    return await deps.receipts.publish(receipt, f"receipt:{notification_id}:{status}")


# --- SMSC link -----------------------------------------------------------------------


async def poll_status(deps: GatewayDeps) -> None:
    """Read bearerbox's status page into the link gauges; a failure marks Kannel down."""
    try:
        page = await deps.kannel.status_page()
        links = domain.smsc_links(page)
    except Exception as exc:  # unreachable, refused, not XML: Kannel is not usable
        deps.metrics.kannel_up.set(0)
        deps.metrics.kannel_errors.labels(kind="status").inc()
        log.warning("Kannel status page unavailable (%s)", type(exc).__name__)
        return
    deps.metrics.kannel_up.set(1)
    for link in links:
        deps.metrics.smsc_up.labels(smsc=link.smsc_id).set(1 if link.online else 0)
