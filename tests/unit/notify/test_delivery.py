"""The delivery rules over an in-memory log: what is sent, retried, failed and announced."""

from __future__ import annotations

import copy
from datetime import UTC, datetime, timedelta
from types import SimpleNamespace
from typing import Any

import pytest
from prometheus_client import CollectorRegistry

from lapor.contracts.outbound import SmsDeliveryReceipt
from services.notify.attempts import ABANDONED, Claim, InFlight, attempts_in
from services.notify.channels import ChannelSet, DeliveryResult, OutgoingMessage
from services.notify.delivery import Deliverer, Notification, NotifyMetrics
from services.notify.handlers import handle_receipt
from services.notify.repository import PENDING, Finished, Finishing, Opened
from services.notify.retry import RetryPolicy

T0 = datetime(2026, 11, 30, tzinfo=UTC)


class MemoryLog:
    """Stands in for NotificationRepository with the same conditional writes: one
    record per notification carrying its current attempt and the finished ones."""

    def __init__(self) -> None:
        self.records: dict[str, dict[str, Any]] = {}
        self.claims = 0  # claims written after the insert (conditional updates)
        self.opens = 0  # commands storing records
        self.finishes = 0  # commands recording attempts' endings

    async def open(self, record: dict[str, Any]) -> Opened:
        if record["_id"] in self.records:
            return Opened(copy.deepcopy(self.records[record["_id"]]), created=False)
        self.records[record["_id"]] = copy.deepcopy(record)
        return Opened(copy.deepcopy(record), created=True)

    async def open_all(self, records: list[dict[str, Any]]) -> list[Opened]:
        self.opens += 1
        return [await self.open(record) for record in records]

    async def get(self, notification_id: str) -> dict[str, Any] | None:
        record = self.records.get(notification_id)
        return copy.deepcopy(record) if record else None

    async def claim_attempt(
        self, record: dict[str, Any], now: datetime, lease_s: float, transport: str
    ) -> Claim | InFlight:
        self.claims += 1
        stored = self.records[record["_id"]]
        current = record.get("attempt")
        if stored["status"] != PENDING or not _same(stored.get("attempt"), current):
            return InFlight(1.0)  # another worker moved it on since `record` was read
        n = 1
        if current is not None:
            n = current["n"] + 1
            if current["finished_at"] is None:
                age = (now - current["started_at"]).total_seconds()
                if age < lease_s:
                    return InFlight(max(lease_s - age, 0.5))
                abandoned = {"finished_at": now, "outcome": ABANDONED, "error": None}
                stored["attempt_log"].append(current | abandoned)
        claim = Claim(record["_id"], n, transport, now)
        stored["attempt"] = claim.as_attempt()
        return claim

    async def finish_attempts(self, endings: list[Finishing]) -> list[Finished]:
        self.finishes += 1
        return [await self._finish(e.claim, e.outcome, e.error, e.now, e.settle) for e in endings]

    async def finish_attempt(
        self, claim: Claim, outcome: str, error: str | None, now: datetime, settle: dict[str, Any]
    ) -> Finished:
        self.finishes += 1
        return await self._finish(claim, outcome, error, now, settle)

    async def _finish(
        self, claim: Claim, outcome: str, error: str | None, now: datetime, settle: dict[str, Any]
    ) -> Finished:
        stored = self.records[claim.notification_id]
        held = stored.get("attempt")
        if held is None or held["n"] != claim.n or held["finished_at"] is not None:
            return Finished.LOST
        ended = {"finished_at": now, "outcome": outcome, "error": error}
        held |= ended
        stored["attempt_log"].append(claim.as_attempt() | ended)
        stored["attempts"] = claim.n
        if stored["status"] != PENDING:
            return Finished.KEPT
        stored |= settle
        return Finished.MOVED

    async def mark_delivered(self, nid: str, at: datetime, now: datetime) -> bool:
        return self._move(nid, (PENDING, "sent"), status="delivered")

    async def mark_failed(
        self, nid: str, *, reason: str, error: str, attempts: int | None, now: datetime
    ) -> bool:
        fields: dict[str, Any] = {"status": "failed", "failure_reason": reason, "last_error": error}
        fields |= {"failed_at": now, "failure_announced": False}
        if attempts is not None:
            fields["attempts"] = attempts
        return self._move(nid, (PENDING, "sent"), **fields)

    async def mark_withheld(self, nid: str, reason: str, now: datetime) -> bool:
        return self._move(nid, (PENDING,), status="withheld", withheld_reason=reason)

    async def withhold_claimed(self, claim: Claim, reason: str, now: datetime) -> bool:
        fields = {"withheld_reason": reason, "budget": "held", "attempt": None}
        return self._move(claim.notification_id, (PENDING,), status="withheld", **fields)

    async def mark_announced(self, nid: str) -> None:
        self.records[nid]["failure_announced"] = True

    def _move(self, nid: str, allowed: tuple[str, ...], **fields: Any) -> bool:
        if self.records[nid]["status"] not in allowed:
            return False
        self.records[nid] |= fields
        return True


