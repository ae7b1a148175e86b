"""Notify's entry points on the bus: each takes one event with its delivery count,
calls its use case (services/notify/usecases.py) and turns the outcome into an
acknowledgement policy.

A use case that waits for an event it depends on (`NotYetKnown`) gets the event
again after a short, growing wait; one whose notifications must be retried
(`RetryLater`) gets it again after the delivery's own delay. The last delivery
is the use case's last chance: it goes ahead with what it has.
"""

from collections.abc import Awaitable, Callable

from faststream.exceptions import NackMessage

from lapor.contracts import (
    CitizenCommandAnswered,
    ComplaintReceived,
    ComplaintRouted,
    ComplaintStateChanged,
    DeadlineAlert,
    DeadlinesSet,
    EscalationRaised,
    InboundRejected,
    SmsDeliveryReceipt,
)
from lapor.runtime.broker import MAX_DELIVER
from services.notify import usecases
from services.notify.retry import RetryPolicy
from services.notify.usecases import NotifyDeps, NotYetKnown, RetryLater

# The wait, by delivery, for an event that carries what a use case needs (the
# reply address, the routing). It usually lags by milliseconds (sla announces
# deadlines while notify is still storing the routing), so the first wait is
# short: a fixed 2 s put that on 1% of acknowledgements. 0.25, 0.5, 1, 2, then
# 4 s: about 16 s in all before the last delivery, as the fixed waits gave.
DEPENDENCY_WAIT = RetryPolicy(base_s=0.25, factor=2.0, max_delay_s=4.0, jitter=0.0)

UseCase = Callable[..., Awaitable[None]]


def is_last_delivery(delivery: int) -> bool:
    return delivery >= MAX_DELIVER


async def _redelivered(use_case: UseCase, event: object, deps: NotifyDeps, delivery: int) -> None:
    try:
        await use_case(event, deps, last_chance=is_last_delivery(delivery))
    except NotYetKnown:
        raise NackMessage(delay=DEPENDENCY_WAIT.delay_after(delivery)) from None
    except RetryLater as retry:
        raise NackMessage(delay=retry.delay_s) from None


async def handle_received(event: ComplaintReceived, deps: NotifyDeps) -> None:
    await usecases.remember_contact(event, deps)


async def handle_routed(event: ComplaintRouted, deps: NotifyDeps, delivery: int = 1) -> None:
    await _redelivered(usecases.remember_routing, event, deps, delivery)


async def handle_deadlines(event: DeadlinesSet, deps: NotifyDeps, delivery: int = 1) -> None:
    await _redelivered(usecases.acknowledge_and_assign, event, deps, delivery)


async def handle_state_changed(
    event: ComplaintStateChanged, deps: NotifyDeps, delivery: int = 1
) -> None:
    await _redelivered(usecases.tell_state_change, event, deps, delivery)


async def handle_rejected(event: InboundRejected, deps: NotifyDeps, delivery: int = 1) -> None:
    await _redelivered(usecases.explain_rejection, event, deps, delivery)


async def handle_command_answered(
    event: CitizenCommandAnswered, deps: NotifyDeps, delivery: int = 1
) -> None:
    await _redelivered(usecases.answer_command, event, deps, delivery)


async def handle_alert(event: DeadlineAlert, deps: NotifyDeps, delivery: int = 1) -> None:
    await _redelivered(usecases.warn_officials, event, deps, delivery)


async def handle_escalation(event: EscalationRaised, deps: NotifyDeps, delivery: int = 1) -> None:
    await _redelivered(usecases.escalate, event, deps, delivery)


async def handle_receipt(receipt: SmsDeliveryReceipt, deps: NotifyDeps) -> None:
    await usecases.record_receipt(receipt, deps)
