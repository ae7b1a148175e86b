"""Delivering notifications exactly once, and never failing silently.

For each notification: open its log record (the id is the primary key, so a
redelivered event finds the earlier one), skip it if it is already settled,
claim the next attempt, send through the channel, write the outcome. A
temporary failure is retried after a backoff, briefly in the handler or by a
delayed redelivery of the event; a permanent failure, or the retry cap, marks
the notification failed, counts it and announces it on the bus.
"""

from __future__ import annotations

import asyncio
import logging
import random
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta, tzinfo
from typing import Any, Literal

from prometheus_client import CollectorRegistry, Counter

from lapor.contracts import NotificationFailed
from lapor.runtime.broker import EventPublisher
from lapor.runtime.logs import mask_phones
from services.notify.channels import ChannelSet, DeliveryResult, OutgoingMessage, shown_address
from services.notify.repository import (
    FAILED,
    FINAL,
    PENDING,
    Claim,
    Document,
    NotificationRepository,
)
from services.notify.retry import RetryAction, RetryPolicy, plan_retry

log = logging.getLogger(__name__)

Audience = Literal["citizen", "official"]
BUDGET_EXHAUSTED = "budget_exhausted"


@dataclass(frozen=True)
class Notification:
    message: OutgoingMessage
    audience: Audience
    cause_event_id: str
    level: str | None = None
    # Set when the message cannot go out at all (no address): it fails at once.
    undeliverable: str | None = None
    # Set when the message must not go out (confidentiality): logged, not sent.
    withheld: str | None = None
    # The complaint's region: a citizen SMS counts against the region's daily budget.
    region: str | None = None

    @property
    def id(self) -> str:
        return self.message.notification_id


def recipient_label(message: OutgoingMessage) -> str:
    """How the log and events name the recipient: never a full phone number, nor a
    citizen's e-mail address."""
    return shown_address(message)


class NotifyMetrics:
    def __init__(self, registry: CollectorRegistry) -> None:
        # The family the shared dashboard and the LaporNotificationsFailing alert read.
        self.outcomes = _counter(
            registry,
            "lapor_notifications_total",
            "Notifications that reached a final status (sent or failed), by channel",
            ["channel", "status"],
        )
        self.attempts = _counter(
            registry,
            "lapor_notification_attempts_total",
            "Delivery attempts by transport and outcome (sent, temporary, permanent).",
            ["transport", "outcome"],
        )
        self.failed = _counter(
            registry,
            "lapor_notifications_failed_total",
            "Notifications given up, by why: rejected, exhausted (retries), undeliverable "
            "(no address), receipt (the gateway reported failure), expired (the SMSC gave up).",
            ["channel", "audience", "reason", "template"],
        )
        self.delivered = _counter(
            registry,
            "lapor_notifications_delivered_total",
            "SMS the gateway reported as delivered.",
            [],
        )
        # The family the LaporSmsBudgetExhausted alert reads.
        self.withheld = _counter(
            registry,
            "lapor_notifications_withheld_total",
            "Notifications not sent on purpose, by region and why (budget_exhausted: "
            "the region's daily SMS budget was spent).",
            ["channel", "region", "reason"],
        )


def _counter(
    registry: CollectorRegistry, name: str, documentation: str, labels: list[str]
) -> Counter:
    # The shared domain metrics may have put the same family on this registry first;
    # registering it twice would raise, so adopt it.
    existing = registry._names_to_collectors.get(name)
    if isinstance(existing, Counter):
        return existing
    return Counter(name, documentation, labels, registry=registry)


Sleep = Callable[[float], Awaitable[None]]


