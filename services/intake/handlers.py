"""Intake's message handlers: plain async functions over explicit dependencies."""

import hashlib
import hmac
import json
import logging
import re
import secrets
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

from pydantic import BaseModel
from pymongo.errors import DuplicateKeyError

from lapor.contracts import (
    AutoCloseDue,
    Channel,
    CitizenCommandAnswered,
    ComplaintRouted,
    DeadlinesSet,
    InboundRejected,
    InboundSms,
    InboundWeb,
    RejectionReason,
)
from lapor.contracts.commands import Action, Actor, CommandRejected, ComplaintCommand, Role
from lapor.contracts.events import contact_context
from lapor.contracts.partners import partner_source
from lapor.runtime.broker import EventPublisher
from lapor.runtime.locks import KeyedLock
from lapor.runtime.metrics import DomainMetrics
from lapor.runtime.pii import PiiSealer
from lapor.runtime.service import ContractViolation
from services.intake import domain, lifecycle
from services.intake.guard import RateLimit, similar_complaint, windows
from services.intake.phones import DEFAULT_SMS_COUNTRIES, normalize_phone, phone_hash, sms_reachable
from services.intake.repository import ComplaintRepository
from services.intake.sms import (
    CitizenReply,
    Invalid,
    NewComplaint,
    Rating,
    RegionKeywords,
    Reopen,
    StatusQuery,
    Withdraw,
    contract_fault,
    parse_sms,
    sender_in_payload,
)
from services.intake.text import clean_text, is_too_short
from services.intake.tracking import new_tracking_id

log = logging.getLogger(__name__)


DEFAULT_RATE_LIMIT = RateLimit(per_hour=10, per_day=30)


@dataclass(frozen=True)
class IntakeDeps:
    # Received, rejected, state-changed and forwarded events go out through the
    # repository's outbox, stored with the change they announce.
    repo: ComplaintRepository
    answered: EventPublisher
    command_rejected: EventPublisher
    region_keywords: RegionKeywords | Mapping[str, str]
    phone_key: bytes
    # The personal-data public key: reply addresses in events and kept payloads are
    # sealed with it, and intake cannot open them again (only notify and operators can).
    sealer: PiiSealer
    min_words: int = 3
    rate_limit: RateLimit = DEFAULT_RATE_LIMIT
    duplicate_window: timedelta = timedelta(hours=24)
    duplicate_similarity: float = 90.0
    senders: KeyedLock = field(default_factory=KeyedLock)
    region_ids: frozenset[str] = frozenset({"banjar"})
    # Agency codes of each region's directory: what triage decisions and forward
    # suggestions may name.
    agencies: Mapping[str, frozenset[str]] = field(default_factory=dict)
    # Per region: countries whose mobile numbers a web, Open311 or partner submission
    # may give (the region's `allowed_sms_countries`); Indonesia for a region not named.
    sms_countries: Mapping[str, frozenset[str]] = field(default_factory=dict)
    metrics: DomainMetrics | None = None
    clock: Callable[[], datetime] = lambda: datetime.now(UTC)


async def handle_sms(
    sms: InboundSms, deps: IntakeDeps, received_at: datetime | None = None
) -> None:
    """An SMS from the gateway. `received_at` is when the server stored the message
    (now, if unknown): limits, windows and the complaint's time use it, never the
    time the payload claims, which only the gateway vouches for."""
    phone = normalize_phone(sms.sender)
    sender_hash = phone_hash(phone, deps.phone_key) if phone else None
    # One sender's messages are judged one after another: limits and repeats are
    # about order, and a burst arrives in one batch.
    async with deps.senders.hold(sender_hash or sms.sender):
        await _handle_sms(sms, deps, phone, sender_hash, received_at or deps.clock())


