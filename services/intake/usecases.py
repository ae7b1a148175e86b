"""Intake's use cases for inbound messages: an SMS (a complaint, a repeat, a command),
a submission from the web, Open311 or a partner, and a message that broke its
contract. Each keeps what it accepted or a rejection record, and announces it
through the store's outbox.

The lifecycle of a stored complaint (commands, routing, deadlines, auto-close)
is in services/intake/changes.py.
"""

import logging
import secrets
from datetime import datetime
from typing import Any

from lapor.contracts import Channel, InboundSms, InboundWeb, RejectionReason
from lapor.runtime.service import ContractViolation
from services.intake import domain, inbound, lifecycle
from services.intake.changes import execute
from services.intake.guard import DAY, RateLimit, SenderMessages, similar_complaint, windows
from services.intake.inbound import Inbound, Refusal, SmsCommand
from services.intake.phones import DEFAULT_SMS_COUNTRIES, normalize_phone, phone_hash
from services.intake.ports import Document, IntakeDeps, TrackingIdTaken
from services.intake.sms import (
    CitizenReply,
    Invalid,
    NewComplaint,
    StatusQuery,
    contract_fault,
    parse_sms,
    sender_in_payload,
)
from services.intake.text import clean_text
from services.intake.tracking import new_tracking_id

log = logging.getLogger(__name__)

# The most of a broken payload a rejection record keeps, as the dead letter does.
_MAX_KEPT_PAYLOAD = 64_000
# Tracking ids are random: a collision is rare, several in a row a fault.
_TRACKING_ID_ATTEMPTS = 5


class SubmissionRejected(Exception):
    """A web or partner submission that is kept as a rejection record, with the reason."""

    def __init__(self, reason: RejectionReason, detail: str) -> None:
        super().__init__(detail)
        self.reason = reason
        self.detail = detail


class SubmissionConflict(Exception):
    """A used `source` + `message_id` sent again with a different submission: refused,
    nothing stored or announced."""


async def receive_sms(sms: InboundSms, deps: IntakeDeps, received_at: datetime) -> None:
    """An SMS from the gateway: a complaint, a repeat of one, a command, or a rejection.

    `received_at` is when the server stored the message: limits, windows and the
    complaint's time use it, never the time the payload claims."""
    phone = normalize_phone(sms.sender)
    sender_hash = phone_hash(phone, deps.phone_key) if phone else None
    message = inbound.sms_inbound(sms, phone, sender_hash, received_at)
    # One sender's messages are judged one after another: limits and repeats are
    # about order, and a burst arrives in one batch.
    async with deps.senders.hold(sender_hash or sms.sender):
        # A gateway retry of a message that already became a complaint changes
        # nothing; what is still unannounced of it goes out now. Counting the
        # sender's message tells a first delivery, which needs no lookup.
        counted = await _count_message(deps, message, received_at)
        first = counted is not None and counted.first
        if not first and (known := await deps.repo.by_source(message.source_key)) is not None:
            await deps.repo.announce(known)
            return
        limited, last_day = await _rate_limited(deps, message, received_at, counted=counted)
        if limited:
            return
        parsed = parse_sms(sms.text, deps.region_keywords, min_words=deps.min_words)
        if isinstance(parsed, NewComplaint):
            await _new_sms_complaint(deps, parsed, message, received_at, last_day)
        elif isinstance(parsed, Invalid):
            await _reject(deps, message, Refusal(parsed.rejection_reason, parsed.detail))
        else:
            await _answer_sms_command(deps, parsed, message)