def _same(stored: dict[str, Any] | None, known: dict[str, Any] | None) -> bool:
    """The repository's claim condition: the attempt the claimant saw is still the last."""
    if stored is None or known is None:
        return stored is known
    finished = (stored["finished_at"] is None, known["finished_at"] is None)
    return stored["n"] == known["n"] and finished[0] == finished[1]


def outcomes(record: dict[str, Any]) -> list[str | None]:
    return [a.get("outcome") for a in attempts_in(record) or []]


class Scripted:
    name = "http"

    def __init__(self, *answers: DeliveryResult | Exception) -> None:
        self.answers = list(answers)
        self.sent: list[OutgoingMessage] = []

    async def send(self, message: OutgoingMessage) -> DeliveryResult:
        self.sent.append(message)
        answer = self.answers.pop(0) if self.answers else DeliveryResult.sent()
        if isinstance(answer, Exception):
            raise answer
        return answer


class Publisher:
    def __init__(self, failures: int = 0) -> None:
        self.failures = failures
        self.published: list[Any] = []

    async def publish(self, message: Any, msg_id: str) -> bool:
        if self.failures:
            self.failures -= 1
            raise ConnectionError("NATS reconnecting")
        self.published.append(message)
        return True


class Setup:
    def __init__(self, channel: Scripted, publisher: Publisher | None = None) -> None:
        self.log = MemoryLog()
        self.channel = channel
        self.publisher = publisher or Publisher()
        self.registry = CollectorRegistry()
        self.now = T0
        self.slept: list[float] = []

        async def sleep(seconds: float) -> None:
            self.slept.append(seconds)
            self.now += timedelta(seconds=seconds)

        self.deliverer = Deliverer(
            self.log,  # type: ignore[arg-type]
            ChannelSet(sms=channel, email=channel, webhook=channel),
            self.publisher,  # type: ignore[arg-type]
            NotifyMetrics(self.registry),
            RetryPolicy(base_s=1, factor=4, max_delay_s=60, max_attempts=4, jitter=0),
            send_timeout_s=1.0,
            clock=lambda: self.now,
            sleep=sleep,
            monotonic=lambda: (self.now - T0).total_seconds(),
            rand=lambda: 0.0,
        )

    def failed_count(self, reason: str) -> float | None:
        labels = {"channel": "sms", "audience": "citizen", "reason": reason, "template": "ack"}
        return self.registry.get_sample_value("lapor_notifications_failed_total", labels)


def note(**kwargs: Any) -> Notification:
    message = OutgoingMessage("ntf-1", "sms", "+6281234567890", "Halo", template="ack")
    return Notification(message, "citizen", "deadlines:routed:X:0", **kwargs)


async def test_sent_once_then_settled() -> None:
    s = Setup(Scripted())
    assert await s.deliverer.deliver(note()) is None
    assert await s.deliverer.deliver(note()) is None
    assert len(s.channel.sent) == 1
    assert s.log.records["ntf-1"]["status"] == "sent"
    assert s.log.records["ntf-1"]["recipient"] == "+628****"


async def test_short_backoff_in_the_handler_then_redelivery_with_the_longer_one() -> None:
    s = Setup(Scripted(DeliveryResult.temporary("HTTP 500"), ConnectionError("reset")))
    assert await s.deliverer.deliver(note()) == 4.0  # 1 s waited here, 4 s is too long
    assert s.slept == [1.0]
    record = s.log.records["ntf-1"]
    assert (record["status"], record["attempts"]) == ("pending", 2)
    assert "ConnectionError" in record["last_error"]
    # Redelivered too early (another notification of the event asked sooner): wait on.
    s.now += timedelta(seconds=1)
    assert await s.deliverer.deliver(note()) == pytest.approx(3.0)
    assert len(s.channel.sent) == 2
    s.now += timedelta(seconds=3)
    assert await s.deliverer.deliver(note()) is None
    assert s.log.records["ntf-1"]["status"] == "sent"