class Deliverer:
    def __init__(
        self,
        repo: NotificationRepository,
        channels: ChannelSet,
        failures: EventPublisher,
        metrics: NotifyMetrics,
        policy: RetryPolicy,
        *,
        send_timeout_s: float,
        clock: Callable[[], datetime] = lambda: datetime.now(UTC),
        sleep: Sleep = asyncio.sleep,
        monotonic: Callable[[], float] = time.monotonic,
        rand: Callable[[], float] = random.random,
        sms_budget: Callable[[str | None], int] | None = None,
        budget_zone: Callable[[str | None], tzinfo] = lambda _region: UTC,
    ) -> None:
        self.repo = repo
        self.channels = channels
        self.failures = failures
        self.metrics = metrics
        self.policy = policy
        self.send_timeout_s = send_timeout_s
        # An attempt older than this has lost its worker; a live one ends far sooner.
        self.lease_s = send_timeout_s * 2 + 10.0
        self.clock = clock
        self.sleep = sleep
        self.monotonic = monotonic
        self.rand = rand
        # Citizen SMS a region may send per day; None: no budget.
        self.sms_budget = sms_budget
        # The budget's day is the region's calendar day, not UTC's (08:00 WITA).
        self.budget_zone = budget_zone

    async def deliver_all(
        self, notifications: Sequence[Notification], *, last_chance: bool = False
    ) -> float | None:
        """Deliver each one; the delay after which the event must come back, if any."""
        results = await asyncio.gather(
            *(self.deliver(n, last_chance=last_chance) for n in notifications),
            return_exceptions=True,
        )
        errors = [r for r in results if isinstance(r, BaseException)]
        if errors:
            raise errors[0]
        delays = [r for r in results if isinstance(r, float)]
        return min(delays) if delays else None

    async def deliver(self, note: Notification, *, last_chance: bool = False) -> float | None:
        record = await self.repo.open(self._new_record(note))
        if record["status"] == FAILED:
            await self._announce(record)
            return None
        if record["status"] in FINAL:
            return None
        if note.withheld:
            await self.repo.mark_withheld(note.id, note.withheld, self.clock())
            log.info("notification %s withheld: %s", note.id, note.withheld)
            return None
        if note.undeliverable:
            await self._fail(record, "undeliverable", note.undeliverable, attempts=None)
            return None
        budget = await self._within_budget(note, last_chance=last_chance)
        if budget is not True:
            return None if budget is False else budget
        wait = self._backing_off(record)
        if wait > 0 and not last_chance:
            return wait
        return await self._attempts(note, record, last_chance)

    async def _within_budget(self, note: Notification, *, last_chance: bool) -> bool | float:
        """Whether a citizen SMS may go out under its region's daily budget (its local day).

        Counted once per notification: a retry or redelivery of an SMS already
        counted goes on. One beyond the budget is withheld (`budget_exhausted`),
        counted in the metric and in the day's counter document, never sent.
        """
        if self.sms_budget is None or note.message.kind != "sms" or note.audience != "citizen":
            return True
        region = note.region or "-"
        day = self.clock().astimezone(self.budget_zone(note.region)).date().isoformat()
        now = self.clock()
        if not await self.repo.claim_budget(note.id, day, now):
            # Counted by an earlier delivery, or by another replica right now: only
            # an SMS the budget let through goes on; the claimant settles the rest.
            record = await self.repo.get(note.id) or {}
            if record.get("budget") in ("spent", "held"):
                return record["budget"] == "spent"
            claimed_at = record.get("budget_claimed_at")
            if claimed_at is not None and claimed_at.tzinfo is None:
                claimed_at = claimed_at.replace(tzinfo=UTC)
            age = (now - claimed_at).total_seconds() if claimed_at is not None else None
            if age is not None and age < self.lease_s and not last_chance:
                return max(self.lease_s - age, 1.0)  # its claimant is deciding: look again
            # Its claimant died before deciding: decide now rather than lose the SMS.
            # The day may so count one SMS twice, which errs on the side of the budget.
        if await self.repo.spend_sms_budget(region, day, self.sms_budget(note.region)):
            await self.repo.note_budget(note.id, "spent")
            return True
        await self.repo.note_budget(note.id, "held")
        if await self.repo.mark_withheld(note.id, BUDGET_EXHAUSTED, self.clock()):
            self.metrics.withheld.labels(
                channel="sms", region=region, reason=BUDGET_EXHAUSTED
            ).inc()
            log.warning(
                "SMS %s withheld: the daily SMS budget of %s is spent",
                note.id,
                region,
                extra={"complaint_id": note.message.complaint_id, "notification_id": note.id},
            )
        return False

    async def _attempts(
        self, note: Notification, record: Document, last_chance: bool
    ) -> float | None:
        channel = self.channels.for_kind(note.message.kind)
        started = self.monotonic()
        # The record counts attempts once they finished: the next one is known.
        expected = int(record.get("attempts") or 0) + 1
        while True:
            claim = await self.repo.claim_attempt(
                note.id, self.clock(), self.lease_s, channel.name, expected_n=expected
            )
            if not isinstance(claim, Claim):
                # Someone else is sending it now; its outcome will be in the log.
                return None if last_chance else claim.retry_in_s
            result = await self._send(channel.send, note.message)
            await self._record_attempt(claim, channel.name, result)
            if result.ok:
                await self._sent(note, claim, channel.name)
                return None
            error = result.error or "unknown error"
            if result.permanent:
                await self._fail(record, "rejected", error, attempts=claim.n)
                return None
            plan = plan_retry(
                self.policy,
                attempts=claim.n,
                elapsed_s=self.monotonic() - started,
                send_timeout_s=self.send_timeout_s,
                last_chance=last_chance,
                rand=self.rand(),
            )
            if plan.action is RetryAction.GIVE_UP:
                reason = f"gave up after {claim.n} attempts; last error: {error}"
                await self._fail(record, "exhausted", reason, attempts=claim.n)
                return None
            now = self.clock()
            next_at = now + timedelta(seconds=plan.delay_s)
            await self.repo.note_retry(note.id, claim.n, error, next_at, now)
            if plan.action is RetryAction.REDELIVER:
                return plan.delay_s
            await self.sleep(plan.delay_s)
            expected = claim.n + 1

    async def _send(
        self, send: Callable[[OutgoingMessage], Awaitable[DeliveryResult]], msg: OutgoingMessage
    ) -> DeliveryResult:
        try:
            return await send(msg)
        except Exception as exc:
            # An unexpected error may be passing (NATS reconnecting); retrying is safe
            # because the attempt was claimed and receivers de-duplicate by id.
            log.warning("notification %s: channel error", msg.notification_id, exc_info=True)
            return DeliveryResult.temporary(f"{type(exc).__name__}: {exc}")

    async def _record_attempt(self, claim: Claim, transport: str, result: DeliveryResult) -> None:
        outcome = "sent" if result.ok else ("permanent" if result.permanent else "temporary")
        self.metrics.attempts.labels(transport=transport, outcome=outcome).inc()
        await self.repo.finish_attempt(claim, outcome, result.error, self.clock())

    async def _sent(self, note: Notification, claim: Claim, transport: str) -> None:
        await self.repo.mark_sent(note.id, claim.n, transport, self.clock())
        self.metrics.outcomes.labels(channel=note.message.kind, status="sent").inc()

    def _backing_off(self, record: Document) -> float:
        next_at = record.get("next_attempt_at")
        if next_at is None:
            return 0.0
        return max((next_at - self.clock()).total_seconds(), 0.0)

    # --- failure -----------------------------------------------------------------

    async def fail_by_receipt(self, record: Document, error: str, reason: str = "receipt") -> None:
        """`reason` is `expired` when the SMSC gave up on the SMS's validity period."""
        await self._fail(record, reason, error, attempts=None)

    async def mark_delivered(self, notification_id: str, at: datetime) -> bool:
        """True when the receipt moved the notification (pending or sent) to delivered."""
        if not await self.repo.mark_delivered(notification_id, at, self.clock()):
            return False
        self.metrics.delivered.inc()
        return True

    async def _fail(
        self, record: Document, reason: str, error: str, *, attempts: int | None
    ) -> None:
        now = self.clock()
        changed = await self.repo.mark_failed(
            record["_id"], reason=reason, error=error, attempts=attempts, now=now
        )
        if changed:
            channel = record.get("channel", "sms")
            self.metrics.outcomes.labels(channel=channel, status="failed").inc()
            self.metrics.failed.labels(
                channel=channel,
                audience=record.get("audience", "citizen"),
                reason=reason,
                template=record.get("template", "-"),
            ).inc()
            log.warning(
                "notification %s failed (%s): %s",
                record["_id"],
                reason,
                error,
                extra={
                    "complaint_id": record.get("complaint_id"),
                    "notification_id": record["_id"],
                },
            )
        stored = await self.repo.get(record["_id"])
        if stored is not None and stored["status"] == FAILED:
            await self._announce(stored)

    async def announce_failures(self) -> int:
        """Announce every stored failure whose announcement is still pending."""
        pending = await self.repo.unannounced_failures()
        for record in pending:
            await self._announce(record)
        return len(pending)

    async def _announce(self, record: Document) -> None:
        if record.get("failure_announced", True):
            return
        event = NotificationFailed(
            event_id=f"failed:{record['_id']}",
            occurred_at=record.get("failed_at") or self.clock(),
            notification_id=record["_id"],
            complaint_id=record.get("complaint_id"),
            cause_event_id=record.get("cause_event_id", "-"),
            audience=record.get("audience", "citizen"),
            channel=record.get("channel", "sms"),
            transport=record.get("transport") or "none",
            template=record.get("template", "-"),
            agency=record.get("agency"),
            reason=record["failure_reason"],
            error=mask_phones(record.get("last_error") or ""),
            attempts=record.get("attempts", 0),
        )
        await self.failures.publish(event, msg_id=event.event_id)
        await self.repo.mark_announced(record["_id"])

    def _new_record(self, note: Notification) -> dict[str, Any]:
        msg, now = note.message, self.clock()
        return {
            "_id": note.id,
            "complaint_id": msg.complaint_id,
            "cause_event_id": note.cause_event_id,
            "audience": note.audience,
            "channel": msg.kind,
            "transport": self.channels.for_kind(msg.kind).name,
            "template": msg.template,
            "recipient": recipient_label(msg),
            "agency": msg.agency,
            "level": note.level,
            "status": PENDING,
            "attempts": 0,
            "last_error": None,
            "next_attempt_at": None,
            "created_at": now,
            "updated_at": now,
        }
