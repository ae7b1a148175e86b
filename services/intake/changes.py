"""Intake's use cases on a stored complaint: a lifecycle command (from an officer, an
admin, a citizen or SLA), a routing decision, deadlines, a reopen window.

Each decision is written only on the state it was made on, once per event id,
and what it announces goes out through the complaint's outbox, also when a
redelivery finds it already written.
"""

import logging
from collections.abc import Callable

from pydantic import BaseModel

from lapor.contracts import AutoCloseDue, ComplaintRouted, DeadlinesSet, routing_round
from lapor.contracts.commands import Action, Actor, CommandRejected, ComplaintCommand, Role
from services.intake import domain, lifecycle
from services.intake.ports import Document, IntakeDeps

log = logging.getLogger(__name__)


class ComplaintNotYetKnown(LookupError):
    """An event about a complaint this replica cannot see yet: a redelivery will find it."""


async def execute(command: ComplaintCommand, deps: IntakeDeps) -> Document:
    """Apply one lifecycle command; raises `lifecycle.Refused` and then changes nothing.

    The decision is written only if the complaint is still the one it was made
    on (its version); otherwise it is made again on the new state, so two
    commands on one complaint, in one replica or two, never both pass the rules
    against the same old state.
    """
    event_id = domain.command_event_id(command.command_id)
    duplicate = await deps.repo.get(command.duplicate_of) if command.duplicate_of else None
    now = deps.clock()

    def decide(doc: Document) -> domain.Change | None:
        if event_id in doc.get("event_ids", []):
            return None  # a retried command: it already took effect
        known = lifecycle.Known(
            agencies=deps.agencies.get(doc["region"], frozenset()), duplicate=duplicate
        )
        decision = lifecycle.decide(doc, command, now=now, known=known)
        change = domain.state_change(domain.command_transition(command, decision, now))
        if not decision.reroute:
            return change

        def announce(after: Document) -> list[BaseModel]:
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


async def run_command(command: ComplaintCommand, deps: IntakeDeps) -> None:
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


async def close_or_open_reply_window(event: AutoCloseDue, deps: IntakeDeps) -> None:
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
    await run_command(command, deps)


async def _record_reopen_window(event: AutoCloseDue, deps: IntakeDeps) -> None:
    """Store SLA's reopen window if it is the window of the current answer or closing."""
    transition = domain.reopen_window_transition(event)

    def decide(doc: Document) -> domain.Change | None:
        if lifecycle.reopen_window_applies(doc, event.cause_event_id):
            return domain.Change(transition)
        log.info(
            "reopen window ignored: it belongs to an earlier answer or closing",
            extra={"complaint_id": event.complaint_id, "event_id": event.event_id},
        )
        return None

    doc, _ = await deps.repo.change(event.complaint_id, decide)
    if doc is None:
        raise ComplaintNotYetKnown(f"{event.event_id}: unknown complaint {event.complaint_id}")


async def record_routing(event: ComplaintRouted, deps: IntakeDeps) -> None:
    """Record a routing decision if the lifecycle still wants it.

    A decision that no longer applies (its round is over, or an admin archived,
    merged or decided the complaint meanwhile) changes nothing and is acknowledged.
    """
    transition = domain.routed_transition(event)

    def decide(doc: Document) -> domain.Change | None:
        if transition.event_id in doc.get("event_ids", []):
            return None
        try:
            lifecycle.check_routing(doc, routing_round(event.event_id))
        except lifecycle.Refused as refused:
            log.info(
                "routing decision ignored: %s",
                refused.reason,
                extra={"complaint_id": event.complaint_id, "event_id": event.event_id},
            )
            return None
        return domain.state_change(transition, listed_later=True)

    await _record(deps, event.complaint_id, transition.event_id, decide)


async def record_deadlines(event: DeadlinesSet, deps: IntakeDeps) -> None:
    transition = domain.deadlines_transition(event)
    change = domain.Change(transition, listed_later=True)
    await _record(deps, event.complaint_id, transition.event_id, lambda _doc: change)


async def _record(
    deps: IntakeDeps,
    complaint_id: str,
    event_id: str,
    decide: Callable[[Document], domain.Change | None],
) -> None:
    """Apply a decided change once and announce what is pending, also on a redelivery."""
    doc, _ = await deps.repo.change(complaint_id, decide)
    if doc is None:
        raise ComplaintNotYetKnown(f"{event_id}: unknown complaint {complaint_id}")
    await deps.repo.announce(doc)