async def test_each_attempt_is_one_claim_the_first_made_by_the_insert() -> None:
    s = Setup(Scripted(DeliveryResult.temporary("HTTP 500"), DeliveryResult.temporary("HTTP 502")))
    assert await s.deliverer.deliver(note()) == 4.0
    s.now += timedelta(seconds=4)
    assert await s.deliverer.deliver(note()) is None  # redelivered: attempt 3 is next
    record = s.log.records["ntf-1"]
    assert outcomes(record) == ["temporary", "temporary", "sent"]
    assert [a["n"] for a in attempts_in(record) or []] == [1, 2, 3]
    assert (record["status"], record["attempts"]) == ("sent", 3)
    assert s.log.claims == 2  # attempts 2 and 3; attempt 1 came with the record


async def test_an_attempt_in_flight_elsewhere_is_not_repeated_until_its_lease_ran_out() -> None:
    s = Setup(Scripted())
    # Another worker stored the record with attempt 1 claimed and is sending it.
    await s.log.open(s.deliverer._new_record(note()))
    wait = await s.deliverer.deliver(note())
    assert wait is not None and wait > 0 and s.channel.sent == []
    # Its process died mid-send: after the lease the attempt is abandoned, not lost.
    s.now += timedelta(seconds=s.deliverer.lease_s)
    assert await s.deliverer.deliver(note()) is None
    record = s.log.records["ntf-1"]
    assert outcomes(record) == [ABANDONED, "sent"]
    assert (record["status"], record["attempts"], len(s.channel.sent)) == ("sent", 2, 1)


async def test_a_claim_someone_else_made_first_sends_nothing() -> None:
    s = Setup(Scripted(DeliveryResult.temporary("HTTP 500"), DeliveryResult.temporary("HTTP 502")))
    assert await s.deliverer.deliver(note()) == 4.0
    seen = await s.log.get("ntf-1")
    assert seen is not None
    s.now += timedelta(seconds=4)
    assert await s.deliverer.deliver(note()) is None  # the other worker's attempt 3
    claimed = await s.log.claim_attempt(seen, s.now, s.deliverer.lease_s, "http")
    assert isinstance(claimed, InFlight) and len(s.channel.sent) == 3


async def test_an_attempt_whose_claim_was_taken_over_records_nothing() -> None:
    s = Setup(Scripted())
    claim = Claim("ntf-1", 1, "http", T0)
    await s.log.open(s.deliverer._new_record(note()))
    s.log.records["ntf-1"]["attempt"] = Claim("ntf-1", 2, "http", T0).as_attempt()
    ended = await s.log.finish_attempt(claim, "sent", None, T0, {"status": "sent"})
    assert ended is Finished.LOST and s.log.records["ntf-1"]["status"] == PENDING


async def test_the_last_delivery_gives_up_and_announces() -> None:
    s = Setup(Scripted(*[DeliveryResult.temporary("HTTP 503")] * 3))
    assert await s.deliverer.deliver(note(), last_chance=True) is None
    record = s.log.records["ntf-1"]
    assert (record["status"], record["failure_reason"], record["attempts"]) == (
        "failed",
        "exhausted",
        2,
    )
    [event] = s.publisher.published
    assert (event.event_id, event.reason) == ("failed:ntf-1", "exhausted")
    assert "+6281234567890" not in event.model_dump_json()
    assert s.failed_count("exhausted") == 1


async def test_permanent_rejection_fails_at_once() -> None:
    s = Setup(Scripted(DeliveryResult.rejected("HTTP 400: invalid number")))
    assert await s.deliverer.deliver(note()) is None
    assert len(s.channel.sent) == 1
    assert s.log.records["ntf-1"]["failure_reason"] == "rejected"
    assert s.failed_count("rejected") == 1


async def test_an_unannounced_failure_is_announced_on_the_next_delivery() -> None:
    s = Setup(Scripted(DeliveryResult.rejected("HTTP 400")), Publisher(failures=1))
    with pytest.raises(ConnectionError):
        await s.deliverer.deliver(note())  # the event comes back
    assert s.log.records["ntf-1"]["status"] == "failed"
    assert not s.log.records["ntf-1"]["failure_announced"]
    await s.deliverer.deliver(note())
    assert len(s.publisher.published) == 1
    assert s.log.records["ntf-1"]["failure_announced"]
    assert len(s.channel.sent) == 1  # announcing again never resends
    assert s.failed_count("rejected") == 1


