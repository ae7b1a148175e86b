"""The daily SMS budget of a region: within it citizen SMS go out, beyond it they are
withheld as `budget_exhausted`, counted and never sent; each SMS counts once."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, tzinfo
from typing import Any
from zoneinfo import ZoneInfo

import pytest
from prometheus_client import CollectorRegistry
from pydantic import ValidationError

from services.notify.channels import ChannelSet, DeliveryResult, OutgoingMessage
from services.notify.delivery import Deliverer, Notification, NotifyMetrics
from services.notify.repository import PENDING
from services.notify.retry import RetryPolicy
from services.notify.settings import NotifySettings
from tests.unit.notify.test_delivery import T0, MemoryLog, Publisher, Scripted, outcomes


class BudgetLog(MemoryLog):
    """The delivery log with the per-region, per-day counters of the repository."""

    def __init__(self) -> None:
        super().__init__()
        self.days: dict[str, dict[str, int]] = {}

    async def claim_budget(self, nid: str, day: str, now: datetime) -> bool:
        record = self.records[nid]
        if record["status"] != PENDING or "budget_day" in record:
            return False
        record["budget_day"], record["budget_claimed_at"] = day, now
        return True

    async def note_budget(self, nid: str, outcome: str) -> None:
        self.records[nid]["budget"] = outcome

    async def spend_sms_budget(self, region: str, day: str, budget: int) -> bool:
        counter = self.days.setdefault(f"{region}:{day}", {"sent": 0, "held": 0})
        if counter["sent"] < budget:
            counter["sent"] += 1
            return True
        counter["held"] += 1
        return False


class Budgeted:
    def __init__(self, budgets: dict[str | None, int], zone: tzinfo = UTC) -> None:
        self.log = BudgetLog()
        self.channel = Scripted()
        self.registry = CollectorRegistry()
        self.now = T0
        self.deliverer = Deliverer(
            self.log,  # type: ignore[arg-type]
            ChannelSet(sms=self.channel, email=self.channel, webhook=self.channel),
            Publisher(),  # type: ignore[arg-type]
            NotifyMetrics(self.registry),
            RetryPolicy(base_s=1, factor=4, max_delay_s=60, max_attempts=4, jitter=0),
            send_timeout_s=1.0,
            clock=lambda: self.now,
            sms_budget=lambda region: budgets.get(region, 0),
            budget_zone=lambda _region: zone,
        )

    def held(self, region: str) -> float | None:
        labels = {"channel": "sms", "region": region, "reason": "budget_exhausted"}
        return self.registry.get_sample_value("lapor_notifications_withheld_total", labels)


def sms(
    n: int, region: str = "banjar", kind: Any = "sms", audience: Any = "citizen"
) -> Notification:
    message = OutgoingMessage(f"ntf-{n}", kind, f"+62812345670{n:02d}", "Halo", template="ack")
    return Notification(message, audience, f"received:LPR-{n}", region=region)


async def test_sms_beyond_the_daily_budget_are_withheld_and_counted() -> None:
    s = Budgeted({"banjar": 2, "tapin": 5})
    for n in range(4):
        await s.deliverer.deliver(sms(n))
    await s.deliverer.deliver(sms(9, region="tapin"))

    assert [m.notification_id for m in s.channel.sent] == ["ntf-0", "ntf-1", "ntf-9"]
    for n in (2, 3):
        record = s.log.records[f"ntf-{n}"]
        assert (record["status"], record["withheld_reason"]) == ("withheld", "budget_exhausted")
    assert s.held("banjar") == 2 and s.held("tapin") is None
    day = T0.date().isoformat()
    assert s.log.days[f"banjar:{day}"] == {"sent": 2, "held": 2}
    # A redelivery of a withheld SMS does not send it.
    await s.deliverer.deliver(sms(3))
    assert len(s.channel.sent) == 3


async def test_the_budget_starts_afresh_each_day() -> None:
    s = Budgeted({"banjar": 1})
    await s.deliverer.deliver(sms(0))
    await s.deliverer.deliver(sms(1))
    s.now += timedelta(days=1)
    await s.deliverer.deliver(sms(2))
    assert [m.notification_id for m in s.channel.sent] == ["ntf-0", "ntf-2"]


async def test_the_budget_day_is_the_regions_local_day() -> None:
    """Banjar's day starts at 16:00 UTC: an SMS at 17:00 UTC counts on the next WITA day."""
    s = Budgeted({"banjar": 1}, zone=ZoneInfo("Asia/Makassar"))
    s.now = datetime(2026, 3, 2, 15, 30, tzinfo=UTC)  # 23:30 WITA on 2 March
    await s.deliverer.deliver(sms(1))
    s.now = datetime(2026, 3, 2, 17, 0, tzinfo=UTC)  # 01:00 WITA on 3 March
    await s.deliverer.deliver(sms(2))
    assert s.log.days == {
        "banjar:2026-03-02": {"sent": 1, "held": 0},
        "banjar:2026-03-03": {"sent": 1, "held": 0},
    }
    assert s.held("banjar") is None