async def _handle_sms(
    sms: InboundSms,
    deps: IntakeDeps,
    phone: str | None,
    sender_hash: str | None,
    received_at: datetime,
) -> None:
    source_key = f"sms:{sms.gateway_id}"
    payload = {
        "text": sms.text[:2000],
        "to": sms.to,
        "received_at": received_at,
        "gateway_received_at": sms.received_at,
    }

    # A gateway retry of a message that already became a complaint changes nothing;
    # what is still unannounced of it goes out now.
    if (known := await deps.repo.by_source(source_key)) is not None:
        await deps.repo.announce(known)
        return

    if sender_hash is not None:
        await deps.repo.record_sender_message(source_key, sender_hash, received_at)
        if (limited := await _over_limit(deps, sender_hash, received_at)) is not None:
            notice = await _claim_notice(deps, sender_hash, received_at, daily=limited)
            await _reject(
                deps,
                channel=Channel.SMS,
                source_key=source_key,
                reason=RejectionReason.RATE_LIMITED,
                detail="too many messages from this sender",
                reply_to=phone if notice else None,
                phone_hash=sender_hash,
                payload=payload,
            )
            return

    parsed = parse_sms(sms.text, deps.region_keywords, min_words=deps.min_words)
    if isinstance(parsed, NewComplaint) and sender_hash is not None:
        since = received_at - deps.duplicate_window
        recent = await deps.repo.recent_by_sender(sender_hash, since)
        if (same := similar_complaint(parsed.text, recent, deps.duplicate_similarity)) is not None:
            await _link_duplicate(deps, same, source_key, phone, sender_hash, payload)
            return

    if isinstance(parsed, NewComplaint):
        complaint = await _store_complaint(
            deps,
            region=parsed.region,
            channel=Channel.SMS,
            text=parsed.text,
            received_at=received_at,
            source_key=source_key,
            phone_hash=sender_hash,
            anonymous=parsed.anonymous,
            confidential=parsed.confidential,
            truncated=parsed.truncated,
            reply_to=phone,
        )
        await deps.repo.announce(complaint)
        log.info("complaint received", extra={"complaint_id": complaint["_id"]})
        return

    if not isinstance(parsed, Invalid):
        await _answer_command(deps, parsed, source_key, phone, sender_hash)
        return

    await _reject(
        deps,
        channel=Channel.SMS,
        source_key=source_key,
        reason=parsed.rejection_reason,
        detail=parsed.detail,
        reply_to=phone,
        phone_hash=sender_hash,
        payload=payload,
    )


class SubmissionRejected(Exception):
    """A web or partner submission that is kept as a rejection record, with the reason."""

    def __init__(self, reason: RejectionReason, detail: str) -> None:
        super().__init__(detail)
        self.reason = reason
        self.detail = detail


class SubmissionConflict(Exception):
    """A used `source` + `message_id` sent again with a different submission: refused,
    nothing stored or announced."""


async def accept_submission(
    submission: InboundWeb, channel: Channel, deps: IntakeDeps, received_at: datetime | None = None
) -> dict[str, Any]:
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
    source_key = f"{channel.value}:{submission.source}:{submission.message_id}"
    phone = normalize_phone(submission.phone) if submission.phone else None
    binding = submission_binding(submission, deps.phone_key)
    if (known := await deps.repo.by_source(source_key)) is None:
        receipt = received_at or deps.clock()
        known = await _store_submission(
            submission, channel, source_key, phone, deps, binding, receipt
        )
    # Also checked on what was just stored: a concurrent first use of the key with
    # another submission may have won the insert. A complaint stored before keys
    # were bound has no binding and matches nothing.
    stored = str((known.get("submission") or {}).get("binding") or "")
    if not hmac.compare_digest(stored.encode(), binding.encode()):
        raise SubmissionConflict(
            f"{submission.message_id!r} was already used for a different submission"
        )
    # A resend is announced with the reply addresses of the first submission only:
    # whoever knows a message id must not become the complaint's contact.
    await deps.repo.announce(known)
    return known


# Leaves out only when the channel received it: a retry is stamped anew.
_UNBOUND_FIELDS = {"received_at"}