async def test_undeliverable_and_withheld_send_nothing() -> None:
    s = Setup(Scripted())
    await s.deliverer.deliver(note(undeliverable="no address"))
    assert s.log.records["ntf-1"]["failure_reason"] == "undeliverable"
    assert s.failed_count("undeliverable") == 1

    s = Setup(Scripted())
    await s.deliverer.deliver(note(withheld="confidential"))
    assert s.log.records["ntf-1"]["status"] == "withheld"
    assert s.channel.sent == [] and s.publisher.published == []


async def test_a_receipt_never_downgrades() -> None:
    s = Setup(Scripted())
    await s.deliverer.deliver(note())
    assert await s.deliverer.mark_delivered("ntf-1", T0)
    assert not await s.deliverer.mark_delivered("ntf-1", T0)
    await s.deliverer.fail_by_receipt(s.log.records["ntf-1"], "late failure report")
    assert s.log.records["ntf-1"]["status"] == "delivered"
    assert s.publisher.published == []


async def test_all_notifications_of_an_event_come_back_after_the_shortest_wait() -> None:
    s = Setup(Scripted(DeliveryResult.temporary("a"), DeliveryResult.temporary("b")))
    other = Notification(
        OutgoingMessage("ntf-2", "sms", "+6281200000000", "Halo", template="ack"),
        "citizen",
        "deadlines:routed:X:0",
    )
    delay = await s.deliverer.deliver_all([note(), other])
    assert delay is not None and delay <= 4.0


async def test_the_notifications_of_an_event_are_stored_together() -> None:
    s = Setup(Scripted())
    other = Notification(
        OutgoingMessage("ntf-2", "sms", "+6281200000000", "Halo", template="ack"),
        "citizen",
        "deadlines:routed:X:0",
    )
    assert await s.deliverer.deliver_all([note(), other]) is None
    assert s.log.opens == 1
    assert [m.notification_id for m in s.channel.sent] == ["ntf-1", "ntf-2"]
    assert await s.deliverer.deliver_all([note(), other]) is None  # a redelivery
    assert len(s.channel.sent) == 2


async def test_the_endings_of_an_events_notices_are_written_together() -> None:
    """One sent, one refused, one retried in the handler first: one write for the
    three endings, made once the last has come to its end."""
    s = Setup(
        Scripted(
            DeliveryResult.sent(),
            DeliveryResult.rejected("HTTP 400"),
            DeliveryResult.temporary("HTTP 503"),
            DeliveryResult.sent(),
        )
    )
    others = [
        Notification(
            OutgoingMessage(f"ntf-{n}", "sms", "+6281200000000", "Halo", template="ack"),
            "citizen",
            "deadlines:routed:X:0",
        )
        for n in (2, 3)
    ]
    assert await s.deliverer.deliver_all([note(), *others]) is None
    statuses = [s.log.records[f"ntf-{n}"]["status"] for n in (1, 2, 3)]
    assert statuses == ["sent", "failed", "sent"]
    assert s.log.records["ntf-3"]["attempts"] == 2
    # The retry of ntf-3 wrote its first attempt's ending alone, in the handler.
    assert s.log.finishes == 2


async def test_final_outcomes_are_counted_by_channel_and_status() -> None:
    s = Setup(Scripted(DeliveryResult.sent(), DeliveryResult.rejected("HTTP 400")))
    await s.deliverer.deliver(note())
    other = Notification(
        OutgoingMessage("ntf-2", "sms", "+6281200000000", "Halo", template="ack"),
        "citizen",
        "deadlines:routed:X:0",
    )
    await s.deliverer.deliver(other)
    for status in ("sent", "failed"):
        labels = {"channel": "sms", "status": status}
        assert s.registry.get_sample_value("lapor_notifications_total", labels) == 1.0


@pytest.mark.parametrize(
    ("status", "error", "expected"),
    [
        ("delivered", None, ("delivered", None)),
        ("failed", "handset unreachable", ("failed", "receipt")),
        ("expired", "expired: stat:EXPIRED", ("failed", "expired")),
    ],
)
async def test_a_receipt_settles_the_sms_and_says_whether_it_expired(
    status: str, error: str | None, expected: tuple[str, str | None]
) -> None:
    s = Setup(Scripted())
    await s.deliverer.deliver(note())
    receipt = SmsDeliveryReceipt(notification_id="ntf-1", status=status, error=error, at=T0)  # type: ignore[arg-type]
    deps = SimpleNamespace(repo=s.log, deliverer=s.deliverer)
    await handle_receipt(receipt, deps)  # type: ignore[arg-type]
    record = s.log.records["ntf-1"]
    assert (record["status"], record.get("failure_reason")) == expected
    if status == "expired":
        assert s.failed_count("expired") == 1
