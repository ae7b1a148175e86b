"""Intake's message handlers: plain async functions over explicit dependencies."""

import logging
import secrets
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from pymongo.errors import DuplicateKeyError

from lapor.contracts import (
    Channel,
    CitizenCommandAnswered,
    ComplaintRouted,
    DeadlinesSet,
    InboundRejected,
    InboundSms,
    RejectionReason,
)
from lapor.runtime.broker import EventPublisher
from services.intake import domain
from services.intake.phones import normalize_phone, phone_hash
from services.intake.repository import ComplaintRepository
from services.intake.sms import (
    CitizenReply,
    Invalid,
    NewComplaint,
    Rating,
    RegionKeywords,
    StatusQuery,
    parse_sms,
)
from services.intake.tracking import new_tracking_id

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class IntakeDeps:
    repo: ComplaintRepository
    received: EventPublisher
    rejected: EventPublisher
    answered: EventPublisher
    state_changed: EventPublisher
    region_keywords: RegionKeywords | Mapping[str, str]
    phone_key: bytes
    min_words: int = 3
    clock: Callable[[], datetime] = lambda: datetime.now(UTC)


async def handle_sms(sms: InboundSms, deps: IntakeDeps) -> None:
    phone = normalize_phone(sms.sender)
    sender_hash = phone_hash(phone, deps.phone_key) if phone else None
    source_key = f"sms:{sms.gateway_id}"
    parsed = parse_sms(sms.text, deps.region_keywords, min_words=deps.min_words)

    if isinstance(parsed, NewComplaint):
        complaint = await _store_complaint(
            deps,
            region=parsed.region,
            channel=Channel.SMS,
            text=parsed.text,
            received_at=sms.received_at,
            source_key=source_key,
            phone_hash=sender_hash,
            anonymous=parsed.anonymous,
            confidential=parsed.confidential,
            truncated=parsed.truncated,
        )
        await deps.received.publish(
            domain.received_event(complaint, reply_to=phone),
            msg_id=domain.received_event_id(complaint["_id"]),
        )
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
        payload={"text": sms.text[:2000], "to": sms.to, "received_at": sms.received_at},
    )


async def _answer_command(
    deps: IntakeDeps,
    command: StatusQuery | CitizenReply | Rating,
    source_key: str,
    phone: str | None,
    sender_hash: str | None,
) -> None:
    doc = await deps.repo.get(command.tracking_id)
    found = doc is not None and domain.filed_by(doc, sender_hash)
    # The gateway message id makes the change and the answer happen once.
    event_id = f"command:{source_key}"
    if found and doc is not None:
        if isinstance(command, CitizenReply):
            transition = domain.citizen_reply_transition(event_id, deps.clock(), command.text)
            doc = await deps.repo.apply(command.tracking_id, transition) or doc
        elif isinstance(command, Rating):
            transition = domain.rating_transition(
                event_id, deps.clock(), command.score, command.comment
            )
            doc = await deps.repo.apply(command.tracking_id, transition) or doc
    kind = {StatusQuery: "status", CitizenReply: "reply", Rating: "rating"}[type(command)]
    answer = CitizenCommandAnswered(
        event_id=event_id,
        occurred_at=deps.clock(),
        command=kind,  # type: ignore[arg-type]
        found=found,
        tracking_id=command.tracking_id,
        reply_to=phone,
        region=doc["region"] if found and doc else None,
        state=doc["state"] if found and doc else None,
        agency=doc.get("agency") if found and doc else None,
        answer_due=(doc.get("deadlines") or {}).get("answer") if found and doc else None,
        score=command.score if isinstance(command, Rating) else None,
    )
    await deps.answered.publish(answer, msg_id=event_id)


async def handle_routed(event: ComplaintRouted, deps: IntakeDeps) -> None:
    await _record(deps, event.complaint_id, domain.routed_transition(event))


async def handle_deadlines(event: DeadlinesSet, deps: IntakeDeps) -> None:
    await _record(deps, event.complaint_id, domain.deadlines_transition(event))


async def _record(deps: IntakeDeps, complaint_id: str, transition: domain.Transition) -> None:
    """Apply a transition once and announce the state change it made."""
    doc = await deps.repo.apply(complaint_id, transition)
    if doc is None:
        # The complaint may not be visible yet; a redelivery will find it.
        raise LookupError(f"{transition.event_id}: unknown complaint {complaint_id}")
    if (changed := domain.state_changed_event(doc, transition)) is not None:
        await deps.state_changed.publish(changed, msg_id=changed.event_id)


async def _store_complaint(deps: IntakeDeps, **fields: Any) -> dict[str, Any]:
    # A fresh random id can collide with an existing one; try again with another.
    for _ in range(5):
        doc = domain.new_complaint(tracking_id=new_tracking_id(), stored_at=deps.clock(), **fields)
        try:
            stored, _created = await deps.repo.add_complaint(doc)
        except DuplicateKeyError:
            continue
        return stored
    raise RuntimeError("could not allocate a tracking id")


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
) -> None:
    now = deps.clock()
    record, _ = await deps.repo.add_rejection(
        {
            "_id": f"REJ-{secrets.token_hex(6)}",
            "source_key": source_key,
            "channel": channel.value,
            "reason": reason.value,
            "detail": detail,
            "reporter": {"phone_hash": phone_hash},
            "payload": payload,
            "stored_at": now,
        }
    )
    await deps.rejected.publish(
        InboundRejected(
            event_id=f"rejected:{record['_id']}",
            occurred_at=record["stored_at"],
            rejection_id=record["_id"],
            channel=channel,
            reason=RejectionReason(record["reason"]),
            detail=record["detail"],
            reply_to=reply_to,
        ),
        msg_id=f"rejected:{record['_id']}",
    )
    log.info("inbound rejected: %s", reason.value, extra={"event_id": record["_id"]})