def submission_binding(submission: InboundWeb, key: bytes) -> str:
    """What binds an idempotency key to a submission: an HMAC, under intake's
    phone-hash key, of the canonical JSON of every field of it (its key, region,
    text, name, phone, e-mail, category, location and flags, as sent).

    Keyed, because the phone number and e-mail address are in it: a plain hash
    stored with the complaint could be tested against every number. The label
    keeps these MACs apart from the other uses of the key (phone hashes are of
    E.164 strings, citizen links of tracking ids).
    """
    fields = submission.model_dump(mode="json", exclude=_UNBOUND_FIELDS)
    canonical = json.dumps(fields, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    mac = hmac.new(key, b"submission-binding:" + canonical.encode(), hashlib.sha256)
    return mac.hexdigest()


_EMAIL_LOCAL = re.compile(r"[A-Za-z0-9!#$%&'*+/=?^_`{|}~-]+(?:\.[A-Za-z0-9!#$%&'*+/=?^_`{|}~-]+)*")
_EMAIL_LABEL = re.compile(r"(?!-)[A-Za-z0-9-]{1,63}(?<!-)")


def reply_email(raw: str | None) -> str | None:
    """A submitted e-mail address usable for replies, domain in lower case; None otherwise.

    Plain `local@domain` only (no display name, no quoted local part, no IP
    literal); the domain needs a dot and an alphabetic (or IDNA) top level.
    """
    if raw is None:
        return None
    address = raw.strip()
    local, at, host = address.rpartition("@")
    if not at or len(address) > 254 or len(local) > 64:
        return None
    if not _EMAIL_LOCAL.fullmatch(local):
        return None
    try:
        host = host.rstrip(".").encode("idna").decode("ascii").lower()
    except UnicodeError:
        return None
    labels = host.split(".")
    if len(labels) < 2 or not all(_EMAIL_LABEL.fullmatch(label) for label in labels):
        return None
    top = labels[-1]
    if not (top.isalpha() and len(top) >= 2) and not top.startswith("xn--"):
        return None
    return f"{local}@{host}"


async def _store_submission(
    submission: InboundWeb,
    channel: Channel,
    source_key: str,
    phone: str | None,
    deps: IntakeDeps,
    binding: str,
    received_at: datetime,
) -> dict[str, Any]:
    cleaned = clean_text(submission.text)
    reason: tuple[RejectionReason, str] | None = None
    countries = deps.sms_countries.get(submission.region, DEFAULT_SMS_COUNTRIES)
    if submission.region not in deps.region_ids:
        reason = (RejectionReason.UNKNOWN_REGION, f"no region {submission.region!r}")
    elif phone is not None and not sms_reachable(phone, countries):
        allowed = ", ".join(sorted(countries))
        reason = (
            RejectionReason.PHONE_NOT_ALLOWED,
            f"the phone number must be a mobile number of: {allowed}",
        )
    elif is_too_short(cleaned.text, deps.min_words):
        reason = (RejectionReason.TOO_SHORT, f"at least {deps.min_words} meaningful words needed")
    sender_hash = phone_hash(phone, deps.phone_key) if phone else None
    if reason is None and sender_hash is not None:
        # The same per-number limit as the number's SMS: every submission giving a
        # number counts, whatever the channel, so the web cannot pump SMS to it.
        async with deps.senders.hold(sender_hash):
            await deps.repo.record_sender_message(source_key, sender_hash, received_at)
            if await _over_limit(deps, sender_hash, received_at) is not None:
                reason = (RejectionReason.RATE_LIMITED, "too many messages from this number")
    if reason is not None:
        await _reject(
            deps,
            channel=channel,
            source_key=source_key,
            reason=reason[0],
            detail=reason[1],
            reply_to=None,  # the HTTP answer or the partner's own channel tells the sender
            phone_hash=sender_hash,
            # Contact details stay out: notify keeps the reply addresses, sealed.
            payload=submission.model_dump(mode="json", exclude={"phone", "email"}),
        )
        raise SubmissionRejected(*reason)
    details = submission.model_dump(mode="json", include={"source", "name", "category", "location"})
    details["replies_by_email"] = bool(submission.email)
    details["binding"] = binding
    return await _store_complaint(
        deps,
        region=submission.region,
        channel=channel,
        text=cleaned.text,
        received_at=received_at,
        source_key=source_key,
        phone_hash=sender_hash,
        anonymous=submission.anonymous,
        confidential=submission.confidential,
        truncated=cleaned.truncated,
        submission=details,
        reply_to=phone,
        # Notify answers by e-mail too; an address that does not parse is not used (nor logged).
        reply_email=reply_email(submission.email),
    )


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
        await accept_submission(submission, Channel.WEB, deps, received_at)
    except SubmissionRejected:
        pass
    except SubmissionConflict as conflict:
        log.warning("partner message ignored: %s (partner %s)", conflict, partner)


# The most of a broken payload a rejection record keeps, as the dead letter does.
_MAX_KEPT_PAYLOAD = 64_000


async def handle_contract_violation(
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
    sender_hash = phone_hash(phone, deps.phone_key) if phone else None
    payload = {
        "dead_letter_id": violation.dead_letter_id,
        "subject": violation.subject,
        # The number may be anywhere in a broken payload: kept sealed, bound to this record.
        "payload_sealed": deps.sealer.seal_bytes(violation.payload[:_MAX_KEPT_PAYLOAD], source_key),
    }

    async def reject(reason: RejectionReason, detail: str, reply_to: str | None) -> None:
        await _reject(
            deps,
            channel=channel,
            source_key=source_key,
            reason=reason,
            detail=detail,
            reply_to=reply_to,
            phone_hash=sender_hash,
            payload=payload,
        )

    if channel is not Channel.SMS or sender_hash is None:
        await reject(RejectionReason.MALFORMED, contract_fault(violation.error), None)
        return
    # Each reply costs an SMS: a broken message counts against the sender's limit too.
    async with deps.senders.hold(sender_hash):
        now = deps.clock()
        await deps.repo.record_sender_message(source_key, sender_hash, now)
        if (limited := await _over_limit(deps, sender_hash, now)) is not None:
            notice = await _claim_notice(deps, sender_hash, now, daily=limited)
            detail = "too many messages from this sender"
            await reject(RejectionReason.RATE_LIMITED, detail, phone if notice else None)
            return
        await reject(RejectionReason.MALFORMED, contract_fault(violation.error), phone)


async def _over_limit(deps: IntakeDeps, sender_hash: str, at: datetime) -> bool | None:
    """None within the limits, else whether the daily limit is the one exceeded."""
    hour_ago, day_ago = windows(at)
    last_day = await deps.repo.count_sender_messages(sender_hash, day_ago)
    if last_day <= min(deps.rate_limit.per_hour, deps.rate_limit.per_day):
        return None
    last_hour = await deps.repo.count_sender_messages(sender_hash, hour_ago)
    if not deps.rate_limit.exceeded(last_hour, last_day):
        return None
    return deps.rate_limit.over_daily(last_day)


async def _claim_notice(deps: IntakeDeps, sender_hash: str, at: datetime, *, daily: bool) -> bool:
    # Claimed one by one, so a refused claim leaves the later slots free.
    for key in RateLimit.notice_keys(sender_hash, at, daily=daily):
        if not await deps.repo.claim_notice(key):
            return False
    return True


async def _link_duplicate(
    deps: IntakeDeps,
    same: dict[str, Any],
    source_key: str,
    phone: str | None,
    sender_hash: str,
    payload: dict[str, Any],
) -> None:
    """The same text again: noted on the first complaint, the citizen told its id."""
    note = domain.Transition(
        event_id=domain.command_event_id(source_key),
        at=deps.clock(),
        actor="intake:sms",
        state=None,
        reason="the same text was sent again",
    )
    await deps.repo.apply(same["_id"], note)
    await _reject(
        deps,
        channel=Channel.SMS,
        source_key=source_key,
        reason=RejectionReason.DUPLICATE,
        detail=f"same text as {same['_id']}",
        reply_to=phone,
        phone_hash=sender_hash,
        payload=payload,
        complaint_id=same["_id"],
        region=same.get("region"),
    )


async def _answer_command(
    deps: IntakeDeps,
    command: StatusQuery | CitizenReply | Rating | Reopen | Withdraw,
    source_key: str,
    phone: str | None,
    sender_hash: str | None,
) -> None:
    doc = await deps.repo.get(command.tracking_id)
    found = doc is not None and domain.filed_by(doc, sender_hash)
    # The gateway message id makes the change and the answer happen once.
    event_id = f"command:{source_key}"
    refused: str | None = None
    if found and doc is not None and isinstance(command, Reopen | Rating | Withdraw):
        doc, refused = await _refusable(deps, _sms_command(command, source_key, sender_hash), doc)
    elif found and doc is not None and isinstance(command, CitizenReply):
        doc = await _citizen_reply(deps, command, source_key, sender_hash) or doc
    kind = {
        StatusQuery: "status",
        CitizenReply: "reply",
        Rating: "rating",
        Reopen: "reopen",
        Withdraw: "withdraw",
    }[type(command)]
    answer = CitizenCommandAnswered(
        event_id=event_id,
        occurred_at=deps.clock(),
        command=kind,  # type: ignore[arg-type]
        found=found,
        tracking_id=command.tracking_id,
        reply_to_sealed=sealed_contact(deps, event_id, "reply_to_sealed", phone),
        region=doc["region"] if found and doc else None,
        state=doc["state"] if found and doc else None,
        agency=doc.get("agency") if found and doc else None,
        answer_due=(doc.get("deadlines") or {}).get("answer") if found and doc else None,
        score=command.score if isinstance(command, Rating) else None,
        refused=refused,
        reopen_until=doc.get("reopen_until") if found and doc else None,
    )
    await deps.answered.publish(answer, msg_id=event_id)


def _sms_command(
    command: CitizenReply | Rating | Reopen | Withdraw, source_key: str, sender_hash: str | None
) -> ComplaintCommand:
    """BALAS, NILAI, BUKA and BATAL as lifecycle commands; the gateway message id is the
    command id."""
    text: str | None
    if isinstance(command, CitizenReply):
        action, text, score = Action.REPLY, command.text, None
    elif isinstance(command, Rating):
        action, text, score = Action.RATE, command.comment, command.score
    elif isinstance(command, Withdraw):
        action, text, score = Action.WITHDRAW, command.reason or None, None
    else:
        action, text, score = Action.REOPEN, command.reason, None
    return ComplaintCommand(
        command_id=source_key,
        complaint_id=command.tracking_id,
        action=action,
        actor=Actor(role=Role.CITIZEN, id=f"sms:{(sender_hash or '')[:12]}"),
        text=text,
        score=score,
    )


async def _refusable(
    deps: IntakeDeps, command: ComplaintCommand, doc: dict[str, Any]
) -> tuple[dict[str, Any], str | None]:
    """NILAI, BUKA and BATAL under the lifecycle rules, or the reason they changed nothing.

    As on the web, a rating before the answer is refused rather than kept: a
    score in the complaint would count in the agency's performance report.
    """
    try:
        return await execute(command, deps), None
    except lifecycle.Refused as refused:
        return doc, refused.reason


async def execute(command: ComplaintCommand, deps: IntakeDeps) -> dict[str, Any]:
    """Apply one lifecycle command; raises `lifecycle.Refused` and then changes nothing.

    The decision is written only if the complaint is still the one it was made
    on (its version); otherwise it is made again on the new state, so two
    commands on one complaint, in one replica or two, never both pass the rules
    against the same old state.
    """
    event_id = domain.command_event_id(command.command_id)
    duplicate = await deps.repo.get(command.duplicate_of) if command.duplicate_of else None
    now = deps.clock()

    def decide(doc: dict[str, Any]) -> domain.Change | None:
        if event_id in doc.get("event_ids", []):
            return None  # a retried command: it already took effect
        known = lifecycle.Known(
            agencies=deps.agencies.get(doc["region"], frozenset()), duplicate=duplicate
        )
        decision = lifecycle.decide(doc, command, now=now, known=known)
        change = domain.state_change(domain.command_transition(command, decision, now))
        if not decision.reroute:
            return change

        def announce(after: dict[str, Any]) -> list[BaseModel]:
            return [*change.announce(after), domain.forwarded_event(after, command, now)]

        return domain.Change(change.transition, announce)

    doc, written = await deps.repo.change(command.complaint_id, decide)
    if doc is None:
        raise lifecycle.Refused("no complaint with this tracking id", status=404)
    if written is not None and command.actor.role is Role.CITIZEN and deps.metrics is not None:
        deps.metrics.citizen_actions.labels(action=command.action.value, region=doc["region"]).inc()
    # Also for a retried command: what it announced and is still pending goes out now.
    await deps.repo.announce(doc)
    return doc


async def handle_command(command: ComplaintCommand, deps: IntakeDeps) -> None:
    """A command from the bus: a refusal is answered on the bus, never retried."""
    try:
        await execute(command, deps)
    except lifecycle.Refused as refused:
        rejected = CommandRejected(
            event_id=f"command-rejected:{command.command_id}",
            occurred_at=deps.clock(),
            command_id=command.command_id,
            complaint_id=command.complaint_id,
            action=command.action,
            reason=refused.reason,
        )
        await deps.command_rejected.publish(rejected, msg_id=rejected.event_id)


async def handle_auto_close(event: AutoCloseDue, deps: IntakeDeps) -> None:
    """SLA on the reply window: record a reopen window, or close a silent answer."""
    if event.kind == "reopen_window":
        await _record_reopen_window(event, deps)
        return
    command = ComplaintCommand(
        command_id=event.event_id,
        complaint_id=event.complaint_id,
        action=Action.AUTO_CLOSE,
        actor=Actor(role=Role.SYSTEM, id="sla"),
    )
    await handle_command(command, deps)


async def _record_reopen_window(event: AutoCloseDue, deps: IntakeDeps) -> None:
    """Store SLA's reopen window if it is the window of the current answer or closing."""
    transition = domain.reopen_window_transition(event)

    def decide(doc: dict[str, Any]) -> domain.Change | None:
        if lifecycle.reopen_window_applies(doc, event.cause_event_id):
            return domain.Change(transition)
        log.info(
            "reopen window ignored: it belongs to an earlier answer or closing",
            extra={"complaint_id": event.complaint_id, "event_id": event.event_id},
        )
        return None

    doc, _ = await deps.repo.change(event.complaint_id, decide)
    if doc is None:
        # The complaint may not be visible yet; a redelivery will find it.
        raise LookupError(f"{event.event_id}: unknown complaint {event.complaint_id}")


async def _citizen_reply(
    deps: IntakeDeps, command: CitizenReply, source_key: str, sender_hash: str | None
) -> dict[str, Any] | None:
    """BALAS goes through the lifecycle rules (an answer to a question resumes the
    agency's clock); what the rules do not allow is still kept as a note."""
    try:
        return await execute(_sms_command(command, source_key, sender_hash), deps)
    except lifecycle.Refused:
        event_id, now = domain.command_event_id(source_key), deps.clock()
        note = domain.citizen_reply_transition(event_id, now, command.text)
        return await deps.repo.apply(command.tracking_id, note)


async def handle_routed(event: ComplaintRouted, deps: IntakeDeps) -> None:
    """Record a routing decision if the lifecycle still wants it.

    A decision that no longer applies (its round is over, or an admin archived,
    merged or decided the complaint meanwhile) changes nothing and is acknowledged.
    """
    transition = domain.routed_transition(event)

    def decide(doc: dict[str, Any]) -> domain.Change | None:
        if transition.event_id in doc.get("event_ids", []):
            return None
        try:
            lifecycle.check_routing(doc, domain.routing_round(event))
        except lifecycle.Refused as refused:
            log.info(
                "routing decision ignored: %s",
                refused.reason,
                extra={"complaint_id": event.complaint_id, "event_id": event.event_id},
            )
            return None
        return domain.state_change(transition)

    await _record(deps, event.complaint_id, transition.event_id, decide)


async def handle_deadlines(event: DeadlinesSet, deps: IntakeDeps) -> None:
    transition = domain.deadlines_transition(event)
    await _record(
        deps, event.complaint_id, transition.event_id, lambda _doc: domain.Change(transition)
    )


async def _record(
    deps: IntakeDeps,
    complaint_id: str,
    event_id: str,
    decide: Callable[[dict[str, Any]], domain.Change | None],
) -> None:
    """Apply a decided change once and announce what is pending, also on a redelivery."""
    doc, _ = await deps.repo.change(complaint_id, decide)
    if doc is None:
        # The complaint may not be visible yet; a redelivery will find it.
        raise LookupError(f"{event_id}: unknown complaint {complaint_id}")
    await deps.repo.announce(doc)


async def _store_complaint(
    deps: IntakeDeps, *, reply_to: str | None, reply_email: str | None = None, **fields: Any
) -> dict[str, Any]:
    """Store a new complaint with its `received` announcement pending in it."""
    # A fresh random id can collide with an existing one; try again with another.
    for _ in range(5):
        doc = domain.new_complaint(tracking_id=new_tracking_id(), stored_at=deps.clock(), **fields)
        event_id = domain.received_event_id(doc["_id"])
        received = domain.received_event(
            doc,
            reply_to_sealed=sealed_contact(deps, event_id, "reply_to_sealed", reply_to),
            reply_email_sealed=sealed_contact(deps, event_id, "reply_email_sealed", reply_email),
        )
        try:
            stored, created = await deps.repo.add_complaint(doc, [received])
        except DuplicateKeyError:
            continue
        if created and deps.metrics is not None:
            deps.metrics.received.labels(channel=stored["channel"], region=stored["region"]).inc()
        return stored
    raise RuntimeError("could not allocate a tracking id")


def sealed_contact(deps: IntakeDeps, event_id: str, field: str, value: str | None) -> str | None:
    """A reply address as an event carries it: sealed to notify, bound to the event
    and its field, so the bus and every store on the way hold no plain number."""
    if value is None:
        return None
    return deps.sealer.seal(value, contact_context(event_id, field))


async def _reject(
    deps: IntakeDeps,
    *,
    channel: Channel,
    source_key: str,
    reason: RejectionReason,
    detail: str,
    reply_to: str | None,
    phone_hash: str | None,
    payload: dict[str, Any],
    complaint_id: str | None = None,
    region: str | None = None,
) -> None:
    now = deps.clock()
    rejection_id = f"REJ-{secrets.token_hex(6)}"
    event_id = f"rejected:{rejection_id}"
    announcement = InboundRejected(
        event_id=event_id,
        occurred_at=now,
        rejection_id=rejection_id,
        channel=channel,
        reason=reason,
        detail=detail,
        reply_to_sealed=sealed_contact(deps, event_id, "reply_to_sealed", reply_to),
        complaint_id=complaint_id,
        region=region,
    )
    record, new = await deps.repo.add_rejection(
        {
            "_id": rejection_id,
            "source_key": source_key,
            "channel": channel.value,
            "reason": reason.value,
            "detail": detail,
            "reporter": {"phone_hash": phone_hash},
            "payload": payload,
            "stored_at": now,
            # Whether the sender is answered is decided once; a retry repeats the decision.
            "answered": reply_to is not None,
            "complaint_id": complaint_id,
            "region": region,
        },
        [announcement],
    )
    if new and deps.metrics is not None:
        deps.metrics.rejections.labels(channel=channel.value, reason=reason.value).inc()
    # A retry finds the first record: what it still has pending goes out, nothing new.
    await deps.repo.announce_rejection(record)
    log.info("inbound rejected: %s", reason.value, extra={"event_id": record["_id"]})
