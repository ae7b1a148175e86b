"""Intake's message handlers: plain async functions over explicit dependencies."""

import logging
import secrets
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from pymongo.errors import DuplicateKeyError

from lapor.contracts import (
    AutoCloseDue,
    Channel,
    CitizenCommandAnswered,
    ComplaintRouted,
    DeadlinesSet,
    InboundRejected,
    InboundSms,
    RejectionReason,
)
from lapor.contracts.commands import Action, Actor, CommandRejected, ComplaintCommand, Role
from lapor.runtime.broker import EventPublisher
from services.intake import domain, lifecycle
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
    forwarded: EventPublisher
    command_rejected: EventPublisher
    region_keywords: RegionKeywords | Mapping[str, str]
    phone_key: bytes
    min_words: int = 3
    reopen_window: timedelta = timedelta(days=14)
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
    if found and doc is not None and not isinstance(command, StatusQuery):
        doc = await _citizen_command(deps, command, source_key, sender_hash or "") or doc
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


async def execute(command: ComplaintCommand, deps: IntakeDeps) -> dict[str, Any]:
    """Apply one lifecycle command; raises `lifecycle.Refused` and then changes nothing.

    Read, decision and write happen while holding the complaint, so two commands
    on one complaint cannot both pass the rules against the same old state.
    """
    event_id = domain.command_event_id(command.command_id)
    async with deps.repo.writing(command.complaint_id):
        doc = await deps.repo.get(command.complaint_id)
        if doc is None:
            raise lifecycle.Refused("no complaint with this tracking id", status=404)
        if event_id in doc.get("event_ids", []):
            return doc  # a retried command: it already took effect
        now = deps.clock()
        decision = lifecycle.decide(doc, command, now=now, reopen_until=_reopen_until(doc, deps))
        transition = domain.command_transition(command, decision, now)
        updated = await deps.repo.apply_held(command.complaint_id, transition)
    assert updated is not None
    await _announce(deps, updated, transition)
    if decision.reroute:
        forwarded = domain.forwarded_event(updated, command, now)
        await deps.forwarded.publish(forwarded, msg_id=forwarded.event_id)
    return updated


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
    command = ComplaintCommand(
        command_id=event.event_id,
        complaint_id=event.complaint_id,
        action=Action.AUTO_CLOSE,
        actor=Actor(role=Role.SYSTEM, id="sla"),
    )
    await handle_command(command, deps)


def _reopen_until(doc: dict[str, Any], deps: IntakeDeps) -> datetime | None:
    since = doc.get("closed_at") or doc.get("responded_at")
    return since + deps.reopen_window if since else None


async def _citizen_command(
    deps: IntakeDeps, command: CitizenReply | Rating, source_key: str, sender_hash: str
) -> dict[str, Any] | None:
    """BALAS and NILAI go through the lifecycle rules (an answer to a question resumes
    the agency's clock); what the rules do not allow is still kept as a note."""
    is_reply = isinstance(command, CitizenReply)
    lifecycle_command = ComplaintCommand(
        command_id=source_key,
        complaint_id=command.tracking_id,
        action=Action.REPLY if is_reply else Action.RATE,
        actor=Actor(role=Role.CITIZEN, id=f"sms:{sender_hash[:12]}"),
        text=command.text if isinstance(command, CitizenReply) else command.comment,
        score=command.score if isinstance(command, Rating) else None,
    )
    try:
        return await execute(lifecycle_command, deps)
    except lifecycle.Refused:
        event_id, now = domain.command_event_id(source_key), deps.clock()
        if isinstance(command, CitizenReply):
            note = domain.citizen_reply_transition(event_id, now, command.text)
        else:
            note = domain.rating_transition(event_id, now, command.score, command.comment)
        return await deps.repo.apply(command.tracking_id, note)


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
    await _announce(deps, doc, transition)


async def _announce(deps: IntakeDeps, doc: dict[str, Any], transition: domain.Transition) -> None:
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
