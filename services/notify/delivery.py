"""Delivering notifications exactly once, and never failing silently.

For each notification: open its log record (the id is the primary key, so a
redelivered event finds the earlier one; a new record is stored with its
first attempt claimed), skip it if it is already settled, claim the next
attempt, send through the channel, write the outcome together with the status
it leads to. A temporary failure is retried after a backoff, briefly in the
handler or by a delayed redelivery of the event; a permanent failure, or the
retry cap, marks the notification failed, counts it and announces it on the bus.
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

from prometheus_client import CollectorRegistry

from lapor.contracts import NotificationFailed
from lapor.runtime.broker import EventPublisher
from lapor.runtime.logs import mask_phones
from lapor.runtime.metrics import counter
from services.notify.attempts import Claim, claim_of, claimed_first_attempt
from services.notify.channels import ChannelSet, DeliveryResult, OutgoingMessage, shown_address
from services.notify.repository import (
    FAILED,
    FINAL,
    PENDING,
    SENT,
    WITHHELD,
    Document,
    Finished,
    Finishing,
    NotificationRepository,
    Opened,
    budget_claim,
    failed_fields,
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
    # An acknowledgement: the answer date it tells, kept with its record (the first
    # one kept is what later announcements of the deadlines are compared with).
    acknowledges: datetime | None = None

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
        self.outcomes = counter(
            registry,
            "lapor_notifications_total",
            "Notifications that reached a final status (sent or failed), by channel",
            ["channel", "status"],
        )
        self.attempts = counter(
            registry,
            "lapor_notification_attempts_total",
            "Delivery attempts by transport and outcome (sent, temporary, permanent).",
            ["transport", "outcome"],
        )
        self.failed = counter(
            registry,
            "lapor_notifications_failed_total",
            "Notifications given up, by why: rejected, exhausted (retries), undeliverable "
            "(no address), receipt (the gateway reported failure), expired (the SMSC gave up).",
            ["channel", "audience", "reason", "template"],
        )
        self.delivered = counter(
            registry,
            "lapor_notifications_delivered_total",
            "SMS the gateway reported as delivered.",
            [],
        )
        # The family the LaporSmsBudgetExhausted alert reads.
        self.withheld = counter(
            registry,
            "lapor_notifications_withheld_total",
            "Notifications not sent on purpose, by region and why (budget_exhausted: "
            "the region's daily SMS budget was spent).",
            ["channel", "region", "reason"],
        )


Sleep = Callable[[float], Awaitable[None]]
Finish = Callable[[Finishing], Awaitable[Finished]]


class _Endings:
    """The final outcomes of one event's notices, written in one command: each waits
    until every notice has either come to its final outcome or returned without one
    (withheld, settled before, asked back later), and the last one in writes them. A
    notice retried in the handler keeps the others waiting for its end, which its
    send timeouts bound."""

    def __init__(self, repo: NotificationRepository, notices: int) -> None:
        self.repo = repo
        self.notices = notices
        self.returned = 0
        self.waiting: list[tuple[Finishing, asyncio.Future[Finished]]] = []

    async def finish(self, ending: Finishing) -> Finished:
        done: asyncio.Future[Finished] = asyncio.get_running_loop().create_future()
        self.waiting.append((ending, done))
        await self._write_when_all_in()
        return await done

    async def over(self) -> None:
        """A notice's delivery returned (after its outcome was written, if it had one)."""
        self.returned += 1
        await self._write_when_all_in()

    async def _write_when_all_in(self) -> None:
        if not self.waiting or len(self.waiting) + self.returned < self.notices:
            return
        taken, self.waiting = self.waiting, []
        try:
            ended = await self.repo.finish_attempts([ending for ending, _ in taken])
        except asyncio.CancelledError:
            for _, done in taken:
                done.cancel()
            raise
        except Exception as exc:  # each waiting notice raises it, as its own write would
            for _, done in taken:
                if not done.done():
                    done.set_exception(exc)
            return
        for (_, done), how in zip(taken, ended, strict=True):
            if not done.done():
                done.set_result(how)


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
        """Deliver each one; the delay after which the event must come back, if any.
        Their records are stored together (one command)."""
        opened = await self.repo.open_all([self._new_record(n) for n in notifications])
        endings = _Endings(self.repo, len(notifications))

        async def deliver(note: Notification, record: Opened) -> float | None:
            try:
                return await self._deliver_opened(note, record, last_chance, endings)
            finally:
                await endings.over()

        results = await asyncio.gather(
            *(deliver(n, o) for n, o in zip(notifications, opened, strict=True)),
            return_exceptions=True,
        )
        errors = [r for r in results if isinstance(r, BaseException)]
        if errors:
            raise errors[0]
        delays = [r for r in results if isinstance(r, float)]
        return min(delays) if delays else None

    async def deliver(self, note: Notification, *, last_chance: bool = False) -> float | None:
        opened = await self.repo.open(self._new_record(note))
        return await self._deliver_opened(note, opened, last_chance)

    async def _deliver_opened(
        self, note: Notification, opened: Opened, last_chance: bool, endings: _Endings | None = None
    ) -> float | None:
        if opened.created:
            return await self._deliver_new(note, opened.record, last_chance, endings)
        record = opened.record
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
        budget = await self._within_budget(note, record, last_chance=last_chance)
        if budget is not True:
            return None if budget is False else budget
        wait = self._backing_off(record)
        if wait > 0 and not last_chance:
            return wait
        return await self._attempts(note, record, last_chance, endings=endings)

    async def _deliver_new(
        self, note: Notification, record: Document, last_chance: bool, endings: _Endings | None
    ) -> float | None:
        """A record this delivery stored: it was stored withheld or failed when the
        message cannot go out, else with attempt 1 (and the budget) claimed."""
        if note.withheld:
            log.info("notification %s withheld: %s", note.id, note.withheld)
            return None
        if note.undeliverable:
            self._count_failure(record, "undeliverable", note.undeliverable)
            await self._announce(record)
            return None
        claim = claim_of(record)
        if claim is None:  # cannot happen: _new_record claims attempt 1
            return await self._attempts(note, record, last_chance, endings=endings)
        if not self._budgeted(note):
            return await self._attempts(note, record, last_chance, claim, endings=endings)
        if await self.repo.spend_sms_budget(
            note.region or "-", record["budget_day"], self._budget_of(note)
        ):
            # Kept with the attempt's outcome: no write of its own.
            spent = {"budget": "spent"}
            return await self._attempts(note, record, last_chance, claim, spent, endings)
        if await self.repo.withhold_claimed(claim, BUDGET_EXHAUSTED, self.clock()):
            self._count_withheld(note)
        return None

    def _budgeted(self, note: Notification) -> bool:
        return (
            self.sms_budget is not None
            and note.message.kind == "sms"
            and note.audience == "citizen"
        )

    def _budget_of(self, note: Notification) -> int:
        return self.sms_budget(note.region) if self.sms_budget is not None else 0

    def _budget_day(self, note: Notification) -> str:
        return self.clock().astimezone(self.budget_zone(note.region)).date().isoformat()

    async def _within_budget(
        self, note: Notification, record: Document, *, last_chance: bool
    ) -> bool | float:
        """Whether a citizen SMS of a stored record may go out under its region's daily
        budget (its local day).

        Counted once per notification: a retry or redelivery of an SMS already
        counted goes on. One beyond the budget is withheld (`budget_exhausted`),
        counted in the metric and in the day's counter document, never sent.
        """
        if not self._budgeted(note):
            return True
        region = note.region or "-"
        day, now = self._budget_day(note), self.clock()
        if "budget_day" in record or not await self.repo.claim_budget(note.id, day, now):
            # Counted by an earlier delivery, or by another replica right now: only
            # an SMS the budget let through goes on; the claimant settles the rest.
            if "budget_day" not in record:
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
            day = record.get("budget_day") or day
        if await self.repo.spend_sms_budget(region, day, self._budget_of(note)):
            await self.repo.note_budget(note.id, "spent")
            return True
        await self.repo.note_budget(note.id, "held")
        if await self.repo.mark_withheld(note.id, BUDGET_EXHAUSTED, self.clock()):
            self._count_withheld(note)
        return False

    def _count_withheld(self, note: Notification) -> None:
        region = note.region or "-"
        self.metrics.withheld.labels(channel="sms", region=region, reason=BUDGET_EXHAUSTED).inc()
        log.warning(
            "SMS %s withheld: the daily SMS budget of %s is spent",
            note.id,
            region,
            extra={"complaint_id": note.message.complaint_id, "notification_id": note.id},
        )

    async def _attempts(
        self,
        note: Notification,
        record: Document,
        last_chance: bool,
        claim: Claim | None = None,
        settle_too: Document | None = None,
        endings: _Endings | None = None,
    ) -> float | None:
        """Claim (unless `claim` is held already), send, record the outcome; retry
        briefly here or ask for the event again after a backoff. A final outcome goes
        out with the other notices' of the event (`endings`), when there are some."""
        finish = endings.finish if endings is not None else self._finish_one
        channel = self.channels.for_kind(note.message.kind)
        started = self.monotonic()
        extra = dict(settle_too or {})
        while True:
            if claim is None:
                got = await self.repo.claim_attempt(
                    record, self.clock(), self.lease_s, channel.name
                )
                if not isinstance(got, Claim):
                    # Someone else is sending it now; its outcome will be in the log.
                    return None if last_chance else got.retry_in_s
                claim = got
            result = await self._send(channel.send, note.message)
            outcome = "sent" if result.ok else ("permanent" if result.permanent else "temporary")
            self.metrics.attempts.labels(transport=channel.name, outcome=outcome).inc()
            now = self.clock()
            if result.ok:
                await self._finish_sent(note, claim, channel.name, now, extra, finish)
                return None
            error = result.error or "unknown error"
            if result.permanent:
                ending = (outcome, error, "rejected", error)
                await self._fail_attempt(record, claim, *ending, extra, finish)
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
                ending = (outcome, error, "exhausted", reason)
                await self._fail_attempt(record, claim, *ending, extra, finish)
                return None
            next_at = now + timedelta(seconds=plan.delay_s)
            retry = {"last_error": error, "next_attempt_at": next_at} | extra
            if await self.repo.finish_attempt(claim, outcome, error, now, retry) is not (
                Finished.MOVED
            ):
                return None  # settled meanwhile, or another worker holds a later attempt
            if plan.action is RetryAction.REDELIVER:
                return plan.delay_s
            await self.sleep(plan.delay_s)
            record = _after(record, claim, outcome, error, now)
            claim, extra = None, {}

    async def _finish_one(self, ending: Finishing) -> Finished:
        return await self.repo.finish_attempt(
            ending.claim, ending.outcome, ending.error, ending.now, ending.settle
        )

    async def _finish_sent(
        self,
        note: Notification,
        claim: Claim,
        transport: str,
        now: datetime,
        extra: Document,
        finish: Finish,
    ) -> None:
        """The attempt's outcome and the status `sent` in one write."""
        settle = {"status": SENT, "transport": transport, "sent_at": now}
        ended = await finish(
            Finishing(claim, "sent", None, now, settle | {"next_attempt_at": None} | extra)
        )
        if ended is not Finished.LOST:
            self.metrics.outcomes.labels(channel=note.message.kind, status="sent").inc()

    async def _fail_attempt(
        self,
        record: Document,
        claim: Claim,
        outcome: str,
        attempt_error: str,
        reason: str,
        error: str,
        extra: Document,
        finish: Finish,
    ) -> None:
        """The attempt's outcome and the failure in one write, then the announcement."""
        now = self.clock()
        fields = failed_fields(reason, error, now)
        ended = await finish(Finishing(claim, outcome, attempt_error, now, fields | extra))
        if ended is Finished.MOVED:
            self._count_failure(record, reason, error)
            await self._announce(record | fields | {"attempts": claim.n})
        elif ended is Finished.KEPT:
            stored = await self.repo.get(record["_id"])
            if stored is not None and stored["status"] == FAILED:
                await self._announce(stored)

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
            self._count_failure(record, reason, error)
        stored = await self.repo.get(record["_id"])
        if stored is not None and stored["status"] == FAILED:
            await self._announce(stored)

    def _count_failure(self, record: Document, reason: str, error: str) -> None:
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
            extra={"complaint_id": record.get("complaint_id"), "notification_id": record["_id"]},
        )

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
        """The record as a new notification is stored: already withheld or failed when
        it cannot go out, else with attempt 1 (and a citizen SMS's budget) claimed."""
        msg, now = note.message, self.clock()
        transport = self.channels.for_kind(msg.kind).name
        record: dict[str, Any] = {
            "_id": note.id,
            "complaint_id": msg.complaint_id,
            "cause_event_id": note.cause_event_id,
            "audience": note.audience,
            "channel": msg.kind,
            "transport": transport,
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
            "attempt": None,
            "attempt_log": [],
        }
        if note.acknowledges is not None:
            record["acknowledged_answer"] = note.acknowledges
        if note.withheld:
            return record | {"status": WITHHELD, "withheld_reason": note.withheld}
        if note.undeliverable:
            return record | failed_fields("undeliverable", note.undeliverable, now)
        if self._budgeted(note):
            record |= budget_claim(self._budget_day(note), now)
        return record | claimed_first_attempt(transport, now)


def _after(record: Document, claim: Claim, outcome: str, error: str, now: datetime) -> Document:
    """`record` as it is once attempt `claim.n` ended with a retry."""
    if claim.legacy:
        return record | {"attempts": claim.n}
    ended = claim.as_attempt() | {"finished_at": now, "outcome": outcome, "error": error}
    return record | {"attempts": claim.n, "attempt": ended}