async def test_a_retried_sms_counts_once() -> None:
    s = Budgeted({"banjar": 1})
    s.channel.answers = [DeliveryResult.temporary("HTTP 503")] * 2
    for _ in range(3):  # retried in the handler, then redelivered later
        s.now += timedelta(minutes=5)
        await s.deliverer.deliver(sms(0))
    assert s.log.records["ntf-0"]["status"] == "sent" and len(s.channel.sent) == 3
    day = T0.date().isoformat()
    assert s.log.days[f"banjar:{day}"] == {"sent": 1, "held": 0}


async def test_e_mail_and_officials_are_not_counted() -> None:
    s = Budgeted({"banjar": 0})
    await s.deliverer.deliver(sms(0, kind="email"))
    await s.deliverer.deliver(sms(1, audience="official"))
    await s.deliverer.deliver(sms(2))
    assert [m.notification_id for m in s.channel.sent] == ["ntf-0", "ntf-1"]
    assert s.log.records["ntf-2"]["status"] == "withheld"


def test_budget_settings_default_and_per_region(monkeypatch: pytest.MonkeyPatch) -> None:
    assert NotifySettings().sms_daily_budget == 5000  # type: ignore[call-arg]
    monkeypatch.setenv("NOTIFY_SMS_DAILY_BUDGET", "100")
    monkeypatch.setenv("NOTIFY_SMS_DAILY_BUDGETS", '{"banjar": 20000}')
    settings = NotifySettings()  # type: ignore[call-arg]
    assert settings.sms_budget("banjar") == 20000
    assert settings.sms_budget("tapin") == 100 and settings.sms_budget(None) == 100
    monkeypatch.setenv("NOTIFY_SMS_DAILY_BUDGETS", '{"banjar": -1}')
    with pytest.raises(ValidationError, match="negative"):
        NotifySettings()  # type: ignore[call-arg]


async def test_an_sms_whose_claimant_died_before_deciding_is_decided_later_not_lost() -> None:
    s = Budgeted({"banjar": 5})
    note = sms(0)
    # A delivery stored the SMS with the budget and attempt 1 claimed, then its process died.
    stored = (await s.log.open(s.deliverer._new_record(note))).record
    assert (stored["budget_day"], stored["attempt"]["n"]) == (T0.date().isoformat(), 1)

    # While the claimant may still be deciding, the next delivery comes back later.
    wait = await s.deliverer.deliver(note)
    assert wait is not None and wait > 0 and not s.channel.sent
    s.now += timedelta(minutes=5)
    await s.deliverer.deliver(note)
    assert [m.notification_id for m in s.channel.sent] == ["ntf-0"]
    record = s.log.records["ntf-0"]
    assert (record["budget"], record["status"]) == ("spent", "sent")
    assert outcomes(record) == ["abandoned", "sent"]


async def test_a_new_sms_carries_its_budget_decision_in_its_outcome_or_its_withholding() -> None:
    s = Budgeted({"banjar": 1})
    await s.deliverer.deliver(sms(0))
    await s.deliverer.deliver(sms(1))
    sent, held = s.log.records["ntf-0"], s.log.records["ntf-1"]
    assert (sent["budget"], sent["status"], outcomes(sent)) == ("spent", "sent", ["sent"])
    # Withheld before its claimed attempt started: no attempt is left in flight.
    assert (held["budget"], held["status"], held["attempt"]) == ("held", "withheld", None)
    assert outcomes(held) == [] and s.log.claims == 0