async def _new_sms_complaint(
    deps: IntakeDeps,
    parsed: NewComplaint,
    message: Inbound,
    received_at: datetime,
    messages_last_day: int,
) -> None:
    """`messages_last_day`: the sender's, this one included. Each SMS complaint's message
    is counted at the time it was received, so a sender with no other message in the
    last day has no complaint in a repeat window as long or shorter: none to read."""
    alone = messages_last_day <= 1 and deps.duplicate_window <= DAY
    if message.phone_hash is not None and not alone:
        since = received_at - deps.duplicate_window
        recent = await deps.repo.recent_by_sender(message.phone_hash, since)
        if (same := similar_complaint(parsed.text, recent, deps.duplicate_similarity)) is not None:
            await _link_duplicate(deps, same, message)
            return
    complaint = await _store_complaint(
        deps,
        message,
        region=parsed.region,
        text=parsed.text,
        received_at=received_at,
        anonymous=parsed.anonymous,
        confidential=parsed.confidential,
        truncated=parsed.truncated,
    )
    await deps.repo.announce(complaint)
    log.info("complaint received", extra={"complaint_id": complaint["_id"]})


async def _link_duplicate(deps: IntakeDeps, same: Document, message: Inbound) -> None:
    """The same text again: noted on the first complaint, the citizen told its id."""
    await deps.repo.apply(same["_id"], inbound.duplicate_note(message.source_key, deps.clock()))
    refusal = Refusal(RejectionReason.DUPLICATE, f"same text as {same['_id']}")
    await _reject(deps, message, refusal, complaint=same)


async def _answer_sms_command(deps: IntakeDeps, command: SmsCommand, message: Inbound) -> None:
    """CEK, BALAS, NILAI, BUKA and BATAL: applied if the sender filed the complaint,
    and answered in any case (a complaint of someone else is "not found")."""
    doc = await deps.repo.get(command.tracking_id)
    mine = doc if doc is not None and domain.filed_by(doc, message.phone_hash) else None
    refused: str | None = None
    if mine is not None and isinstance(command, CitizenReply):
        mine = await _citizen_reply(deps, command, message) or mine
    elif mine is not None and not isinstance(command, StatusQuery):
        try:
            # As on the web, a rating before the answer is refused rather than kept:
            # a score in the complaint would count in the agency's performance report.
            sms_command = inbound.sms_command(command, message.source_key, message.phone_hash)
            mine = await execute(sms_command, deps)
        except lifecycle.Refused as refusal:
            refused = refusal.reason
    event_id = inbound.answer_event_id(message.source_key)
    answer = inbound.command_answer(
        command,
        mine,
        event_id=event_id,
        at=deps.clock(),
        reply_to_sealed=deps.sealed(event_id, "reply_to_sealed", message.phone),
        refused=refused,
    )
    await deps.answered.publish(answer, msg_id=event_id)


async def _citizen_reply(
    deps: IntakeDeps, command: CitizenReply, message: Inbound
) -> Document | None:
    """BALAS goes through the lifecycle rules (an answer to a question resumes the
    agency's clock); what the rules do not allow is still kept as a note."""
    try:
        return await execute(
            inbound.sms_command(command, message.source_key, message.phone_hash), deps
        )
    except lifecycle.Refused:
        event_id = domain.command_event_id(message.source_key)
        note = domain.citizen_reply_transition(event_id, deps.clock(), command.text)
        return await deps.repo.apply(command.tracking_id, note)


async def accept_submission(
    submission: InboundWeb, channel: Channel, deps: IntakeDeps, received_at: datetime | None = None
) -> Document:
    """Store a complaint from the web, Open311 or a partner channel and announce it.

    `source` + `message_id` is the idempotency key; the caller scopes it (the web
    API puts the token, or the anonymous web, into `source`; Open311 the client; a
    partner's subject the partner). `received_at` is when the server received it
    (now, if not given): the per-number limit and the complaint's time use it, not
    the submission's own `received_at`.
    The key is bound to the whole submission: returns the complaint (the first one
    for a resend of the same submission under the same key); raises
    `SubmissionConflict` for the same key with anything else changed, and
    `SubmissionRejected` after keeping a rejection record.
    """
    phone = normalize_phone(submission.phone) if submission.phone else None
    message = Inbound(
        channel,
        inbound.submission_key(submission, channel),
        phone,
        phone_hash(phone, deps.phone_key) if phone else None,
        inbound.kept_submission(submission),
    )
    binding = inbound.submission_binding(submission, deps.phone_key)
    if (known := await deps.repo.by_source(message.source_key)) is None:
        receipt = received_at or deps.clock()
        known = await _store_submission(deps, submission, message, binding, receipt)
    # Also checked on what was just stored: a concurrent first use of the key with
    # another submission may have won the insert.
    if not inbound.binding_matches(known, binding):
        raise SubmissionConflict(
            f"{submission.message_id!r} was already used for a different submission"
        )
    # A resend is announced with the reply addresses of the first submission only:
    # whoever knows a message id must not become the complaint's contact.
    await deps.repo.announce(known)
    return known


async def _store_submission(
    deps: IntakeDeps,
    submission: InboundWeb,
    message: Inbound,
    binding: str,
    received_at: datetime,
) -> Document:
    cleaned = clean_text(submission.text)
    refusal = inbound.submission_refusal(
        submission,
        cleaned.text,
        message.phone,
        region_ids=deps.region_ids,
        countries=deps.sms_countries.get(submission.region, DEFAULT_SMS_COUNTRIES),
        min_words=deps.min_words,
    )
    if refusal is None and message.phone_hash is not None:
        # The same per-number limit as the number's SMS: every submission giving a
        # number counts, whatever the channel, so the web cannot pump SMS to it.
        async with deps.senders.hold(message.phone_hash):
            over, _ = await _counted_over_limit(deps, message, received_at)
            if over is not None:
                refusal = Refusal(RejectionReason.RATE_LIMITED, inbound.TOO_MANY_FOR_NUMBER)
    if refusal is not None:
        # The HTTP answer or the partner's own channel tells the sender, not an SMS.
        await _reject(deps, message, refusal, answer=False)
        raise SubmissionRejected(refusal.reason, refusal.detail)
    return await _store_complaint(
        deps,
        message,
        region=submission.region,
        text=cleaned.text,
        received_at=received_at,
        anonymous=submission.anonymous,
        confidential=submission.confidential,
        truncated=cleaned.truncated,
        submission=inbound.submission_details(submission, binding),
        # Notify answers by e-mail too; an address that does not parse is not used (nor logged).
        reply_email=inbound.reply_email(submission.email),
    )


async def reject_malformed(
    violation: ContractViolation, channel: Channel, deps: IntakeDeps
) -> None:
    """An inbound message that is not JSON or fails its contract: besides its dead
    letter, a `malformed` rejection record, and one reply telling the format to an
    SMS sender whose number can still be read.

    A web or partner message gets no SMS: as for its other rejections, the
    partner's own channel answers its user.
    """
    source_key = f"bus:{violation.dead_letter_id}"
    sender_field = "from" if channel is Channel.SMS else "phone"
    phone = normalize_phone(sender_in_payload(violation.payload, sender_field))
    payload = {
        "dead_letter_id": violation.dead_letter_id,
        "subject": violation.subject,
        # The number may be anywhere in a broken payload: kept sealed, bound to this record.
        "payload_sealed": deps.sealer.seal_bytes(violation.payload[:_MAX_KEPT_PAYLOAD], source_key),
    }
    sender_hash = phone_hash(phone, deps.phone_key) if phone else None
    message = Inbound(channel, source_key, phone, sender_hash, payload)
    refusal = Refusal(RejectionReason.MALFORMED, contract_fault(violation.error))
    if channel is not Channel.SMS or sender_hash is None:
        await _reject(deps, message, refusal, answer=False)
        return
    # Each reply costs an SMS: a broken message counts against the sender's limit too.
    async with deps.senders.hold(sender_hash):
        limited, _ = await _rate_limited(deps, message, deps.clock())
        if not limited:
            await _reject(deps, message, refusal)


async def _count_message(deps: IntakeDeps, message: Inbound, at: datetime) -> SenderMessages | None:
    """Count the message against its sender's number (once, whatever the repeats);
    None when there is no number to count it against."""
    if message.phone_hash is None:
        return None
    return await deps.repo.record_sender_message(message.source_key, message.phone_hash, at)


async def _rate_limited(
    deps: IntakeDeps, message: Inbound, at: datetime, *, counted: SenderMessages | None = None
) -> tuple[bool, int]:
    """Count an SMS sender's message (unless `counted` already); over the limit, keep a
    rejection, and tell the sender once per window. Whether it was over, and the
    sender's messages of the last day (0 without a number)."""
    if message.phone_hash is None:
        return False, 0
    daily, last_day = await _counted_over_limit(deps, message, at, counted=counted)
    if daily is None:
        return False, last_day
    notice = await _claim_notice(deps, message.phone_hash, at, daily=daily)
    refusal = Refusal(RejectionReason.RATE_LIMITED, inbound.TOO_MANY_FROM_SENDER)
    await _reject(deps, message, refusal, answer=notice)
    return True, last_day


async def _counted_over_limit(
    deps: IntakeDeps, message: Inbound, at: datetime, *, counted: SenderMessages | None = None
) -> tuple[bool | None, int]:
    """Count the message against its number (unless `counted` already); None within
    the limits, else whether the daily limit is the one exceeded; and the number's
    messages of the last day."""
    assert message.phone_hash is not None
    if counted is None:
        counted = await deps.repo.record_sender_message(message.source_key, message.phone_hash, at)
    hour_ago, day_ago = windows(at)
    last_day, last_hour = counted.since(day_ago), counted.since(hour_ago)
    if not deps.rate_limit.exceeded(last_hour, last_day):
        return None, last_day
    return deps.rate_limit.over_daily(last_day), last_day


async def _claim_notice(deps: IntakeDeps, sender_hash: str, at: datetime, *, daily: bool) -> bool:
    # Claimed one by one, so a refused claim leaves the later slots free.
    for key in RateLimit.notice_keys(sender_hash, at, daily=daily):
        if not await deps.repo.claim_notice(key):
            return False
    return True


async def _store_complaint(
    deps: IntakeDeps, message: Inbound, *, reply_email: str | None = None, **fields: Any
) -> Document:
    """Store a new complaint with its `received` announcement pending in it."""
    for _ in range(_TRACKING_ID_ATTEMPTS):
        doc = domain.new_complaint(
            tracking_id=new_tracking_id(),
            channel=message.channel,
            source_key=message.source_key,
            phone_hash=message.phone_hash,
            stored_at=deps.clock(),
            **fields,
        )
        event_id = domain.received_event_id(doc["_id"])
        received = domain.received_event(
            doc,
            reply_to_sealed=deps.sealed(event_id, "reply_to_sealed", message.phone),
            reply_email_sealed=deps.sealed(event_id, "reply_email_sealed", reply_email),
        )
        try:
            stored, created = await deps.repo.add_complaint(doc, [received])
        except TrackingIdTaken:
            continue
        if created and deps.metrics is not None:
            deps.metrics.received.labels(channel=stored["channel"], region=stored["region"]).inc()
        return stored
    raise RuntimeError("could not allocate a tracking id")


async def _reject(
    deps: IntakeDeps,
    message: Inbound,
    refusal: Refusal,
    *,
    answer: bool = True,
    complaint: Document | None = None,
) -> None:
    """Keep a rejection record and announce it; `answer`: whether the sender is told
    by SMS (always False for a message with no number)."""
    rejection_id = f"REJ-{secrets.token_hex(6)}"
    reply_to = message.phone if answer else None
    record = inbound.rejection_record(
        message,
        refusal,
        rejection_id=rejection_id,
        at=deps.clock(),
        answered=reply_to is not None,
        complaint=complaint,
    )
    event_id = inbound.rejected_event_id(rejection_id)
    announcement = inbound.rejected_event(
        record, deps.sealed(event_id, "reply_to_sealed", reply_to)
    )
    kept, new = await deps.repo.add_rejection(record, [announcement])
    if new and deps.metrics is not None:
        deps.metrics.rejections.labels(
            channel=message.channel.value, reason=refusal.reason.value
        ).inc()
    # A retry finds the first record: what it still has pending goes out, nothing new.
    await deps.repo.announce_rejection(kept)
    log.info("inbound rejected: %s", refusal.reason.value, extra={"event_id": kept["_id"]})
